"""Helpers of the MQTT authentication tests: device keys and certificates (real X.509 from
``cloud.auth.x509``), TLS client contexts, a bare MQTT CONNECT over TLS, and log waiting.
Imported by module name, like ``cloud_testkit``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography import x509 as cx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud.auth import x509


@dataclass(frozen=True)
class DeviceKey:
    """A device's private key and its CSR (what a gateway sends to enrol)."""

    key_pem: str
    csr_pem: str

    @classmethod
    def generate(cls, name: str) -> DeviceKey:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            cx.CertificateSigningRequestBuilder()
            .subject_name(cx.Name([cx.NameAttribute(NameOID.COMMON_NAME, name)]))
            .sign(key, hashes.SHA256())
        )
        return cls(x509.key_to_pem(key), csr.public_bytes(serialization.Encoding.PEM).decode())


def issue(ca: x509.KeyPair, name: str, *, days: int = 30) -> x509.KeyPair:
    """A client certificate ``CN=name`` signed by ``ca`` (as the cloud signs CSRs)."""
    device = DeviceKey.generate(name)
    cert = x509.sign_csr(
        x509.load_csr(device.csr_pem), x509.load_certificate(ca.certificate_pem),
        x509.load_private_key(ca.key_pem), common_name_=name, days=days,
    )
    return x509.KeyPair(x509.to_pem(cert), device.key_pem)


def issue_expired(ca: x509.KeyPair, name: str) -> x509.KeyPair:
    """A client certificate ``CN=name`` by ``ca`` that expired yesterday."""
    key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = x509.load_certificate(ca.certificate_pem)
    end = x509.now() - timedelta(days=1)
    cert = (
        cx.CertificateBuilder()
        .subject_name(cx.Name([cx.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(cx.random_serial_number())
        .not_valid_before(end - timedelta(days=30))
        .not_valid_after(end)
        .add_extension(cx.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(cx.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(x509.load_private_key(ca.key_pem), hashes.SHA256())
    )
    return x509.KeyPair(x509.to_pem(cert), x509.key_to_pem(key))


def client_context(
    directory: Path, server_ca_pem: str, client: x509.KeyPair | None
) -> ssl.SSLContext:
    """What a gateway builds from ``uplink.tls``: trust the broker's CA, present ``client``."""
    context = ssl.create_default_context(cadata=server_ca_pem)
    if client is not None:
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / "client.pem", directory / "client.key"
        cert.write_text(client.certificate_pem)
        key.write_text(client.key_pem)
        context.load_cert_chain(cert, key)
    return context


def write_tls_files(directory: Path, server_ca_pem: str, client: x509.KeyPair) -> dict[str, str]:
    """``uplink.tls`` of a gateway config: files for the broker CA and the client pair."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"ca": directory / "broker-ca.pem", "cert": directory / "gateway.pem",
             "key": directory / "gateway.key"}
    paths["ca"].write_text(server_ca_pem)
    paths["cert"].write_text(client.certificate_pem)
    paths["key"].write_text(client.key_pem)
    return {k: str(v) for k, v in paths.items()}


def _connect_packet(client_id: str, will: tuple[str, bytes] | None = None) -> bytes:
    def field(data: bytes) -> bytes:
        return len(data).to_bytes(2, "big") + data

    flags = 0x02  # clean session
    payload = field(client_id.encode())
    if will is not None:
        flags |= 0x04 | 0x08  # will, QoS 1
        payload += field(will[0].encode()) + field(will[1])
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x1e" + payload
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


async def connack_over_tls(
    port: int,
    context: ssl.SSLContext,
    client_id: str,
    *,
    will: tuple[str, bytes] | None = None,
    vanish: bool = False,
) -> int | None:
    """Send a bare MQTT 3.1.1 CONNECT over TLS: the CONNACK return code, or None when the
    broker ends the connection without one (it refused the client certificate during the
    TLS handshake; with TLS 1.3 the client learns it only on its first read).
    ``will``: (topic, payload) of a Last Will; ``vanish``: drop the connection after the
    CONNACK without a DISCONNECT, so that the broker publishes the will."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    except (ssl.SSLError, ConnectionError):
        return None
    try:
        writer.write(_connect_packet(client_id, will))
        await writer.drain()
        async with asyncio.timeout(10):
            data = await reader.read(4)
    except (ssl.SSLError, ConnectionError):
        return None
    finally:
        if vanish:
            writer.transport.abort()
        else:
            writer.close()
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                await writer.wait_closed()
    if len(data) < 4:
        return None
    assert data[0] == 0x20, f"expected a CONNACK, got {data!r}"
    return data[3]


class LogWaiter(logging.Handler):
    """Lets a test await a log record (e.g. the uplink's retry warning)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self._changed.set()

    async def wait_for(self, predicate: Callable[[list[str]], bool], within: float = 15) -> None:
        async with asyncio.timeout(within):
            while not predicate(self.messages):
                self._changed.clear()
                await self._changed.wait()


@contextlib.contextmanager
def watch_log(name: str) -> Iterator[LogWaiter]:
    waiter = LogWaiter()
    logger = logging.getLogger(name)
    previous = logger.level
    logger.addHandler(waiter)
    logger.setLevel(logging.DEBUG)
    try:
        yield waiter
    finally:
        logger.removeHandler(waiter)
        logger.setLevel(previous)
