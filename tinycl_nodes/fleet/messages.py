"""``Head`` bus messages ⇄ :class:`~tinycl_nodes.core.federated.HeadSnapshot`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import InputError
from ..core.federated import HeadSnapshot
from ..interfaces import as_sequence


def snapshot_from_msg(msg: Any, device: str = "") -> HeadSnapshot:
    """A snapshot of a ``Head`` message (weights row-major ``len(classes) × n_features``)."""
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
    """A ``Head`` message of a snapshot (``state`` left empty; counts clipped to uint32)."""
    kw: dict[str, Any] = {}
    if stamp is not None:
        kw["header"] = type(head_type().header)(stamp=stamp, frame_id="")
    return head_type(classes=[class_type(id=int(i), name=n, sample_count=int(min(c, 2**32 - 1)))
                              for i, n, c in zip(snap.class_ids, snap.class_names, snap.counts)],
                     kind=snap.kind, n_features=snap.n_features if snap.n_classes else 0,
                     weights=as_sequence(snap.weights, "f"),
                     bias=as_sequence(snap.bias, "f"), extractor_hash=snap.extractor_hash,
                     version=int(snap.version) & 0xFFFFFFFF, n_seen=int(snap.n_seen), **kw)
