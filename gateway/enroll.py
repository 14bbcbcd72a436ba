"""Enrolment: a gateway gets its client certificate from the cloud.

``fieldgate gateway enroll`` makes an EC P-256 key and a CSR (CN = the gateway id), sends
the CSR to the cloud's device API (``POST /device/v1/certificate``, authenticated with a
device token ``fgd_...``) and stores what comes back next to the key::

    DIR/key.pem        the private key (mode 0600; never leaves the gateway)
    DIR/cert.pem       the client certificate, CN = gateway id
    DIR/ca.pem         the org CA that signed it
    DIR/broker-ca.pem  the CA of the broker's server certificate, when the cloud sent it

Nothing is written unless the cloud issued a certificate for this key, and an existing key
is replaced only when asked (``force``). Only ``cryptography`` and ``httpx`` are used here:
the gateway does not import cloud server code.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.errors import GatewayError

ENROLL_PATH = "/device/v1/certificate"
TOKEN_PREFIX = "fgd_"
KEY_FILE = "key.pem"
CERT_FILE = "cert.pem"
CA_FILE = "ca.pem"
BROKER_CA_FILE = "broker-ca.pem"


class EnrollError(GatewayError):
    """Enrolment failed; the message says why and what to do about it."""


@dataclass(frozen=True, slots=True)
class Enrolled:
    """What :func:`enroll` wrote."""

    gateway_id: str
    key: Path
    certificate: Path
    ca_chain: Path
    broker_ca: Path | None
    not_after: datetime
    serial: str


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def build_csr(key: ec.EllipticCurvePrivateKey, common_name: str) -> str:
    """A PEM CSR for ``key`` with subject ``CN=common_name``."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def enroll(
    gateway_id: str,
    cloud_url: str,
    token: str,
    directory: Path,
    *,
    force: bool = False,
    timeout: float = 10.0,
) -> Enrolled:
    """Get a client certificate for ``gateway_id`` from the cloud at ``cloud_url`` and
    store it with a new key in ``directory``. Raises :class:`EnrollError`."""
    if not cloud_url.startswith(("http://", "https://")):
        raise EnrollError(
            f"--cloud must be the cloud's base URL http(s)://host:port, got {cloud_url!r}"
        )
    if not token.startswith(TOKEN_PREFIX):
        raise EnrollError(
            f"--token must be a device token '{TOKEN_PREFIX}...' (create one with "
            f"POST /api/v1/devices/{gateway_id}/tokens)"
        )
    paths = {name: directory / name for name in (KEY_FILE, CERT_FILE, CA_FILE, BROKER_CA_FILE)}
    if not force:
        existing = [str(paths[name]) for name in (KEY_FILE, CERT_FILE) if paths[name].exists()]
        if existing:
            raise EnrollError(
                f"{' and '.join(existing)} already exist; pass --force to replace the key "
                "and certificate (the old certificate stops matching the new key)"
            )
    key = new_key()
    answer = _request(cloud_url, token, build_csr(key, gateway_id), timeout)
    cert = _check_answer(answer, key, gateway_id)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write(paths[KEY_FILE], key_pem, 0o600)
        _write(paths[CERT_FILE], answer["certificate"].encode(), 0o644)
        _write(paths[CA_FILE], answer["ca_chain"].encode(), 0o644)
        broker_ca = answer.get("broker_ca")
        if isinstance(broker_ca, str) and broker_ca.strip():
            _write(paths[BROKER_CA_FILE], broker_ca.encode(), 0o644)
        else:
            broker_ca = None
    except OSError as exc:
        raise EnrollError(f"cannot write to {directory}: {exc.strerror or exc}") from exc
    return Enrolled(
        gateway_id=gateway_id,
        key=paths[KEY_FILE],
        certificate=paths[CERT_FILE],
        ca_chain=paths[CA_FILE],
        broker_ca=paths[BROKER_CA_FILE] if broker_ca else None,
        not_after=cert.not_valid_after_utc,
        serial=format(cert.serial_number, "x"),
    )


def tls_snippet(enrolled: Enrolled) -> str:
    """The ``uplink.tls`` YAML to paste into the gateway config (absolute paths)."""
    tls: dict[str, str] = {}
    if enrolled.broker_ca is not None:
        tls["ca"] = str(enrolled.broker_ca.resolve())
    tls["cert"] = str(enrolled.certificate.resolve())
    tls["key"] = str(enrolled.key.resolve())
    text = yaml.safe_dump({"uplink": {"tls": tls}}, sort_keys=False)
    if enrolled.broker_ca is None:
        text += (
            "# the cloud sent no broker CA: set uplink.tls.ca to the CA of the broker's\n"
            "# server certificate unless the system trust store has it\n"
        )
    return text


def _request(cloud_url: str, token: str, csr: str, timeout: float) -> dict[str, Any]:
    url = cloud_url.rstrip("/") + ENROLL_PATH
    try:
        response = httpx.post(
            url,
            json={"csr": csr},
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )
    except httpx.TimeoutException as exc:
        raise EnrollError(f"no answer from the cloud at {url} within {timeout:g} s") from exc
    except httpx.HTTPError as exc:  # connection refused, DNS, TLS ...
        raise EnrollError(f"cannot reach the cloud at {url}: {exc}") from exc
    detail = _detail(response)
    status = response.status_code
    if status == 401:
        raise EnrollError(f"the cloud refused the device token (401): {detail}")
    if status == 404:
        raise EnrollError(
            f"no enrolment endpoint at {url} (404: {detail}); --cloud must be the cloud's "
            "base URL, e.g. http://host:8080"
        )
    if status == 409:
        raise EnrollError(f"the cloud cannot issue a certificate now (409): {detail}")
    if status == 422:
        raise EnrollError(f"the cloud rejected the request (422): {detail}")
    if status >= 400:
        raise EnrollError(f"the cloud answered {status}: {detail}")
    try:
        body = response.json()
    except ValueError as exc:
        raise EnrollError(f"the cloud's answer from {url} is not JSON") from exc
    if not isinstance(body, dict) or not all(
        isinstance(body.get(field), str) for field in ("certificate", "ca_chain")
    ):
        raise EnrollError(f"the cloud's answer from {url} has no certificate and ca_chain")
    return body


def _detail(response: httpx.Response) -> str:
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict) and body.get("detail"):
            return str(body["detail"])
    return response.text.strip()[:300] or response.reason_phrase


def _check_answer(
    answer: dict[str, Any], key: ec.EllipticCurvePrivateKey, gateway_id: str
) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(answer["certificate"].encode())
    except ValueError as exc:
        raise EnrollError(f"the cloud sent an unreadable certificate: {exc}") from exc
    if cert.public_key() != key.public_key():
        raise EnrollError("the cloud sent a certificate for another key")
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(names[0].value) if names else None
    if common_name != gateway_id:
        raise EnrollError(
            f"the cloud issued the certificate to {common_name!r}, not to this gateway "
            f"{gateway_id!r}: the token belongs to another gateway"
        )
    return cert


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` atomically; the file has ``mode`` from its first byte on."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
