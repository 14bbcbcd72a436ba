"""The one ingest path: telemetry batches, gateway status and events → the store.

Every transport decodes its payload with ``cloud.contract`` and calls
:meth:`IngestService.ingest_telemetry` (or ``ingest_telemetry_many`` to write several
batches in one transaction). Writing is idempotent: points are keyed by
``(gateway, seq)``, so a re-delivered batch stores nothing new, and the latest value per
tag moves only forward in ``(ts, seq)``. When a call returns, its data is committed, which
is when a transport may acknowledge.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cloud.contract import GatewayEvent, GatewayStatus, TelemetryBatch
from cloud.metrics import LatencyHistogram
from cloud.store.db import Store
from cloud.store.devices import (
    ensure_field_devices,
    find_gateway,
    set_field_devices_online,
    set_gateway_status,
    touch_gateway,
)
from cloud.store.models import utcnow
from cloud.store.points import LATEST_COLUMNS, insert_points, upsert_latest
from cloud.store.values import encode_value
from gateway.config_types import NAME_PATTERN

log = logging.getLogger(__name__)

_NAME = re.compile(NAME_PATTERN)
_INT64_MAX = 2**63 - 1
MAX_TAG_LENGTH = 255
UNKNOWN_GATEWAY_RECHECK = 5.0
"""Seconds an unknown gateway name stays cached as unknown (a flood of telemetry from an
unregistered gateway costs one query per interval, not one per message)."""


class InvalidBatch(ValueError):
    """A batch that passed the wire schema but cannot be stored (names, ranges)."""


@dataclass
class IngestStats:
    """Counters since start; read by operators and tests (``app.state.ingest.stats``)."""

    batches: int = 0
    points: int = 0
    stored: int = 0
    """New points; counted only where the driver reports executemany row counts (SQLite)."""
    unknown_gateway: int = 0
    malformed: int = 0
    failed: int = 0
    statuses: int = 0
    events: int = 0
    unknown_gateways: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["unknown_gateways"] = sorted(self.unknown_gateways)
        return data


@dataclass(frozen=True, slots=True)
class IngestResult:
    """Outcome of one batch: ``accepted`` is False for an unknown gateway; ``stored`` is
    the number of new points (``None`` when the database driver does not report it)."""

    gateway: str
    points: int
    accepted: bool
    stored: int | None = None


@dataclass(frozen=True, slots=True)
class _Gateway:
    id: int
    org_id: int
    name: str


class IngestService:
    """Stateless apart from caches of ids (gateways and field devices are never renamed)."""

    def __init__(self, store: Store, *, latency: LatencyHistogram | None = None) -> None:
        self._store = store
        self._latency = latency
        self._gateways: dict[str, _Gateway] = {}
        self._unknown: dict[str, float] = {}
        self._field_ids: dict[tuple[int, str], int] = {}
        self.stats = IngestStats()
        self._progress = asyncio.Condition()

    async def wait_for(self, predicate: Callable[[IngestStats], bool]) -> None:
        """Return once ``predicate(self.stats)`` holds; re-checked after every commit and
        every counted rejection. For tests, benchmarks and demos (wrap in a timeout)."""
        async with self._progress:
            await self._progress.wait_for(lambda: predicate(self.stats))

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    # -- telemetry -----------------------------------------------------------------------

    async def ingest_telemetry(self, gateway: str, batch: TelemetryBatch) -> IngestResult:
        """Store one batch from ``gateway``; committed when this returns.

        Raises :class:`InvalidBatch` for a batch that cannot be stored, and the database's
        exceptions when the store is unavailable (nothing is committed then).
        """
        (result,) = await self.ingest_telemetry_many([(gateway, batch)])
        return result

    async def ingest_telemetry_many(
        self, items: Sequence[tuple[str, TelemetryBatch]]
    ) -> list[IngestResult]:
        """Store several batches in one transaction (all or nothing)."""
        for gateway, batch in items:
            _check_batch(gateway, batch)
        new_field_ids: dict[tuple[int, str], int] = {}
        async with self._store.sessions.begin() as session:
            results, stored = await self._write(session, items, new_field_ids)
        # Only after the commit: ids created in a rolled-back transaction must not be cached.
        self._field_ids.update(new_field_ids)
        committed_ms = time.time_ns() // 1_000_000
        for result, (_, batch) in zip(results, items, strict=True):
            if result.accepted:
                self.stats.batches += 1
                self.stats.points += result.points
                if self._latency is not None:
                    self._latency.observe_batch(committed_ms, batch.t)
        if stored is not None:
            self.stats.stored += stored
        await self._notify()
        return results

    async def _write(
        self,
        session: AsyncSession,
        items: Sequence[tuple[str, TelemetryBatch]],
        new_field_ids: dict[tuple[int, str], int],
    ) -> tuple[list[IngestResult], int | None]:
        rows: list[dict[str, Any]] = []
        newest: dict[tuple[int, str], dict[str, Any]] = {}
        results: list[IngestResult] = []
        seen_gateways: set[int] = set()
        for name, batch in items:
            gateway = await self._gateway(session, name)
            if gateway is None:
                results.append(IngestResult(gateway=name, points=len(batch), accepted=False))
                continue
            seen_gateways.add(gateway.id)
            series = await self._series(session, gateway, batch, new_field_ids)
            _rows(gateway, batch, series, rows, newest)
            results.append(IngestResult(gateway=name, points=len(batch), accepted=True))
        stored = await insert_points(session, rows)
        await upsert_latest(
            session, [{c: row[c] for c in LATEST_COLUMNS} for row in newest.values()]
        )
        now = utcnow()
        for gateway_id in seen_gateways:
            await touch_gateway(session, gateway_id, now)
        if stored is not None and len(results) == 1 and results[0].accepted:
            results[0] = IngestResult(
                gateway=results[0].gateway, points=results[0].points, accepted=True, stored=stored
            )
        return results, stored

    def forget(self, device: str) -> None:
        """Drop cached ids of ``device`` (a gateway or ``gateway.field``) and of the field
        devices of its gateway; call after deleting it, so that later data is matched
        against the database again rather than stored under a deleted id."""
        gateway = self._gateways.pop(device.split(".", 1)[0], None)
        if gateway is not None:
            for key in [k for k in self._field_ids if k[0] == gateway.id]:
                del self._field_ids[key]

    async def _gateway(self, session: AsyncSession, name: str) -> _Gateway | None:
        cached = self._gateways.get(name)
        if cached is not None:
            return cached
        unknown_since = self._unknown.get(name)
        if unknown_since is None or time.monotonic() - unknown_since > UNKNOWN_GATEWAY_RECHECK:
            row = await find_gateway(session, name)
            if row is not None:
                gateway = _Gateway(id=row.id, org_id=row.org_id, name=row.name)
                self._gateways[name] = gateway
                self._unknown.pop(name, None)
                return gateway
            self._unknown[name] = time.monotonic()
        self.stats.unknown_gateway += 1
        if name not in self.stats.unknown_gateways:
            log.warning("data from unregistered gateway %r ignored (register it first)", name)
            self.stats.unknown_gateways.add(name)
        return None

    async def _series(
        self,
        session: AsyncSession,
        gateway: _Gateway,
        batch: TelemetryBatch,
        new_field_ids: dict[tuple[int, str], int],
    ) -> list[tuple[int, str]]:
        """``(device_id, tag)`` per entry of ``batch.series``."""
        ids: dict[str, int] = {}
        missing: set[str] = set()
        for device, _tag in batch.series:
            key = (gateway.id, device)
            device_id = self._field_ids.get(key) or new_field_ids.get(key)
            if device_id is None:
                missing.add(device)
            else:
                ids[device] = device_id
        if missing:
            created = await ensure_field_devices(session, gateway, missing)
            for device, device_id in created.items():
                ids[device] = device_id
                new_field_ids[(gateway.id, device)] = device_id
        return [(ids[device], tag) for device, tag in batch.series]

    # -- status and events ---------------------------------------------------------------

    async def handle_status(self, gateway: str, status: GatewayStatus) -> bool:
        """Record a gateway's status (retained ``status`` topic, also its Last Will).

        Sets ``online`` and the status document; a ``devices`` map sets the field devices'
        online flags. Returns False (and stores nothing) for an unknown gateway.
        """
        async with self._store.sessions.begin() as session:
            found = await self._gateway(session, gateway)
            if found is None:
                await self._notify()
                return False
            now = utcnow()
            document = status.model_dump(mode="json", exclude_none=True)
            await set_gateway_status(
                session, found, online=status.state == "online", status=document, seen_at=now
            )
            if status.devices:
                _check_names(gateway, status.devices)
                await set_field_devices_online(session, found, status.devices, now)
        self.stats.statuses += 1
        await self._notify()
        return True

    async def handle_event(self, gateway: str, event: GatewayEvent) -> bool:
        """Apply a gateway event: ``device_connected``/``device_disconnected`` set the field
        device's online flag; other kinds are logged. False for an unknown gateway."""
        async with self._store.sessions.begin() as session:
            found = await self._gateway(session, gateway)
            if found is None:
                await self._notify()
                return False
            now = utcnow()
            await touch_gateway(session, found.id, now)
            if event.kind in ("device_connected", "device_disconnected") and event.device:
                _check_names(gateway, [event.device])
                await set_field_devices_online(
                    session,
                    found,
                    {event.device: event.kind == "device_connected"},
                    now,
                )
        log.info(
            "gateway %s event %s%s%s", gateway, event.kind,
            f" device={event.device}" if event.device else "",
            f": {event.message}" if event.message else "",
        )
        self.stats.events += 1
        await self._notify()
        return True

    async def record_malformed(self, source: str, error: Exception) -> None:
        """Count and log a payload that could not be decoded (the transport acks it anyway:
        redelivering it would fail the same way forever)."""
        self.stats.malformed += 1
        log.warning("malformed payload on %s dropped: %s", source, error)
        await self._notify()

    async def record_failed(self, source: str, error: BaseException) -> None:
        """Count and log a payload the store refused even on its own (poison message)."""
        self.stats.failed += 1
        log.error("payload on %s could not be stored, dropped", source, exc_info=error)
        await self._notify()


