"""``/api/v1/devices/{device}/commands``: run a command on a gateway or field device."""

from __future__ import annotations

from fastapi import APIRouter

from cloud.api.deps import CanOperate, DispatcherDep
from cloud.api.devices import DeviceName
from cloud.api.schemas import QUALITY_NAMES, CommandCreate, CommandResultPublic, Problem, from_ms
from cloud.commands import CommandRequest

router = APIRouter(prefix="/devices", tags=["commands"])


@router.post(
    "/{device}/commands",
    response_model=CommandResultPublic,
    responses={
        409: {"model": Problem, "description": "the gateway or device is offline"},
        503: {"model": Problem, "description": "the MQTT broker is not reachable"},
        504: {"model": Problem, "description": "no answer within the timeout"},
    },
)
async def run_command(
    device: DeviceName, body: CommandCreate, principal: CanOperate, dispatcher: DispatcherDep
) -> CommandResultPublic:
    """Publish the command to the device's gateway and return its result.

    A result with ``ok: false`` is the gateway's answer (e.g. ``unknown_tag``); problems
    (409/503/504) mean the command did not get an answer.
    """
    result = await dispatcher.execute(
        principal.org_id,
        device,
        CommandRequest(action=body.action, tag=body.tag, value=body.value, timeout=body.timeout),
    )
    return CommandResultPublic(
        id=result.id,
        ok=result.ok,
        ts=from_ms(result.ts),
        value=result.value,
        quality=QUALITY_NAMES[result.quality] if result.quality is not None else None,
        error=result.error,
        code=result.code,
    )
