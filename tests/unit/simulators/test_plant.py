"""The plant model: deterministic, plausible, responsive to setpoints and faults."""

from __future__ import annotations

import itertools
import math

import pytest

from simulators.plant import SETPOINT_MAX, SIGNALS, LineState, ManualClock, Plant


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1000.0)


def run(plant: Plant, clock: ManualClock, seconds: float, step: float = 1.0) -> list[dict]:
    samples = []
    for _ in range(int(seconds / step)):
        clock.advance(step)
        samples.append(plant.sample())
    return samples


def test_sample_has_every_signal(clock: ManualClock) -> None:
    values = Plant(clock=clock).sample()
    assert set(values) == set(SIGNALS)
    assert isinstance(values["production.count"], int)
    assert values["line.state"] == LineState.RUNNING


def test_same_seed_and_clock_give_the_same_values() -> None:
    a_clock, b_clock = ManualClock(1000.0), ManualClock(1000.0)
    a, b = Plant(seed=7, clock=a_clock), Plant(seed=7, clock=b_clock)
    assert run(a, a_clock, 30) == run(b, b_clock, 30)
    other_clock = ManualClock(1000.0)
    assert run(Plant(seed=8, clock=other_clock), other_clock, 30) != run(a, a_clock, 30)


def test_result_does_not_depend_on_sampling_rate() -> None:
    a_clock, b_clock = ManualClock(1000.0), ManualClock(1000.0)
    a, b = Plant(seed=3, clock=a_clock), Plant(seed=3, clock=b_clock)
    run(a, a_clock, 60, step=0.1)
    run(b, b_clock, 60, step=20.0)
    va, vb = a.sample(), b.sample()
    for name in SIGNALS:
        assert va[name] == pytest.approx(vb[name], rel=1e-9), name


def test_motors_follow_the_setpoint_with_a_first_order_lag(clock: ManualClock) -> None:
    plant = Plant(clock=clock, motor1_setpoint=1500.0)
    assert plant.sample()["motor1.speed"] == 0.0
    clock.advance(2.0)  # one time constant: 63 %
    assert plant.sample()["motor1.speed"] == pytest.approx(1500 * (1 - math.exp(-1)), rel=0.01)
    clock.advance(30.0)
    assert plant.sample()["motor1.speed"] == pytest.approx(1500, rel=0.01)
    plant.set_setpoint("motor1.setpoint", 600)
    speeds = [s["motor1.speed"] for s in run(plant, clock, 30)]
    assert all(a >= b * 0.99 for a, b in itertools.pairwise(speeds))
    assert speeds[-1] == pytest.approx(600, rel=0.01)
    assert plant.setpoint("motor1.setpoint") == 600.0


def test_current_grows_with_load(clock: ManualClock) -> None:
    plant = Plant(clock=clock, motor1_setpoint=500.0, motor2_setpoint=500.0)
    clock.advance(60)
    low = plant.sample()["motor1.current"]
    plant.set_setpoint("motor1.setpoint", 1500)
    clock.advance(60)
    high = plant.sample()["motor1.current"]
    assert 0 < low < high < 30


def test_ranges_are_plausible_over_a_long_run(clock: ManualClock) -> None:
    plant = Plant(seed=11, clock=clock)
    samples = run(plant, clock, 1800, step=5.0)
    levels = [s["tank.level"] for s in samples]
    assert all(0 <= v <= 100 for v in levels)
    assert min(levels) < 25 and max(levels) > 75  # it really fills and drains
    assert all(30 < s["tank.temperature"] < 55 for s in samples)
    assert all(1.4 < s["tank.pressure"] < 2.0 for s in samples)
    # pressure follows level (hydrostatic head)
    by_level = sorted(samples, key=lambda s: s["tank.level"])
    assert by_level[0]["tank.pressure"] < by_level[-1]["tank.pressure"]
    assert all(0 <= s["motor2.current"] < 20 for s in samples)
    counts = [s["production.count"] for s in samples]
    assert counts == sorted(counts) and counts[-1] > counts[0]


def test_counter_counts_only_while_running(clock: ManualClock) -> None:
    plant = Plant(clock=clock, motor1_setpoint=1500.0)
    clock.advance(100)
    running = plant.sample()["production.count"]
    assert running == pytest.approx(2 * 100 - 2 * 2, abs=3)  # 2 parts/s minus the ramp-up
    plant.set_setpoint("motor1.setpoint", 0)
    plant.set_setpoint("motor2.setpoint", 0)
    clock.advance(100)
    stopped = plant.sample()
    assert stopped["line.state"] == LineState.STOPPED
    assert stopped["production.count"] == running
    assert stopped["motor1.speed"] < 1


def test_fault_stops_the_line(clock: ManualClock) -> None:
    plant = Plant(clock=clock)
    clock.advance(30)
    before = plant.sample()
    plant.set_fault(True)
    clock.advance(60)
    faulted = plant.sample()
    assert faulted["line.state"] == LineState.FAULT
    assert faulted["production.count"] == before["production.count"]
    assert faulted["motor1.speed"] < 1 and faulted["motor1.current"] < 0.1
    plant.set_fault(False)
    clock.advance(30)
    assert plant.sample()["line.state"] == LineState.RUNNING


