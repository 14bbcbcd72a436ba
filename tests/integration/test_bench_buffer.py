"""``fieldgate bench buffer`` end to end, scaled down: real cloud and gateway processes."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from fieldgate.bench.buffer import run_buffer_bench

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(90)
async def test_quick_bench_reports_every_figure() -> None:
    out = io.StringIO()
    result = await run_buffer_bench(
        Console(file=out, width=120), backlog=20_000, rows=20_000, repeat=1
    )
    for mode in ("normal", "full"):
        figures = result["modes"][mode]
        # Far below what the machine does: a smoke check that the loops measure something.
        assert figures["insert_rows_per_s"] > 10_000
        assert figures["drain_rows_per_s"] > 10_000
    backlog = result["backlog"]
    assert backlog["points"] == 20_000
    assert 0 < backlog["drain_s"] < 60
    assert backlog["points_per_s"] == pytest.approx(20_000 / backlog["drain_s"])
    assert backlog["gateway_acked_s"] is not None
    text = out.getvalue()
    assert "insert rows/s" in text and "normal" in text and "full" in text
    assert "drained into the cloud store" in text
