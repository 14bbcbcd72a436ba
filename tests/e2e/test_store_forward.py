"""Store-and-forward under fault injection (issue 5, DESIGN §3): process kills, uplink
outages, a buffer bound that forces ``drop_oldest``, a full disk and a corrupt buffer file.

Everything is real: the Modbus simulator, the gateway (in this process, or as a
``fieldgate gateway run`` process for the kills), SQLite, the cloud's embedded amqtt broker,
cloud ingest and the REST API. Outages are cuts of a TCP link between gateway and broker
(:class:`netproxy.TcpProxy`): the broker sees the connection die without a DISCONNECT, as
with a real network failure.

The audit is the same in every test: :func:`gateway.buffer.accepted_range` gives every
sequence number the buffer file ever handed out (read once the last gateway process has
closed it), and the cloud's delivery endpoint counts how many of them are stored. The
simulator's ``sim.reads`` register counts its own reads, so per-tag gaps and duplicates
show in the stored values too.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from netproxy import TcpProxy
from sf_helpers import (
    COUNTER_TAG,
    DEVICE,
    GatewayProcess,
    Wire,
    config_dict,
    config_model,
    delivery,
    simulator,
    sniff,
    tag_points,
    watch_logs,
)
from test_spine import Cloud, cloud_node, eventually, running_gateway

from gateway.buffer import accepted_range

pytestmark = [pytest.mark.integration]


async def assert_exactly_once(cloud: Cloud, buffer: Path, dropped: int = 0) -> tuple[int, int]:
    """Every sequence number the (closed) buffer accepted is stored, except exactly
    ``dropped`` of them. Returns the accepted range.

    The gateway deletes a reading on the broker's PUBACK, which precedes the cloud's
    ingest of it: right after the gateway stops, the last batches may still be on their
    way from the broker to the cloud. So the count is re-read until it is as expected or
    has had 10 s to settle; a reading really lost never arrives and fails the check."""
    first, last = accepted_range(buffer)
    assert first is not None and last is not None, "the gateway accepted nothing"
    counted: dict[str, Any] = {}
    for _ in range(200):
        counted = await delivery(cloud.api, cloud.gateway_id, first, last)
        if counted["missing"] <= dropped:
            break
        await asyncio.sleep(0.05)
    assert counted["missing"] == dropped, counted
    return first, last


async def counter_values(cloud: Cloud) -> list[int]:
    """The stored values of the read counter, in sequence-number order, checked for
    duplicates: a value stored twice is a reading stored twice under two sequence numbers
    (the cloud already de-duplicates equal sequence numbers)."""
    points = await tag_points(cloud.api, f"{cloud.gateway_id}.{DEVICE}", COUNTER_TAG)
    by_seq = sorted(points, key=lambda p: p["seq"])
    seqs = [p["seq"] for p in by_seq]
    assert len(set(seqs)) == len(seqs), "a sequence number is stored twice"
    values = [p["value"] for p in by_seq]
    assert all(isinstance(v, int) for v in values)
    duplicates = len(values) - len(set(values))
    assert duplicates == 0, f"{duplicates} readings of {COUNTER_TAG} are stored twice"
    # Per-tag order survives everything: a later sequence number is a later read.
    assert all(a < b for a, b in itertools.pairwise(values)), (
        "the read counter goes backwards in sequence order"
    )
    return values


# -- kill -9 ---------------------------------------------------------------------------------


@pytest.mark.slow
async def test_sigkill_during_flow_and_outage_loses_and_duplicates_nothing(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SIGKILL the gateway process at random moments, with the link up and with it cut,
    restarting it on the same buffer file each time; afterwards every accepted sequence
    number is stored exactly once and the read counter has no duplicate.

    What may legitimately vanish: a reading polled by a process that is killed before its
    writer committed it (``flush_interval``, 50 ms here). It never got a sequence number,
    so it shows as a gap in the *counter values* but never as a missing *sequence number*.
    Hence: duplicates are checked strictly (values and sequence numbers), gaps against the
    accepted sequence numbers (``missing == 0``), and the counter's gaps only against a
    bound of what a kill can catch uncommitted. With ``durability: full`` every commit is
    on disk when the writer moves on, so a committed reading is never lost to a kill.
    """
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    buffer = tmp_path / "buffer.db"
    # Each round: is the link up when the process starts, and what happens to it while the
    # process runs: cut (kill during the outage), restored (kill while the backlog drains:
    # batches in flight, unacknowledged), or nothing (kill during steady flow).
    rounds = [("up", None), ("up", "cut"), ("down", None), ("down", "restore"),
              ("up", "cut"), ("down", "restore"), ("up", None)]
    async with (
        cloud_node("sqlite-embedded", tmp_path, request) as cloud,
        simulator(bench=40) as sim,
        TcpProxy(*cloud.broker, port=request.getfixturevalue("rebindable_port")) as link,
        sniff(cloud.broker, cloud.gateway_id, cloud.observer) as wire,
    ):
        config = config_dict(
            cloud.gateway_id, link.port, sim.port, buffer, interval="50ms", bench=40,
            buffer={"durability": "full"}, token=cloud.token,
        )
        gateway = GatewayProcess(config, tmp_path)
        try:
            for at_start, change in rounds:
                await set_link(link, up=at_start == "up")
                gateway.start()
                # The process is up once it polls; then a random moment of steady flow.
                reads = sim.requests
                await until(lambda r=reads: sim.requests > r + 2, "the gateway polling")  # type: ignore[misc]
                await asyncio.sleep(rng.uniform(0.05, 0.6))
                if change == "cut":
                    await set_link(link, up=False)
                    await asyncio.sleep(rng.uniform(0.05, 0.4))
                elif change == "restore":
                    await set_link(link, up=True)
                    restored = asyncio.get_running_loop().time()
                    await wire.wait_for(lambda w, t=restored: bool(w.seqs(since=t)))  # type: ignore[misc]
                    await asyncio.sleep(rng.uniform(0.0, 0.03))
                await gateway.kill()
            # A last, orderly run with the link up delivers the whole backlog.
            await set_link(link, up=True)
            started_ms = int(time.time() * 1000)
            gateway.start()
            await wait_caught_up(cloud, started_ms)
            assert await gateway.stop() == 0, gateway.tail()
        finally:
            gateway.close()
        log = gateway.log.read_text(encoding="utf-8")
        assert "Traceback" not in log, gateway.tail(80)
        assert "readings stay buffered" not in log, "the final run did not drain its backlog"

        first, last = await assert_exactly_once(cloud, buffer)
        values = await counter_values(cloud)
        gaps = (values[-1] - values[0] + 1) - len(values)
        # Polling every 50 ms with a 50 ms flush interval, a kill catches at most a few
        # readings not yet committed; 10 per kill is a generous bound a real loss exceeds.
        assert gaps <= 10 * len(rounds), f"{gaps} counter readings lost (seed {seed})"
        assert len(values) <= last - first + 1
        assert gateway.starts == len(rounds) + 1
        # What crossed the broker agrees: every accepted number was sent (some of them
        # twice, when a kill caught their batch unacknowledged; the cloud kept one).
        accepted = set(range(first, last + 1))
        await wire.wait_for(lambda w: accepted <= set(w.seqs()), within=10)
        assert set(wire.seqs()) == accepted


