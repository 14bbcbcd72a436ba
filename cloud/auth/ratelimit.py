"""Per-caller rate limiting: a token bucket per API key or console session.

Buckets live in the node's memory: with N nodes behind a load balancer a caller gets at
most N times its rate, which bounds abuse without a shared store on the request path.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from cloud.errors import RateLimited

MAX_BUCKETS = 100_000
"""Idle buckets beyond this many are forgotten, oldest first (a forgotten bucket is full)."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """``limiter.check(key, rate)`` takes one token from ``key``'s bucket or raises
    :class:`RateLimited` with the seconds until a token is available.

    ``rate`` is requests per second (refill), ``burst`` the bucket size. ``rate=None``
    uses ``default_rate``; a rate of 0 or less disables limiting for that call.
    """

    def __init__(
        self,
        default_rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.default_rate = default_rate
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def check(self, key: str, rate: float | None = None) -> None:
        rate = self.default_rate if rate is None else rate
        if rate <= 0:
            return
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), at=now)
            self._buckets[key] = bucket
            if len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        wait = (1.0 - bucket.tokens) / rate
        raise RateLimited(
            f"rate limit of {rate:g} requests/s (burst {self.burst}) exceeded; "
            f"retry in {wait:.2f} s",
            retry_after=max(1, math.ceil(wait)),
        )
