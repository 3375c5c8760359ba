"""numpy ↔ message conversions the nodes share, each validating what comes off the wire."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import state as st
from ..core.errors import ExtractorMismatchError, InputError
from ..core.head import Head
from ..core.validation import check_features
from ..interfaces import time_to_ns
from ..interfaces.heads import snapshot_of, to_msg


def stamp_ns(header: Any) -> int:
    """A header's stamp in integer nanoseconds (the identity of a sample across topics)."""
    return int(time_to_ns(header.stamp))


def features_of(msg: Any, n_features: int, extractor_hash: str = "") -> np.ndarray:
    """The feature vector of a Features message, refused if wrong length, NaN or other extractor."""
    if extractor_hash and msg.extractor_hash and msg.extractor_hash != extractor_hash:
        raise ExtractorMismatchError(f"features from extractor {msg.extractor_hash[:12]}, this node uses "
                                     f"{extractor_hash[:12]}: dropped")
    return check_features(np.frombuffer(msg.data, np.float32) if isinstance(msg.data, (bytes, bytearray, memoryview))
                          else np.asarray(msg.data, np.float32), n_features)


def image_pixels(msg: Any, shape: tuple[int, int]) -> np.ndarray:
    """A mono8 (or 8UC1 / rgb8, averaged) sensor_msgs/Image as uint8 ``shape``; InputError otherwise."""
    h, w = shape
    if (msg.height, msg.width) != (h, w):
        raise InputError(f"image is {msg.height}x{msg.width}, the extractor takes {h}x{w}")
    channels = {"mono8": 1, "8UC1": 1, "rgb8": 3, "bgr8": 3}.get(msg.encoding)
    if channels is None:
        raise InputError(f"image encoding {msg.encoding!r} not supported (mono8, 8UC1, rgb8, bgr8)")
    if msg.step < w * channels:
        raise InputError(f"image step {msg.step} is smaller than width x channels = {w * channels}")
    raw = np.frombuffer(bytes(msg.data), np.uint8)
    if raw.size != msg.step * h:
        raise InputError(f"image data has {raw.size} bytes, step x height = {msg.step * h}")
    img = raw.reshape(h, msg.step)[:, : w * channels].reshape(h, w, channels)
    return img[:, :, 0] if channels == 1 else img.mean(axis=2).round().astype(np.uint8)


def head_message(msg_type: type, class_info: type, head: Head, version: int, header: Any,
                 class_names: dict[int, str] | None = None, with_state: bool = False) -> Any:
    """The ``Head`` message of a live core head (``interfaces.heads``), optionally with its state blob."""
    state = st.to_bytes(head.state_dict()) if with_state else b""
    msg = to_msg(snapshot_of(head, class_names, version), msg_type, class_info, state=state)
    msg.header = header
    return msg