async def set_link(link: TcpProxy, *, up: bool) -> None:
    listening = link._server is not None
    if up and not listening:
        await link.restore()
    elif not up and listening:
        await link.cut()


async def until(check: Callable[[], bool], what: str) -> None:
    """Bounded re-checks of state that has no event to await (another process's progress)."""

    async def probe() -> bool:
        return check()

    await eventually(probe, what)


async def wait_caught_up(cloud: Cloud, since_ms: int) -> None:
    """Wait for a status message of the running gateway, published after ``since_ms``,
    that reports it online with (almost) nothing left in its buffer: the backlog of the
    killed runs has been delivered, only live readings remain for the orderly stop."""

    async def caught_up() -> bool:
        device = (await cloud.api.get(f"/api/v1/devices/{cloud.gateway_id}")).json()
        status = device.get("status") or {}
        buffer = status.get("buffer") or {}
        return (
            status.get("state") == "online" and status.get("ts", 0) >= since_ms
            and buffer.get("depth", 1 << 30) < 500
        )

    await eventually(caught_up, "the restarted gateway to deliver its backlog")


# -- outage ----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_outage_backlog_drains_oldest_first_ten_times_faster(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The link to the broker is cut for ~5 s and restored: polling keeps its pace meanwhile,
    the backlog arrives oldest first (sequence numbers strictly increasing on the wire
    after the reconnect), at least 10x faster than readings are produced, and completely.

    The drain time runs from the moment the link is restored to the arrival of the last
    backlog reading at the broker, so it includes the reconnect (backoff at most
    ``reconnect_max`` = 0.2 s): a conservative figure. The ratio is then about
    outage length / drain time, hence a 5 s outage for a 10x bound."""
    buffer = tmp_path / "buffer.db"
    bench = 36  # 40 tags every 100 ms: 400 readings/s live
    async with (
        cloud_node("sqlite-embedded", tmp_path, request) as cloud,
        simulator(bench=bench) as sim,
        TcpProxy(*cloud.broker, port=request.getfixturevalue("rebindable_port")) as link,
        sniff(cloud.broker, cloud.gateway_id, cloud.observer) as wire,
    ):
        config = config_model(
            config_dict(
                cloud.gateway_id, link.port, sim.port, buffer, bench=bench, token=cloud.token
            )
        )
        loop = asyncio.get_running_loop()
        async with running_gateway(config) as gateway:
            assert gateway.buffer is not None and gateway.uplink is not None
            buf, uplink = gateway.buffer, gateway.uplink
            await wire.wait_for(lambda w: len(w.batches) >= 3)

            # Live rate: readings accepted per second in steady flow (a timed window).
            seq0, t0 = buf.last_seq or 0, loop.time()
            await asyncio.sleep(1.0)
            live_rate = ((buf.last_seq or 0) - seq0) / (loop.time() - t0)
            assert live_rate > 100, live_rate

            await link.cut()
            await asyncio.wait_for(uplink.wait_disconnected(), 10)
            cut_at, cut_seq = loop.time(), buf.last_seq or 0
            # The outage lasts until 5 s worth of live readings have been accepted; the
            # adapters never wait on the uplink, so they keep their pace.
            backlog_target = cut_seq + int(5 * live_rate)
            await asyncio.wait_for(buf.wait_for_data(backlog_target), 10)
            outage_rate = ((buf.last_seq or 0) - cut_seq) / (loop.time() - cut_at)
            assert outage_rate > 0.7 * live_rate, (outage_rate, live_rate)

            backlog_last = buf.last_seq or 0
            await link.restore()
            restored_at = loop.time()
            await asyncio.wait_for(uplink.wait_connected(), 10)
            await wire.wait_for(lambda w: backlog_last in w.seqs(since=restored_at))
            drained_at = next(
                at for at, batch in wire.batches
                if at >= restored_at and backlog_last in batch.sequence_numbers()
            )
            after = wire.seqs(since=restored_at)
            # Oldest first: one strictly increasing stream from the oldest unacknowledged
            # reading on, with live readings queued behind the backlog.
            assert all(a < b for a, b in itertools.pairwise(after)), after[:50]
            before = set(wire.seqs()) - set(after)
            assert after[0] <= cut_seq + 1
            assert set(range(max(before) + 1, after[0])) == set(), "a gap before the drain"
            drained = sum(1 for seq in after if seq <= backlog_last)
            drain_rate = drained / max(drained_at - restored_at, 1e-3)
            assert drained >= 3 * live_rate
            assert drain_rate >= 10 * live_rate, (
                f"drain {drain_rate:.0f}/s vs live {live_rate:.0f}/s "
                f"({drained} readings in {drained_at - restored_at:.3f} s)"
            )
        await assert_exactly_once(cloud, buffer)


# -- overflow --------------------------------------------------------------------------------


@pytest.mark.slow
async def test_overflow_drops_oldest_exactly_as_reported(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A 64 KiB buffer through a long outage: ``drop_oldest`` discards readings, and the
    count is the same everywhere — the buffer, the status message in the cloud API, the
    sum of the ``buffer_overflow`` events — and equals what is missing in the cloud, which
    is exactly the oldest readings; everything else arrives.

    The outage starts before the gateway's first connection, so no reading was ever
    delivered without being acknowledged: a dropped reading is then certainly not in the
    cloud, and ``missing == dropped`` is exact (a reading sent but not acknowledged at a
    cut could be both dropped and stored — at-least-once)."""
    buffer = tmp_path / "buffer.db"
    bench = 96  # 100 tags every 100 ms: 1000 readings/s, the bound is reached in seconds
    async with (
        cloud_node("sqlite-embedded", tmp_path, request) as cloud,
        simulator(bench=bench) as sim,
        TcpProxy(*cloud.broker, port=request.getfixturevalue("rebindable_port")) as link,
        sniff(cloud.broker, cloud.gateway_id, cloud.observer) as wire,
    ):
        await link.cut()
        config = config_model(config_dict(
            cloud.gateway_id, link.port, sim.port, buffer, bench=bench,
            buffer={"max_bytes": "64KiB"}, token=cloud.token,
        ))
        with watch_logs("gateway.buffer") as logs:
            async with running_gateway(config) as gateway:
                buf = gateway.buffer
                assert buf is not None and gateway.uplink is not None
                await logs.wait_for(lambda m: "dropped" in m and "oldest" in m, within=15)
                # Keep dropping for a while, then restore the link.
                await until(lambda: buf.dropped >= 2000, "2000 readings dropped")
                backlog_last = buf.last_seq or 0
                await link.restore()
                await wire.wait_for(lambda w: backlog_last in w.seqs(), within=15)
                # Delivered: the buffer is far below its bound, nothing is dropped any more.
                dropped = buf.dropped
                await wire.wait_for(lambda w: overflow_total(w) == dropped)
                await wait_status(cloud, lambda s: s["buffer"]["dropped"] == dropped)
                assert buf.dropped == dropped
                status = (await cloud.api.get(f"/api/v1/devices/{cloud.gateway_id}")).json()
                assert status["status"]["buffer"]["dropped"] == dropped
            assert buf.dropped == dropped
        assert overflow_total(wire) == dropped
        assert all(n > 0 for n in overflow_counts(wire))
        first, last = await assert_exactly_once(cloud, buffer, dropped=dropped)
        # drop_oldest: the missing ones are exactly the oldest sequence numbers.
        oldest = await delivery(cloud.api, cloud.gateway_id, first, first + dropped - 1)
        assert oldest["count"] == 0, oldest
        rest = await delivery(cloud.api, cloud.gateway_id, first + dropped, last)
        assert rest["missing"] == 0, rest


