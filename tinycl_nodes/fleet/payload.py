"""The wire format of a head sent over MQTT: versioned, validated, compact.

Layout (all integers little-endian)::

    offset  size  field
    0       4     magic b"TCLH"
    4       2     wire schema version (uint16) — this build writes and reads SCHEMA_VERSION = 1
    6       2     flags (uint16), must be 0 (reserved; a non-zero value is refused)
    8       4     M = length of the metadata (uint32)
    12      M     metadata: UTF-8 JSON, validated by :class:`PayloadMeta` (pydantic, extra keys refused)
    12+M    4·C·F weights, float32 little-endian, row-major (row i = classes[i])
    ...     4·C   bias, float32 little-endian
    ...     8·F·F only if metadata ``shared`` (a StreamingLDA head's statistics): the within-class
                  scatter, float64 little-endian

Metadata besides the head: ``opt_out`` (class ids this device keeps private: the aggregator
leaves them out), ``metrics`` (the device's evaluation on its own recent data, e.g. accuracy),
``provenance`` (a global head: which head version of each device it contains), ``lineage`` (a device head: the id
of its state's life, :func:`new_lineage`; left out when empty, so an older build reads the payload).

A head of 10 classes × 64 features is ~3.4 kB (2.6 kB of floats). Decoding checks, in order:
size limit (before anything is parsed), magic, schema version, metadata JSON and schema, that
the byte count matches ``shape``, finiteness, and (when asked) fleet and extractor hash. Each
failure is a :class:`PayloadError` (or ``ExtractorMismatchError``) with a one-line message.
"""

from __future__ import annotations

import json
import re
import secrets
import struct
import time
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..core.errors import ExtractorMismatchError, TinyclError
from ..core.federated import MAX_CLASSES, MAX_COUNT, MAX_FEATURES, MAX_NAME, HeadSnapshot
from ..validation_words import error_words

MAGIC = b"TCLH"
SCHEMA_VERSION = 1
_HEADER = struct.Struct("<4sHHI")
#: default size limit of one payload (a 4096 × 64 head is ~1 MB; typical heads are a few kB)
DEFAULT_MAX_BYTES = 1 << 20
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")     # whole names only (fullmatch): "lab\n" passed ``^…$``
#: the latest wall-clock time a payload may say it was sent: 9999-12-31 (the fleet status prints it as a date; a device
#: that sent 1e300 or Infinity would stop that with an OverflowError)
LATEST_SENT_AT = 253_402_300_799.0
#: a lineage id: hex digits, drawn by :func:`new_lineage` (empty: a head of a build before lineage ids)
LINEAGE_RE = r"^[0-9a-f]{0,64}$"
#: what ``tinycl fleet check --publish`` sends, never retained: it proves the identity may write that topic, and is no
#: head (the aggregator ignores it on a device's head topic without a word; 5 bytes of b"probe" were an error there)
PROBE = b"tinycl fleet check: a probe, not a head"


def new_lineage() -> str:
    """A new life's lineage id (128 random bits): it tells a robot's heads after a wipe from its earlier ones without
    its clock, which a board with no RTC and no time sync restarts near 1970 after every reflash."""
    return secrets.token_hex(16)


def check_name(v: str) -> str:
    """A fleet, device or aggregator name: it becomes part of MQTT topics, usernames, file names."""
    if not NAME_RE.fullmatch(v):
        raise ValueError("must be 1-64 of letters, digits, '_' or '-'")
    return v


#: the one name rule every fleet model uses (pydantic checks it where the field is declared)
FleetName = Annotated[str, AfterValidator(check_name)]


class PayloadError(TinyclError):
    """A payload is malformed, oversized, of another version or otherwise unusable (one line)."""


class ClassEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: int = Field(ge=0, le=2**32 - 1)
    name: str = Field(max_length=MAX_NAME)
    count: int = Field(ge=0, le=MAX_COUNT)


