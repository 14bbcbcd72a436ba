"""Executes commands from the cloud (DESIGN §2: Uplink → CommandRouter → Adapter.write).

Every command gets exactly one result, success or a precise error with a code the cloud
maps to an HTTP status. Commands run concurrently so a slow device never holds up
commands for another one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from adapters.base import AdapterError, ConnectError, DeviceError, ReadOnlyError, WriteError, now_ms
from cloud.contract import Command, CommandErrorCode, CommandResult
from gateway.scheduler import DeviceRunner
from gateway.uplink.base import Uplink

log = logging.getLogger(__name__)

Reloader = Callable[[], Awaitable[str]]
"""Reloads the gateway configuration; returns the new config digest."""


class CommandRouter:
    def __init__(
        self,
        runners: Mapping[str, DeviceRunner],
        uplink: Uplink,
        *,
        reload: Reloader | None = None,
        max_concurrent: int = 32,
    ) -> None:
        self.runners = runners
        self.uplink = uplink
        self._reload = reload
        self._slots = asyncio.Semaphore(max_concurrent)

    async def run(self) -> None:
        """Take commands from the uplink until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            async for command in self.uplink.commands():
                await self._slots.acquire()
                tasks.create_task(self._handle(command), name=f"command-{command.id}")

    async def _handle(self, command: Command) -> None:
        try:
            result = await self.execute(command)
        finally:
            self._slots.release()
        await self.uplink.publish_command_result(result)

    async def execute(self, command: Command) -> CommandResult:
        """Run one command and describe the outcome; never raises."""

        def fail(code: CommandErrorCode, error: str) -> CommandResult:
            return CommandResult(id=command.id, ok=False, ts=now_ms(), code=code, error=error)

        if command.deadline is not None and now_ms() > command.deadline:
            return fail("expired", "the command's deadline passed before it reached the gateway")
        if command.action == "reload_config":
            if self._reload is None:
                return fail("bad_request", "this gateway was not started from a config file")
            try:
                digest = await self._reload()
            except Exception as exc:
                return fail("invalid_value", f"config reload failed: {exc}")
            return CommandResult(id=command.id, ok=True, ts=now_ms(), value=digest)

        if command.device is None:
            return fail("bad_request", f"action {command.action!r} needs a device")
        runner = self.runners.get(command.device)
        if runner is None:
            known = ", ".join(sorted(self.runners)) or "none"
            return fail("unknown_device", f"no device {command.device!r} (devices: {known})")
        if command.tag is None:
            return fail("bad_request", f"action {command.action!r} needs a tag")
        tag = runner.tags.get(command.tag)
        if tag is None:
            return fail("unknown_tag", f"device {command.device!r} has no tag {command.tag!r}")
        try:
            if command.action == "write":
                written = await runner.write(tag, command.value)
                log.info("command %s: wrote %s.%s = %r", command.id, runner.name, tag.name, written)
                return CommandResult(id=command.id, ok=True, ts=now_ms(), value=written, quality=0)
            reading = await runner.read_now(tag)
        except ConnectError as exc:
            return fail("device_offline", str(exc))
        except ReadOnlyError as exc:
            return fail("read_only", str(exc))
        except WriteError as exc:
            return fail("invalid_value", str(exc))
        except DeviceError as exc:
            return fail("device_error", str(exc))
        except AdapterError as exc:
            return fail("device_error", str(exc))
        except Exception as exc:
            log.exception("command %s failed", command.id)
            return fail("internal", f"{type(exc).__name__}: {exc}")
        if reading.quality != 0:
            return CommandResult(
                id=command.id, ok=False, ts=reading.ts, quality=int(reading.quality),
                code="device_error", error=reading.reason or "bad quality",
            )
        return CommandResult(
            id=command.id, ok=True, ts=reading.ts, value=reading.value, quality=0
        )
