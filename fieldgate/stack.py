"""Starts a whole fieldgate stack as separate processes on free loopback ports:
cloud (with its embedded broker), simulators and one gateway. Used by ``fieldgate demo``
and ``fieldgate bench``; each part runs as it would in production (its own process,
real sockets), so the figures and the demo show the real thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from cloud.bootstrap import bootstrap
from cloud.store.db import open_store

STARTUP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_tcp(port: int, process: subprocess.Popen[bytes], name: str, log: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see {log}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise RuntimeError(f"{name} did not listen on port {port}; see {log}") from None
            await asyncio.sleep(0.1)
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return


@dataclass
class Stack:
    """A running stack; ``api`` is an authenticated client of the cloud REST API."""

    workdir: Path
    gateway_id: str = "gw-demo"
    http_port: int = field(default_factory=free_port)
    broker_port: int = field(default_factory=free_port)
    api_key: str = ""
    gateway_token: str = ""
    """The gateway's device token: its MQTT password (username = ``gateway_id``)."""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    api: httpx.AsyncClient | None = None

    @property
    def db_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.workdir / 'cloud.db'}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def buffer_path(self) -> Path:
        return self.workdir / "buffer.db"

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        out = log.open("wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        process = subprocess.Popen(
            [sys.executable, "-m", "fieldgate", *args],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        out.close()
        self.processes[name] = process
        return process

    async def start_cloud(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        async with open_store(self.db_url) as store:
            done = await bootstrap(store, "demo", gateways=[self.gateway_id])
        assert done.api_key is not None
        self.api_key = done.api_key
        self.gateway_token = done.tokens[self.gateway_id]
        process = self._spawn(
            "cloud", "cloud", "serve", "--db", self.db_url, "--host", "127.0.0.1",
            "--port", str(self.http_port), "--broker-port", str(self.broker_port),
        )
        await _wait_tcp(self.http_port, process, "cloud", self.logs["cloud"])
        await _wait_tcp(self.broker_port, process, "cloud broker", self.logs["cloud"])
        self.api = httpx.AsyncClient(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=30.0,
        )

    async def start_modbus_simulator(self, extra: int = 0) -> int:
        port = free_port()
        args = ["sim", "modbus", "--host", "127.0.0.1", "--port", str(port)]
        if extra:
            args += ["--extra", str(extra)]
        process = self._spawn("sim-modbus", *args)
        await _wait_tcp(port, process, "Modbus simulator", self.logs["sim-modbus"])
        return port

    def write_gateway_config(self, config: dict[str, Any], ports: Mapping[str, int]) -> Path:
        """Point ``config`` at this stack: the broker (with the gateway's device token), the
        buffer file, and each device of a simulated protocol at its simulator's port."""
        config = dict(config)
        config["gateway"] = {**config.get("gateway", {}), "id": self.gateway_id}
        config["uplink"] = {
            **config.get("uplink", {}), "url": f"mqtt://127.0.0.1:{self.broker_port}",
            "username": self.gateway_id, "password": self.gateway_token,
        }
        config["buffer"] = {**config.get("buffer", {}), "path": str(self.buffer_path)}
        devices = []
        for device in config.get("devices", []):
            device = dict(device)
            if device.get("type") in ports:
                device["host"] = "127.0.0.1"
                device["port"] = ports[device["type"]]
            devices.append(device)
        config["devices"] = devices
        path = self.workdir / "gateway.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return path

    async def start_gateway(self, config_path: Path, log_level: str = "info") -> int:
        process = self._spawn(
            "gateway", "gateway", "run", "-c", str(config_path), "--log-level", log_level
        )
        await asyncio.sleep(0)
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited at once; see {self.logs['gateway']}")
        return process.pid

    async def stop_process(self, name: str, grace: float = 20.0) -> int | None:
        process = self.processes.pop(name, None)
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, grace)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        return process.returncode

    async def close(self) -> None:
        for name in ("gateway", *[n for n in self.processes if n.startswith("sim")], "cloud"):
            await self.stop_process(name)
        for name in list(self.processes):
            await self.stop_process(name)
        if self.api is not None:
            await self.api.aclose()
            self.api = None

    async def __aenter__(self) -> Stack:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
