"""A virtual null-modem cable: two pseudo-terminals whose traffic is copied to each other.

Serial code (pyserial, pymodbus's serial client and server) opens a serial *device path*;
``os.openpty()`` gives only one path per pair (the master side has none on Linux). This
joins two pty pairs back to back, like ``socat pty,raw pty,raw``, so that a Modbus RTU
server on :attr:`NullModem.ports` ``[0]`` and a client on ``[1]`` exercise real serial
framing through the kernel's tty layer, in-process, without socat::

    async with NullModem() as (server_port, client_port):
        async with ModbusSimulator(serial_port=server_port):
            client = AsyncModbusSerialClient(client_port, ...)

POSIX only. Bytes are copied as soon as they arrive; there is no baud-rate timing. Linux ptys
ignore parity (they clear ``PARENB``, and pyserial then fails to reconfigure the port with
EINVAL), so open both ends with parity ``N``; stop bits and data bits are accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from types import TracebackType

__all__ = ["NullModem"]


class NullModem:
    """Two linked pty device paths, live between ``__aenter__`` and ``__aexit__``.

    Entering opens both pairs (raw mode) and starts copying with event-loop readers (no
    task); exiting stops copying and closes every descriptor. Not reusable once closed.
    """

    def __init__(self) -> None:
        self._fds: list[int] = []
        self._masters: tuple[int, int] | None = None
        self._pending: dict[int, bytearray] = {}
        self.ports: tuple[str, str] = ("", "")
        """The two device paths (``/dev/pts/N``); what one side writes the other reads."""

    async def __aenter__(self) -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        paths = []
        masters = []
        try:
            for _ in range(2):
                master, slave = os.openpty()
                self._fds += [master, slave]
                tty.setraw(slave)  # no echo, no line editing, before anyone opens it
                os.set_blocking(master, False)
                masters.append(master)
                paths.append(os.ttyname(slave))
        except OSError:
            self._close_fds()
            raise
        a, b = masters
        self._masters = (a, b)
        self._pending = {a: bytearray(), b: bytearray()}
        loop.add_reader(a, self._copy, a, b)
        loop.add_reader(b, self._copy, b, a)
        self.ports = (paths[0], paths[1])
        return self.ports

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop copying and close the ptys. Idempotent."""
        if self._masters is not None:
            loop = asyncio.get_running_loop()
            for fd in self._masters:
                loop.remove_reader(fd)
                loop.remove_writer(fd)
            self._masters = None
        self._close_fds()

    def _close_fds(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def _copy(self, src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: no one has the other side open right now
            return
        if data:
            self._pending[dst] += data
            self._flush(dst)

    def _flush(self, dst: int) -> None:
        loop = asyncio.get_running_loop()
        buffer = self._pending[dst]
        try:
            written = os.write(dst, buffer)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:
            buffer.clear()
            written = 0
        del buffer[:written]
        if buffer:
            loop.add_writer(dst, self._flush, dst)
        else:
            loop.remove_writer(dst)
