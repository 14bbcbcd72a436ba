"""The clock of the gateway: polls each device's tag groups on their intervals.

The runtime owns time (STYLE §2): intervals, overrun skipping, timeouts, reconnects with
backoff and quality marking all live here, so adapters stay small. While a device is
unreachable every poll still yields a bad-quality reading per tag (never silence), and
reconnect attempts follow an exponential backoff instead of hammering the device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from adapters.base import (
    Adapter,
    AdapterError,
    ConnectError,
    DeviceConfig,
    Quality,
    Reading,
    TagConfig,
    Value,
    now_ms,
)
from cloud.contract import GatewayEvent
from gateway.backoff import Backoff

log = logging.getLogger(__name__)

ReadingSink = Callable[[Sequence[Reading]], None]
"""Takes readings without blocking (the buffer's ``submit``)."""
EventSink = Callable[[GatewayEvent], None]


def interval_groups(config: DeviceConfig) -> list[tuple[float, tuple[TagConfig, ...]]]:
    """The device's tags grouped by effective interval, shortest interval first."""
    groups: dict[float, list[TagConfig]] = defaultdict(list)
    for tag in config.tags:
        groups[tag.interval or config.interval].append(tag)
    return [(interval, tuple(tags)) for interval, tags in sorted(groups.items())]


@dataclass
class RunnerStats:
    polls: int = 0
    failed_polls: int = 0
    overruns: int = 0
    readings: int = 0
    connects: int = 0


class DeviceRunner:
    """Polls one device through its adapter until cancelled."""

    def __init__(
        self,
        config: DeviceConfig,
        adapter: Adapter,
        sink: ReadingSink,
        on_event: EventSink,
        *,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self.config = config
        self.adapter = adapter
        self.name = config.name
        self.groups = interval_groups(config)
        self.tags: dict[str, TagConfig] = {t.name: t for t in config.tags}
        self.stats = RunnerStats()
        self.connected = False
        self.last_error: str | None = "not connected yet"
        self._sink = sink
        self._on_event = on_event
        self._backoff = Backoff(backoff_min, backoff_max)
        self._connect_lock = asyncio.Lock()
        self._next_attempt = 0.0

    async def run(self) -> None:
        """Poll every group on its interval; closes the adapter when cancelled."""
        try:
            async with asyncio.TaskGroup() as tasks:
                for interval, tags in self.groups:
                    tasks.create_task(
                        self._poll_loop(interval, tags), name=f"poll-{self.name}-{interval:g}s"
                    )
        finally:
            with contextlib.suppress(Exception):
                await self.adapter.close()

    async def _poll_loop(self, interval: float, tags: tuple[TagConfig, ...]) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            await self.poll(tags)
            next_tick += interval
            now = loop.time()
            if now >= next_tick:
                # The poll overran its interval: skip the ticks it missed rather than
                # firing them back to back, and count them so the operator can see it.
                missed = int((now - next_tick) // interval) + 1
                self.stats.overruns += missed
                next_tick += missed * interval
                log.warning(
                    "%s: polling %d tags took longer than %gs; skipped %d poll(s)",
                    self.name, len(tags), interval, missed,
                )
            await asyncio.sleep(next_tick - now)

    async def poll(self, tags: Sequence[TagConfig]) -> None:
        """One poll of ``tags``: readings (good or bad) always reach the sink."""
        self.stats.polls += 1
        if not await self.ensure_connected():
            self._emit_bad(tags, f"device unreachable: {self.last_error}")
            return
        try:
            readings = await asyncio.wait_for(self.adapter.read(tags), self.config.timeout)
        except (ConnectError, TimeoutError) as exc:
            reason = _describe(exc, self.config.timeout)
            await self._disconnected(reason)
            self._emit_bad(tags, reason)
        except AdapterError as exc:
            self.stats.failed_polls += 1
            self._emit_bad(tags, str(exc))
        except Exception as exc:
            # A bug in an adapter must not stop the gateway; report it as bad quality.
            log.exception("%s: adapter failed while reading", self.name)
            self.stats.failed_polls += 1
            self._emit_bad(tags, f"adapter error: {type(exc).__name__}: {exc}")
        else:
            self.stats.readings += len(readings)
            self._sink(readings)

    def _emit_bad(self, tags: Sequence[TagConfig], reason: str) -> None:
        ts = now_ms()
        self.stats.readings += len(tags)
        self._sink([Reading(self.name, t.name, ts, None, Quality.BAD, reason) for t in tags])

    async def ensure_connected(self) -> bool:
        """Connect if disconnected and the backoff allows an attempt now."""
        if self.connected:
            return True
        async with self._connect_lock:
            if self.connected:
                return True
            loop = asyncio.get_running_loop()
            if loop.time() < self._next_attempt:
                return False
            try:
                await asyncio.wait_for(self.adapter.connect(), self.config.timeout)
            except (AdapterError, TimeoutError, OSError) as exc:
                self.last_error = _describe(exc, self.config.timeout)
                delay = self._backoff.next()
                self._next_attempt = loop.time() + delay
                if self._backoff.attempts == 1:
                    log.warning("%s: cannot connect (%s)", self.name, self.last_error)
                with contextlib.suppress(Exception):
                    await self.adapter.close()
                return False
            self.connected = True
            self.last_error = None
            self.stats.connects += 1
            self._backoff.reset()
            log.info("%s: connected", self.name)
            self._on_event(GatewayEvent(ts=now_ms(), kind="device_connected", device=self.name))
            return True

    async def _disconnected(self, reason: str) -> None:
        async with self._connect_lock:
            if not self.connected:
                return
            self.connected = False
            self.last_error = reason
            self.stats.failed_polls += 1
            self._next_attempt = asyncio.get_running_loop().time() + self._backoff.next()
            with contextlib.suppress(Exception):
                await self.adapter.close()
        log.warning("%s: disconnected (%s)", self.name, reason)
        self._on_event(GatewayEvent(
            ts=now_ms(), kind="device_disconnected", device=self.name, message=reason
        ))

    async def read_now(self, tag: TagConfig) -> Reading:
        """Read one tag outside the schedule (the ``read`` command). Raises ``ConnectError``
        when the device is unreachable."""
        if not await self.ensure_connected():
            raise ConnectError(f"device {self.name} is unreachable: {self.last_error}")
        try:
            readings = await asyncio.wait_for(self.adapter.read((tag,)), self.config.timeout)
        except (ConnectError, TimeoutError) as exc:
            reason = _describe(exc, self.config.timeout)
            await self._disconnected(reason)
            raise ConnectError(reason) from exc
        return readings[0]

    async def write(self, tag: TagConfig, value: Value) -> Value:
        """Write through the adapter. Raises ``ConnectError`` when unreachable, and the
        adapter's ``WriteError``/``DeviceError`` when refused."""
        if not await self.ensure_connected():
            raise ConnectError(f"device {self.name} is unreachable: {self.last_error}")
        try:
            return await asyncio.wait_for(self.adapter.write(tag, value), self.config.timeout)
        except (ConnectError, TimeoutError) as exc:
            reason = _describe(exc, self.config.timeout)
            await self._disconnected(reason)
            raise ConnectError(reason) from exc


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timeout: no answer within {timeout:g}s"
    text = str(exc) or type(exc).__name__
    return text
