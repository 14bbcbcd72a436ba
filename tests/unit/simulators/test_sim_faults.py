"""Fault settings and the text commands that switch them at run time."""

from __future__ import annotations

import pytest

from simulators.control import ControlError, execute
from simulators.faults import Faults, parse_exception
from simulators.plant import Plant


def test_parse_exception() -> None:
    assert parse_exception("holding:10=2") == ("holding", 10, 2)
    assert parse_exception("coil:0x10=4") == ("coils", 16, 4)
    for bad in ("holding:10", "holding=2", "holding:x=2", "tape:1=2", "input:1=300"):
        with pytest.raises(ValueError):
            parse_exception(bad)


def test_exceptions_match_requests_that_touch_the_address() -> None:
    faults = Faults(exceptions={("holding", 10): 2})
    faults.set_exception("discrete", 3, 6)
    assert faults.exceptions == {("holding", 10): 2, ("discrete_inputs", 3): 6}
    assert faults.exception_for("holding", 10, 1) == 2
    assert faults.exception_for("holding", 0, 11) == 2
    assert faults.exception_for("holding", 0, 10) is None
    assert faults.exception_for("holding", 11, 5) is None
    assert faults.exception_for("input", 10, 1) is None
    faults.set_exception("holding", 4, 3)
    assert faults.exception_for("holding", 0, 20) == 3  # the lowest faulty address wins
    faults.set_exception("holding", 4, 0)
    assert faults.exception_for("holding", 0, 20) == 2


def test_values_are_validated() -> None:
    with pytest.raises(ValueError, match="latency"):
        Faults(latency=-1)
    with pytest.raises(ValueError, match="drop rate"):
        Faults(drop_rate=1.5)
    with pytest.raises(ValueError, match="unknown table"):
        Faults(exceptions={("tape", 1): 2})
    with pytest.raises(ValueError, match="unit id"):
        Faults(silent_units={300})


def test_drop_connections_reaches_every_attached_simulator() -> None:
    faults = Faults()
    assert faults.drop_connections() == 0
    detach = faults.attach(lambda: 2)
    faults.attach(lambda: 1)
    assert faults.drop_connections() == 3
    detach()
    detach()  # idempotent
    assert faults.drop_connections() == 1


def test_drop_rate_draws() -> None:
    assert not Faults().should_drop()
    assert Faults(drop_rate=1.0).should_drop()


def test_clear_and_describe() -> None:
    faults = Faults(latency=0.5, exceptions={("input", 1): 4}, silent_units={3}, drop_rate=0.1)
    assert faults.describe() == "latency 0.5s, exception input:1=4, silent unit 3, drop rate 0.1"
    faults.clear()
    assert faults.describe() == "no faults"
    assert faults == Faults()


def test_commands_switch_faults_and_drive_the_plant() -> None:
    faults = Faults()
    plant = Plant()
    plants = [plant, plant]  # the same plant behind two units is written once
    assert execute("latency 0.25", faults, plants) == "ok latency 0.25s"
    assert execute("exception holding:10=2", faults, plants).endswith("exception holding:10=2")
    execute("silent 2", faults, plants)
    assert faults.silent_units == {2}
    execute("answer 2", faults, plants)
    assert faults.silent_units == set()
    execute("drop-rate 0.5", faults, plants)
    assert faults.drop_rate == 0.5
    assert execute("drop", faults, plants) == "ok dropped 0 connection(s)"
    execute("trip on", faults, plants)
    assert plant.sample()["line.fault"] is True
    execute("set motor1.setpoint 1200", faults, plants)
    assert plant.setpoint("motor1.setpoint") == 1200
    execute("set motor2.run 0", faults, plants)
    assert not plant.running("motor2.run")
    execute("overfill on", faults, plants)
    assert execute("", faults, plants) == ""
    assert execute("help", faults, plants).startswith("ok commands:")
    execute("clear", faults, plants)
    assert execute("status", faults, plants) == "ok no faults"


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("bogus", "unknown command 'bogus'"),
        ("latency", "latency takes 1 argument"),
        ("latency fast", "latency must be a number"),
        ("latency -1", "latency must be a finite number"),
        ("exception holding:1", "expected TABLE:ADDRESS=CODE"),
        ("silent x", "unit id must be an integer"),
        ("trip maybe", "expected on or off"),
        ("set tank.level 5", "not a writable plant signal"),
        ("set motor1.setpoint 9000", "must be 0..3000 rpm"),
    ],
)
def test_bad_commands_say_why_and_change_nothing(command: str, message: str) -> None:
    faults, plant = Faults(), Plant()
    with pytest.raises(ControlError, match=message):
        execute(command, faults, [plant])
    assert faults == Faults() and plant.setpoint("motor1.setpoint") == 1450