def overflow_counts(wire: Wire) -> list[int]:
    """``data.dropped`` of every ``buffer_overflow`` event seen, in order."""
    counts = []
    for event in wire.events:
        if event.kind == "buffer_overflow":
            assert event.data is not None and isinstance(event.data["dropped"], int), event
            counts.append(event.data["dropped"])
    return counts


def overflow_total(wire: Wire) -> int:
    return sum(overflow_counts(wire))


async def wait_status(cloud: Cloud, check: Callable[[dict[str, Any]], bool]) -> None:
    """Wait for the gateway's status (as the API shows it) to satisfy ``check``."""

    async def probe() -> bool:
        device = (await cloud.api.get(f"/api/v1/devices/{cloud.gateway_id}")).json()
        status = device.get("status") or {}
        return status.get("state") == "online" and "buffer" in status and check(status)

    await eventually(probe, "the gateway's status message")


# -- disk full -------------------------------------------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a real file system that fills up. Skips where mounting is refused."""
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the file system is full; returns it (delete it to free space)."""
    filler = directory / "filler"
    chunk = b"\0" * 4096
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError:
            pass
    return filler


@pytest.mark.slow
@pytest.mark.parametrize("limit", ["tmpfs", "max_page_count"])
async def test_full_disk_is_reported_and_survived(
    limit: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The buffer's storage fills up during an outage: the gateway keeps running and
    polling, logs the condition, holds the readings in memory, and once space returns
    commits them and delivers everything — the read counter arrives without a gap.

    Two ways to fill up: a real 1 MiB tmpfs filled with a filler file, and SQLite's
    ``PRAGMA max_page_count`` set to the current size (a file-size cap)."""
    directory = request.getfixturevalue("tiny_tmpfs") if limit == "tmpfs" else tmp_path
    buffer = directory / "buffer.db"
    bench = 36
    async with (
        cloud_node("sqlite-embedded", tmp_path, request) as cloud,
        simulator(bench=bench) as sim,
        TcpProxy(*cloud.broker, port=request.getfixturevalue("rebindable_port")) as link,
        sniff(cloud.broker, cloud.gateway_id, cloud.observer) as wire,
    ):
        # A bound far above the disk: the disk, not max_bytes, is what runs out.
        config = config_model(config_dict(
            cloud.gateway_id, link.port, sim.port, buffer, bench=bench,
            buffer={"max_bytes": "16MiB"}, token=cloud.token,
        ))
        with watch_logs("gateway.buffer") as logs:
            async with running_gateway(config) as gateway:
                buf = gateway.buffer
                assert buf is not None and gateway.uplink is not None
                await wire.wait_for(lambda w: len(w.batches) >= 2)
                await link.cut()
                await asyncio.wait_for(gateway.uplink.wait_disconnected(), 10)

                if limit == "tmpfs":
                    filler = fill(directory)
                else:
                    await buf._run_in_db(_cap_pages)
                refused = await logs.wait_for(lambda m: "refuses writes" in m, within=15)
                assert "full" in refused, refused
                assert buf.error is not None and "full" in buf.error
                assert (await gateway.status()).buffer.error == buf.error  # type: ignore[union-attr]
                # Still running and polling: readings pile up in memory, none is lost.
                pending, reads = buf.pending, sim.requests
                await until(lambda: buf.pending > pending + 200, "readings kept in memory")
                assert sim.requests > reads
                assert buf.dropped == 0

                if limit == "tmpfs":
                    filler.unlink()
                else:
                    await buf._run_in_db(_uncap_pages)
                await logs.wait_for(lambda m: "accepts writes again" in m, within=15)
                assert buf.error is None
                held = buf.last_seq or 0
                await link.restore()
                await wire.wait_for(lambda w: held in w.seqs(), within=15)
                # The condition and its end reached the cloud as events, in order.
                await wire.wait_for(
                    lambda w: "buffer_recovered" in [e.kind for e in w.events], within=15
                )
                kinds = [e.kind for e in wire.events if e.kind.startswith("buffer_")]
                assert kinds == ["buffer_error", "buffer_recovered"], kinds
            assert buf.dropped == 0 and buf.pending == 0
        assert not [m for m in logs.messages(logging.ERROR) if "corrupt" in m]
        await assert_exactly_once(cloud, buffer)
        values = await counter_values(cloud)
        assert values == list(range(1, len(values) + 1)), "a reading of the counter is missing"


