"""``fieldgate cloud init`` / ``gateway add`` on a SQLite file, then the key works."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from cloud_testkit import running
from typer.testing import CliRunner

from cloud.app import create_app
from cloud.cli import app as cli
from cloud.settings import CloudSettings

pytestmark = pytest.mark.integration


def test_init_and_gateway_add(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'sub' / 'cloud.db'}"
    runner = CliRunner()
    result = runner.invoke(cli, ["init", "--db", db, "--org", "acme", "--gateway", "plant1"])
    assert result.exit_code == 0, result.output
    assert "gateway registered: plant1" in result.output
    key = re.search(r"owner API key \(shown once\): (fgk_\S+)", result.output)
    assert key is not None

    added = runner.invoke(cli, ["gateway", "add", "plant2", "--org", "acme", "--db", db])
    assert added.exit_code == 0, added.output
    again = runner.invoke(cli, ["gateway", "add", "plant2", "--org", "acme", "--db", db])
    assert again.exit_code == 1 and "already registered" in again.output
    nobody = runner.invoke(cli, ["gateway", "add", "x", "--org", "nobody", "--db", db])
    assert nobody.exit_code == 1 and "org 'nobody' not found" in nobody.output
    bad = runner.invoke(cli, ["init", "--db", "mysql://x", "--org", "acme"])
    assert bad.exit_code == 2 and "invalid setting db_url" in bad.output

    async def list_devices() -> list[str]:
        settings = CloudSettings(db_url=db, broker_port=0, mqtt_client_id="cli-test")
        started = create_app(settings)
        async with running(started):
            transport = httpx.ASGITransport(app=started)
            async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
                response = await http.get(
                    "/api/v1/devices", headers={"Authorization": f"Bearer {key.group(1)}"}
                )
        return [d["name"] for d in response.json()["items"]]

    assert asyncio.run(list_devices()) == ["plant1", "plant2"]
