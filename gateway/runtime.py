"""The gateway process: wires adapters, scheduler, buffer, forwarder, uplink and commands.

Shutdown order matters: cancelling ``run`` stops polling first, then the forwarder and
uplink (announcing ``offline``), and closes the buffer last so every reading accepted
from an adapter is committed to disk before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from adapters import registry
from adapters.base import now_ms
from cloud.contract import GatewayEvent, GatewayStatus
from gateway.buffer import Buffer
from gateway.commands import CommandRouter
from gateway.config import GatewayConfigBase
from gateway.errors import ConfigError, UplinkError
from gateway.forwarder import Forwarder
from gateway.loader import load_config
from gateway.scheduler import DeviceRunner
from gateway.uplink.mqtt import MqttUplink

log = logging.getLogger(__name__)

try:
    VERSION = version("fieldgate")
except PackageNotFoundError:  # running from a source tree without installation
    VERSION = "0.0.0"


class Gateway:
    """One gateway. ``await gateway.run()`` runs until cancelled."""

    def __init__(self, config: GatewayConfigBase, *, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.id = config.gateway.id
        self.runners: dict[str, DeviceRunner] = {}
        self.buffer: Buffer | None = None
        self.uplink: MqttUplink | None = None
        self.forwarder: Forwarder | None = None
        self.started = asyncio.Event()
        self._events: asyncio.Queue[GatewayEvent] = asyncio.Queue(maxsize=10_000)
        self._devices_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask ``run`` to shut down in order: stop polling, commit what was read, spend up to
        ``gateway.shutdown_drain`` seconds delivering the backlog, then close. Idempotent."""
        self._stop.set()

    def _build_runners(self, config: GatewayConfigBase, buffer: Buffer) -> dict[str, DeviceRunner]:
        runners = {}
        for device in config.devices:
            if not device.enabled:
                continue
            adapter = registry.get(device.type).factory(device)
            runners[device.name] = DeviceRunner(device, adapter, buffer.submit, self.emit)
        return runners

    def emit(self, event: GatewayEvent) -> None:
        """Queue an event for the cloud; never blocks (dropped with a log line when full)."""
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("event queue full; dropped %s", event.kind)

    def _on_overflow(self, dropped: int) -> None:
        self.emit(GatewayEvent(
            ts=now_ms(), kind="buffer_overflow",
            message=f"buffer limit reached: dropped the {dropped} oldest readings",
            data={"dropped": dropped},
        ))

    def _on_buffer_error(self, reason: str | None) -> None:
        if reason is None:
            self.emit(GatewayEvent(
                ts=now_ms(), kind="buffer_recovered", message="the buffer accepts writes again"
            ))
        else:
            self.emit(GatewayEvent(
                ts=now_ms(), kind="buffer_error",
                message=f"the buffer refuses writes ({reason}); readings wait in memory",
            ))

    async def status(self) -> GatewayStatus:
        return GatewayStatus(
            state="online",
            ts=now_ms(),
            version=VERSION,
            config_hash=self.config.digest(),
            buffer=await self.buffer.status() if self.buffer is not None else None,
            devices={name: r.connected for name, r in self.runners.items()},
        )

    async def run(self) -> None:
        config = self.config
        async with Buffer(
            config.buffer, on_overflow=self._on_overflow, on_error=self._on_buffer_error
        ) as buffer:
            self.buffer = buffer
            uplink = MqttUplink(
                config.uplink, self.id, self.status,
                status_interval=config.gateway.status_interval,
            )
            async with uplink:
                self.uplink = uplink
                self.forwarder = Forwarder(
                    buffer, uplink,
                    window=config.uplink.inflight,
                    max_points=config.uplink.max_batch_points,
                    max_bytes=config.uplink.max_batch_bytes,
                )
                self.runners.update(self._build_runners(config, buffer))
                router = CommandRouter(
                    self.runners, uplink,
                    reload=self.reload if self.config_path is not None else None,
                )
                try:
                    async with asyncio.TaskGroup() as tasks:
                        self._devices_task = tasks.create_task(
                            self._run_devices(), name="devices"
                        )
                        others = [
                            tasks.create_task(self.forwarder.run(), name="forwarder"),
                            tasks.create_task(router.run(), name="commands"),
                            tasks.create_task(self._publish_events(uplink), name="events"),
                        ]
                        log.info(
                            "gateway %s running: %d device(s), uplink %s",
                            self.id, len(self.runners), config.uplink.url,
                        )
                        self.started.set()
                        await self._stop.wait()
                        await self._shutdown(buffer, uplink)
                        for task in others:
                            task.cancel()
                finally:
                    self.started.clear()
                    # A reload replaces the devices task outside the group; stop it too.
                    devices = self._devices_task
                    if devices is not None and not devices.done():
                        devices.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await devices

    async def _shutdown(self, buffer: Buffer, uplink: MqttUplink) -> None:
        task = self._devices_task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await buffer.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.gateway.shutdown_drain
        while uplink.connected and loop.time() < deadline:
            status = await buffer.status()
            if status.depth == 0:
                break
            # A bounded wait for the forwarder to empty the buffer; it has no "empty"
            # event because emptiness is only ever interesting here.
            await asyncio.sleep(0.05)
        remaining = (await buffer.status()).depth
        if remaining:
            log.info("%d readings stay buffered for the next start", remaining)

    async def _run_devices(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for runner in list(self.runners.values()):
                tasks.create_task(runner.run(), name=f"device-{runner.name}")

    async def _publish_events(self, uplink: MqttUplink) -> None:
        """Deliver events in order, holding them (up to the queue bound) while offline."""
        while True:
            event = await self._events.get()
            while True:
                await uplink.wait_connected()
                try:
                    await uplink.publish_event(event)
                    break
                except UplinkError:
                    await uplink.wait_disconnected()

    async def reload(self) -> str:
        """Re-read the config file and restart device polling with it. Changes to the
        gateway id, buffer or uplink need a process restart and are refused."""
        if self.config_path is None or self.buffer is None:
            raise ConfigError("no config file to reload")
        new = load_config(self.config_path)
        for section in ("gateway", "buffer", "uplink"):
            if getattr(new, section) != getattr(self.config, section):
                raise ConfigError(f"the {section} section changed; restart the gateway to apply it")
        task = self._devices_task
        if task is None:
            raise ConfigError("the gateway is not running")
        runners = self._build_runners(new, self.buffer)  # validates adapters before stopping
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.config = new
        self.runners.clear()
        self.runners.update(runners)
        self._devices_task = asyncio.get_running_loop().create_task(
            self._run_devices(), name="devices"
        )
        log.info("configuration reloaded from %s (%s)", self.config_path, new.digest())
        return new.digest()
