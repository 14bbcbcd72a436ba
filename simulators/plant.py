"""One plant model shared by every protocol simulator: a small production line.

Two motors follow writable speed setpoints with a first-order lag and can be switched on and
off (``motorN.run``), a tank cycles between filling and draining (or overfills while its
outlet valve is stuck), a production counter counts while the line runs. Every value is a
pure function of the clock, the commands (setpoints, run flags, fault and overfill flags)
applied so far and the seed:
there is no background task, so two plants with the same seed, clock and commands give the
same values, and tests can drive a fake clock to check plausibility exactly.

The motors' lag (and the overfill) is integrated in closed form
(``target + (s0 - target)·e^(-dt/τ)``), so the result does not depend on how often the plant
is sampled.

``extra_signals`` adds a bank of cheap, deterministic, ever-changing "bench" values (sine
waves with per-signal period and phase) for benchmarks with thousands of tags; computing a
slice of them costs only that slice.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "HIGH_LEVEL",
    "RUN_FLAGS",
    "SETPOINTS",
    "SETPOINT_MAX",
    "SIGNALS",
    "LineState",
    "ManualClock",
    "Plant",
    "Signal",
]


class LineState(IntEnum):
    """The line's state as published (``line.state``)."""

    STOPPED = 0
    RUNNING = 1
    FAULT = 2


@dataclass(frozen=True, slots=True)
class Signal:
    """Documentation of one plant value."""

    name: str
    unit: str | None
    description: str
    writable: bool = False
    boolean: bool = False
    """True for on/off signals (``sample()`` gives a :class:`bool`): coils, discrete inputs."""


SIGNALS: dict[str, Signal] = {
    s.name: s
    for s in (
        Signal("motor1.setpoint", "rpm", "Speed setpoint of motor 1 (conveyor)", writable=True),
        Signal("motor2.setpoint", "rpm", "Speed setpoint of motor 2 (pump)", writable=True),
        Signal("motor1.speed", "rpm", "Speed of motor 1; follows its setpoint, tau 2 s"),
        Signal("motor2.speed", "rpm", "Speed of motor 2; follows its setpoint, tau 3 s"),
        Signal("motor1.current", "A", "Current of motor 1, proportional to its load"),
        Signal("motor2.current", "A", "Current of motor 2, proportional to its load"),
        Signal("tank.level", "%", "Tank level; 5-minute fill/drain cycle between 20 and 80 %"),
        Signal("tank.temperature", "degC", "Tank temperature, 36..50 degC"),
        Signal("tank.pressure", "bar", "Tank bottom pressure (absolute), follows the level"),
        Signal("production.count", None, "Parts produced; uint32, counts while running"),
        Signal("line.state", None, "0 stopped, 1 running, 2 fault"),
        Signal("motor1.run", None, "Motor 1 switched on; off coasts it down", True, True),
        Signal("motor2.run", None, "Motor 2 switched on; off coasts it down", True, True),
        Signal("line.running", None, "line.state is running", boolean=True),
        Signal("line.fault", None, "line.state is fault", boolean=True),
        Signal("tank.high", None, "Tank level above 90 % (high-level switch)", boolean=True),
    )
}
"""Every plant signal by name. The names are the contract with the simulators' maps."""

SETPOINTS = ("motor1.setpoint", "motor2.setpoint")
SETPOINT_MAX = 3000.0
"""Setpoints accept 0..SETPOINT_MAX rpm; 0 on both motors stops the line."""
RUN_FLAGS = ("motor1.run", "motor2.run")
"""The motors' on/off commands; a motor switched off coasts down (its setpoint is kept)."""
HIGH_LEVEL = 90.0
"""``tank.high`` is true above this level (%)."""

_TAU = (2.0, 3.0)
_RATED_RPM = (1500.0, 1500.0)
_RATED_AMPS = (22.0, 15.0)
_NO_LOAD_AMPS = (4.0, 3.0)
_PARTS_PER_REV = 0.08  # motor 1 drives the conveyor: 2 parts/s at 1500 rpm
_TANK_PERIOD = 300.0
_COUNTER_MOD = 1 << 32
_OVERFILL_TAU = 20.0  # s: how fast the level heads for _OVERFILL_LEVEL with the outlet stuck
_OVERFILL_LEVEL = 98.0


class _Wobble:
    """Smooth deterministic noise in about [-1, 1]: three incommensurate sines."""

    __slots__ = ("_terms",)

    def __init__(self, rng: random.Random) -> None:
        self._terms = tuple(
            (2 * math.pi / rng.uniform(lo, hi), rng.uniform(0, 2 * math.pi), weight)
            for lo, hi, weight in ((3.0, 7.0, 0.5), (11.0, 19.0, 0.3), (29.0, 53.0, 0.2))
        )

    def __call__(self, t: float) -> float:
        return sum(w * math.sin(omega * t + phase) for omega, phase, w in self._terms)


