"""The documented Mosquitto deployment (config/mosquitto/fieldgate.conf + fieldgate.acl) with
the real ``mosquitto`` binary on ephemeral ports: gateways by mutual TLS (certificate CN =
username, topic ACL per gateway, CRL from the cloud's ``GET /api/v1/cas/{id}/crl``), the
cloud node by password on the loopback listener, storing what the gateways publish."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import shutil
import signal
import socket
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import httpx
import pytest
from aiomqtt.exceptions import MqttConnectError
from cloud_testkit import counter_batch, make_tenant, running
from mtls_testkit import DeviceKey, client_context, connack_over_tls, issue, issue_expired

from cloud.app import create_app
from cloud.auth import x509
from cloud.bootstrap import bootstrap
from cloud.contract import CMD, STATUS, TELEMETRY, topic
from cloud.ingest.service import IngestService
from cloud.settings import CloudSettings

pytestmark = [pytest.mark.integration, pytest.mark.services]

CONFIG = Path(__file__).resolve().parents[3] / "config" / "mosquitto"
CLOUD_USER = "fieldgate-cloud"
SECRET_KEY = "test-secret-key-of-the-mosquitto-test"


def _binary(name: str, *fallback: str) -> str:
    found = shutil.which(name) or next((p for p in fallback if Path(p).exists()), None)
    if found is not None:
        return found
    message = f"the {name} binary is not installed (Debian package mosquitto)"
    if os.environ.get("FIELDGATE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} and FIELDGATE_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def render(conf: str, directory: Path, tls_port: int, plain_port: int) -> str:
    """The documented config with this test's files and ports (and, under root, no
    privilege drop that would lock Mosquitto out of the test's private directory)."""
    conf = conf.replace("/etc/mosquitto/fieldgate/", f"{directory}/")
    conf = conf.replace("/var/lib/mosquitto/", f"{directory}/data/")
    conf = conf.replace("listener 8883\n", f"listener {tls_port} 127.0.0.1\n")
    conf = conf.replace("listener 1883 127.0.0.1\n", f"listener {plain_port} 127.0.0.1\n")
    assert str(tls_port) in conf and str(plain_port) in conf, "the listeners moved"
    return conf + f"\nuser {getpass.getuser()}\nlog_dest file {directory}/mosquitto.log\n"


