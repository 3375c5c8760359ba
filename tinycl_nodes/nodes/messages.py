"""numpy ↔ message conversions the nodes share, each validating what comes off the wire."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import state as st
from ..core.errors import ExtractorMismatchError, InputError
from ..core.head import Head
from ..core.validation import check_features
from ..interfaces import time_to_ns
from ..interfaces.convert import from_rosbags, to_rosbags
from ..interfaces.names import full_type_name
from ..interfaces.typestore import typestore
from ..interfaces.heads import snapshot_of, to_msg


def stamp_ns(header: Any) -> int:
    """A header's stamp in integer nanoseconds (the identity of a sample across topics); InputError for one no clock
    gives (negative seconds, or a nanosecond part of a second or more): a learned sample's stamp is saved with the head,
    and a negative one made the whole state file unloadable at the next start."""
    sec, nanosec = int(header.stamp.sec), int(header.stamp.nanosec)
    if sec < 0 or not 0 <= nanosec < 1_000_000_000:
        raise InputError(f"header stamp {sec} s {nanosec} ns: no clock gives it: dropped")
    return int(time_to_ns(header.stamp))


def message_bytes(msg: Any, ros_type: str) -> bytes:
    """A message as CDR bytes, whichever bus it came from (what a node's journal keeps: ``message_of``)."""
    name = full_type_name(ros_type)
    return bytes(typestore().serialize_cdr(to_rosbags(msg, name), name))


def message_of(bus: Any, ros_type: str, data: bytes) -> Any:
    """The message of :func:`message_bytes`, made of ``bus``'s own types (as its callbacks receive them)."""
    return from_rosbags(typestore().deserialize_cdr(data, full_type_name(ros_type)), make=bus.msg)


def label_source(msg: Any) -> str:
    """A LabeledFeatures message's ``source`` in words (its constants: PSEUDO, HUMAN, GROUND_TRUTH)."""
    return {msg.PSEUDO: "pseudo-label", msg.HUMAN: "a person's answer",
            msg.GROUND_TRUTH: "ground truth"}.get(msg.source, f"source {msg.source}")


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


#: the longest text one field of a message a node learns from may hold (a frame id, a hash, a class name: tens of
#: characters): such a message is journaled as it came, and one with a 64 KB frame id was 64 KB on disk
MAX_TEXT_CHARS = 1024


def check_texts(msg: Any, depth: int = 0) -> None:
    """InputError naming the first text field of ``msg`` (or of its header or features) longer than MAX_TEXT_CHARS."""
    for name in (*_BIG_FIELDS, "frame_id"):
        value = getattr(msg, name, None)
        if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
            where = "features." if depth and name != "frame_id" else ""
            raise InputError(f"{where}{name} of {len(value)} characters, at most {MAX_TEXT_CHARS}: dropped")
    for nested in ("features", "header"):
        if depth < 2 and getattr(msg, nested, None) is not None:
            check_texts(getattr(msg, nested), depth + 1)


def check_labeled(msg: Any) -> None:
    """InputError for a LabeledFeatures message no labeler sends: an oversized text (:func:`check_texts`), a
    confidence that is not a number from 0 to 1 (a NaN one passed every ``min_confidence``: it was learned), or a
    source other than PSEUDO, HUMAN and GROUND_TRUTH."""
    check_texts(msg)
    stamp_ns(msg.header)
    conf = float(msg.confidence)
    if not 0.0 <= conf <= 1.0:
        raise InputError(f"confidence {conf:g}: must be from 0 to 1: dropped")
    if msg.source not in (msg.PSEUDO, msg.HUMAN, msg.GROUND_TRUTH):
        raise InputError(f"source {msg.source}: none of PSEUDO ({msg.PSEUDO}), HUMAN ({msg.HUMAN}) and GROUND_TRUTH "
                         f"({msg.GROUND_TRUTH}): dropped")


def features_of(msg: Any, n_features: int, extractor_hash: str = "", bound: float | None = None) -> np.ndarray:
    """The feature vector of a Features message, refused if wrong length, NaN, beyond ``bound`` (the
    extractor's calibrated range with its margin), from another extractor or with an oversized text
    (:func:`check_texts`) or a stamp no clock gives (:func:`stamp_ns`)."""
    check_texts(msg)
    stamp_ns(msg.header)
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
    """The ``Head`` message of a live core head (``interfaces.heads``), optionally with its state blob
    (its meta extended by ``state_meta``)."""
    state = b""
    if with_state:
        sd = head.state_dict()
        sd["meta"] |= state_meta or {}
        state = st.to_bytes(sd)
    msg = to_msg(snapshot_of(head, class_names, version), msg_type, class_info, state=state)
    msg.header = header
    return msg
