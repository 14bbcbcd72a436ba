"""Moves readings from the buffer to the uplink, deleting them only once acknowledged.

Several batches are in flight at once (a sliding window of QoS 1 messages) because
stop-and-wait would cap throughput at one round trip per batch. Batches grow by
themselves when the window is full: while messages wait for their PUBACK, new readings
accumulate and the next read takes more of them. After any failure the forwarder starts
again from the oldest unacknowledged reading; the cloud drops the duplicates by
(gateway, sequence).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from gateway.buffer import Buffer, OutboxBatch
from gateway.errors import UplinkError
from gateway.uplink.base import Uplink

log = logging.getLogger(__name__)


@dataclass
class ForwarderStats:
    batches: int = 0
    points: int = 0
    bytes: int = 0
    failures: int = 0
    inflight: int = 0
    max_inflight: int = 0


class Forwarder:
    """Runs until cancelled; see the module docstring for the delivery rules."""

    def __init__(
        self,
        buffer: Buffer,
        uplink: Uplink,
        *,
        window: int = 8,
        max_points: int = 5000,
        max_bytes: int = 512 * 1024,
        retry_delay: float = 1.0,
    ) -> None:
        self.buffer = buffer
        self.uplink = uplink
        self.window = window
        self.max_points = max_points
        self.max_bytes = max_bytes
        self.retry_delay = retry_delay
        self.stats = ForwarderStats()
        self._bytes_per_point = 40.0

    async def run(self) -> None:
        while True:
            await self.uplink.wait_connected()
            try:
                await self._session()
            except* UplinkError as group:
                self.stats.failures += 1
                log.info("forwarding interrupted: %s", group.exceptions[0])
            except* Exception as group:
                # The buffer refusing a read or an ack (disk trouble) must not stop the
                # gateway: the readings stay where they are and are tried again.
                self.stats.failures += 1
                log.error("forwarding failed: %r; retrying", group.exceptions[0])
            # Whatever was in flight and not acknowledged is still in the buffer; the
            # next session reads it again from the oldest row.
            await asyncio.sleep(self.retry_delay)

    def _points_limit(self) -> int:
        by_bytes = int(self.max_bytes / max(self._bytes_per_point, 1.0))
        return max(1, min(self.max_points, by_bytes))

    async def _session(self) -> None:
        cursor = 0
        slots = asyncio.Semaphore(self.window)
        async with asyncio.TaskGroup() as tasks:
            while True:
                await slots.acquire()
                try:
                    batch = await self.buffer.read(cursor, self._points_limit())
                except BaseException:
                    slots.release()
                    raise
                if batch is None:
                    slots.release()
                    if not await self._wait_for_data(cursor):
                        raise UplinkError("uplink disconnected")
                    continue
                cursor = batch.last
                payload = batch.encode()
                self._bytes_per_point = 0.8 * self._bytes_per_point + 0.2 * (
                    len(payload) / len(batch)
                )
                tasks.create_task(self._send(batch, payload, slots), name="forward-batch")

    async def _wait_for_data(self, cursor: int) -> bool:
        """Wait for new readings; False if the uplink went down meanwhile."""
        data = asyncio.ensure_future(self.buffer.wait_for_data(cursor))
        lost = asyncio.ensure_future(self.uplink.wait_disconnected())
        try:
            await asyncio.wait({data, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (data, lost):
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
        return not lost.done() or lost.cancelled()

    async def _send(self, batch: OutboxBatch, payload: bytes, slots: asyncio.Semaphore) -> None:
        stats = self.stats
        stats.inflight += 1
        stats.max_inflight = max(stats.max_inflight, stats.inflight)
        try:
            await self.uplink.publish_telemetry(payload)
            await self.buffer.ack(batch.first, batch.last)
        finally:
            stats.inflight -= 1
            slots.release()
        self.stats.batches += 1
        self.stats.points += len(batch)
        self.stats.bytes += len(payload)
