"""Affine int8 quantisation of feature vectors: ``real = scale · (q − zero_point)``.

Asymmetric by default (a zero point): latent features after a ReLU are one-sided, and a
symmetric int8 grid would leave half of its 256 codes unused, doubling the rounding step. The
grid always contains 0.0 exactly (TFLite / ONNX convention), so zero activations and zero
padding survive quantisation. ``fit(..., symmetric=True)`` gives ``zero_point = 0`` for signed
features centred on zero. Values outside the calibrated range saturate at −128 / 127.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .errors import InputError, StateError
from .validation import check_positive

QMIN, QMAX = -128, 127


class Int8Quantizer:
    """``q = clip(round(x / scale) + zero_point, −128, 127)``; ``x ≈ scale · (q − zero_point)``."""

    def __init__(self, scale: float, zero_point: int = 0) -> None:
        self.scale = check_positive(scale, "scale")
        if (isinstance(zero_point, (bool, np.bool_)) or not isinstance(zero_point, numbers.Integral)
                or not QMIN <= int(zero_point) <= QMAX):
            raise InputError(f"zero_point: must be an int in [{QMIN}, {QMAX}], got {zero_point!r}")
        self.zero_point = int(zero_point)

    @classmethod
    def fit(cls, x: Any, margin: float = 0.1, symmetric: bool = False) -> "Int8Quantizer":
        """Calibrate on data ``x`` (any shape): its range (including 0), each end pushed ``margin``
        (a fraction) further from 0.

        The margin leaves room for later samples slightly outside the calibration data (they
        would saturate otherwise) at the price of a ``1 + margin`` coarser grid.
        """
        arr = np.asarray(x, dtype=np.float64)
        if arr.size == 0 or not np.isfinite(arr).all():
            raise InputError("quantizer calibration: data must be non-empty and finite")
        margin = check_positive(margin, "margin", allow_zero=True)
        lo, hi = min(float(arr.min()), 0.0), max(float(arr.max()), 0.0)
        if symmetric:
            bound = max(-lo, hi) * (1.0 + margin)
            scale = bound / QMAX if bound > 0 else 1.0
            return cls(scale, 0)
        lo, hi = lo * (1.0 + margin), hi * (1.0 + margin)   # away from 0: one-sided stays one-sided
        if hi - lo <= 0:
            return cls(1.0, 0)
        scale = (hi - lo) / (QMAX - QMIN)
        zero_point = int(np.clip(round(QMIN - lo / scale), QMIN, QMAX))
        return cls(scale, zero_point)

    def quantize(self, x: Any) -> np.ndarray:
        """Finite float array → int8 array of the same shape (round half to even, saturating)."""
        q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(self.scale)) + self.zero_point
        return np.clip(q, QMIN, QMAX).astype(np.int8)

    def dequantize(self, q: Any) -> np.ndarray:
        """int8 array → float32 array ``scale · (q − zero_point)``."""
        out = np.asarray(q, dtype=np.float32) - np.float32(self.zero_point)
        out *= np.float32(self.scale)
        return out

    @property
    def step(self) -> float:
        """The rounding step (largest error inside the range is ``step / 2``)."""
        return self.scale

    def to_dict(self) -> dict[str, Any]:
        """JSON form (floats round-trip exactly through ``json``)."""
        return {"scale": self.scale, "zero_point": self.zero_point}

    @classmethod
    def from_dict(cls, d: Any) -> "Int8Quantizer":
        """Inverse of :meth:`to_dict`; StateError on anything malformed."""
        if not isinstance(d, dict):
            raise StateError("state: quantizer must be a dict with scale and zero_point")
        try:
            return cls(d["scale"], d["zero_point"])
        except (KeyError, InputError) as exc:
            raise StateError(f"state: bad quantizer ({exc})") from None

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Int8Quantizer) and self.scale == other.scale
                and self.zero_point == other.zero_point)

    def __repr__(self) -> str:
        return f"Int8Quantizer(scale={self.scale!r}, zero_point={self.zero_point})"


class ChannelInt8Quantizer:
    """Per-channel affine int8 grid for flattened ``(C, S)`` activations (quantized latent replay).

    Channel ``c`` is the slice ``[c·S, (c+1)·S)`` of a flattened NCHW activation; each has its own
    :class:`Int8Quantizer` grid, so a channel with a small range is not crushed by a large one.
    Costs 8 bytes per channel (scale + zero point) next to the codes.
    """

    def __init__(self, scales: Any, zero_points: Any, channel_size: int) -> None:
        self.grids = [Int8Quantizer(float(s), int(z)) for s, z in zip(np.ravel(scales), np.ravel(zero_points))]
        if not self.grids or len(self.grids) != np.size(zero_points):
            raise InputError("channel quantizer: needs one scale and one zero point per channel")
        if isinstance(channel_size, bool) or not isinstance(channel_size, numbers.Integral) or channel_size < 1:
            raise InputError(f"channel_size: must be a positive int, got {channel_size!r}")
        self.channel_size = int(channel_size)
        self._scale = np.array([g.scale for g in self.grids], np.float32)[:, None]
        self._zp = np.array([g.zero_point for g in self.grids], np.float32)[:, None]

    @classmethod
    def fit(cls, x: Any, channels: int, margin: float = 0.1) -> "ChannelInt8Quantizer":
        """Calibrate one grid per channel on rows ``x`` (n, channels·S)."""
        arr = np.asarray(x, np.float32)
        if arr.ndim != 2 or arr.shape[1] % channels:
            raise InputError(f"channel quantizer: {arr.shape} is not (n, {channels}·S)")
        S = arr.shape[1] // channels
        per = arr.reshape(arr.shape[0], channels, S)
        grids = [Int8Quantizer.fit(per[:, c], margin) for c in range(channels)]
        return cls([g.scale for g in grids], [g.zero_point for g in grids], S)

    def _view(self, x: Any) -> np.ndarray:
        arr = np.asarray(x, np.float32)
        C = len(self.grids)
        if arr.shape[-1] != C * self.channel_size:
            raise InputError(f"channel quantizer: rows of {arr.shape[-1]} values, expected {C * self.channel_size}")
        return arr.reshape(*arr.shape[:-1], C, self.channel_size)

    def quantize(self, x: Any) -> np.ndarray:
        v = self._view(x)
        q = np.rint(v / self._scale) + self._zp
        return np.clip(q, QMIN, QMAX).astype(np.int8).reshape(np.shape(x))

    def dequantize(self, q: Any) -> np.ndarray:
        v = self._view(q)
        return ((v - self._zp) * self._scale).astype(np.float32).reshape(np.shape(q))

    @property
    def nbytes(self) -> int:
        return 8 * len(self.grids)

    def to_dict(self) -> dict[str, Any]:
        return {"scales": [g.scale for g in self.grids], "zero_points": [g.zero_point for g in self.grids],
                "channel_size": self.channel_size}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChannelInt8Quantizer) and self.to_dict() == other.to_dict()


def quantizer_from_dict(d: Any) -> "Int8Quantizer | ChannelInt8Quantizer":
    """Either grid from its ``to_dict`` form; StateError on anything malformed."""
    if isinstance(d, dict) and "scales" in d:
        try:
            return ChannelInt8Quantizer(d["scales"], d["zero_points"], d["channel_size"])
        except (KeyError, TypeError, ValueError, InputError) as exc:
            raise StateError(f"state: bad channel quantizer ({exc})") from None
    return Int8Quantizer.from_dict(d)
