"""Helpers of the store-and-forward fault-injection tests (``test_store_forward.py``).

The plant is served with an extra input register ``sim.reads`` (``counter:1``: one more on
every request that reads it), so lost and duplicated readings show in the data itself, and
optionally ``bench`` float registers to raise the point rate. The gateway runs either in
this process (:func:`test_spine.running_gateway`) or as a real ``fieldgate gateway run``
process that can be killed with SIGKILL (:class:`GatewayProcess`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import yaml

from cloud import contract
from cloud.contract import GatewayEvent, TelemetryBatch
from gateway.config import GatewayConfigBase, gateway_config_model
from simulators.modbus import PLANT_MAP, ModbusSimulator, bench_map
from simulators.modbus_map import MapEntry
from simulators.plant import Plant

COUNTER_TAG = "sim.reads"
COUNTER = MapEntry(COUNTER_TAG, "input", 13, "uint32", source="counter:1")
"""Served right after ``line.state`` so the adapter reads it with the plant block."""
PLANT_TAGS: list[dict[str, Any]] = [
    {"name": "motor1.speed", "table": "input", "address": 0, "type": "float32"},
    {"name": "tank.level", "table": "input", "address": 6, "type": "uint16", "scale": 0.1},
    {"name": "production.count", "table": "input", "address": 10, "type": "uint32"},
    {"name": COUNTER_TAG, "table": "input", "address": 13, "type": "uint32"},
]
DEVICE = "plc1"


def tags(bench: int = 0) -> list[dict[str, Any]]:
    """The polled tags: a few plant signals, the read counter and ``bench`` float32 tags."""
    return PLANT_TAGS + [
        {"name": e.name, "table": "holding", "address": e.address, "type": "float32"}
        for e in bench_map(bench)
    ]


def simulator(bench: int = 0, seed: int = 5) -> ModbusSimulator:
    """The plant map plus the read counter and ``bench`` constant registers."""
    return ModbusSimulator(Plant(seed=seed), register_map=[*PLANT_MAP, COUNTER, *bench_map(bench)])


def config_dict(
    gateway_id: str,
    broker_port: int,
    modbus_port: int,
    buffer_path: Path,
    *,
    interval: str = "100ms",
    bench: int = 0,
    buffer: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """A gateway config that reconnects fast (so tests spend their time on faults);
    ``token``: the gateway's device token (MQTT password, username = the gateway id)."""
    login = {} if token is None else {"username": gateway_id, "password": token}
    return {
        "gateway": {"id": gateway_id, "status_interval": "1s", "shutdown_drain": "5s"},
        "buffer": {"path": str(buffer_path), **(buffer or {})},
        "uplink": {
            "url": f"mqtt://127.0.0.1:{broker_port}", "reconnect_min": 0.05,
            "reconnect_max": 0.2, **login,
        },
        "devices": [{
            "type": "modbus", "name": DEVICE, "host": "127.0.0.1", "port": modbus_port,
            "interval": interval, "tags": tags(bench),
        }],
    }


def config_model(data: dict[str, Any]) -> GatewayConfigBase:
    return gateway_config_model().model_validate(data)


# -- what crosses the broker ---------------------------------------------------------------


@dataclass
class Wire:
    """Everything the gateway published on ``telemetry`` and ``events``, as a second
    subscriber on the broker saw it, with the loop time of arrival."""

    batches: list[tuple[float, TelemetryBatch]] = field(default_factory=list)
    events: list[GatewayEvent] = field(default_factory=list)
    _waiters: list[tuple[Callable[[Wire], bool], asyncio.Future[None]]] = field(
        default_factory=list
    )

    def seqs(self, since: float = float("-inf")) -> list[int]:
        """Sequence numbers in order of arrival, of the batches received after ``since``."""
        return [
            seq for at, batch in self.batches if at >= since for seq in batch.sequence_numbers()
        ]

    async def wait_for(self, predicate: Callable[[Wire], bool], within: float = 20) -> None:
        """Return once ``predicate(self)`` holds, re-checked on every message received."""
        if predicate(self):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        try:
            await asyncio.wait_for(future, within)
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not future]

    def _notify(self) -> None:
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(self):
                future.set_result(None)


