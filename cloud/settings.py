"""Configuration of a cloud node: one pydantic-settings class, read from ``FIELDGATE_CLOUD_*``."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_client_id() -> str:
    # A fixed id per node: the broker keeps the node's persistent session (and the
    # un-acknowledged telemetry in it) across restarts only when the id is stable.
    return f"fieldgate-cloud-{socket.gethostname()}"[:64]


class CloudSettings(BaseSettings):
    """Everything a cloud node needs; ``CloudSettings()`` reads the environment.

    ``mqtt_url`` ``None`` means: run the embedded amqtt broker on ``broker_host:broker_port``
    (port 0 = ephemeral; the bound port is published as ``app.state.broker_port``).
    """

    model_config = SettingsConfigDict(env_prefix="FIELDGATE_CLOUD_", extra="forbid")

    db_url: str = Field(
        default="sqlite+aiosqlite:///./data/cloud.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://...",
    )
    db_schema: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL only: schema to use (search_path); created if missing",
    )
    mqtt_url: str | None = Field(
        default=None,
        description="external broker mqtt://[user:password@]host:port; None runs the embedded one",
    )
    mqtt_client_id: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        default_factory=_default_client_id,
        description="MQTT client id of this node; must be stable (persistent session) and unique",
    )
    mqtt_share_group: str = Field(
        default="fieldgate",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Shared-subscription group of the nodes of one cluster (external broker)",
    )
    broker_host: str = "127.0.0.1"
    broker_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=1883,
        description="embedded broker's plain listener: device token (username = gateway "
        "name, password = fgd_ token) or the node's internal credential; 0 = ephemeral",
    )
    broker_allow_anonymous: bool = Field(
        default=False,
        description="DEVELOPMENT ONLY: accept MQTT clients without credentials on the plain "
        "listener, with full topic rights",
    )
    broker_tls_port: Annotated[int, Field(ge=0, le=65535)] | None = Field(
        default=None,
        description="embedded broker's mutual-TLS listener (client certificate of an org "
        "CA required); None = off, 0 = ephemeral (bound port: app.state.broker_tls_port)",
    )
    broker_tls_cert: Path | None = Field(
        default=None, description="PEM server certificate of the TLS listener (with _key)"
    )
    broker_tls_key: Path | None = Field(
        default=None, description="PEM private key of broker_tls_cert"
    )
    broker_tls_ca: Path | None = Field(
        default=None,
        description="PEM CA that signed broker_tls_cert, handed to enrolling gateways. "
        "Without cert/key a broker CA is generated (kept next to the SQLite database)",
    )
    broker_tls_hosts: list[str] = Field(
        default_factory=list,
        description="extra DNS names/IP addresses of the generated server certificate",
    )
    command_timeout: Annotated[float, Field(gt=0, le=3600)] = 10.0
    rate_limit: Annotated[float, Field(ge=0)] = Field(
        default=50.0, description="requests per second per API key or session (0: unlimited)"
    )
    rate_limit_burst: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=200, description="requests a caller may send at once before being limited"
    )
    max_body_bytes: Annotated[int, Field(ge=1024)] = Field(
        default=4 * 1024 * 1024, description="largest request body accepted (413 above)"
    )
    session_lifetime: Annotated[float, Field(gt=0)] = Field(
        default=12 * 3600.0, description="seconds a console sign-in stays valid"
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="encrypts CA private keys at rest; every node of a cluster needs the same. "
        "Unset: a key file is created next to the SQLite database",
    )
    mqtt_connect_timeout: Annotated[float, Field(gt=0)] = 10.0

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ValueError(f"expected mqtt://[user:password@]host[:port], got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_broker_tls(self) -> CloudSettings:
        if (self.broker_tls_cert is None) != (self.broker_tls_key is None):
            raise ValueError("broker_tls_cert and broker_tls_key go together: set both or neither")
        return self

    @field_validator("db_url")
    @classmethod
    def _check_db_url(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                f"expected sqlite+aiosqlite:///PATH or postgresql+asyncpg://..., got {value!r}"
            )
        return value

    @property
    def embedded_broker(self) -> bool:
        return self.mqtt_url is None

    def mqtt_address(self) -> tuple[str, int]:
        """Host and port of the external broker (only when ``mqtt_url`` is set)."""
        if self.mqtt_url is None:
            raise ValueError("no external broker configured (mqtt_url is None)")
        parts = urlsplit(self.mqtt_url)
        assert parts.hostname is not None  # checked by the validator
        return parts.hostname, parts.port or 1883

    def mqtt_credentials(self) -> tuple[str | None, str | None]:
        """Username and password of the external broker (``mqtt://user:pass@host``;
        percent-encoded in the URL), or ``(None, None)``."""
        if self.mqtt_url is None:
            return None, None
        parts = urlsplit(self.mqtt_url)
        username = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        return username, password
