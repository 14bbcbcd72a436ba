"""CloudSettings: defaults, environment, validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cloud.settings import CloudSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DB_URL", "MQTT_URL", "BROKER_PORT", "COMMAND_TIMEOUT"):
        monkeypatch.delenv(f"FIELDGATE_CLOUD_{name}", raising=False)
    settings = CloudSettings()
    assert settings.db_url == "sqlite+aiosqlite:///./data/cloud.db"
    assert settings.mqtt_url is None and settings.embedded_broker
    assert (settings.broker_host, settings.broker_port) == ("127.0.0.1", 1883)
    assert settings.command_timeout == 10.0
    assert settings.mqtt_client_id.startswith("fieldgate-cloud-")


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDGATE_CLOUD_MQTT_URL", "mqtt://broker.local:1884")
    monkeypatch.setenv("FIELDGATE_CLOUD_BROKER_PORT", "0")
    settings = CloudSettings()
    assert settings.mqtt_address() == ("broker.local", 1884) and not settings.embedded_broker
    assert settings.broker_port == 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mqtt_url", "http://x", "expected mqtt://[user:password@]host"),
        ("db_url", "mysql://x", "expected sqlite+aiosqlite"),
        ("broker_port", 70000, "less than or equal to 65535"),
        ("command_timeout", 0, "greater than 0"),
        ("db_schema", "Bad-Schema", "should match pattern"),
    ],
)
def test_invalid_values_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CloudSettings(**{field: value})
    error = caught.value.errors()[0]
    assert error["loc"] == (field,) and message in str(caught.value)
