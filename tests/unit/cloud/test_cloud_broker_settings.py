"""The broker settings: external broker credentials, the TLS listener's certificate."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509 as cx
from pydantic import ValidationError

from cloud.auth import x509
from cloud.broker import BROKER_CA_FILE, BROKER_CA_KEY_FILE, load_broker_tls
from cloud.settings import CloudSettings


def test_external_broker_credentials_come_from_the_url() -> None:
    settings = CloudSettings(mqtt_url="mqtt://fieldgate-cloud:p%40ss%3Aw@broker.local:1884")
    assert settings.mqtt_address() == ("broker.local", 1884)
    assert settings.mqtt_credentials() == ("fieldgate-cloud", "p@ss:w")
    assert CloudSettings(mqtt_url="mqtt://broker.local").mqtt_credentials() == (None, None)
    assert CloudSettings().mqtt_credentials() == (None, None)


def test_tls_settings_are_checked() -> None:
    assert CloudSettings().broker_tls_port is None and not CloudSettings().broker_allow_anonymous
    with pytest.raises(ValidationError, match="broker_tls_cert and broker_tls_key go together"):
        CloudSettings(broker_tls_cert=Path("server.pem"))
    with pytest.raises(ValidationError, match="less than or equal to 65535"):
        CloudSettings(broker_tls_port=70000)


def test_no_tls_listener_no_certificate(tmp_path: Path) -> None:
    assert load_broker_tls(CloudSettings(db_url=f"sqlite+aiosqlite:///{tmp_path}/c.db")) is None


def test_generated_broker_ca_is_kept_next_to_the_database(tmp_path: Path) -> None:
    settings = CloudSettings(
        db_url=f"sqlite+aiosqlite:///{tmp_path}/data/cloud.db", broker_tls_port=0,
        broker_host="0.0.0.0", broker_tls_hosts=["broker.example.com", "10.0.0.5"],
    )
    first = load_broker_tls(settings)
    second = load_broker_tls(settings)
    assert first is not None and second is not None and first.ca_pem is not None
    assert first.ca_pem == second.ca_pem  # reused across restarts
    assert first.certificate_pem != second.certificate_pem  # a fresh server certificate
    assert (tmp_path / "data" / BROKER_CA_FILE).read_text() == first.ca_pem
    assert (tmp_path / "data" / BROKER_CA_KEY_FILE).stat().st_mode & 0o077 == 0
    server = x509.load_certificate(first.certificate_pem)
    assert x509.issued_by(server, x509.load_certificate(first.ca_pem))
    names = server.extensions.get_extension_for_class(cx.SubjectAlternativeName).value
    dns = names.get_values_for_type(cx.DNSName)
    ips = [str(ip) for ip in names.get_values_for_type(cx.IPAddress)]
    assert "broker.example.com" in dns and "localhost" in dns and "0.0.0.0" not in ips
    assert {"10.0.0.5", "127.0.0.1", "::1"} <= set(ips)


def test_postgresql_gets_a_broker_ca_in_memory() -> None:
    settings = CloudSettings(db_url="postgresql+asyncpg://u@h/db", broker_tls_port=8883)
    first, second = load_broker_tls(settings), load_broker_tls(settings)
    assert first is not None and second is not None and first.ca_pem != second.ca_pem


def test_configured_server_certificate(tmp_path: Path) -> None:
    ca = x509.generate_ca("ops CA", organization="ops")
    server = x509.server_certificate(
        x509.load_certificate(ca.certificate_pem), x509.load_private_key(ca.key_pem),
        ["broker.example.com"],
    )
    for name, text in {"s.pem": server.certificate_pem, "s.key": server.key_pem,
                       "ca.pem": ca.certificate_pem}.items():
        (tmp_path / name).write_text(text)
    settings = CloudSettings(
        broker_tls_port=8883, broker_tls_cert=tmp_path / "s.pem",
        broker_tls_key=tmp_path / "s.key", broker_tls_ca=tmp_path / "ca.pem",
    )
    tls = load_broker_tls(settings)
    assert tls is not None
    assert (tls.certificate_pem, tls.key_pem, tls.ca_pem) == (
        server.certificate_pem, server.key_pem, ca.certificate_pem
    )