@asynccontextmanager
async def sniff(
    broker: tuple[str, int], gateway_id: str, login: dict[str, str] | None = None
) -> AsyncIterator[Wire]:
    """Subscribe to the gateway's telemetry and events directly on the broker (not through
    the cut-able link) for as long as the block runs; ``login``: ``aiomqtt.Client``
    credentials (``Cloud.observer``)."""
    wire = Wire()
    loop = asyncio.get_running_loop()
    telemetry = contract.topic(gateway_id, contract.TELEMETRY)
    events = contract.topic(gateway_id, contract.EVENTS)
    async with aiomqtt.Client(
        *broker, identifier=f"sniff-sf-{gateway_id}", **(login or {})
    ) as client:
        await client.subscribe(telemetry, qos=1)
        await client.subscribe(events, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes)
                if message.topic.matches(telemetry):
                    wire.batches.append((loop.time(), contract.decode_batch(payload)))
                else:
                    wire.events.append(GatewayEvent.model_validate_json(payload))
                wire._notify()

        task = asyncio.create_task(collect(), name="sf-sniffer")
        try:
            yield wire
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


# -- the cloud API ---------------------------------------------------------------------------


async def tag_points(api: httpx.AsyncClient, device: str, tag: str) -> list[dict[str, Any]]:
    """Every stored reading of one tag, all pages, in the API's order (time, then seq)."""
    points: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"tag": tag, "limit": 10_000}
        if cursor is not None:
            params["cursor"] = cursor
        response = await api.get(f"/api/v1/devices/{device}/telemetry", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        points.extend(page["items"])
        cursor = page["next"]
        if cursor is None:
            return points


async def delivery(api: httpx.AsyncClient, gateway_id: str, first: int, last: int) -> Any:
    response = await api.get(
        f"/api/v1/devices/{gateway_id}/delivery", params={"from_seq": first, "to_seq": last}
    )
    assert response.status_code == 200, response.text
    return response.json()


# -- logs --------------------------------------------------------------------------------


class LogWatch(logging.Handler):
    """Collects the records of a logger tree and lets a test await one that matches."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._loop = asyncio.get_running_loop()
        self._waiters: list[tuple[Callable[[str], bool], asyncio.Future[str]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        message = record.getMessage()
        for predicate, future in list(self._waiters):
            if predicate(message):
                # The buffer logs from the event loop, but be safe for any thread.
                self._loop.call_soon_threadsafe(_resolve, future, message)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]

    async def wait_for(self, predicate: Callable[[str], bool], within: float = 10) -> str:
        """The first message (already logged or future) for which ``predicate`` holds."""
        for message in self.messages():
            if predicate(message):
                return message
        future: asyncio.Future[str] = self._loop.create_future()
        self._waiters.append((predicate, future))
        try:
            return await asyncio.wait_for(future, within)
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not future]


def _resolve(future: asyncio.Future[str], message: str) -> None:
    if not future.done():
        future.set_result(message)


@contextlib.contextmanager
def watch_logs(name: str) -> Iterator[LogWatch]:
    """Attach a :class:`LogWatch` to logger ``name`` (and its children) for the block."""
    watch = LogWatch()
    logger = logging.getLogger(name)
    previous = logger.level
    logger.addHandler(watch)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(previous)


# -- a gateway process ---------------------------------------------------------------------


class GatewayProcess:
    """``python -m fieldgate gateway run -c FILE`` as a child process, logging to a file.

    :meth:`kill` is SIGKILL: no shutdown code runs, exactly like a power cut of the
    process (the kernel still holds what was written, so it is not a power cut of the
    machine). :meth:`stop` is SIGTERM: the gateway's orderly shutdown.
    """

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.workdir = workdir
        self.config_path = workdir / "gateway.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.log = workdir / "gateway.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.process is None, "already running"
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts + 1}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fieldgate", "gateway", "run",
                 "-c", str(self.config_path), "--log-level", "info"],
                stdout=out, stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
        self.starts += 1

    async def kill(self) -> int:
        return await self._end(signal.SIGKILL, 5.0)

    async def stop(self, grace: float = 15.0) -> int:
        return await self._end(signal.SIGTERM, grace)

    async def _end(self, sig: signal.Signals, grace: float) -> int:
        process, self.process = self.process, None
        assert process is not None, "not running"
        if process.poll() is not None:
            raise AssertionError(
                f"the gateway died by itself (exit {process.returncode}):\n{self.tail()}"
            )
        process.send_signal(sig)
        try:
            return await asyncio.to_thread(process.wait, grace)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
            raise AssertionError(f"the gateway ignored {sig.name}:\n{self.tail()}") from None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        """Last resort for a failing test: never leave the process behind."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
