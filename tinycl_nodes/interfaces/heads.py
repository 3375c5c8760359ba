"""Heads on the wire: the one registry of head kinds and the one ``Head`` message ⇄ head conversion.

A head travels as its linear form (``weights`` classes × features, ``bias``), its classes (stable id,
name, sample count), the extractor hash, a version and ``n_seen``. Its ``kind`` is the core class's
``kind`` (:data:`KINDS`, the core's registry ``core.HEADS``; the firmware's ``TINYCL_HEAD_KIND`` is
generated from it). Every sender (learner, board node, fleet bridge and aggregator, micro-ROS firmware)
and every reader (exporter, learner and labeler global heads, fleet bridge) goes through here, and a
received head is a :class:`~tinycl_nodes.core.federated.HeadSnapshot`. A streaming-LDA head that
carries its ``state`` blob travels as its sufficient statistics (means, counts, scatter: what a fleet
merges exactly, ``core/federated.py``); ``HeadSnapshot.linear()`` gives its scoring rows.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..core import HEADS
from ..core import state as st
from ..core.errors import ExtractorMismatchError, InputError, StateError
from ..core.names import MAX_NAME_CHARS
from ..core.validation import MAX_ABS_FEATURE
from ..core.federated import (MAX_CLASSES, MAX_FEATURES, MOMENTS_KIND, SLDA_KIND, HeadSnapshot, Moments,
                              snapshot_from_state)
from .arrays import as_sequence

#: head kind → core class: the names a ``Head.kind`` may carry
KINDS: Mapping[str, type] = HEADS


def check_kind(kind: str) -> str:
    """``kind`` if it names a head of the core, else InputError (one line naming the known kinds)."""
    if kind not in KINDS:
        raise InputError(f"head kind {kind!r} is not a head of the core ({', '.join(sorted(KINDS))})")
    return kind


def snapshot_of(head: Any, names: Mapping[int, str] | None = None, version: int = 0, device: str = "") -> HeadSnapshot:
    """A live core head as it is published: ``head.linear()`` and ``head.sample_counts()`` (a
    ``LatentUpperHead``'s rows are over its own embedding, so as wide as that)."""
    W, b = head.linear()
    counts = head.sample_counts()
    names = names or {}
    ids = list(head.classes)
    rows = np.asarray(W, np.float32).reshape(len(ids), -1 if ids else head.n_features)
    return HeadSnapshot(ids, [names.get(c, str(c)) for c in ids], [int(counts.get(c, 0)) for c in ids],
                        rows, b, check_kind(head.kind), head.extractor_hash, version, int(head.n_seen), device)


def to_msg(snap: HeadSnapshot, head_type: type, class_type: type, stamp: Any = None, state: bytes = b"") -> Any:
    """The ``Head`` message of a snapshot (counts clipped to uint32; ``state`` an optional blob).
    Streaming-LDA statistics go as the head's state blob, with its scoring rows as weights/bias."""
    kw: dict[str, Any] = {}
    if stamp is not None:
        kw["header"] = type(head_type().header)(stamp=stamp, frame_id="")
    if snap.moments is not None:      # an exact-mode addition: its signed statistics, the rest their view
        state = st.to_bytes(snap.moments.state_dict())
    elif snap.shared is not None:
        from ..core.federated import load_snapshot_into
        from ..core.slda import StreamingLDA
        head = StreamingLDA(snap.n_features, extractor_hash=snap.extractor_hash)
        if snap.n_classes:
            load_snapshot_into(head, snap)
        state = st.to_bytes(head.state_dict())
    W, b = snap.linear() if snap.n_classes else (snap.weights, snap.bias)
    return head_type(classes=[class_type(id=int(i), name=n, sample_count=int(min(c, 2**32 - 1)))
                              for i, n, c in zip(snap.class_ids, snap.class_names, snap.counts)],
                     kind=check_kind(snap.kind), n_features=snap.n_features if snap.n_classes else 0,
                     weights=as_sequence(W, "f"), bias=as_sequence(b, "f"),
                     extractor_hash=snap.extractor_hash, version=int(snap.version) & 0xFFFFFFFF,
                     n_seen=int(snap.n_seen), state=as_sequence(np.frombuffer(state, np.uint8), "B"), **kw)


#: the largest |weight| or |bias| a head may carry: a score then stays finite in float32 for any feature vector the
#: nodes take (MAX_FEATURES features of |x| ≤ MAX_ABS_FEATURE); weights of 1e38 were exported, their scores inf
MAX_WEIGHT = float(np.finfo(np.float32).max) / 8 / (MAX_FEATURES * MAX_ABS_FEATURE)


def from_msg(msg: Any, extractor_hash: str = "", device: str = "") -> HeadSnapshot:
    """Validate a ``Head`` message: kind, sizes, finiteness, unique classes, and (if given) the extractor."""
    n, d = len(msg.classes), int(msg.n_features)
    if n and not 0 < d <= MAX_FEATURES:
        raise InputError(f"head: n_features {d} out of range")
    if n > MAX_CLASSES:
        raise InputError(f"head: {n} classes, at most {MAX_CLASSES}")
    check_kind(msg.kind)
    long = next((c for c in msg.classes if len(c.name) > MAX_NAME_CHARS), None)
    if long is not None:       # a learner cuts names to this: a longer one went into every export and fleet round
        raise InputError(f"head: class {int(long.id)}'s name is {len(long.name)} characters, at most {MAX_NAME_CHARS}")
    if extractor_hash and msg.extractor_hash != extractor_hash:
        raise ExtractorMismatchError(f"head v{msg.version} was trained on extractor {msg.extractor_hash[:12] or '?'}, "
                                     f"this node uses {extractor_hash[:12]}: refused")
    W = np.asarray(msg.weights, np.float32)
    b = np.asarray(msg.bias, np.float32)
    if W.size != n * d:
        raise InputError(f"head: {W.size} weights for {n} classes x {d} features")
    if b.size != n:
        raise InputError(f"head: {b.size} biases for {n} classes")
    if not (np.isfinite(W).all() and np.isfinite(b).all()):
        raise InputError("head: weights contain NaN or inf")
    if W.size and np.abs(W).max() > MAX_WEIGHT or b.size and np.abs(b).max() > MAX_WEIGHT:
        raise InputError(f"head: weights beyond {MAX_WEIGHT:g}: its scores would overflow (no head learns such)")
    ids = [int(c.id) for c in msg.classes]
    if len(set(ids)) != n:
        raise InputError("head: duplicate class ids")
    blob = bytes(bytearray(msg.state)) if len(msg.state) else b""
    if blob and st.kind_of(blob) == MOMENTS_KIND:
        return _addition(msg, blob, d, device)
    if msg.kind == SLDA_KIND and blob:
        try:
            snap = snapshot_from_state(st.from_bytes(blob),
                                       {c.id: c.name for c in msg.classes}, int(msg.version), device)
        except StateError as exc:
            raise InputError(f"head: state of a {SLDA_KIND} head unusable: {exc}") from None
        snap.n_seen = int(msg.n_seen)
        return snap
    return HeadSnapshot(ids, [c.name for c in msg.classes], [int(c.sample_count) for c in msg.classes],
                        W.reshape(n, d), b, msg.kind, msg.extractor_hash, int(msg.version), int(msg.n_seen), device)


def _addition(msg: Any, blob: bytes, n_features: int, device: str) -> HeadSnapshot:
    """An exact-mode addition (``to_msg`` of a snapshot with ``moments``): its signed statistics, and their view
    made from them again (the same on every reader)."""
    try:
        mom = Moments.from_state_dict(st.from_bytes(blob))
    except StateError as exc:
        raise InputError(f"head: statistics to add unusable: {exc}") from None
    if not mom.finite():
        raise InputError("head: statistics to add contain NaN or inf")
    if n_features and mom.s.shape[1] != n_features:
        raise InputError(f"head: statistics to add of {mom.s.shape[1]} features, the head has {n_features}")
    snap = mom.snapshot(msg.kind, msg.extractor_hash, int(msg.version), int(msg.n_seen), device)
    snap.moments = mom
    return snap
