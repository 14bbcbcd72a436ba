"""Bulk import of devices from CSV or JSON, with a report per row.

A row is a device as ``POST /devices`` takes it. ``mode=create`` only registers new
devices; ``mode=upsert`` (the default) also changes existing ones, touching only the
fields the row gives (a JSON object's keys; a CSV file's columns, where an empty cell
clears). A row's ``kind`` and ``parent`` may be left out for a field device: its dotted
name names its gateway.

Rows are independent: each runs in its own savepoint, so a bad row is reported and the
others are kept. ``atomic`` turns that into all or nothing (422 with the report), and
``dry_run`` reports what would happen and writes nothing.

CSV: UTF-8, a header row of ``name, kind, parent, product, cohort, labels, description``
(any subset, ``name`` required) and ``attr.<key>`` columns (string values; empty cells
are left out of ``attributes``); ``labels`` are separated by ``;``. A row's number is its
line in the file (the header is line 1). JSON: an array of objects; a row's number is
its 1-based index.
"""

from __future__ import annotations

import csv
import enum
import io
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import false, update
from sqlalchemy.ext.asyncio import AsyncSession

from cloud.api.schemas import DeviceCreate, ImportReport, ImportRow
from cloud.api.schemas.registry import ImportStatus
from cloud.auth.principal import AuditActor
from cloud.devices import UPDATABLE, Placements, change_device, insert_device
from cloud.errors import (
    AlreadyExists,
    CloudError,
    InvalidParameter,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from cloud.store.devices import DeviceRepository, DeviceView
from cloud.store.models import DeviceKind, Org

MAX_ROWS = 10_000
CSV_COLUMNS = ("name", "kind", "parent", "product", "cohort", "labels", "description")
ATTR_PREFIX = "attr."
LABEL_SEPARATOR = ";"
CSV_TYPE = "text/csv"
JSON_TYPE = "application/json"


class ImportMode(enum.StrEnum):
    CREATE = "create"
    UPSERT = "upsert"



class ImportFailed(InvalidParameter):
    """An atomic import with a failing row: nothing was written; ``report`` says why."""

    slug, title = "import-failed", "Import failed"


@dataclass(slots=True)
class SourceRow:
    """One row as parsed: the device fields it gives (``DeviceCreate`` input), or why it
    could not be parsed."""

    row: int
    fields: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def name(self) -> str | None:
        name = self.fields.get("name")
        return name if isinstance(name, str) and name else None


# -- parsing -------------------------------------------------------------------------------


def parse(content_type: str, body: bytes) -> list[SourceRow]:
    """The rows of a CSV or JSON body. Raises :class:`UnsupportedMediaType`,
    :class:`InvalidParameter` (malformed body, naming the line) and
    :class:`PayloadTooLarge` (more than :data:`MAX_ROWS` rows)."""
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type == CSV_TYPE:
        rows = parse_csv(body)
    elif media_type == JSON_TYPE:
        rows = parse_json(body)
    else:
        raise UnsupportedMediaType(
            f"send the devices as {CSV_TYPE} or {JSON_TYPE}, not {media_type or 'no type'!r}"
        )
    if len(rows) > MAX_ROWS:
        raise PayloadTooLarge(
            f"at most {MAX_ROWS} rows per import; this one has {len(rows)}: split the file"
        )
    return rows


def parse_csv(body: bytes) -> list[SourceRow]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        raise InvalidParameter(
            f"line {line}: not valid UTF-8 (byte 0x{body[exc.start]:02x}); save the file "
            "as UTF-8",
            field="body",
        ) from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[SourceRow] = []
    try:
        columns: list[str] | None = None
        next_line = 1
        for record in reader:
            line, next_line = next_line, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue  # blank line
            if columns is None:
                columns = _columns(record, line)
            elif len(record) != len(columns):
                rows.append(SourceRow(line, error=(
                    f"{len(record)} fields where the header has {len(columns)}"
                )))
            else:
                rows.append(SourceRow(line, _csv_fields(columns, record)))
    except csv.Error as exc:
        raise InvalidParameter(
            f"line {reader.line_num}: malformed CSV: {exc}", field="body"
        ) from exc
    if columns is None:
        raise InvalidParameter("empty CSV: expected a header row naming the columns",
                               field="body")
    return rows


def _columns(header: list[str], line: int) -> list[str]:
    columns: list[str] = []
    for cell in header:
        column = cell.strip()
        if column.lower() in CSV_COLUMNS:
            column = column.lower()
        elif not (column.lower().startswith(ATTR_PREFIX) and len(column) > len(ATTR_PREFIX)):
            raise InvalidParameter(
                f"line {line}: unknown column {column!r}; the columns are "
                f"{', '.join(CSV_COLUMNS)} and attr.<key>",
                field="body",
            )
        if column in columns:
            raise InvalidParameter(f"line {line}: column {column!r} appears twice",
                                   field="body")
        columns.append(column)
    if "name" not in columns:
        raise InvalidParameter(f"line {line}: the header has no 'name' column", field="body")
    return columns


def _csv_fields(columns: list[str], record: list[str]) -> dict[str, Any]:
    """The fields a CSV record gives: every column of the header, an empty cell clearing
    the field (empty ``kind``/``parent`` cells are left out: they have defaults)."""
    fields: dict[str, Any] = {}
    attributes: dict[str, str] | None = None
    for column, cell in zip(columns, record, strict=True):
        value = cell.strip()
        if column.lower().startswith(ATTR_PREFIX):
            attributes = {} if attributes is None else attributes
            if value:
                attributes[column[len(ATTR_PREFIX):]] = value
        elif column == "labels":
            fields["labels"] = [
                label.strip() for label in value.split(LABEL_SEPARATOR) if label.strip()
            ]
        elif column in ("kind", "parent"):
            if value:
                fields[column] = value
        elif column in ("product", "cohort"):
            fields[column] = value or None
        else:
            fields[column] = value
    if attributes is not None:
        fields["attributes"] = attributes
    return fields


def parse_json(body: bytes) -> list[SourceRow]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidParameter(f"malformed JSON: {exc}", field="body") from exc
    if not isinstance(data, list):
        raise InvalidParameter("expected a JSON array of device objects", field="body")
    return [
        SourceRow(index, item) if isinstance(item, dict)
        else SourceRow(index, error="expected an object with the fields of a device")
        for index, item in enumerate(data, start=1)
    ]


def _with_kind(fields: dict[str, Any]) -> dict[str, Any]:
    """``kind``/``parent`` filled in for a dotted (field device) name that lacks them."""
    name = fields.get("name")
    if not isinstance(name, str):
        return fields
    filled = dict(fields)
    if "kind" not in filled and ("parent" in filled or "." in name):
        filled["kind"] = DeviceKind.FIELD.value
    if filled.get("kind") == DeviceKind.FIELD.value and "parent" not in filled and "." in name:
        filled["parent"] = name.partition(".")[0]
    return filled


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "row"
        parts.append(f"{where}: {str(error['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)


def _message(exc: CloudError) -> str:
    if isinstance(exc, AlreadyExists):
        return f"name: {exc.detail}"
    field_name = exc.extra.get("field")
    if field_name and not exc.detail.startswith(f"{field_name}:"):
        return f"{field_name}: {exc.detail}"
    return exc.detail


# -- applying ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Planned:
    """A valid row: the device it describes and which fields it gives."""

    row: int
    spec: DeviceCreate
    given: frozenset[str]


class _Importer:
    def __init__(self, session: AsyncSession, actor: AuditActor, mode: ImportMode) -> None:
        self.session = session
        self.actor = actor
        self.mode = mode
        self.placements = Placements(session, actor.org_id)
        self.repo = DeviceRepository(session, actor.org_id)
        self.views: dict[str, DeviceView] = {}
        # plain values: an ORM row touched by a rolled-back savepoint is expired and could
        # not be read again without I/O
        self.kinds: dict[str, tuple[int, str]] = {}
        self.seen: dict[str, int] = {}

    def plan(self, source: SourceRow) -> ImportRow | _Planned:
        """The row validated (no I/O), or its error."""
        name = source.name
        if source.error is not None:
            return ImportRow(row=source.row, name=name, status="error", error=source.error)
        if name is None:
            return ImportRow(row=source.row, status="error", error="name: required")
        if name in self.seen:
            return ImportRow(row=source.row, name=name, status="error", error=(
                f"name: {name!r} is already in row {self.seen[name]}"
            ))
        self.seen[name] = source.row
        fields = _with_kind(source.fields)
        try:
            spec = DeviceCreate.model_validate(fields)
        except ValidationError as exc:
            return ImportRow(row=source.row, name=name, status="error", error=_describe(exc))
        return _Planned(source.row, spec, frozenset(fields))

    async def prefetch(self, planned: list[_Planned]) -> None:
        """Load the existing devices the valid rows name (as devices or parents) in a few
        queries rather than one per row."""
        names: list[str] = []
        for item in planned:
            names.append(item.spec.name)
            if item.spec.parent is not None:
                names.append(item.spec.parent)
        self.views = await self.repo.views(names)
        self.kinds = {n: (v.device.id, v.device.kind) for n, v in self.views.items()}

    async def apply(self, item: _Planned) -> ImportRow:
        name = item.spec.name
        try:
            async with self.session.begin_nested():
                status, view = await self._apply(item.spec, item.given)
        except CloudError as exc:
            return ImportRow(row=item.row, name=name, status="error", error=_message(exc))
        if view is not None:
            self.views[name] = view
            self.kinds[name] = (view.device.id, view.device.kind)
        return ImportRow(row=item.row, name=name, status=status)

    async def _apply(
        self, spec: DeviceCreate, given: frozenset[str]
    ) -> tuple[ImportStatus, DeviceView | None]:
        existing = self.views.get(spec.name)
        if existing is None:
            view = await insert_device(
                self.session, self.actor, spec, placements=self.placements,
                parent_id=self._parent_id(spec), action="device.import",
            )
            return "created", view
        if self.mode is ImportMode.CREATE:
            raise AlreadyExists(
                f"device {spec.name!r} already exists (mode=create changes no device; "
                "use mode=upsert)"
            )
        kind = existing.device.kind
        if kind != spec.kind.value:
            raise InvalidParameter(
                f"kind: {spec.name!r} is a {kind} device; a device's kind cannot change",
                field="kind",
            )
        changes = {f: getattr(spec, f) for f in UPDATABLE if f in given}
        changed = await change_device(
            self.session, self.actor, existing, changes, placements=self.placements,
            action="device.import",
        )
        return ("unchanged", None) if changed is None else ("updated", changed)

    def _parent_id(self, spec: DeviceCreate) -> int | None:
        if spec.parent is None:
            return None
        found = self.kinds.get(spec.parent)
        if found is None or found[1] != DeviceKind.GATEWAY.value:
            raise InvalidParameter(f"parent: no gateway named {spec.parent!r}", field="parent")
        return found[0]


async def _begin(session: AsyncSession, org_id: int) -> None:
    """Make sure the database transaction is open before the first savepoint.

    SQLite's driver only sends BEGIN before a data-changing statement; a SAVEPOINT sent
    first would itself open the transaction, and releasing it would commit the row no
    matter what follows (dry run, atomic). A no-op UPDATE makes the driver begin.
    """
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(
            update(Org).where(Org.id == org_id, false()).values(name=Org.name)
        )


async def import_devices(
    session: AsyncSession,
    actor: AuditActor,
    *,
    content_type: str,
    body: bytes,
    mode: ImportMode = ImportMode.UPSERT,
    dry_run: bool = False,
    atomic: bool = False,
) -> ImportReport:
    """Import the devices of ``body`` into the actor's org and commit (unless ``dry_run``
    or an ``atomic`` import has a failed row: then nothing is written). Each created or
    updated device gets a ``device.import`` audit entry. Raises the errors of
    :func:`parse`, and :class:`ImportFailed` (422, carrying the report) for a failed
    atomic import."""
    rows = parse(content_type, body)
    importer = _Importer(session, actor, mode)
    plans = [importer.plan(source) for source in rows]
    await importer.prefetch([plan for plan in plans if isinstance(plan, _Planned)])
    await _begin(session, actor.org_id)
    report = ImportReport(dry_run=dry_run)
    for plan in plans:
        result = await importer.apply(plan) if isinstance(plan, _Planned) else plan
        report.rows.append(result)
        if result.status == "error":
            report.failed += 1
        else:
            setattr(report, result.status, getattr(report, result.status) + 1)
    if dry_run or (atomic and report.failed):
        await session.rollback()
    else:
        await session.commit()
    if atomic and report.failed:
        raise ImportFailed(
            f"{report.failed} of {len(rows)} rows failed, so nothing was imported "
            "(atomic); see 'report'",
            report=report.model_dump(mode="json"),
        )
    return report
