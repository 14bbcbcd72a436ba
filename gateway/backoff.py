"""Exponential backoff with full jitter, for reconnect loops that must keep doing other
work (emitting bad-quality readings) between attempts, so a retry decorator won't do."""

from __future__ import annotations

import random


class Backoff:
    """``next()`` returns the delay before the next attempt: a random value in
    ``[base/2, base]`` where ``base`` doubles from ``minimum`` up to ``maximum``.
    ``reset()`` after a success. The jitter spreads reconnects of many gateways after a
    broker restart."""

    def __init__(self, minimum: float, maximum: float, *, rng: random.Random | None = None):
        if minimum <= 0 or maximum < minimum:
            raise ValueError(f"need 0 < minimum <= maximum, got {minimum}, {maximum}")
        self.minimum = minimum
        self.maximum = maximum
        self._attempts = 0
        self._rng = rng or random.Random()

    @property
    def attempts(self) -> int:
        return self._attempts

    def next(self) -> float:
        base = min(self.maximum, self.minimum * (2 ** min(self._attempts, 32)))
        self._attempts += 1
        return self._rng.uniform(base / 2, base)

    def reset(self) -> None:
        self._attempts = 0
