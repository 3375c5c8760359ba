"""Private helpers shared by the heads: integer hyper-parameters, strict state loading, rng state.

Kept private (underscore) so the public surface of the core stays the documented classes.
"""

from __future__ import annotations

import json
import numbers
from typing import Any

import numpy as np

from . import state as st
from .errors import InputError, StateError


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """Validate an integer hyper-parameter (``bool`` and floats are refused): fail in ``__init__``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name}: must be an integer, got {value!r}")
    if int(value) < minimum:
        raise InputError(f"{name}: must be >= {minimum}, got {int(value)}")
    return int(value)


#: the widest features a head or clusterer that keeps an F×F covariance learns from: 2048 (ResNet-50's) is 32 MiB per
#: matrix, and the SLDA head solves it every ``refresh_every`` samples (45 ms at 1280 here, docs/results.md; the
#: clusterer's refresh is O(F²k) since 2026-12-05); a backbone cut before its pooling (16,384 features: 2 GiB and
#: minutes per solve) stalled its nodes without a word
MAX_COVARIANCE_FEATURES = 2048


def check_covariance_features(n_features: int, kind: str) -> int:
    """``n_features`` if a ``kind`` that keeps an F×F covariance can learn from that many, else InputError."""
    n = check_int(n_features, "n_features")
    if n > MAX_COVARIANCE_FEATURES:
        raise InputError(f"{kind}: {n} features, at most {MAX_COVARIANCE_FEATURES} (it solves a {n}x{n} covariance "
                         f"every few samples: a stream would stall); cut the backbone after its global pooling "
                         f"(tinycl model import --cut)")
    return n


def label_dtype(n_classes: int) -> np.dtype:
    """Smallest unsigned dtype holding class-row indices ``0..n_classes-1``.

    uint8 up to 256 classes (rows 0..255), uint16 up to 65,536, else uint32.
    """
    if n_classes <= 256:
        return np.dtype(np.uint8)
    if n_classes <= 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def add_zero_row(arr: np.ndarray) -> np.ndarray:
    """``arr`` with one zero row appended (class additions are rare: a copy is fine)."""
    out = np.zeros((arr.shape[0] + 1,) + arr.shape[1:], arr.dtype)
    out[:-1] = arr
    return out


# --- loading state strictly ----------------------------------------------------------------------
def expect_array(state: dict[str, Any], name: str, shape: tuple[int, ...],
                 dtype: Any = None, kinds: str = "", nonneg: bool = True) -> np.ndarray:
    """A validated *copy* of array ``name``: present, of ``shape``, finite, right dtype.

    ``dtype`` demands an exact dtype; ``kinds`` (e.g. ``"iu"``) a dtype kind. Signed integer
    arrays must be non-negative unless ``nonneg=False`` (counts and indices; int8 codes are not).
    """
    arr = st.expect_shape(state, name, shape)
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise StateError(f"state: array {name!r} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
    if kinds and arr.size and arr.dtype.kind not in kinds:
        raise StateError(f"state: array {name!r} has dtype {arr.dtype}, expected kind {kinds!r}")
    if nonneg and arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise StateError(f"state: array {name!r} holds negative values")
    return np.array(arr, copy=True)


def expect_rows(state: dict[str, Any], name: str, max_rows: int) -> int:
    """Number of rows of array ``name``, refusing a missing array or more than ``max_rows`` rows."""
    if name not in state["arrays"]:
        raise StateError(f"state: array {name!r} is missing")
    arr = np.asarray(state["arrays"][name])
    if arr.ndim < 1 or arr.shape[0] > max_rows:
        raise StateError(f"state: array {name!r} has shape {arr.shape}, at most {max_rows} rows allowed")
    return int(arr.shape[0])


def expect_int(state: dict[str, Any], name: str, lo: int, hi: int) -> int:
    """A scalar integer stored as a 0-d array, within ``[lo, hi]``."""
    arr = expect_array(state, name, (), kinds="iu")
    value = int(arr)
    if not lo <= value <= hi:
        raise StateError(f"state: {name!r} = {value} is outside [{lo}, {hi}]")
    return value


def check_rows(labels: np.ndarray, n_classes: int, name: str) -> None:
    """Stored class-row indices must point at existing classes."""
    if labels.size and int(labels.max()) >= n_classes:
        raise StateError(f"state: {name!r} refers to class row {int(labels.max())}, "
                         f"only {n_classes} classes")


# --- rng state as JSON ---------------------------------------------------------------------------
def rng_state(rng: Any) -> dict[str, Any]:
    """The bit generator state: plain JSON (PCG64's 128-bit ints are exact Python ints)."""
    if hasattr(rng, "state_dict"):   # core.draws.Pcg32, the C core's generator
        return rng.state_dict()
    return json.loads(json.dumps(rng.bit_generator.state))


def rng_from_state(obj: Any, name: str = "rng_state") -> Any:
    """A new Generator in state ``obj`` (or a :class:`~.draws.Pcg32`); StateError if it is neither."""
    from .draws import KIND, Pcg32

    if isinstance(obj, dict) and obj.get("bit_generator") == KIND:
        return Pcg32.from_state(obj, name)
    if not isinstance(obj, dict) or obj.get("bit_generator") != "PCG64":
        raise StateError(f"state: {name!r} is not a PCG64 generator state")
    rng = np.random.Generator(np.random.PCG64())
    try:
        rng.bit_generator.state = obj
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise StateError(f"state: {name!r} is not a valid generator state ({exc})") from None
    return rng


def meta_of(state: dict[str, Any], key: str) -> Any:
    """``state['meta'][key]`` or StateError."""
    meta = state.get("meta")
    if not isinstance(meta, dict) or key not in meta:
        raise StateError(f"state: meta {key!r} is missing")
    return meta[key]
