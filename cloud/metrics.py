"""Prometheus metrics of a cloud node (``GET /metrics``).

The ingest latency histogram (sample time at the gateway → commit in the cloud store) is
the end-to-end figure operators watch. It is filled per batch with one weighted update per
distinct timestamp (a polled block shares one), so it costs little at 100 k points/s;
``prometheus_client``'s ``Histogram.observe`` has no weight and would cost a lock per point.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from cloud.ingest.service import IngestStats

# 1 ms … ~150 s, 25 % apart: fine enough to read p50/p99 off the buckets.
LATENCY_BUCKETS: tuple[float, ...] = tuple(round(0.001 * 1.25**i, 6) for i in range(54))


class LatencyHistogram:
    """Cumulative-bucket histogram with weighted observations (seconds)."""

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = list(buckets)
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_batch(self, now_ms: int, sample_ms: Iterable[int]) -> None:
        """Record ``now - t`` for every sample time ``t`` (duplicates weigh more)."""
        by_time = Counter(sample_ms)
        with self._lock:
            for t, weight in by_time.items():
                seconds = max(0.0, (now_ms - t) / 1000.0)
                self._counts[bisect.bisect_left(self.bounds, seconds)] += weight
                self._sum += seconds * weight

    def buckets(self) -> list[tuple[str, float]]:
        with self._lock:
            counts = list(self._counts)
        out, total = [], 0
        for bound, count in zip([*self.bounds, float("inf")], counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out

    @property
    def sum(self) -> float:
        return self._sum


class _CloudCollector(Collector):
    def __init__(self, stats: IngestStats, latency: LatencyHistogram) -> None:
        self._stats = stats
        self._latency = latency

    def collect(self) -> Iterable[HistogramMetricFamily | CounterMetricFamily]:
        yield HistogramMetricFamily(
            "fieldgate_ingest_latency_seconds",
            "Time from sampling at the gateway to commit in the cloud store",
            buckets=self._latency.buckets(),
            sum_value=self._latency.sum,
        )
        stats = self._stats
        for name, value, help_text in (
            ("points", stats.points, "Points in accepted telemetry batches"),
            ("batches", stats.batches, "Accepted telemetry batches"),
            ("malformed", stats.malformed, "Messages refused as malformed"),
            ("unknown_gateway", stats.unknown_gateway, "Batches from unregistered gateways"),
            ("failed", stats.failed, "Messages the store refused"),
        ):
            yield CounterMetricFamily(f"fieldgate_ingest_{name}", help_text, value=value)


class CloudMetrics:
    """One registry per app, so several apps in one process (tests) never collide."""

    def __init__(self, stats: IngestStats, latency: LatencyHistogram) -> None:
        self.latency = latency
        self.registry = CollectorRegistry()
        self.registry.register(_CloudCollector(stats, self.latency))

    def render(self) -> bytes:
        return generate_latest(self.registry)
