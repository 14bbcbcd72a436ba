"""The gateway's error tree.

The scheduler decides what to do by exception type: a ``ConnectError`` makes it drop
the connection and reconnect with backoff, a ``DeviceError`` marks the affected tags
bad but keeps the session, a ``ConfigError`` stops start-up with a precise message.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error fieldgate raises on purpose."""


class ConfigError(GatewayError):
    """A configuration is invalid; ``problems`` lists each one as ``(path, line, message)``."""

    def __init__(self, message: str, problems: list[tuple[str, int | None, str]] | None = None):
        super().__init__(message)
        self.problems = problems or []

    def __str__(self) -> str:
        if not self.problems:
            return super().__str__()
        lines = [super().__str__()]
        for path, line, msg in self.problems:
            where = f"{path} (line {line})" if line is not None else path
            lines.append(f"  {where}: {msg}")
        return "\n".join(lines)


class AdapterError(GatewayError):
    """A field-device operation failed."""


class ConnectError(AdapterError):
    """The device cannot be reached or the session broke; the runtime reconnects."""


class ProtocolError(AdapterError):
    """The device answered with something the protocol does not allow (malformed frame)."""


class DeviceError(AdapterError):
    """The device refused a request with a protocol-level error code (e.g. Modbus exception 2)."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


class WriteError(AdapterError):
    """A write was refused before reaching the device (read-only tag, value out of range)."""


class ReadOnlyError(WriteError):
    """The tag lives in a table or object the protocol does not allow writing."""


class UplinkError(GatewayError):
    """The uplink to the cloud is unavailable or refused a message."""