class PayloadMeta(BaseModel):
    """Metadata of a head payload (the JSON part)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    schema_version: Literal[1] = Field(default=1, alias="schema")
    fleet: FleetName
    device: FleetName
    round: int = Field(ge=0, le=2**32 - 1, description="global: aggregation round; device: last round merged")
    version: int = Field(ge=0, le=2**32 - 1, description="the head's own version (learner counter)")
    extractor_hash: str = Field(max_length=128)
    kind: str = Field(min_length=1, max_length=64)
    classes: list[ClassEntry] = Field(max_length=MAX_CLASSES)
    shape: tuple[int, int]
    dtype: Literal["<f4"] = "<f4"
    n_seen: int = Field(default=0, ge=0, le=MAX_COUNT)
    sent_at: float = Field(default=0.0, ge=0, le=LATEST_SENT_AT, description="the device's clock when it sent it (s)")
    shared: bool = Field(default=False, description="a StreamingLDA scatter (F×F float64) follows the bias")
    lineage: str = Field(default="", pattern=LINEAGE_RE, description="device head: the id of the device's state's "
                                                                     "life, drawn when its state was created (empty: "
                                                                     "a build without lineage ids)")
    opt_out: list[Annotated[int, Field(ge=0, le=2**32 - 1)]] = Field(default_factory=list, max_length=MAX_CLASSES)
    metrics: dict[Annotated[str, Field(max_length=32)], float] = Field(
        default_factory=dict, max_length=16, description="the device's evaluation on its own recent data")
    provenance: dict[FleetName, Annotated[int, Field(ge=0, le=2**32 - 1)]] = Field(
        default_factory=dict, max_length=1 << 16, description="global head: device -> head version it contains")


    @model_validator(mode="after")
    def _metrics(self) -> "PayloadMeta":
        """The two metrics the aggregator reads: an accuracy in percent, the samples it weighs it by (1e308 of either
        made the round table's accuracy inf or NaN, published retained and saved)."""
        acc, n = self.metrics.get("accuracy", 0.0), self.metrics.get("samples", 0.0)
        if not 0.0 <= acc <= 100.0:
            raise ValueError(f"metrics accuracy {acc:g}: a percentage is from 0 to 100")
        if not 0.0 <= n <= MAX_COUNT:
            raise ValueError(f"metrics samples {n:g}: from 0 to {MAX_COUNT}")
        return self

    @model_validator(mode="after")
    def _shape(self) -> "PayloadMeta":
        c, f = self.shape
        if c != len(self.classes):
            raise ValueError(f"shape says {c} classes, {len(self.classes)} listed")
        if not (0 <= c <= MAX_CLASSES and (1 <= f <= MAX_FEATURES or (c == 0 and f >= 0))):
            raise ValueError(f"shape {c}x{f} out of range")
        return self


def encode(snap: HeadSnapshot, fleet: str, device: str, round: int = 0, sent_at: float | None = None, *,
           opt_out: list[int] | None = None, metrics: dict[str, float] | None = None,
           provenance: dict[str, int] | None = None, lineage: str = "") -> bytes:
    """Serialise a head snapshot (validated like a received one, so a bad head is never sent). Without ``lineage``
    the metadata has no such key: byte for byte a head of a build before lineage ids, which that build reads."""
    meta = PayloadMeta(schema=SCHEMA_VERSION, fleet=fleet, device=device, round=int(round), version=int(snap.version),
                       extractor_hash=snap.extractor_hash, kind=snap.kind,
                       classes=[ClassEntry(id=int(i), name=n, count=int(c)) for i, n, c in
                                zip(snap.class_ids, snap.class_names, snap.counts)],
                       shape=(snap.n_classes, snap.n_features), n_seen=int(snap.n_seen),
                       sent_at=time.time() if sent_at is None else float(sent_at), shared=snap.shared is not None,
                       opt_out=sorted(int(c) for c in (opt_out or [])), metrics=dict(metrics or {}),
                       provenance=dict(provenance or {}), lineage=lineage)
    meta_bytes = meta.model_dump_json(by_alias=True, exclude=None if lineage else {"lineage"}).encode()
    parts = [_HEADER.pack(MAGIC, SCHEMA_VERSION, 0, len(meta_bytes)), meta_bytes,
             np.ascontiguousarray(snap.weights, "<f4").tobytes(), np.ascontiguousarray(snap.bias, "<f4").tobytes()]
    if snap.shared is not None:
        parts.append(np.ascontiguousarray(snap.shared, "<f8").tobytes())
    return b"".join(parts)


def decode(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, extractor_hash: str | None = None,
           fleet: str | None = None) -> tuple[PayloadMeta, HeadSnapshot]:
    """Parse and validate a payload; raise PayloadError / ExtractorMismatchError with one line."""
    n = len(data)
    if data == PROBE:
        raise PayloadError("payload: a probe of `tinycl fleet check`, not a head")
    if n > max_bytes:
        raise PayloadError(f"payload: {n} bytes exceeds the limit of {max_bytes}")
    if n < _HEADER.size:
        raise PayloadError(f"payload: malformed, {n} bytes is shorter than the {_HEADER.size}-byte header")
    magic, schema, flags, m = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise PayloadError(f"payload: malformed, not a tinycl head (magic {magic!r})")
    if schema != SCHEMA_VERSION:
        raise PayloadError(f"payload: schema version {schema} is not supported (this build reads {SCHEMA_VERSION})")
    if flags != 0:
        raise PayloadError(f"payload: flags 0x{flags:04x} set, this build knows none (must be 0)")
    if _HEADER.size + m > n:
        raise PayloadError(f"payload: malformed, metadata length {m} runs past the end ({n} bytes)")
    raw = data[_HEADER.size:_HEADER.size + m]
    try:
        json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"payload: malformed metadata JSON ({type(exc).__name__})") from None
    try:
        meta = PayloadMeta.model_validate_json(raw)
    except ValidationError as exc:
        loc, msg = error_words(exc.errors()[0], "metadata")
        raise PayloadError(f"payload: bad metadata {loc}: {msg} ({exc.error_count()} error(s))") from None
    if meta.schema_version != schema:
        raise PayloadError(f"payload: header says schema {schema}, metadata says {meta.schema_version}")
    c, f = meta.shape
    expect = _HEADER.size + m + 4 * (c * f + c) + (8 * f * f if meta.shared else 0)
    if n != expect:
        raise PayloadError(f"payload: malformed, {n} bytes for a {c}x{f} head (expected {expect})")
    if fleet is not None and meta.fleet != fleet:
        raise PayloadError(f"payload: from fleet {meta.fleet!r}, this is fleet {fleet!r}")
    if extractor_hash and meta.extractor_hash != extractor_hash:
        raise ExtractorMismatchError(f"payload: head from {meta.device} was built on extractor "
                                     f"{meta.extractor_hash[:12] or '(none)'}, the fleet uses {extractor_hash[:12]}")
    floats = np.frombuffer(data, "<f4", offset=_HEADER.size + m, count=c * f + c).astype(np.float32)
    shared = (np.frombuffer(data, "<f8", offset=_HEADER.size + m + 4 * (c * f + c)).astype(np.float64).reshape(f, f)
              if meta.shared else None)
    if not np.isfinite(floats).all() or (shared is not None and not np.isfinite(shared).all()):
        raise PayloadError(f"payload: head from {meta.device} contains NaN or inf")
    try:
        snap = HeadSnapshot([e.id for e in meta.classes], [e.name for e in meta.classes],
                            [e.count for e in meta.classes], floats[:c * f].reshape(c, f), floats[c * f:],
                            meta.kind, meta.extractor_hash, meta.version, meta.n_seen, meta.device, shared)
    except TinyclError as exc:
        raise PayloadError(f"payload: {exc}") from None
    return meta, snap
