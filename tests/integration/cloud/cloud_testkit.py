"""Helpers of the cloud tests: telemetry batches (built with the contract's hot-path
encoder), tenants, running an app. Imported by module name (no ``conftest`` imports)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from fastapi import FastAPI

from cloud.bootstrap import bootstrap
from cloud.contract import TelemetryBatch, WireValue, decode_batch, encode_batch
from cloud.store.db import Store

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms


def batch_bytes(
    first: int,
    readings: list[tuple[str, str, int, WireValue]],
    *,
    q: list[int] | None = None,
    why: dict[int, str] | None = None,
    seqs: list[int] | None = None,
) -> bytes:
    """Encode ``readings`` = [(device, tag, ts_ms, value), ...] from sequence ``first``."""
    series: list[tuple[str, str]] = []
    index: dict[tuple[str, str], int] = {}
    s: list[int] = []
    for device, tag, _, _ in readings:
        key = (device, tag)
        if key not in index:
            index[key] = len(series)
            series.append(key)
        s.append(index[key])
    return encode_batch(
        seqs if seqs is not None else list(range(first, first + len(readings))),
        series,
        s,
        [r[2] for r in readings],
        [r[3] for r in readings],
        q if q is not None else [0] * len(readings),
        why or {},
    )


def make_batch(
    first: int, readings: list[tuple[str, str, int, WireValue]], **kw: object
) -> TelemetryBatch:
    return decode_batch(batch_bytes(first, readings, **kw))  # type: ignore[arg-type]


def counter_batch(first: int, count: int, *, device: str = "pump1", tag: str = "flow") -> bytes:
    """``count`` integer readings of one tag, one per ms, value = sequence number."""
    return batch_bytes(first, [(device, tag, T0 + first + i, first + i) for i in range(count)])


@dataclass(frozen=True)
class Database:
    url: str
    schema: str | None


def running(app: FastAPI) -> AbstractAsyncContextManager[None]:
    """``async with running(app):`` runs the app's lifespan (start-up … shutdown)."""
    return app.router.lifespan_context(app)


@dataclass(frozen=True)
class Tenant:
    org: str
    org_id: int
    key: str
    gateway: str
    token: str = ""
    """The gateway's device token (its MQTT password)."""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @property
    def mqtt(self) -> dict[str, str]:
        """``aiomqtt.Client`` keyword arguments that log in as the gateway."""
        return {"username": self.gateway, "password": self.token}


async def make_tenant(store: Store, org: str, gateway: str) -> Tenant:
    """An org with an owner key and one registered gateway with a device token."""
    done = await bootstrap(store, org, gateways=[gateway])
    assert done.api_key is not None
    return Tenant(
        org=org, org_id=done.org_id, key=done.api_key, gateway=gateway,
        token=done.tokens[gateway],
    )


def internal_login(app: FastAPI) -> dict[str, str]:
    """``aiomqtt.Client`` keyword arguments with the embedded broker's internal (cloud)
    credential: full topic rights, for observers and for publishing as no gateway."""
    credentials = app.state.broker.internal
    return {"username": credentials.username, "password": credentials.password}
