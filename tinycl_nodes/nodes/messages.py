"""numpy ↔ message conversions the nodes share, each validating what comes off the wire."""

from __future__ import annotations

import re

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import state as st
from ..core.errors import ExtractorMismatchError, InputError
from ..core.head import Head
from ..core.validation import check_features
from ..interfaces import as_sequence
from ..interfaces import time_to_ns

MAX_CLASSES = 4096
MAX_FEATURES = 65536


def stamp_ns(header: Any) -> int:
    """A header's stamp in integer nanoseconds (the identity of a sample across topics)."""
    return int(time_to_ns(header.stamp))


#: the fields that make a message big (sequences and strings of our messages and sensor_msgs/Image)
_BIG_FIELDS = ("data", "weights", "bias", "state", "classes", "encoding", "class_name", "label_name", "name",
               "reason", "candidates", "extractor_hash", "channel_names", "new_class_name", "request_id")


def approx_bytes(msg: Any, depth: int = 0) -> int:
    """About how many bytes a received message holds (what a node counts when it keeps messages)."""
    total = 64
    for name in _BIG_FIELDS:
        value = getattr(msg, name, None)
        if value is None:
            continue
        if isinstance(value, (str, bytes, bytearray)):
            total += len(value)
        elif hasattr(value, "__len__"):
            total += len(value) * (getattr(value, "itemsize", 0) or 8)
    for nested in ("features", "picture", "header"):
        if depth < 2 and getattr(msg, nested, None) is not None:
            total += approx_bytes(getattr(msg, nested), depth + 1)
    return total


def features_of(msg: Any, n_features: int, extractor_hash: str = "", bound: float | None = None) -> np.ndarray:
    """The feature vector of a Features message, refused if wrong length, NaN, beyond ``bound`` (the
    extractor's calibrated range with its margin) or from another extractor."""
    if extractor_hash and msg.extractor_hash != extractor_hash:   # no hash is not "any extractor"
        raise ExtractorMismatchError(f"features from extractor {msg.extractor_hash[:12] or '(none)'}, this node "
                                     f"uses {extractor_hash[:12]}: dropped")
    return check_features(np.frombuffer(msg.data, np.float32) if isinstance(msg.data, (bytes, bytearray, memoryview))
                          else np.asarray(msg.data, np.float32), n_features, bound=bound)


def image_pixels(msg: Any, shape: tuple[int, int]) -> np.ndarray:
    """A sensor_msgs/Image of any supported encoding as uint8 grey ``shape`` (a board's 28x28
    input); InputError when it does not decode or has another size."""
    from ..images import image_of

    h, w = shape
    if (msg.height, msg.width) != (h, w):
        raise InputError(f"image is {msg.height}x{msg.width}, this node takes {h}x{w}")
    img = image_of(msg)
    if img.ndim == 2:
        return img
    import cv2
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def head_message(msg_type: type, class_info: type, head: Head, version: int, header: Any,
                 class_names: dict[int, str] | None = None, with_state: bool = False,
                 state_meta: dict[str, Any] | None = None) -> Any:
    """The ``Head`` message of a core head: linear form, classes with counts, hash, version (and
    with ``with_state`` the core state, its meta extended by ``state_meta``)."""
    W, b = head.linear()
    counts = head.sample_counts()
    names = class_names or {}
    return msg_type(
        header=header,
        classes=[class_info(id=c, name=names.get(c, str(c)), sample_count=min(int(counts.get(c, 0)), 2**32 - 1))
                 for c in head.classes],
        kind=head.kind, n_features=head.n_features, weights=as_sequence(W, "f"), bias=as_sequence(b, "f"),
        extractor_hash=head.extractor_hash, version=version, n_seen=head.n_seen,
        state=as_sequence(np.frombuffer(_state_bytes(head, state_meta), np.uint8) if with_state else [], "B"))


def _state_bytes(head: Head, meta: dict[str, Any] | None) -> bytes:
    state = head.state_dict()
    state["meta"] |= meta or {}
    return st.to_bytes(state)


@dataclass(frozen=True)
class LinearHead:
    """A head as received: enough to predict, export, or merge."""

    classes: list[int]
    names: list[str]
    counts: list[int]
    weights: np.ndarray   # (n_classes, n_features) float32
    bias: np.ndarray      # (n_classes,) float32
    kind: str
    extractor_hash: str
    version: int
    n_seen: int

    def predict(self, x: np.ndarray) -> int:
        return self.classes[int(np.argmax(self.weights @ x + self.bias))]


#: a head kind is a core class name (``Head.kind``): an identifier, so it can go anywhere (C, file names)
HEAD_KIND = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: class names are cut to this many characters where a head is received
MAX_NAME = 64


def linear_head_of(msg: Any, extractor_hash: str = "") -> LinearHead:
    """Validate a ``Head`` message: sizes, finiteness, unique class ids, and the extractor."""
    n, d = len(msg.classes), int(msg.n_features)
    if not 0 < d <= MAX_FEATURES:
        raise InputError(f"head: n_features {d} out of range")
    if n > MAX_CLASSES:
        raise InputError(f"head: {n} classes, at most {MAX_CLASSES}")
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
    ids = [int(c.id) for c in msg.classes]
    if len(set(ids)) != n:
        raise InputError("head: duplicate class ids")
    if not HEAD_KIND.fullmatch(msg.kind):
        raise InputError(f"head: kind {msg.kind[:40]!r} is not a head kind name (letters, digits, _; at most 64)")
    return LinearHead(ids, [c.name[:MAX_NAME] for c in msg.classes], [int(c.sample_count) for c in msg.classes],
                      W.reshape(n, d), b, msg.kind, msg.extractor_hash, int(msg.version), int(msg.n_seen))
