"""Run-time control of a standalone simulator: one-line text commands (on stdin).

``fieldgate sim modbus --control`` reads commands from standard input, one per line, and
answers each with one line on standard output, starting ``ok`` or ``error:``. Stdin was
chosen over a control socket because it needs no port, no authentication and no cleanup:
type into the terminal, or drive it from a test or script through a pipe. End of input
ends control, not the simulator.

=============================  =============================================================
command                        effect
=============================  =============================================================
``latency SECONDS``            add SECONDS before every answer (0 turns it off)
``exception TABLE:ADDR=CODE``  answer exception CODE for requests touching TABLE:ADDR
                               (CODE 0 removes it), e.g. ``exception holding:10=2``
``silent UNIT``                unit id UNIT stops answering
``answer UNIT``                unit id UNIT answers again
``drop``                       close every client connection now
``drop-rate P``                drop the connection instead of answering, probability P
``clear``                      remove every fault
``trip on|off``                trip (or reset) the line fault in the plant
``overfill on|off``            stick (or free) the tank outlet: tank.high comes on
``set SIGNAL VALUE``           write a plant signal (``motor1.setpoint 1200``,
                               ``motor2.run 0``)
``status``                     the active faults
``help``                       this list
=============================  =============================================================

Plant commands apply to every distinct plant the simulator serves.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable
from typing import TextIO

from simulators.faults import Faults, parse_exception
from simulators.plant import Plant

__all__ = ["HELP", "ControlError", "execute", "read_commands"]

HELP = (
    "commands: latency SECONDS | exception TABLE:ADDR=CODE | silent UNIT | answer UNIT | "
    "drop | drop-rate P | clear | trip on|off | overfill on|off | set SIGNAL VALUE | "
    "status | help"
)


class ControlError(ValueError):
    """A command that cannot be executed; the message says why."""


def _switch(arg: str) -> bool:
    value = arg.lower()
    if value in ("on", "1", "true", "yes"):
        return True
    if value in ("off", "0", "false", "no"):
        return False
    raise ControlError(f"expected on or off, got {arg!r}")


def _number(arg: str, what: str) -> float:
    try:
        return float(arg)
    except ValueError:
        raise ControlError(f"{what} must be a number, got {arg!r}") from None


def _unit(arg: str) -> int:
    try:
        return int(arg)
    except ValueError:
        raise ControlError(f"unit id must be an integer, got {arg!r}") from None


def execute(command: str, faults: Faults, plants: Iterable[Plant]) -> str:
    """Execute one command line and return the reply (starting ``ok``); an empty line
    returns ``""``. Raises :class:`ControlError` for a bad command or argument, leaving
    everything as it was."""
    words = command.split()
    if not words:
        return ""
    verb, args = words[0].lower(), words[1:]
    distinct = list({id(p): p for p in plants}.values())
    arity = {
        "latency": 1, "exception": 1, "silent": 1, "answer": 1, "drop": 0, "drop-rate": 1,
        "clear": 0, "trip": 1, "overfill": 1, "set": 2, "status": 0, "help": 0,
    }
    if verb not in arity:
        raise ControlError(f"unknown command {verb!r}; {HELP}")
    if len(args) != arity[verb]:
        raise ControlError(f"{verb} takes {arity[verb]} argument(s); {HELP}")
    try:
        if verb == "latency":
            faults.set_latency(_number(args[0], "latency"))
        elif verb == "exception":
            faults.set_exception(*parse_exception(args[0]))
        elif verb in ("silent", "answer"):
            faults.silence(_unit(args[0]), verb == "silent")
        elif verb == "drop":
            return f"ok dropped {faults.drop_connections()} connection(s)"
        elif verb == "drop-rate":
            faults.set_drop_rate(_number(args[0], "drop rate"))
        elif verb == "clear":
            faults.clear()
        elif verb == "trip":
            on = _switch(args[0])
            for plant in distinct:
                plant.set_fault(on)
        elif verb == "overfill":
            on = _switch(args[0])
            for plant in distinct:
                plant.set_overfill(on)
        elif verb == "set":
            value = _number(args[1], args[0])
            for plant in distinct:
                plant.check_write(args[0], value)
            for plant in distinct:
                plant.write(args[0], value)
        elif verb == "help":
            return f"ok {HELP}"
    except (KeyError, ValueError) as exc:
        if isinstance(exc, ControlError):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise ControlError(str(message)) from None
    return f"ok {faults.describe()}"


async def read_commands(
    faults: Faults,
    plants: Iterable[Plant],
    stdin: TextIO | None = None,
    reply: Callable[[str], None] | None = None,
) -> None:
    """Execute commands from ``stdin`` (default: :data:`sys.stdin`) until end of input,
    calling ``reply`` with each answer line (default: print and flush). Never raises for a
    bad command. Cancel it to stop early; it leaves no reader behind."""
    stream = stdin if stdin is not None else sys.stdin
    answer = reply if reply is not None else _print
    plants = list(plants)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), stream
        )
    except (ValueError, OSError):  # a regular file: read it whole, nothing to wait for
        for line in stream.read().splitlines():
            _one(line, faults, plants, answer)
        return
    try:
        while line_bytes := await reader.readline():
            _one(line_bytes.decode(errors="replace"), faults, plants, answer)
    finally:
        transport.close()


def _one(line: str, faults: Faults, plants: list[Plant], answer: Callable[[str], None]) -> None:
    try:
        text = execute(line, faults, plants)
    except ControlError as exc:
        text = f"error: {exc}"
    if text:
        answer(text)


def _print(text: str) -> None:
    print(text, flush=True)
