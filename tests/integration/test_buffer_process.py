"""The buffer survives a killed gateway process: committed readings stay, numbers go on."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adapters.base import Reading
from gateway.buffer import Buffer, BufferConfig

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys
    from adapters.base import Reading
    from gateway.buffer import Buffer, BufferConfig

    async def main() -> None:
        config = BufferConfig(path=sys.argv[1], durability=sys.argv[2], flush_interval=60)
        async with Buffer(config) as buffer:
            buffer.submit([Reading("plc1", f"t{i % 7}", 1_000 + i, float(i)) for i in range(5_000)])
            await buffer.flush()
            # Submitted but never committed: lost with the process, by design.
            buffer.submit([Reading("plc1", "late", 9_000, 1.0)] * 100)
            print(json.dumps({"last_seq": buffer.last_seq}), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


def wal_exists(path: Path) -> bool:
    return Path(f"{path}-wal").exists()


@pytest.mark.parametrize("durability", ["normal", "full"])
async def test_committed_readings_survive_sigkill(tmp_path: Path, durability: str) -> None:
    path = tmp_path / "buffer.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(path),
        durability,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(child.communicate(), 20)
    assert child.returncode == -signal.SIGKILL, stderr.decode()
    last_seq = json.loads(stdout)["last_seq"]
    assert wal_exists(path)  # the process died without a checkpoint

    async with Buffer(BufferConfig(path=path)) as buffer:
        assert buffer.last_seq == last_seq
        values: list[object] = []
        seqs: list[int] = []
        after = 0
        while (batch := await buffer.read(after, 1000)) is not None:
            values.extend(batch.val)
            seqs.extend(batch.seqs)
            after = batch.last
        assert values == [float(i) for i in range(5_000)]
        assert seqs == list(range(last_seq - 4_999, last_seq + 1))
        buffer.submit([Reading("plc1", "t0", 2, 1.0)])
        await buffer.flush()
        assert buffer.first_seq_this_run == last_seq + 1