def test_counter_wraps_as_uint32(clock: ManualClock) -> None:
    plant = Plant(clock=clock, motor1_setpoint=1500.0)
    plant._revolutions = (2**32 - 1) / 0.08
    clock.advance(10)
    assert 0 <= plant.sample()["production.count"] < 100


def test_time_never_runs_backwards(clock: ManualClock) -> None:
    plant = Plant(clock=clock)
    clock.advance(10)
    first = plant.sample()
    clock.advance(-5)
    assert plant.now == 10
    assert plant.sample() == first


def test_setpoints_are_validated(clock: ManualClock) -> None:
    plant = Plant(clock=clock)
    with pytest.raises(ValueError, match=r"motor1\.setpoint must be 0\.\.3000 rpm, got 3001"):
        plant.set_setpoint("motor1.setpoint", SETPOINT_MAX + 1)
    with pytest.raises(KeyError, match=r"unknown setpoint 'motor3\.setpoint'"):
        plant.set_setpoint("motor3.setpoint", 10)
    with pytest.raises(ValueError):
        Plant(motor2_setpoint=-1)


def test_extra_signals_change_deterministically(clock: ManualClock) -> None:
    plant = Plant(seed=5, extra_signals=10_000, clock=clock)
    assert plant.extra_signals == 10_000
    first = plant.extra()
    assert len(first) == 10_000
    assert plant.extra(9_990, 10) == first[9_990:]
    assert all(abs(v - 100 * (i % 10)) <= 10 for i, v in enumerate(first))
    clock.advance(1.0)
    assert sum(a != b for a, b in zip(first, plant.extra(), strict=True)) > 9_900
    with pytest.raises(IndexError):
        plant.extra(9_999, 2)
    other_clock = ManualClock(1000.0)
    other = Plant(seed=5, extra_signals=10_000, clock=other_clock)
    other_clock.advance(1.0)
    assert other.extra() == plant.extra()


def test_on_off_signals_are_booleans(clock: ManualClock) -> None:
    values = Plant(clock=clock).sample()
    for name, signal in SIGNALS.items():
        assert isinstance(values[name], bool) is signal.boolean, name
    assert values["motor1.run"] is True and values["line.running"] is True
    assert values["line.fault"] is False and values["tank.high"] is False


def test_switching_a_motor_off_coasts_it_down_and_keeps_its_setpoint(clock: ManualClock) -> None:
    plant = Plant(clock=clock, motor1_setpoint=1500.0, motor2_setpoint=900.0)
    clock.advance(60)
    assert plant.sample()["motor1.speed"] == pytest.approx(1500, rel=0.01)
    plant.set_running("motor1.run", False)
    clock.advance(2.0)  # one time constant: down to 37 %
    values = plant.sample()
    assert values["motor1.speed"] == pytest.approx(1500 * math.exp(-1), rel=0.01)
    assert values["motor1.run"] is False and plant.setpoint("motor1.setpoint") == 1500
    assert values["line.state"] == LineState.RUNNING  # motor 2 still runs
    plant.write("motor2.run", 0)
    clock.advance(60)
    values = plant.sample()
    assert values["line.state"] == LineState.STOPPED and values["line.running"] is False
    assert values["motor2.speed"] < 1
    plant.write("motor1.run", 1)
    clock.advance(60)
    assert plant.sample()["motor1.speed"] == pytest.approx(1500, rel=0.01)


def test_fault_shows_on_the_fault_signal(clock: ManualClock) -> None:
    plant = Plant(clock=clock)
    plant.set_fault(True)
    values = plant.sample()
    assert values["line.fault"] is True and values["line.running"] is False


def test_overfill_raises_the_high_level_switch_and_clears(clock: ManualClock) -> None:
    plant = Plant(seed=2, clock=clock)
    samples = run(plant, clock, 900, step=5.0)
    assert not any(s["tank.high"] for s in samples)  # the normal cycle stays below 90 %
    plant.set_overfill(True)
    clock.advance(90)
    values = plant.sample()
    assert values["tank.level"] > 90 and values["tank.high"] is True
    plant.set_overfill(False)
    clock.advance(200)
    values = plant.sample()
    assert values["tank.level"] < 85 and values["tank.high"] is False


def test_writes_are_checked_before_anything_changes(clock: ManualClock) -> None:
    plant = Plant(clock=clock)
    assert plant.check_write("motor1.setpoint", 100) == 100.0
    assert plant.check_write("motor2.run", 0) == 0.0
    with pytest.raises(ValueError, match=r"0\.\.3000"):
        plant.write("motor1.setpoint", 5000)
    with pytest.raises(KeyError, match="not a writable plant signal"):
        plant.write("tank.level", 50)
    with pytest.raises(KeyError, match="unknown run flag"):
        plant.set_running("motor3.run", True)
    assert plant.setpoint("motor1.setpoint") == 1450 and plant.running("motor1.run")
