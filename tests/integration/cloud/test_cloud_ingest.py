"""The ingest service against a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from cloud_testkit import T0, make_batch
from sqlalchemy import func, select

from cloud.bootstrap import bootstrap
from cloud.contract import GatewayEvent, GatewayStatus
from cloud.ingest.service import IngestService, InvalidBatch
from cloud.store.db import Store
from cloud.store.devices import DeviceRepository
from cloud.store.models import Device, Latest, Point
from cloud.store.points import PointRepository
from cloud.store.values import decode_value

pytestmark = pytest.mark.integration

VALUES: list[object] = [
    0, -1, 2**53 + 1, -(2**63), 2**63 - 1, 1.5, -0.0, 1e-300, True, False, "", "héllo ☃", None,
]


async def _count(store: Store, model: type) -> int:
    async with store.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


@pytest.fixture
async def org_id(store: Store) -> int:
    return (await bootstrap(store, "acme", gateways=["plant1"])).org_id


async def test_batch_round_trips_values_ts_quality_exactly(store: Store, org_id: int) -> None:
    ingest = IngestService(store)
    readings = [("pump1", f"t{i}", T0 + i, v) for i, v in enumerate(VALUES)]
    q = [i % 3 for i in range(len(VALUES))]
    why = {i: f"reason {i}" for i in range(len(VALUES)) if q[i]}
    batch = make_batch(100, readings, q=q, why=why)

    result = await ingest.ingest_telemetry("plant1", batch)

    assert result.accepted and result.points == len(VALUES)
    async with store.sessions() as session:
        device, parent = await DeviceRepository(session, org_id).get("plant1.pump1")
        points = await PointRepository(session, org_id).range(
            device.id, tag=None, start_ms=None, end_ms=None, after=None, limit=100
        )
        latest = {v.tag: v for v in await PointRepository(session, org_id).latest(device.id)}
    assert parent == "plant1" and device.kind == "field"
    got = [(p.tag, p.ts, decode_value(p.kind, p.num, p.txt), p.quality, p.reason, p.seq)
           for p in points]
    expected = [(f"t{i}", T0 + i, v, q[i], why.get(i), 100 + i) for i, v in enumerate(VALUES)]
    assert got == expected
    for tag, ts, value, quality, _, _ in expected:
        decoded = decode_value(latest[tag].kind, latest[tag].num, latest[tag].txt)
        assert (decoded, type(decoded), latest[tag].ts, latest[tag].quality) == (
            value, type(value), ts, quality
        )
    # -0.0 and bool/int distinctions survive
    assert str(got[6][2]) == "-0.0" and got[8][2] is True and type(got[0][2]) is int


async def test_reingesting_the_same_batch_stores_nothing_new(store: Store, org_id: int) -> None:
    ingest = IngestService(store)
    batch = make_batch(0, [("pump1", "flow", T0 + i, i) for i in range(50)])
    await ingest.ingest_telemetry("plant1", batch)
    await ingest.ingest_telemetry("plant1", batch)
    overlapping = make_batch(40, [("pump1", "flow", T0 + 40 + i, 40 + i) for i in range(20)])
    await ingest.ingest_telemetry("plant1", overlapping)

    assert await _count(store, Point) == 60
    if store.dialect == "sqlite":  # asyncpg reports no executemany row count
        assert ingest.stats.stored == 60
    async with store.sessions() as session:
        row = (await session.execute(select(Latest))).scalar_one()
    assert (row.ts, row.seq) == (T0 + 59, 59)


async def test_latest_only_moves_forward(store: Store, org_id: int) -> None:
    ingest = IngestService(store)
    await ingest.ingest_telemetry("plant1", make_batch(10, [("pump1", "flow", T0 + 1000, 1.0)]))
    # an older reading delivered late (e.g. from the gateway's backlog) keeps the newer one
    await ingest.ingest_telemetry("plant1", make_batch(5, [("pump1", "flow", T0 + 10, 2.0)]))
    # within one batch, the newest per tag wins
    await ingest.ingest_telemetry(
        "plant1",
        make_batch(20, [("pump1", "flow", T0 + 3000, 4.0), ("pump1", "flow", T0 + 2000, 3.0)]),
    )
    async with store.sessions() as session:
        row = (await session.execute(select(Latest))).scalar_one()
    assert (row.num, row.ts, row.seq) == (4.0, T0 + 3000, 20)


async def test_unknown_gateway_is_counted_not_stored(store: Store, org_id: int) -> None:
    ingest = IngestService(store)
    result = await ingest.ingest_telemetry("intruder", make_batch(0, [("d", "t", T0, 1)]))
    assert not result.accepted
    assert ingest.stats.unknown_gateway == 1 and "intruder" in ingest.stats.unknown_gateways
    assert await _count(store, Point) == 0
    assert await _count(store, Device) == 1  # only plant1


async def test_field_devices_are_created_as_children(store: Store, org_id: int) -> None:
    ingest = IngestService(store)
    await ingest.ingest_telemetry(
        "plant1", make_batch(0, [("pump1", "a", T0, 1), ("valve2", "b", T0, 2)])
    )
    async with store.sessions() as session:
        children = await DeviceRepository(session, org_id).list(parent="plant1")
    assert [(d.name, d.kind, parent) for d, parent in children] == [
        ("plant1.pump1", "field", "plant1"),
        ("plant1.valve2", "field", "plant1"),
    ]


async def test_several_batches_in_one_transaction(store: Store, org_id: int) -> None:
    await bootstrap(store, "globex", gateways=["mill1"])
    ingest = IngestService(store)
    results = await ingest.ingest_telemetry_many([
        ("plant1", make_batch(0, [("pump1", "flow", T0, 1)])),
        ("nobody", make_batch(0, [("x", "y", T0, 1)])),
        ("mill1", make_batch(0, [("saw", "rpm", T0, 2)])),
    ])
    assert [r.accepted for r in results] == [True, False, True]
    assert await _count(store, Point) == 2


async def test_invalid_names_are_rejected_before_writing(store: Store, org_id: int) -> None:
    ingest = IngestService(store)
    with pytest.raises(InvalidBatch, match="device name"):
        await ingest.ingest_telemetry("plant1", make_batch(0, [("bad.name", "t", T0, 1)]))
    assert await _count(store, Point) == 0


async def test_status_and_events_set_online_flags(store: Store, org_id: int) -> None:
    ingest = IngestService(store)
    status = GatewayStatus.model_validate({
        "state": "online", "ts": T0, "version": "1.2.3", "config_hash": "abc",
        "buffer": {"depth": 5, "bytes": 4096}, "devices": {"pump1": True, "valve2": False},
    })
    assert await ingest.handle_status("plant1", status)
    assert await ingest.handle_event(
        "plant1", GatewayEvent(ts=T0, kind="device_connected", device="valve2")
    )
    assert not await ingest.handle_status("ghost", status)
    async with store.sessions() as session:
        repo = DeviceRepository(session, org_id)
        gateway, _ = await repo.get("plant1")
        pump, _ = await repo.get("plant1.pump1")
        valve, _ = await repo.get("plant1.valve2")
    assert gateway.online is True and gateway.last_seen_at is not None
    assert gateway.status is not None
    assert gateway.status["version"] == "1.2.3" and gateway.status["buffer"]["depth"] == 5
    assert pump.online is True and valve.online is True

    await ingest.handle_status("plant1", GatewayStatus(state="offline", ts=T0 + 1))
    async with store.sessions() as session:
        gateway, _ = await DeviceRepository(session, org_id).get("plant1")
    assert gateway.online is False