@dataclass
class Deployment:
    directory: Path
    tls_port: int
    plain_port: int
    cloud_password: str
    broker_ca: x509.KeyPair
    org_ca: x509.KeyPair
    """A customer CA (registered by certificate); its CRL is built here."""
    plant1: x509.KeyPair
    revoked: x509.KeyPair
    """plant2's certificate, signed and then revoked through the cloud API."""
    ingest: IngestService

    def context(self, client: x509.KeyPair | None, name: str) -> ssl.SSLContext:
        return client_context(self.directory / "clients" / name, self.broker_ca.certificate_pem,
                              client)

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@contextlib.contextmanager
def mosquitto(conf: Path) -> Iterator[subprocess.Popen[bytes]]:
    binary = _binary("mosquitto", "/usr/sbin/mosquitto")
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def wait_listening(process: subprocess.Popen[bytes], ports: tuple[int, ...]) -> None:
    """Bounded re-checks: a separate process offers no event to await."""
    for _ in range(100):
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise AssertionError(f"mosquitto exited with {process.returncode}: {stderr}")
        try:
            for port in ports:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"mosquitto is not listening on {ports}")


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    passwd_tool = _binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
    directory = tmp_path / "mosquitto"
    (directory / "data").mkdir(parents=True)
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
    org_ca = x509.generate_ca("acme field CA", organization="acme")

    # 1. The cloud: orgs, a generated CA that signs the gateways' CSRs, a revocation, and
    #    the CRL that Mosquitto reads (what an operator's refresh job fetches).
    setup = create_app(CloudSettings(db_url=db_url, broker_port=0, secret_key=SECRET_KEY,
                                     mqtt_client_id=f"setup-{uuid.uuid4().hex[:8]}"))
    async with running(setup), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=setup), base_url="http://cloud"
    ) as api:
        acme = await make_tenant(setup.state.store, "acme", "plant1")
        await bootstrap(setup.state.store, "acme", gateways=["plant2"], issue_owner_key=False)
        created = await api.post("/api/v1/cas", json={"name": "fleet"}, headers=acme.headers)
        assert created.status_code == 201, created.text
        ca_id, cloud_ca_pem = created.json()["id"], created.json()["certificate"]
        registered = await api.post(
            "/api/v1/cas", json={"name": "field", "certificate": org_ca.certificate_pem},
            headers=acme.headers,
        )
        assert registered.status_code == 201, registered.text
        pairs = {}
        for name in ("plant1", "plant2"):
            key = DeviceKey.generate(name)
            signed = await api.post(f"/api/v1/devices/{name}/certificates",
                                    json={"csr": key.csr_pem, "ca": ca_id}, headers=acme.headers)
            assert signed.status_code == 201, signed.text
            pairs[name] = (signed.json()["id"], x509.KeyPair(signed.json()["certificate"],
                                                             key.key_pem))
        revoked = await api.delete(f"/api/v1/devices/plant2/certificates/{pairs['plant2'][0]}",
                                   headers=acme.headers)
        assert revoked.status_code == 200, revoked.text
        crl = await api.get(f"/api/v1/cas/{ca_id}/crl", headers=acme.headers)
        assert crl.status_code == 200, crl.text

    # 2. Mosquitto's files, as fieldgate.conf describes them.
    broker_ca = x509.generate_ca("broker CA", organization="fieldgate")
    server = x509.server_certificate(x509.load_certificate(broker_ca.certificate_pem),
                                     x509.load_private_key(broker_ca.key_pem), ["127.0.0.1"])
    own_crl = x509.build_crl(x509.load_certificate(org_ca.certificate_pem),
                             x509.load_private_key(org_ca.key_pem), [])
    (directory / "org-cas.pem").write_text(cloud_ca_pem + org_ca.certificate_pem)
    (directory / "crl.pem").write_bytes(crl.content + own_crl)
    (directory / "server.pem").write_text(server.certificate_pem)
    (directory / "server.key").write_text(server.key_pem)
    (directory / "server.key").chmod(0o600)
    password = uuid.uuid4().hex
    await asyncio.to_thread(
        subprocess.run, [passwd_tool, "-b", "-c", str(directory / "passwd"), CLOUD_USER, password],
        check=True, capture_output=True,
    )
    shutil.copy(CONFIG / "fieldgate.acl", directory / "fieldgate.acl")
    tls_port, plain_port = _free_port(), _free_port()
    conf = directory / "fieldgate.conf"
    conf.write_text(render((CONFIG / "fieldgate.conf").read_text(), directory, tls_port,
                           plain_port))

    # 3. Mosquitto, then the cloud node on its password listener.
    with mosquitto(conf) as process:
        await wait_listening(process, (tls_port, plain_port))
        node_id = f"cloud-{uuid.uuid4().hex[:8]}"
        node = create_app(CloudSettings(
            db_url=db_url, secret_key=SECRET_KEY, mqtt_client_id=node_id,
            mqtt_url=f"mqtt://{CLOUD_USER}:{password}@127.0.0.1:{plain_port}",
            mqtt_share_group=f"g-{node_id}", mqtt_connect_timeout=10.0,
        ))
        async with running(node):
            assert node.state.mqtt.ready.is_set(), "the cloud node did not log in"
            yield Deployment(directory, tls_port, plain_port, password, broker_ca, org_ca,
                             pairs["plant1"][1], pairs["plant2"][1], node.state.ingest)


def cloud_login(deployment: Deployment) -> dict[str, str]:
    return {"username": CLOUD_USER, "password": deployment.cloud_password}


