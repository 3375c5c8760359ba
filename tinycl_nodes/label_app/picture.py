"""sensor_msgs/Image → PNG bytes (mono8/8UC1, rgb8, bgr8, rgba8, bgra8), with no imaging library."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np

from ..core.errors import InputError

CHANNELS = {"mono8": 1, "8UC1": 1, "rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}
MAX_PIXELS = 4096 * 4096


def image_array(msg: Any) -> np.ndarray | None:
    """The pixels of an Image message as uint8 (h, w) or (h, w, 3|4) in RGB order; None if empty."""
    h, w = int(msg.height), int(msg.width)
    if h == 0 or w == 0:
        return None
    channels = CHANNELS.get(msg.encoding)
    if channels is None:
        raise InputError(f"picture encoding {msg.encoding!r} not supported ({', '.join(CHANNELS)})")
    if h * w > MAX_PIXELS:
        raise InputError(f"picture of {w}x{h} pixels is too large (max {MAX_PIXELS} pixels)")
    step = int(msg.step) or w * channels
    if step < w * channels:
        raise InputError(f"picture step {step} is smaller than width x channels = {w * channels}")
    raw = np.frombuffer(bytes(msg.data), np.uint8)
    if raw.size != step * h:
        raise InputError(f"picture data has {raw.size} bytes, step x height = {step * h}")
    img = raw.reshape(h, step)[:, : w * channels].reshape(h, w, channels)
    if channels == 1:
        return img[:, :, 0]
    if msg.encoding.startswith("bgr"):
        img = img[:, :, [2, 1, 0, 3][:channels]]
    return img


def png_bytes(img: np.ndarray) -> bytes:
    """A PNG file of a uint8 (h, w) grey or (h, w, 3|4) RGB(A) array."""
    img = np.ascontiguousarray(img, np.uint8)
    h, w = img.shape[:2]
    channels = 1 if img.ndim == 2 else img.shape[2]
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    rows = img.reshape(h, w * channels)
    raw = np.hstack([np.zeros((h, 1), np.uint8), rows]).tobytes()  # filter byte 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def image_png(msg: Any) -> bytes | None:
    """PNG of an Image message; None when the message carries no picture; InputError if bad."""
    img = image_array(msg)
    return None if img is None else png_bytes(img)
