"""The wire contract between gateways and the cloud (DESIGN §4).

Pure pydantic and standard library: the gateway imports this module and nothing else
from ``cloud``. Every payload is JSON; the telemetry batch is columnar so that one
message carries thousands of readings with each device/tag name sent once.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

PROTOCOL_VERSION: Literal[1] = 1
TOPIC_ROOT = "fg/v1"
MAX_BATCH_POINTS = 100_000

TELEMETRY = "telemetry"
STATUS = "status"
EVENTS = "events"
CMD = "cmd"
CMD_RESULT = "cmd-result"

TELEMETRY_SUBSCRIPTION = f"{TOPIC_ROOT}/+/{TELEMETRY}"
DEFAULT_SHARE_GROUP = "fieldgate"
SHARED_TELEMETRY_SUBSCRIPTION = f"$share/{DEFAULT_SHARE_GROUP}/{TELEMETRY_SUBSCRIPTION}"
STATUS_SUBSCRIPTION = f"{TOPIC_ROOT}/+/{STATUS}"
EVENTS_SUBSCRIPTION = f"{TOPIC_ROOT}/+/{EVENTS}"
CMD_RESULT_SUBSCRIPTION = f"{TOPIC_ROOT}/+/{CMD_RESULT}/+"

WireValue = bool | int | float | str | None
QualityCode = Annotated[int, Field(ge=0, le=2)]
"""0 good, 1 uncertain, 2 bad (the values of ``adapters.base.Quality``)."""


def topic(gateway_id: str, leaf: str, request_id: str | None = None) -> str:
    """``fg/v1/{gateway_id}/{leaf}`` or ``fg/v1/{gateway_id}/{leaf}/{request_id}``."""
    base = f"{TOPIC_ROOT}/{gateway_id}/{leaf}"
    return f"{base}/{request_id}" if request_id is not None else base


def shared_subscription(topic_filter: str, group: str = DEFAULT_SHARE_GROUP) -> str:
    """MQTT shared subscription: the broker hands each message to one member of ``group``,
    so several cloud nodes split the telemetry load."""
    return f"$share/{group}/{topic_filter}"


class TopicParts(BaseModel):
    gateway_id: str
    leaf: str
    request_id: str | None = None


def parse_topic(name: str) -> TopicParts | None:
    """Split a topic of the contract; ``None`` for anything outside ``fg/v1/``."""
    parts = name.split("/")
    if len(parts) < 4 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT or not parts[2]:
        return None
    if len(parts) == 4:
        return TopicParts(gateway_id=parts[2], leaf=parts[3])
    if len(parts) == 5 and parts[3] in (CMD, CMD_RESULT) and parts[4]:
        return TopicParts(gateway_id=parts[2], leaf=parts[3], request_id=parts[4])
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TelemetryBatch(_Strict):
    """A batch of readings in columnar form.

    Reading ``i`` is ``series[s[i]]`` (device, tag) at time ``t[i]`` (ms since epoch) with
    value ``val[i]``, quality ``q[i]`` (all good when ``q`` is absent), reason
    ``why[str(i)]`` when not good, and sequence number ``seq[i]``, or ``first + i`` when
    ``seq`` is absent (the usual case: the forwarder sends contiguous ranges).
    """

    v: Literal[1] = PROTOCOL_VERSION
    first: int = Field(ge=0)
    seq: list[int] | None = None
    series: list[tuple[str, str]]
    s: list[int]
    t: list[int]
    val: list[WireValue]
    q: list[QualityCode] | None = None
    why: dict[str, str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TelemetryBatch:
        n = len(self.s)
        if n == 0:
            raise ValueError("a batch holds at least one reading")
        if n > MAX_BATCH_POINTS:
            raise ValueError(f"a batch holds at most {MAX_BATCH_POINTS} readings, got {n}")
        for name, column in (("t", self.t), ("val", self.val), ("q", self.q), ("seq", self.seq)):
            if column is not None and len(column) != n:
                raise ValueError(f"column {name!r} has {len(column)} entries, expected {n}")
        if self.s and (min(self.s) < 0 or max(self.s) >= len(self.series)):
            raise ValueError(f"series index out of range 0..{len(self.series) - 1}")
        seq = self.seq
        if seq is not None and any(b <= a for a, b in itertools.pairwise(seq)):
            raise ValueError("seq must be strictly increasing")
        if self.why:
            for key in self.why:
                if not key.isdigit() or int(key) >= n:
                    raise ValueError(f"why has key {key!r}, expected a reading index below {n}")
        return self

    def __len__(self) -> int:
        return len(self.s)

    def sequence_numbers(self) -> list[int]:
        if self.seq is not None:
            return self.seq
        return list(range(self.first, self.first + len(self.s)))

    @property
    def last(self) -> int:
        return self.seq[-1] if self.seq is not None else self.first + len(self.s) - 1


def encode_batch(
    seqs: list[int],
    series: list[tuple[str, str]],
    s: list[int],
    t: list[int],
    val: list[WireValue],
    q: list[int],
    why: dict[int, str],
) -> bytes:
    """Serialise columns straight to JSON bytes without building a model (hot path).

    ``q`` may be all zeros; it is omitted then. ``seqs`` is sent as ``first`` alone
    when contiguous.
    """
    first = seqs[0]
    body: dict[str, object] = {"v": PROTOCOL_VERSION, "first": first}
    if seqs[-1] - first != len(seqs) - 1:
        body["seq"] = seqs
    body["series"] = series
    body["s"] = s
    body["t"] = t
    body["val"] = val
    if any(q):
        body["q"] = q
    if why:
        body["why"] = {str(k): v for k, v in why.items()}
    return orjson.dumps(body)


def decode_batch(payload: bytes) -> TelemetryBatch:
    """Parse and validate a telemetry payload; raises ``pydantic.ValidationError``."""
    return TelemetryBatch.model_validate_json(payload)


class BufferStatus(_Strict):
    depth: int = Field(ge=0, description="readings waiting to be delivered")
    bytes: int = Field(ge=0, description="size of the buffer file")
    oldest_ts: int | None = Field(default=None, description="sample time of the oldest reading")
    dropped: int = Field(default=0, ge=0, description="readings dropped by the overflow policy")
    last_seq: int | None = Field(default=None, description="highest sequence number accepted")
    error: str | None = Field(
        default=None, description="why the buffer file refuses writes (e.g. disk full), if it does"
    )


class GatewayStatus(_Strict):
    """Retained on ``status``; the Last Will carries ``state: offline``."""

    state: Literal["online", "offline"]
    ts: int
    version: str | None = None
    config_hash: str | None = None
    buffer: BufferStatus | None = None
    devices: dict[str, bool] | None = Field(
        default=None, description="field device name → connected"
    )


class GatewayEvent(_Strict):
    ts: int
    kind: str = Field(
        description="device_connected, device_disconnected, buffer_overflow, buffer_error, ..."
    )
    device: str | None = None
    message: str | None = None
    data: dict[str, WireValue] | None = None


CommandAction = Literal["write", "read", "reload_config"]


class Command(_Strict):
    """Sent on ``cmd/{id}``. The gateway refuses it when ``deadline`` (ms) has passed, so a
    command queued by the broker while the gateway was offline never runs late."""

    id: str
    action: CommandAction
    device: str | None = None
    tag: str | None = None
    value: WireValue = None
    deadline: int | None = None


CommandErrorCode = Literal[
    "bad_request",
    "unknown_device",
    "unknown_tag",
    "read_only",
    "invalid_value",
    "device_error",
    "device_offline",
    "timeout",
    "expired",
    "internal",
]


class CommandResult(_Strict):
    """Sent on ``cmd-result/{id}``."""

    id: str
    ok: bool
    ts: int
    value: WireValue = None
    quality: QualityCode | None = None
    error: str | None = None
    code: CommandErrorCode | None = None