class ManualClock:
    """A clock moved by hand (``Plant(clock=ManualClock())``): the plant's values then
    depend only on ``t``, so tests and golden cases can predict them exactly."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Plant:
    """The production line. Not thread-safe; use it from one event loop.

    ``clock`` returns seconds (monotonic); plant time starts at 0 when the plant is built.
    ``motor1_setpoint``/``motor2_setpoint`` are the initial setpoints (rpm); both motors are
    switched on (``motorN.run``) and start at standstill, ramping up.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        extra_signals: int = 0,
        clock: Callable[[], float] = time.monotonic,
        motor1_setpoint: float = 1450.0,
        motor2_setpoint: float = 900.0,
    ) -> None:
        if extra_signals < 0:
            raise ValueError(f"extra_signals must be >= 0, got {extra_signals}")
        self.seed = seed
        self._clock = clock
        self._t0 = clock()
        self._t = 0.0
        self._setpoints = [
            _check_setpoint("motor1.setpoint", motor1_setpoint),
            _check_setpoint("motor2.setpoint", motor2_setpoint),
        ]
        self._speeds = [0.0, 0.0]
        self._run = [True, True]
        self._overfill = False
        self._overfill_mix = 0.0  # 0: normal cycle .. 1: level at _OVERFILL_LEVEL
        self._revolutions = 0.0  # of motor 1 while running: drives the production counter
        self._fault = False
        rng = random.Random(seed)
        # Only analog signals wobble; on/off ones come last in SIGNALS and draw nothing, so
        # a seed gives the same values it gave before they were added.
        self._wobble = {name: _Wobble(rng) for name, sig in SIGNALS.items() if not sig.boolean}
        self._tank_phase = rng.uniform(0.0, 1.0)
        self._temp_phase = rng.uniform(0.0, 2 * math.pi)
        bench = random.Random(f"{seed}/bench")
        self._extra = tuple(
            (
                100.0 * (i % 10),
                2 * math.pi / bench.uniform(10.0, 120.0),
                bench.uniform(0.0, 2 * math.pi),
            )
            for i in range(extra_signals)
        )

    # -- time ---------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """Plant time in seconds; never goes backwards even if the clock does."""
        return max(self._t, self._clock() - self._t0)

    def _advance(self) -> float:
        t = self.now
        dt = t - self._t
        if dt > 0:
            running = self.state is LineState.RUNNING
            for m in (0, 1):
                target = self._setpoints[m] if self._driven(m) else 0.0
                s0 = self._speeds[m]
                decay = math.exp(-dt / _TAU[m])
                if m == 0 and running:
                    # ∫ target + (s0 - target)·e^(-t/τ) dt over [0, dt], rpm·s → revolutions
                    integral = target * dt + (s0 - target) * _TAU[m] * (1.0 - decay)
                    self._revolutions += integral / 60.0
                self._speeds[m] = target + (s0 - target) * decay
            mix_target = 1.0 if self._overfill else 0.0
            self._overfill_mix = mix_target + (self._overfill_mix - mix_target) * math.exp(
                -dt / _OVERFILL_TAU
            )
            self._t = t
        return self._t

    # -- commands -----------------------------------------------------------------------

    def _driven(self, m: int) -> bool:
        return self._run[m] and not self._fault

    @property
    def state(self) -> LineState:
        """Fault wins; otherwise running while any switched-on motor has a setpoint above 0."""
        if self._fault:
            return LineState.FAULT
        if any(run and sp > 0 for run, sp in zip(self._run, self._setpoints, strict=True)):
            return LineState.RUNNING
        return LineState.STOPPED

    def setpoint(self, name: str) -> float:
        """The current setpoint ``motor1.setpoint`` or ``motor2.setpoint`` in rpm."""
        return self._setpoints[_setpoint_index(name)]

    def set_setpoint(self, name: str, rpm: float) -> None:
        """Change a motor setpoint from now on. Raises :class:`KeyError` for an unknown
        name and :class:`ValueError` outside 0..SETPOINT_MAX."""
        index = _setpoint_index(name)
        value = _check_setpoint(name, rpm)
        self._advance()
        self._setpoints[index] = value

    def running(self, name: str) -> bool:
        """Whether ``motor1.run`` / ``motor2.run`` is on."""
        return self._run[_run_index(name)]

    def set_running(self, name: str, on: bool) -> None:
        """Switch a motor on or off from now on (``motor1.run``/``motor2.run``); off, it
        coasts down with its time constant and keeps its setpoint. Raises :class:`KeyError`
        for an unknown name."""
        index = _run_index(name)
        self._advance()
        self._run[index] = bool(on)

    def set_fault(self, active: bool) -> None:
        """Trip (or reset) the line: in fault the motors coast down and nothing counts."""
        self._advance()
        self._fault = active

    def set_overfill(self, active: bool) -> None:
        """Stick (or free) the tank's outlet valve: while stuck the level climbs towards
        98 % (time constant 20 s), so ``tank.high`` comes on; freed, it returns to its cycle."""
        self._advance()
        self._overfill = active

    def check_write(self, name: str, value: float) -> float:
        """Validate a write of a writable signal (:data:`SETPOINTS`, :data:`RUN_FLAGS`) and
        return the value it would store, without storing it. Raises :class:`KeyError` for a
        name that is not writable, :class:`ValueError` for a value out of range. Pure."""
        if name in SETPOINTS:
            return _check_setpoint(name, value)
        if name in RUN_FLAGS:
            return 1.0 if value else 0.0
        raise KeyError(
            f"{name!r} is not a writable plant signal; writable: "
            f"{', '.join((*SETPOINTS, *RUN_FLAGS))}"
        )

    def write(self, name: str, value: float) -> None:
        """Write a writable signal: a setpoint (rpm) or a run flag (true when non-zero).
        Raises like :meth:`check_write`; nothing changes when it raises."""
        checked = self.check_write(name, value)
        if name in SETPOINTS:
            self.set_setpoint(name, checked)
        else:
            self.set_running(name, bool(checked))

    # -- values -------------------------------------------------------------------------

    def sample(self) -> dict[str, float | int]:
        """All signals of :data:`SIGNALS` at the current time (on/off signals as
        :class:`bool`, ``production.count`` and ``line.state`` as :class:`int`)."""
        t = self._advance()
        w = self._wobble
        values: dict[str, float | int] = {
            "motor1.setpoint": self._setpoints[0],
            "motor2.setpoint": self._setpoints[1],
            "motor1.run": self._run[0],
            "motor2.run": self._run[1],
        }
        for m in (0, 1):
            name = f"motor{m + 1}"
            speed = max(0.0, self._speeds[m] * (1.0 + 0.002 * w[f"{name}.speed"](t)))
            load = speed / _RATED_RPM[m]
            # No-load current grows with speed, the rest with the square (pump/fan law).
            amps = _NO_LOAD_AMPS[m] * min(load, 1.0) + (
                _RATED_AMPS[m] - _NO_LOAD_AMPS[m]
            ) * load * load
            values[f"{name}.speed"] = speed
            values[f"{name}.current"] = max(0.0, amps * (1.0 + 0.02 * w[f"{name}.current"](t)))
        cycle = (t / _TANK_PERIOD + self._tank_phase) % 1.0
        triangle = 2 * cycle if cycle < 0.5 else 2 * (1.0 - cycle)  # fill, then drain
        level = 20.0 + 60.0 * triangle
        level += (_OVERFILL_LEVEL - level) * self._overfill_mix
        level = min(100.0, max(0.0, level + 0.5 * w["tank.level"](t)))
        values["tank.level"] = level
        values["tank.high"] = level > HIGH_LEVEL
        values["tank.temperature"] = (
            42.0
            + 5.0 * math.sin(2 * math.pi * t / 900.0 + self._temp_phase)
            + 0.001 * self._speeds[1]
            + 0.2 * w["tank.temperature"](t)
        )
        # 1.5 bar(a) of headspace plus the hydrostatic head of a 4 m tank of water.
        values["tank.pressure"] = 1.5 + 0.3924 * level / 100.0 + 0.005 * w["tank.pressure"](t)
        values["production.count"] = int(self._revolutions * _PARTS_PER_REV) % _COUNTER_MOD
        state = self.state
        values["line.state"] = int(state)
        values["line.running"] = state is LineState.RUNNING
        values["line.fault"] = state is LineState.FAULT
        return values

    @property
    def extra_signals(self) -> int:
        """How many bench signals the plant has."""
        return len(self._extra)

    def extra(self, first: int = 0, count: int | None = None) -> list[float]:
        """Bench signals ``first .. first+count-1`` at the current time; each is
        ``100·(i mod 10) + 10·sin(2πt/period_i + phase_i)`` with period 10..120 s."""
        end = len(self._extra) if count is None else first + count
        if not 0 <= first <= end <= len(self._extra):
            raise IndexError(f"bench signals {first}..{end - 1} outside 0..{len(self._extra) - 1}")
        t = self.now
        sin = math.sin
        return [
            base + 10.0 * sin(omega * t + phase) for base, omega, phase in self._extra[first:end]
        ]


def _setpoint_index(name: str) -> int:
    try:
        return SETPOINTS.index(name)
    except ValueError:
        raise KeyError(f"unknown setpoint {name!r}; known: {', '.join(SETPOINTS)}") from None


def _run_index(name: str) -> int:
    try:
        return RUN_FLAGS.index(name)
    except ValueError:
        raise KeyError(f"unknown run flag {name!r}; known: {', '.join(RUN_FLAGS)}") from None


def _check_setpoint(name: str, rpm: float) -> float:
    value = float(rpm)
    if not 0.0 <= value <= SETPOINT_MAX:
        raise ValueError(f"{name} must be 0..{SETPOINT_MAX:g} rpm, got {rpm!r}")
    return value
