from __future__ import annotations

import random

import pytest

from gateway.backoff import Backoff


def test_delays_grow_to_the_maximum_with_jitter() -> None:
    backoff = Backoff(0.5, 8.0, rng=random.Random(1))
    delays = [backoff.next() for _ in range(8)]
    bases = [0.5, 1, 2, 4, 8, 8, 8, 8]
    for delay, base in zip(delays, bases, strict=True):
        assert base / 2 <= delay <= base
    assert backoff.attempts == 8
    backoff.reset()
    assert backoff.next() <= 0.5


def test_invalid_bounds() -> None:
    with pytest.raises(ValueError, match="minimum"):
        Backoff(2.0, 1.0)
