"""X.509 for device identity: org CAs, signing device CSRs, checking a presented device
certificate, server certificates for the broker, CRLs. Pure functions over
``cryptography`` objects; no database, no I/O.

Keys are ECDSA P-256 (small, fast, accepted by OpenSSL, Mosquitto and amqtt). Device
certificates are signed directly by an org CA (no intermediates): the issuer of a device
certificate names its org.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
CLOCK_SKEW = timedelta(minutes=5)
"""Certificates are back-dated this much so that a device with a slightly slow clock
accepts them at once."""
MIN_RSA_BITS = 2048


class CertificateError(ValueError):
    """A certificate, CSR or key that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    certificate_pem: str
    key_pem: str


def now() -> datetime:
    return datetime.now(UTC)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, lower-case hex (what ``openssl x509 -fingerprint``
    prints, without colons)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_to_pem(key: PrivateKey, password: bytes | None = None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def load_private_key(pem: str | bytes, password: bytes | None = None) -> PrivateKey:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"unreadable private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertificateError("private key must be ECDSA or RSA")
    return key


def common_name(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else None


def load_certificate(pem: str | bytes) -> x509.Certificate:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CertificateError(f"not an X.509 certificate (PEM or DER): {exc}") from exc


def load_ca_certificate(pem: str | bytes, *, at: datetime | None = None) -> x509.Certificate:
    """Parse a CA certificate an org registers; refuse what cannot sign device
    certificates (not a CA, no keyCertSign, expired, not yet valid)."""
    cert = load_certificate(pem)
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound as exc:
        raise CertificateError("not a CA certificate: no basicConstraints extension") from exc
    if not constraints.ca:
        raise CertificateError("not a CA certificate: basicConstraints has CA:FALSE")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        raise CertificateError("the CA certificate's keyUsage does not allow keyCertSign")
    at = at or now()
    if cert.not_valid_after_utc <= at:
        raise CertificateError(f"the CA certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if cert.not_valid_before_utc > at + CLOCK_SKEW:
        raise CertificateError(
            f"the CA certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d}"
        )
    return cert


def generate_ca(common_name_: str, *, organization: str, days: int = 3650) -> KeyPair:
    """A new self-signed CA (EC P-256) that may sign end-entity certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization[:64]),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name_[:64]),
        ]
    )
    start = now() - CLOCK_SKEW
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(to_pem(cert), key_to_pem(key))


def load_csr(pem: str | bytes) -> x509.CertificateSigningRequest:
    """Parse a device CSR and check its self-signature and key strength."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise CertificateError(f"not a PEM certificate signing request: {exc}") from exc
    if not csr.is_signature_valid:
        raise CertificateError("the CSR's signature does not match its public key")
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CertificateError(f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS}")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size < 256:
            raise CertificateError(f"EC key on {key.curve.name}; use P-256 or stronger")
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise CertificateError("unsupported key type; use ECDSA P-256, Ed25519 or RSA >= 2048")
    return csr


def sign_csr(
    csr: x509.CertificateSigningRequest,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    *,
    common_name_: str,
    days: int = 365,
) -> x509.Certificate:
    """A client certificate for the CSR's key with subject ``CN=common_name_`` (the
    device id; whatever subject the CSR asked for is replaced), valid ``days`` days but
    never beyond the CA."""
    start = now() - CLOCK_SKEW
    end = min(start + timedelta(days=days), ca_cert.not_valid_after_utc)
    public = csr.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name_)]))
        .issuer_name(ca_cert.subject)
        .public_key(public)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def server_certificate(
    ca_cert: x509.Certificate, ca_key: PrivateKey, hosts: Sequence[str], *, days: int = 825
) -> KeyPair:
    """A TLS server certificate (e.g. the embedded broker's) for ``hosts`` (DNS names or
    IP addresses, the first also the CN), signed by ``ca_cert``."""
    if not hosts:
        raise ValueError("a server certificate needs at least one host name")
    key = ec.generate_private_key(ec.SECP256R1())
    start = now() - CLOCK_SKEW
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(start + timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(key_agreement=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(_general_names(hosts))), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(to_pem(cert), key_to_pem(key))


def issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """True when ``ca_cert`` signed ``cert`` (issuer name and signature both match)."""
    if cert.issuer != ca_cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def name_string(name: x509.Name) -> str:
    """The RFC 4514 form of a name: how a CA's subject is stored, so that the issuer of
    a presented certificate finds its CA candidates with one indexed equality."""
    return name.rfc4514_string()


def client_certificate_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert`` cannot authenticate a TLS client (it is a CA, or its extended key
    usage leaves out clientAuth), or None. No extended key usage at all is accepted:
    customer CAs often omit it."""
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "the certificate is a CA certificate, not a device certificate"
    except x509.ExtensionNotFound:
        pass
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        return "the certificate's extendedKeyUsage does not include clientAuth"
    return None


def validity_problem(cert: x509.Certificate, *, at: datetime | None = None) -> str | None:
    """Why ``cert`` is not valid at ``at`` (expired / not yet valid), or None."""
    at = at or now()
    if cert.not_valid_after_utc <= at:
        return f"the certificate expired at {cert.not_valid_after_utc.isoformat()}"
    if cert.not_valid_before_utc > at + CLOCK_SKEW:
        return f"the certificate is not valid before {cert.not_valid_before_utc.isoformat()}"
    return None


def build_crl(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    revoked: Iterable[tuple[int, datetime]],
    *,
    next_update: timedelta = timedelta(days=1),
) -> bytes:
    """A PEM CRL of ``revoked`` = (serial number, revocation time) signed by the CA (what
    Mosquitto's ``crlfile`` reads)."""
    start = now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(start - CLOCK_SKEW)
        .next_update(start + next_update)
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _usage(*, cert_sign: bool = False, key_agreement: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _general_names(hosts: Iterable[str]) -> Iterable[x509.GeneralName]:
    for host in hosts:
        try:
            yield x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            yield x509.DNSName(host)