async def test_a_gateway_certificate_publishes_only_under_its_own_topics(
    deployment: Deployment,
) -> None:
    d = deployment
    async with (
        aiomqtt.Client("127.0.0.1", d.plain_port, identifier=f"obs-{uuid.uuid4().hex[:6]}",
                       **cloud_login(d)) as observer,
        aiomqtt.Client("127.0.0.1", d.tls_port, identifier="fieldgate-plant1",
                       tls_context=d.context(d.plant1, "plant1")) as gateway,
    ):
        await observer.subscribe("fg/v1/+/+", qos=1)
        await gateway.publish(topic("plant2", TELEMETRY), counter_batch(0, 10), qos=1)
        await gateway.publish(topic("plant2", STATUS), b'{"state":"online","ts":1}', qos=1)
        await gateway.publish(topic("plant1", TELEMETRY), counter_batch(0, 20), qos=1)
        # one publisher's messages arrive in order: the first one seen must be the last sent
        async with asyncio.timeout(10):
            message = await anext(observer.messages)
        assert message.topic.value == topic("plant1", TELEMETRY)
        async with asyncio.timeout(10):
            await d.ingest.wait_for(lambda s: s.points >= 20)
        assert d.ingest.stats.points == 20 and d.ingest.stats.statuses == 0

        # Mosquitto 2.0 grants any subscription but delivers only what the ACL lets the
        # gateway read: another gateway's telemetry and commands never reach it.
        await gateway.subscribe([("fg/v1/+/telemetry", 1), ("#", 1), ("fg/v1/plant2/cmd/+", 1)])
        await observer.publish(topic("plant2", TELEMETRY), counter_batch(0, 1), qos=1)
        await observer.publish(topic("plant2", CMD, "r1"), b"theirs", qos=1)
        await observer.publish(topic("plant1", CMD, "r2"), b"mine", qos=1)
        async with asyncio.timeout(10):
            message = await anext(gateway.messages)
        assert (message.topic.value, message.payload) == (topic("plant1", CMD, "r2"), b"mine")


async def test_a_will_on_another_gateways_topic_is_not_published(
    deployment: Deployment,
) -> None:
    d = deployment
    context = d.context(d.plant1, "plant1")
    async with aiomqtt.Client(
        "127.0.0.1", d.plain_port, identifier=f"obs-{uuid.uuid4().hex[:6]}", **cloud_login(d)
    ) as observer:
        await observer.subscribe("fg/v1/+/status", qos=1)
        for will_topic in (topic("plant2", STATUS), topic("plant1", STATUS)):
            # vanish without DISCONNECT: the broker publishes the will, if the ACL allows
            code = await connack_over_tls(
                d.tls_port, context, "fieldgate-plant1",
                will=(will_topic, b'{"state":"offline","ts":1}'), vanish=True,
            )
            assert code == 0, d.log()
        async with asyncio.timeout(10):
            message = await anext(observer.messages)
        assert message.topic.value == topic("plant1", STATUS), d.log()


async def test_unknown_expired_and_revoked_certificates_are_refused(
    deployment: Deployment,
) -> None:
    d = deployment
    valid = d.context(issue(d.org_ca, "plant1"), "valid")
    assert await connack_over_tls(d.tls_port, valid, "plant1") == 0, d.log()
    stranger = x509.generate_ca("acme field CA", organization="acme")
    cases = {
        "unknown CA": d.context(issue(stranger, "plant1"), "stranger"),
        "expired": d.context(issue_expired(d.org_ca, "plant1"), "expired"),
        "revoked (in the CRL)": d.context(d.revoked, "revoked"),
        "no certificate": d.context(None, "none"),
    }
    for what, context in cases.items():
        assert await connack_over_tls(d.tls_port, context, "plant2") is None, what
    # the cloud's listener takes no gateway: no anonymous clients, no certificates
    with pytest.raises(MqttConnectError):
        async with aiomqtt.Client("127.0.0.1", d.plain_port, timeout=5):
            pass
