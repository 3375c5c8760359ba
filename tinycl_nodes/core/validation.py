"""Checks shared by every core object, so a bad sample is refused the same way everywhere."""

from __future__ import annotations

import numbers

import numpy as np

from .errors import InputError

MAX_CLASS_ID = 2**31 - 1
#: class ids a label answer may carry besides a class's (LabelAnswer.class_id): a new class, named in the answer; no
#: class (skipped / not sure; in a correction: the answer withdrawn). The board's firmware gets them generated.
NEW_CLASS = -1
NO_CLASS = -2
#: no head is fed a |feature| above this, whatever the extractor (squares stay far inside float32);
#: nodes also check the extractor's own calibrated bound (``extractor.feature_bound``)
MAX_ABS_FEATURE = 1e6


def check_features(x: object, n_features: int, name: str = "features",
                   bound: float | None = None) -> np.ndarray:
    """Return ``x`` as a contiguous float32 vector of length ``n_features``, or raise InputError.

    Refuses wrong shapes, non-numeric data, NaN and inf, and values beyond ``bound`` (default
    ``MAX_ABS_FEATURE``): a single bad sample must never reach learned state.
    """
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: not a numeric vector ({exc})") from None
    if arr.ndim != 1 or arr.shape[0] != n_features:
        raise InputError(f"{name}: expected shape ({n_features},), got {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise InputError(f"{name}: {bad} value(s) are NaN or inf")
    limit = MAX_ABS_FEATURE if bound is None else min(bound, MAX_ABS_FEATURE)
    peak = float(np.abs(arr).max()) if arr.size else 0.0
    if peak > limit:
        raise InputError(f"{name}: |value| up to {peak:.3g}, beyond the extractor's range (at most {limit:.3g})")
    return np.ascontiguousarray(arr)


def check_batch(x: object, n_features: int, name: str = "features") -> np.ndarray:
    """Return ``x`` as a float32 matrix ``(n, n_features)``, or raise InputError (same rules)."""
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: not a numeric matrix ({exc})") from None
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise InputError(f"{name}: expected shape (n, {n_features}), got {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise InputError(f"{name}: {int((~np.isfinite(arr)).sum())} value(s) are NaN or inf")
    if arr.size and float(np.abs(arr).max()) > MAX_ABS_FEATURE:
        raise InputError(f"{name}: |value| up to {float(np.abs(arr).max()):.3g}, at most {MAX_ABS_FEATURE:.3g}")
    return np.ascontiguousarray(arr)


def check_label(y: object, name: str = "label") -> int:
    """Return ``y`` as a class id (a non-negative int), or raise InputError."""
    if isinstance(y, (bool, np.bool_)) or not isinstance(y, numbers.Integral):
        raise InputError(f"{name}: class id must be an integer, got {y!r}")
    y = int(y)
    if not 0 <= y <= MAX_CLASS_ID:
        raise InputError(f"{name}: class id must be in [0, {MAX_CLASS_ID}], got {y}")
    return y


def check_positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    """Validate a hyper-parameter that must be > 0 (or >= 0): fail in ``__init__``, not mid-stream."""
    if not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise InputError(f"{name}: must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise InputError(f"{name}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return float(value)
