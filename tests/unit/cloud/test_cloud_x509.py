"""X.509 primitives of device identity (cloud.auth.x509) and CA key protection
(cloud.auth.keystore)."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr

from cloud.auth import keystore, x509
from cloud.settings import CloudSettings

NOW = datetime.now(UTC)


def _name(cn: str, org: str = "acme") -> cx509.Name:
    return cx509.Name(
        [
            cx509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            cx509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _self_signed(
    cn: str = "legacy",
    *,
    ca: bool | None = True,
    cert_sign: bool | None = True,
    start: datetime = NOW - timedelta(days=1),
    end: datetime = NOW + timedelta(days=30),
) -> tuple[str, ec.EllipticCurvePrivateKey]:
    """A self-signed certificate; ``ca=None`` leaves basicConstraints out, ``cert_sign=None``
    keyUsage."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        cx509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(cx509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    if ca is not None:
        builder = builder.add_extension(cx509.BasicConstraints(ca=ca, path_length=None), True)
    if cert_sign is not None:
        builder = builder.add_extension(
            cx509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                crl_sign=cert_sign, encipher_only=False, decipher_only=False,
            ),
            True,
        )
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key


def _csr(cn: str = "asked-for", key: x509.PrivateKey | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        cx509.CertificateSigningRequestBuilder()
        .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def org_ca() -> tuple[cx509.Certificate, x509.PrivateKey]:
    pair = x509.generate_ca("main", organization="acme")
    return x509.load_certificate(pair.certificate_pem), x509.load_private_key(pair.key_pem)


# -- CA certificates -------------------------------------------------------------------------


def test_generated_ca_is_a_valid_ca_certificate() -> None:
    pair = x509.generate_ca("main", organization="acme", days=10)
    cert = x509.load_ca_certificate(pair.certificate_pem)
    assert x509.name_string(cert.subject) == "CN=main,O=acme"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=10)
    assert len(x509.fingerprint(cert)) == 64


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"ca": None}, "no basicConstraints"),
        ({"ca": False}, "CA:FALSE"),
        ({"cert_sign": False}, "does not allow keyCertSign"),
        ({"start": NOW - timedelta(days=60), "end": NOW - timedelta(days=1)}, "expired on"),
        ({"start": NOW + timedelta(days=2), "end": NOW + timedelta(days=60)}, "not valid before"),
    ],
)
def test_unusable_ca_certificates_are_refused_with_the_reason(
    kwargs: dict[str, object], reason: str
) -> None:
    pem, _ = _self_signed(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(x509.CertificateError, match=reason):
        x509.load_ca_certificate(pem)


def test_ca_without_key_usage_is_accepted() -> None:
    pem, _ = _self_signed(cert_sign=None)
    assert x509.load_ca_certificate(pem).subject == _name("legacy")


def test_garbage_is_not_a_certificate() -> None:
    with pytest.raises(x509.CertificateError, match=r"not an X\.509 certificate"):
        x509.load_ca_certificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


# -- CSRs --------------------------------------------------------------------------------------


def test_csr_with_a_bad_signature_is_refused() -> None:
    csr = cx509.load_pem_x509_csr(_csr().encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the signature
    tampered = cx509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(x509.CertificateError, match="signature does not match"):
        x509.load_csr(tampered)


def test_weak_rsa_csr_is_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(x509.CertificateError, match="RSA key of 1024 bits; at least 2048"):
        x509.load_csr(_csr(key=weak))


def test_strong_rsa_csr_is_accepted() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert isinstance(x509.load_csr(_csr(key=key)).public_key(), rsa.RSAPublicKey)


def test_not_a_csr() -> None:
    with pytest.raises(x509.CertificateError, match="not a PEM certificate signing request"):
        x509.load_csr("hello")


# -- signing -------------------------------------------------------------------------------------


def test_signed_certificate_names_the_device_and_is_for_client_auth(
    org_ca: tuple[cx509.Certificate, x509.PrivateKey],
) -> None:
    ca_cert, ca_key = org_ca
    device_key = ec.generate_private_key(ec.SECP256R1())
    cert = x509.sign_csr(
        x509.load_csr(_csr("something-else", device_key)), ca_cert, ca_key,
        common_name_="plant1", days=30,
    )
    assert x509.name_string(cert.subject) == "CN=plant1"
    assert cert.issuer == ca_cert.subject
    assert cert.public_key() == device_key.public_key()
    usage = cert.extensions.get_extension_for_class(cx509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(cx509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=30)
    assert x509.client_certificate_problem(cert) is None
    assert x509.validity_problem(cert) is None
    assert x509.issued_by(cert, ca_cert)


def test_signed_certificate_never_outlives_its_ca() -> None:
    pair = x509.generate_ca("short", organization="acme", days=5)
    ca_cert, ca_key = x509.load_certificate(pair.certificate_pem), x509.load_private_key(
        pair.key_pem
    )
    cert = x509.sign_csr(x509.load_csr(_csr()), ca_cert, ca_key, common_name_="gw", days=365)
    assert cert.not_valid_after_utc == ca_cert.not_valid_after_utc


def test_issued_by_is_false_for_a_foreign_ca_even_with_the_same_name(
    org_ca: tuple[cx509.Certificate, x509.PrivateKey],
) -> None:
    ca_cert, ca_key = org_ca
    cert = x509.sign_csr(x509.load_csr(_csr()), ca_cert, ca_key, common_name_="gw")
    impostor = x509.generate_ca("main", organization="acme")  # same subject, other key
    impostor_cert = x509.load_certificate(impostor.certificate_pem)
    assert impostor_cert.subject == ca_cert.subject
    assert not x509.issued_by(cert, impostor_cert)
    other = x509.load_certificate(x509.generate_ca("other", organization="globex").certificate_pem)
    assert not x509.issued_by(cert, other)


def test_validity_problem_names_expiry_and_future_certificates() -> None:
    expired, _ = _self_signed(start=NOW - timedelta(days=9), end=NOW - timedelta(days=1))
    future, _ = _self_signed(start=NOW + timedelta(days=1), end=NOW + timedelta(days=9))
    assert "expired" in (x509.validity_problem(x509.load_certificate(expired)) or "")
    assert "not valid before" in (x509.validity_problem(x509.load_certificate(future)) or "")


def test_client_certificate_problem_refuses_ca_and_server_certificates(
    org_ca: tuple[cx509.Certificate, x509.PrivateKey],
) -> None:
    ca_cert, ca_key = org_ca
    assert "CA certificate" in (x509.client_certificate_problem(ca_cert) or "")
    server = x509.server_certificate(ca_cert, ca_key, ["broker.local", "127.0.0.1"])
    problem = x509.client_certificate_problem(x509.load_certificate(server.certificate_pem))
    assert problem is not None and "clientAuth" in problem


def test_crl_lists_the_revoked_serials(
    org_ca: tuple[cx509.Certificate, x509.PrivateKey],
) -> None:
    ca_cert, ca_key = org_ca
    when = NOW.replace(microsecond=0) - timedelta(hours=1)
    pem = x509.build_crl(ca_cert, ca_key, [(0x1234, when), (0xABCDEF, when)])
    crl = cx509.load_pem_x509_crl(pem)
    assert crl.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]
    assert crl.issuer == ca_cert.subject
    assert sorted(entry.serial_number for entry in crl) == [0x1234, 0xABCDEF]
    assert crl.get_revoked_certificate_by_serial_number(0x1234) is not None
    assert crl.get_revoked_certificate_by_serial_number(0x9999) is None


# -- CA key protection ---------------------------------------------------------------------------


def test_ca_key_round_trips_encrypted(org_ca: tuple[cx509.Certificate, x509.PrivateKey]) -> None:
    _, key = org_ca
    pem = keystore.encrypt_key(key, b"s3cret")
    assert "ENCRYPTED PRIVATE KEY" in pem
    assert keystore.decrypt_key(pem, b"s3cret").private_numbers() == key.private_numbers()
    with pytest.raises(keystore.CaKeyUnreadable, match="does not decrypt"):
        keystore.decrypt_key(pem, b"other")
    with pytest.raises(keystore.SecretKeyMissing, match="FIELDGATE_CLOUD_SECRET_KEY"):
        keystore.encrypt_key(key, None)


def test_secret_comes_from_the_settings_first(tmp_path: Path) -> None:
    settings = CloudSettings(
        db_url=f"sqlite+aiosqlite:///{tmp_path}/cloud.db", secret_key=SecretStr("from-env")
    )
    assert keystore.resolve_secret(settings) == b"from-env"
    assert not (tmp_path / "cloud.secret").exists()


def test_sqlite_secret_file_is_created_private_and_reused(tmp_path: Path) -> None:
    settings = CloudSettings(db_url=f"sqlite+aiosqlite:///{tmp_path}/data/cloud.db")
    first = keystore.resolve_secret(settings)
    path = tmp_path / "data" / "cloud.secret"
    assert first is not None and len(first) >= 43
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keystore.resolve_secret(settings) == first


def test_postgresql_without_secret_has_none() -> None:
    settings = CloudSettings(db_url="postgresql+asyncpg://u@db/fieldgate")
    assert keystore.resolve_secret(settings) is None
    with pytest.raises(keystore.SecretKeyMissing, match="set FIELDGATE_CLOUD_SECRET_KEY"):
        keystore.require_secret(None)