def _check_names(gateway: str, devices: Sequence[str] | dict[str, bool]) -> None:
    for device in devices:
        if not _NAME.match(device):
            raise InvalidBatch(
                f"gateway {gateway!r}: device name {device!r} does not match {NAME_PATTERN}"
            )


def _check_batch(gateway: str, batch: TelemetryBatch) -> None:
    """Reject what the wire schema allows but the store cannot hold."""
    _check_names(gateway, [device for device, _ in batch.series])
    for _, tag in batch.series:
        if not tag or len(tag) > MAX_TAG_LENGTH:
            raise InvalidBatch(f"gateway {gateway!r}: tag {tag[:40]!r} must be 1..255 characters")
    if batch.last > _INT64_MAX:
        raise InvalidBatch(f"gateway {gateway!r}: sequence number {batch.last} exceeds int64")
    if batch.t and (min(batch.t) < -_INT64_MAX or max(batch.t) > _INT64_MAX):
        raise InvalidBatch(f"gateway {gateway!r}: timestamp outside int64 milliseconds")


def _rows(
    gateway: _Gateway,
    batch: TelemetryBatch,
    series: list[tuple[int, str]],
    rows: list[dict[str, Any]],
    newest: dict[tuple[int, str], dict[str, Any]],
) -> None:
    """Append the batch's point rows to ``rows`` and keep the newest per (device, tag)."""
    quality = batch.q
    why = batch.why or {}
    gateway_id, org_id = gateway.id, gateway.org_id
    for i, (s, ts, value, seq) in enumerate(
        zip(batch.s, batch.t, batch.val, batch.sequence_numbers(), strict=True)
    ):
        device_id, tag = series[s]
        kind, num, txt = encode_value(value)
        row = {
            "gateway_id": gateway_id,
            "seq": seq,
            "org_id": org_id,
            "device_id": device_id,
            "tag": tag,
            "ts": ts,
            "kind": kind,
            "num": num,
            "txt": txt,
            "quality": quality[i] if quality is not None else 0,
            "reason": why.get(str(i)) if why else None,
        }
        rows.append(row)
        key = (device_id, tag)
        current = newest.get(key)
        if current is None or (ts, seq) > (current["ts"], current["seq"]):
            newest[key] = row
