"""Shared fixtures: free ports and the external services (PostgreSQL, Mosquitto).

Tests that need an external service use the ``postgres_url`` or ``mosquitto_url``
fixture. When the service is absent they skip with the reason, unless
``FIELDGATE_REQUIRE_SERVICES=1`` (set by ``.ci/run``), where they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import Iterator

import pytest

POSTGRES_URL = os.environ.get(
    "FIELDGATE_TEST_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
MOSQUITTO_URL = os.environ.get("FIELDGATE_TEST_MOSQUITTO", "mqtt://127.0.0.1:1883")


def free_port() -> int:
    """An ephemeral TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rebindable_port() -> int:
    """A free port *below* the kernel's ephemeral range, for a server that a test stops and
    starts again on the same port while a client keeps reconnecting: an ephemeral port can
    be taken meanwhile by the client's own outgoing socket (a TCP self-connect)."""
    low = 20000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            low = min(low, int(ranges.read().split()[0]) - 2000)
    except (OSError, ValueError):
        pass
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 8000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _service(name: str, host: str, port: int) -> None:
    if _tcp_open(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("FIELDGATE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} and FIELDGATE_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


@pytest.fixture(name="free_port")
def free_port_fixture() -> int:
    return free_port()


@pytest.fixture(name="rebindable_port")
def rebindable_port_fixture() -> int:
    return rebindable_port()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of the PostgreSQL test database (skips or fails when absent)."""
    _service("PostgreSQL", "127.0.0.1", 5432)
    yield POSTGRES_URL


@pytest.fixture
def mosquitto_url() -> Iterator[str]:
    """URL of the external Mosquitto broker (skips or fails when absent)."""
    _service("Mosquitto", "127.0.0.1", 1883)
    yield MOSQUITTO_URL


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> object:
    """Every async object must cancel its own tasks: a test that leaves one running fails."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    leaked = [
        t for t in asyncio.all_tasks() - before
        if not t.done() and t is not asyncio.current_task()
    ]
    for task in leaked:
        task.cancel()
    if leaked:
        names = ", ".join(sorted(t.get_name() for t in leaked))
        pytest.fail(f"tasks left running after the test: {names}")
