"""Fault injection shared by the protocol simulators, switchable while they run.

A simulator owns one :class:`Faults` (``sim.faults``) and reads it on every request, so a
change takes effect on the next request; nothing is cached. Fields may be assigned or
mutated directly (``sim.faults.latency = 0.2``, ``sim.faults.silent_units.add(2)``); the
methods add validation and normalise table names. Not thread-safe: change it from the
simulator's event loop (or between requests).

Tables are named as in the register maps: ``coils``, ``discrete_inputs``, ``holding``,
``input``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from simulators.modbus_map import normalise_table

__all__ = ["Faults", "parse_exception"]


def parse_exception(text: str) -> tuple[str, int, int]:
    """Parse ``TABLE:ADDRESS=CODE`` (e.g. ``holding:10=2``) into ``(table, address, code)``.
    Raises :class:`ValueError` with the expected shape."""
    target, sep, code_text = text.partition("=")
    table, colon, address_text = target.partition(":")
    if not sep or not colon:
        raise ValueError(f"{text!r}: expected TABLE:ADDRESS=CODE, e.g. holding:10=2")
    try:
        address, code = int(address_text, 0), int(code_text, 0)
    except ValueError:
        raise ValueError(f"{text!r}: ADDRESS and CODE must be integers") from None
    return _check_exception(table, address, code)


def _check_exception(table: str, address: int, code: int) -> tuple[str, int, int]:
    canonical = normalise_table(table)
    if not 0 <= address <= 65535:
        raise ValueError(f"address must be 0..65535, got {address}")
    if not 0 <= code <= 255:
        raise ValueError(f"exception code must be 1..255 (0 removes), got {code}")
    return canonical, address, code


@dataclass
class Faults:
    """What the simulator does wrong, on purpose.

    * ``latency`` — seconds added before every answer (requests on one connection, or on one
      serial line, are answered in order, so they queue behind each other).
    * ``exceptions`` — ``(table, address) → code``: a request touching that address (reads
      and writes, any unit) is answered with Modbus exception ``code``.
    * ``silent_units`` — unit ids that never answer (the client times out).
    * ``drop_rate`` — probability (0..1) that a request closes its TCP connection instead of
      being answered (serial lines are not closed; the request goes unanswered).
    * :meth:`drop_connections` — close every client connection now.
    """

    latency: float = 0.0
    exceptions: dict[tuple[str, int], int] = field(default_factory=dict)
    silent_units: set[int] = field(default_factory=set)
    drop_rate: float = 0.0
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)
    _droppers: list[Callable[[], int]] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.set_latency(self.latency)
        self.set_drop_rate(self.drop_rate)
        exceptions, self.exceptions = dict(self.exceptions), {}
        for (table, address), code in exceptions.items():
            self.set_exception(table, address, code)
        for unit in self.silent_units:
            _check_unit(unit)

    def set_latency(self, seconds: float) -> None:
        """Add ``seconds`` (>= 0, finite) before every answer; 0 turns it off."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"latency must be a finite number of seconds >= 0, got {seconds}")
        self.latency = float(seconds)

    def set_drop_rate(self, rate: float) -> None:
        """Drop the connection instead of answering with probability ``rate`` (0..1)."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"drop rate must be 0..1, got {rate}")
        self.drop_rate = float(rate)

    def set_exception(self, table: str, address: int, code: int) -> None:
        """Answer requests touching ``table:address`` with exception ``code``; code 0
        removes the fault. Raises :class:`ValueError` for an unknown table or a value out of
        range."""
        canonical, address, code = _check_exception(table, address, code)
        if code == 0:
            self.exceptions.pop((canonical, address), None)
        else:
            self.exceptions[(canonical, address)] = code

    def silence(self, unit: int, silent: bool = True) -> None:
        """Make unit id ``unit`` stop (or resume) answering."""
        _check_unit(unit)
        if silent:
            self.silent_units.add(unit)
        else:
            self.silent_units.discard(unit)

    def exception_for(self, table: str, address: int, count: int) -> int | None:
        """The exception code for a request touching ``count`` addresses of ``table`` from
        ``address``, or ``None``. With several faulty addresses, the lowest one wins."""
        hits = [
            (a, code)
            for (t, a), code in self.exceptions.items()
            if t == table and address <= a < address + count
        ]
        return min(hits)[1] if hits else None

    def should_drop(self) -> bool:
        """Draw whether this request drops its connection (``drop_rate``)."""
        return self.drop_rate > 0 and self.rng.random() < self.drop_rate

    def drop_connections(self) -> int:
        """Close every client connection of every simulator using these faults, now.
        Returns how many were closed. Clients may reconnect at once."""
        return sum(dropper() for dropper in list(self._droppers))

    def clear(self) -> None:
        """Remove every fault (latency 0, no exceptions, every unit answers, no drops)."""
        self.latency = 0.0
        self.exceptions.clear()
        self.silent_units.clear()
        self.drop_rate = 0.0

    def attach(self, dropper: Callable[[], int]) -> Callable[[], None]:
        """For simulators: register the function that closes their connections (returns the
        number closed); returns the function that unregisters it."""
        self._droppers.append(dropper)
        return lambda: self._droppers.remove(dropper) if dropper in self._droppers else None

    def describe(self) -> str:
        """One line stating every active fault (``no faults`` when none)."""
        parts = []
        if self.latency:
            parts.append(f"latency {self.latency:g}s")
        parts += [f"exception {t}:{a}={c}" for (t, a), c in sorted(self.exceptions.items())]
        parts += [f"silent unit {u}" for u in sorted(self.silent_units)]
        if self.drop_rate:
            parts.append(f"drop rate {self.drop_rate:g}")
        return ", ".join(parts) or "no faults"


def _check_unit(unit: int) -> None:
    if not 0 <= unit <= 255:
        raise ValueError(f"unit id must be 0..255, got {unit}")