def _cap_pages(conn: Any) -> None:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")


def _uncap_pages(conn: Any) -> None:
    conn.execute("PRAGMA max_page_count=1073741823")


# -- corrupt file ----------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "damaged pages"])
async def test_corrupt_buffer_is_moved_aside_and_a_fresh_one_used(
    damage: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """At start-up the buffer file is garbage (or a real buffer with overwritten pages):
    the gateway starts anyway, moves the file to ``<name>.corrupt-<timestamp>`` (kept
    byte for byte for a post-mortem), says so in an error log line, and data flows."""
    buffer = tmp_path / "buffer.db"
    async with (
        cloud_node("sqlite-embedded", tmp_path, request) as cloud,
        simulator() as sim,
    ):
        config = config_model(config_dict(
            cloud.gateway_id, cloud.broker[1], sim.port, buffer, token=cloud.token
        ))
        if damage == "garbage":
            broken = random.Random(7).randbytes(64 * 1024)
        else:
            # A real buffer with readings in it, then pages in the middle overwritten.
            async with running_gateway(config) as gateway:
                assert gateway.buffer is not None
                await asyncio.wait_for(gateway.buffer.wait_for_data(0), 10)
            data = bytearray(buffer.read_bytes())
            assert len(data) >= 3 * 4096, "the buffer file is too small to damage"
            data[4096 : 3 * 4096] = random.Random(8).randbytes(2 * 4096)
            broken = bytes(data)
        replace_file(buffer, broken)

        stored_before = cloud.app.state.ingest.stats.points
        with watch_logs("gateway.buffer") as logs:
            async with running_gateway(config) as gateway:
                assert gateway.buffer is not None
                first_seq = gateway.buffer.last_seq
                await cloud.wait_for(lambda s: s.points >= stored_before + 20)
            moved = moved_aside(buffer)
            assert len(moved) == 1, moved
            assert moved[0].read_bytes() == broken
            line = next(m for m in logs.messages(logging.ERROR) if "corrupt" in m)
            assert str(buffer) in line and str(moved[0]) in line, line
        assert first_seq is None, "the fresh buffer must start empty"
        first, last = await assert_exactly_once(cloud, buffer)
        assert last - first + 1 >= 20


def replace_file(path: Path, content: bytes) -> None:
    """Put ``content`` in place of the buffer file, without a WAL that could repair it."""
    path.write_bytes(content)
    for side in ("-wal", "-shm"):
        Path(f"{path}{side}").unlink(missing_ok=True)


def moved_aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.corrupt-*"))
