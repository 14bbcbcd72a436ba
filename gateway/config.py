"""The gateway configuration model.

The device list is a discriminated union over the installed adapters (``type:`` picks
one), built at run time from the ``fieldgate.adapters`` entry points so third-party
adapters validate exactly like built-in ones. ``load_config`` (in ``gateway.loader``)
turns YAML into this model with errors that name the path and line.
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from adapters import registry
from adapters.base import DeviceConfig
from gateway.buffer import BufferConfig
from gateway.config_types import ByteSize, Duration, Name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GatewaySection(_Strict):
    id: Name = Field(description="Gateway id; the MQTT topics are fg/v1/{id}/...")
    description: str | None = None
    status_interval: Duration = Field(
        default=30.0, description="How often the retained status message is refreshed"
    )
    shutdown_drain: Duration = Field(
        default=5.0, description="Time spent delivering buffered readings on shutdown"
    )


class MqttTlsConfig(_Strict):
    ca: str | None = Field(default=None, description="CA bundle that signed the broker certificate")
    cert: str | None = Field(default=None, description="Client certificate (mutual TLS)")
    key: str | None = Field(default=None, description="Private key of the client certificate")
    insecure: bool = Field(default=False, description="Skip broker hostname verification")


class MqttUplinkConfig(_Strict):
    type: Literal["mqtt"] = "mqtt"
    url: str = Field(
        default="mqtt://127.0.0.1:1883",
        pattern=r"^mqtts?://[^:/]+(:\d+)?/?$",
        description="mqtt://host:port, or mqtts://host:port for TLS",
    )
    client_id: str | None = Field(default=None, description="Defaults to fieldgate-{gateway id}")
    username: str | None = None
    password: str | None = None
    tls: MqttTlsConfig | None = None
    keepalive: int = Field(default=30, ge=5, le=3600, description="Seconds")
    inflight: int = Field(
        default=8, ge=1, le=100, description="Telemetry messages sent ahead of their PUBACK"
    )
    max_batch_points: int = Field(default=5000, ge=1, le=100_000)
    max_batch_bytes: ByteSize = Field(
        default=512 * 1024, description="Soft limit on one telemetry message's size"
    )
    reconnect_min: Duration = 0.5
    reconnect_max: Duration = 30.0
    publish_timeout: Duration = Field(
        default=30.0, description="A message not acknowledged by then counts as lost"
    )

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rstrip("/").split(":")[0]

    @property
    def port(self) -> int:
        rest = self.url.split("://", 1)[1].rstrip("/")
        if ":" in rest:
            return int(rest.split(":")[1])
        return 8883 if self.url.startswith("mqtts") else 1883


class GatewayConfigBase(_Strict):
    """Everything but the device list, whose type depends on the installed adapters."""

    gateway: GatewaySection
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    uplink: MqttUplinkConfig = Field(default_factory=MqttUplinkConfig)
    devices: list[DeviceConfig]

    @model_validator(mode="after")
    def _unique_device_names(self) -> GatewayConfigBase:
        seen: set[str] = set()
        for device in self.devices:
            if device.name in seen:
                raise ValueError(f"device name {device.name!r} is used twice")
            seen.add(device.name)
        return self

    def digest(self) -> str:
        """A short hash of the effective configuration, reported in the status message."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


# The model type used by the runtime; at run time it is the subclass built below.
GatewayConfig = GatewayConfigBase


@cache
def gateway_config_model() -> type[GatewayConfigBase]:
    """The config model for the adapters installed now (entry points)."""
    device_models = [p.config_model for p in registry.plugins().values()]
    if not device_models:
        device_type: Any = DeviceConfig
    elif len(device_models) == 1:
        device_type = device_models[0]
    else:
        device_type = Annotated[Union[tuple(device_models)], Field(discriminator="type")]  # noqa: UP007
    model: type[GatewayConfigBase] = create_model(
        "GatewayConfig",
        __base__=GatewayConfigBase,
        __doc__="fieldgate gateway configuration",
        devices=(list[device_type], Field(description="Field devices, each read by one adapter")),
    )
    return model


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the gateway config (committed as config/gateway.schema.json)."""
    schema = gateway_config_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "fieldgate gateway configuration"
    return schema
