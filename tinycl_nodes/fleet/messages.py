"""``Head`` bus messages ⇄ :class:`~tinycl_nodes.core.federated.HeadSnapshot`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import state as st
from ..core.errors import InputError, StateError
from ..core.federated import SLDA_KIND, HeadSnapshot, snapshot_from_state
from ..interfaces import as_sequence


def snapshot_from_msg(msg: Any, device: str = "") -> HeadSnapshot:
    """A snapshot of a ``Head`` message (weights row-major ``len(classes) × n_features``).

    A streaming-LDA head with its ``state`` blob is read as its statistics (means, counts,
    scatter: what a fleet merges exactly); without it, as its linear rows.
    """
    if msg.kind == SLDA_KIND and len(msg.state):
        try:
            state = st.from_bytes(bytes(bytearray(msg.state)))
            snap = snapshot_from_state(state, {c.id: c.name for c in msg.classes}, int(msg.version), device)
        except StateError as exc:
            raise InputError(f"Head: state of a {SLDA_KIND} head unusable: {exc}") from None
        snap.n_seen = int(msg.n_seen)
        return snap
    C, F = len(msg.classes), int(msg.n_features)
    w = np.asarray(msg.weights, np.float32)
    if w.size != C * F:
        raise InputError(f"Head: {w.size} weights for {C} classes x {F} features")
    b = np.asarray(msg.bias, np.float32)
    if b.size != C:
        raise InputError(f"Head: {b.size} biases for {C} classes")
    return HeadSnapshot([c.id for c in msg.classes], [c.name for c in msg.classes],
                        [c.sample_count for c in msg.classes], w.reshape(C, F), b, msg.kind,
                        msg.extractor_hash, int(msg.version), int(msg.n_seen), device)


def msg_from_snapshot(snap: HeadSnapshot, head_type: type, class_type: type, stamp: Any = None) -> Any:
    """A ``Head`` message of a snapshot (counts clipped to uint32). Streaming-LDA statistics go as
    the head's state blob (``state``), with its scoring rows as ``weights``/``bias``."""
    kw: dict[str, Any] = {}
    if stamp is not None:
        kw["header"] = type(head_type().header)(stamp=stamp, frame_id="")
    weights, bias = snap.weights, snap.bias
    if snap.shared is not None:
        from ..core.federated import load_snapshot_into
        from ..core.slda import StreamingLDA
        head = StreamingLDA(snap.n_features, extractor_hash=snap.extractor_hash)
        if snap.n_classes:
            load_snapshot_into(head, snap)
            weights, bias = snap.linear()
        kw["state"] = as_sequence(np.frombuffer(st.to_bytes(head.state_dict()), np.uint8), "B")
    return head_type(classes=[class_type(id=int(i), name=n, sample_count=int(min(c, 2**32 - 1)))
                              for i, n, c in zip(snap.class_ids, snap.class_names, snap.counts)],
                     kind=snap.kind, n_features=snap.n_features if snap.n_classes else 0,
                     weights=as_sequence(weights, "f"),
                     bias=as_sequence(bias, "f"), extractor_hash=snap.extractor_hash,
                     version=int(snap.version) & 0xFFFFFFFF, n_seen=int(snap.n_seen), **kw)
