"""``fieldgate gateway enroll`` against a real cloud node served over HTTP (uvicorn on an
ephemeral port, in-process): key + CSR → certificate with CN = gateway id, files with the
right modes, the uplink.tls snippet, and precise errors without tracebacks."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from cloud.app import create_app
from cloud.bootstrap import bootstrap
from cloud.settings import CloudSettings
from fieldgate.cli import app as cli

pytestmark = pytest.mark.integration

GATEWAY = "plant1"


@dataclass(frozen=True)
class Cloud:
    url: str
    headers: dict[str, str]
    broker_ca_pem: str | None

    async def post(self, path: str, body: object) -> dict[str, object]:
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers) as http:
            response = await http.post(path, json=body)
        assert response.status_code == 201, response.text
        created: dict[str, object] = response.json()
        return created

    async def token(self) -> str:
        created = await self.post(f"/api/v1/devices/{GATEWAY}/tokens", {"name": "enrol"})
        return str(created["token"])


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    """A cloud node (SQLite, embedded broker) served by uvicorn on a socket bound and
    listening before the server starts, so clients simply wait in its backlog."""
    settings = CloudSettings(
        db_url=f"sqlite+aiosqlite:///{tmp_path / 'cloud' / 'cloud.db'}",
        mqtt_url=None,
        broker_host="127.0.0.1",
        broker_port=0,
        mqtt_client_id=f"test-cloud-{uuid.uuid4().hex[:8]}",
    )
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    async with app.router.lifespan_context(app):
        org = await bootstrap(app.state.store, "acme", gateways=[GATEWAY])
        assert org.api_key is not None
        server = uvicorn.Server(
            uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
        )
        serving = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
        try:
            yield Cloud(
                url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {org.api_key}"},
                broker_ca_pem=getattr(app.state, "broker_ca_pem", None),
            )
        finally:
            server.should_exit = True
            await serving
            sock.close()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "edge" / "gateway.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"gateway": {"id": GATEWAY}, "devices": []}))
    return path


async def run_cli(*args: str) -> tuple[int, str]:
    """``fieldgate ...`` in a thread (the cloud keeps serving on this loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args))
    return result.exit_code, result.output


async def test_enroll_writes_key_certificate_and_chain(
    cloud: Cloud, config: Path, tmp_path: Path
) -> None:
    ca = await cloud.post("/api/v1/cas", {"name": "main"})
    token = await cloud.token()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fieldgate", "gateway", "enroll", "-c", str(config),
        "--cloud", cloud.url, "--token", token,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=25)
    assert process.returncode == 0, stderr.decode()

    directory = config.parent / "certs" / GATEWAY
    key_path, cert_path, ca_path = (directory / n for n in ("key.pem", "cert.pem", "ca.pem"))
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    cert = cx509.load_pem_x509_certificate(cert_path.read_bytes())
    common_name = cert.subject.get_attributes_for_oid(cx509.NameOID.COMMON_NAME)[0].value
    assert common_name == GATEWAY
    assert cert.public_key() == key.public_key()
    assert ca_path.read_text() == ca["certificate"]
    cert.verify_directly_issued_by(cx509.load_pem_x509_certificate(ca_path.read_bytes()))
    broker_ca = directory / "broker-ca.pem"
    if cloud.broker_ca_pem is None:
        assert not broker_ca.exists()
    else:
        assert broker_ca.read_text() == cloud.broker_ca_pem

    output = stdout.decode()
    assert f"gateway {GATEWAY} enrolled" in output
    snippet = yaml.safe_load(output[output.index("uplink:"):])
    assert snippet["uplink"]["tls"]["cert"] == str(cert_path.resolve())
    assert snippet["uplink"]["tls"]["key"] == str(key_path.resolve())
    if cloud.broker_ca_pem is not None:
        assert snippet["uplink"]["tls"]["ca"] == str(broker_ca.resolve())


async def test_existing_key_is_kept_unless_forced(
    cloud: Cloud, config: Path, tmp_path: Path
) -> None:
    await cloud.post("/api/v1/cas", {"name": "main"})
    token = await cloud.token()
    directory = tmp_path / "pki"
    args = ("gateway", "enroll", "-c", str(config), "--cloud", cloud.url, "--dir", str(directory))
    code, output = await run_cli(*args, "--token", token)
    assert code == 0, output
    first = (directory / "key.pem").read_bytes()

    code, output = await run_cli(*args, "--token", token)
    assert code == 1
    assert "key.pem" in output and "already exist; pass --force" in output
    assert "Traceback" not in output
    assert (directory / "key.pem").read_bytes() == first

    code, output = await run_cli(*args, "--token", token, "--force")
    assert code == 0, output
    assert (directory / "key.pem").read_bytes() != first
    assert stat.S_IMODE((directory / "key.pem").stat().st_mode) == 0o600


async def test_enroll_errors_are_precise(cloud: Cloud, config: Path, tmp_path: Path) -> None:
    base = ("gateway", "enroll", "-c", str(config), "--dir", str(tmp_path / "pki"))
    token = await cloud.token()

    code, output = await run_cli(*base, "--cloud", cloud.url, "--token", token)
    assert code == 1 and "cannot issue a certificate now (409)" in output  # no CA yet

    code, output = await run_cli(*base, "--cloud", cloud.url, "--token", "fgd_" + "x" * 43)
    assert code == 1 and "refused the device token (401): invalid device token" in output

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
        code, output = await run_cli(*base, "--cloud", dead, "--token", token)
    assert code == 1 and f"cannot reach the cloud at {dead}/device/v1/certificate" in output

    code, output = await run_cli(*base, "--cloud", cloud.url + "/nope", "--token", token)
    assert code == 1 and "no enrolment endpoint" in output

    code, output = await run_cli(*base, "--cloud", cloud.url, "--token", "secret")
    assert code == 1 and "--token must be a device token 'fgd_...'" in output
    assert "Traceback" not in output
    assert not (tmp_path / "pki").exists()  # nothing written on failure
    assert os.listdir(config.parent) == ["gateway.yaml"]
