"""DDM, the Drift Detection Method (Gama, Medas, Castillo & Rodrigues, 2004).

Feed it the prequential error of a classifier (predict, then learn). It tracks the error rate
``p`` and its standard deviation ``s = sqrt(p(1 − p)/n)`` and remembers the point where
``p + s`` was lowest (``p_min``, ``s_min``). Then

- ``p + s > p_min + warning_level · s_min`` → ``"warning"`` (the concept may be changing),
- ``p + s > p_min + drift_level · s_min``   → ``"drift"`` (it has; the detector restarts).

(Strict ``>`` as in MOA: with ``≥`` an error-free start, ``p = s = 0``, would read as a drift.)

Nothing is decided before ``min_samples`` errors/successes have been seen. Known limitation of
the method (kept, not patched): after a long error-free stretch ``s_min`` is 0, so the first
error is reported as a drift; it suits classifiers with a non-trivial error rate.
"""

from __future__ import annotations

import math
from typing import Any

from ._util import check_int
from .errors import InputError, StateError
from .validation import check_positive

NONE, WARNING, DRIFT = "none", "warning", "drift"


class DDM:
    """Gama's DDM; its whole state is plain attributes (see :meth:`state_dict`)."""

    def __init__(self, min_samples: int = 30, warning_level: float = 2.0,
                 drift_level: float = 3.0) -> None:
        self.min_samples = check_int(min_samples, "min_samples")
        self.warning_level = check_positive(warning_level, "warning_level")
        self.drift_level = check_positive(drift_level, "drift_level")
        if self.drift_level <= self.warning_level:
            raise InputError(f"drift_level ({drift_level}) must be above warning_level ({warning_level})")
        self.n_drifts = 0
        self.reset()

    def reset(self) -> None:
        """Forget the error statistics (done automatically after a drift)."""
        self.n = 0
        self.n_errors = 0
        self.p_min = math.inf
        self.s_min = math.inf
        self.in_warning = False

    @property
    def error_rate(self) -> float:
        return self.n_errors / self.n if self.n else 0.0

    def update(self, error: bool) -> str:
        """Add one prequential outcome; return ``"none"``, ``"warning"`` or ``"drift"``."""
        self.n += 1
        self.n_errors += 1 if error else 0
        if self.n < self.min_samples:
            return NONE
        p = self.n_errors / self.n
        s = math.sqrt(p * (1.0 - p) / self.n)
        if p + s <= self.p_min + self.s_min:
            self.p_min, self.s_min = p, s
        if p + s > self.p_min + self.drift_level * self.s_min:
            self.n_drifts += 1
            self.reset()
            return DRIFT
        self.in_warning = p + s > self.p_min + self.warning_level * self.s_min
        return WARNING if self.in_warning else NONE

    # --- state: plain JSON ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-ready counters (``inf`` as ``None``, since JSON has no infinity)."""
        fin = math.isfinite(self.p_min)
        return {"min_samples": self.min_samples, "warning_level": self.warning_level,
                "drift_level": self.drift_level, "n": self.n, "n_errors": self.n_errors,
                "p_min": self.p_min if fin else None, "s_min": self.s_min if fin else None,
                "in_warning": self.in_warning, "n_drifts": self.n_drifts}

    def load_state_dict(self, d: Any) -> None:
        """Restore counters (hyper-parameters stay this detector's); StateError changes nothing."""
        vals = self.parse_state(d)
        for k, v in vals.items():
            setattr(self, k, v)

    @staticmethod
    def parse_state(d: Any) -> dict[str, Any]:
        """Validate a :meth:`state_dict` result and return the counter attributes it sets."""
        if not isinstance(d, dict):
            raise StateError("state: DDM state must be a dict")
        out: dict[str, Any] = {}
        for k in ("n", "n_errors", "n_drifts"):
            v = d.get(k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise StateError(f"state: DDM {k!r} must be a non-negative int, got {v!r}")
            out[k] = v
        if out["n_errors"] > out["n"]:
            raise StateError("state: DDM has more errors than samples")
        pm, sm = d.get("p_min"), d.get("s_min")
        if (pm is None) != (sm is None):
            raise StateError("state: DDM p_min and s_min must both be set or both be null")
        for k, v in (("p_min", pm), ("s_min", sm)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not 0.0 <= v <= 1.0):
                raise StateError(f"state: DDM {k!r} must be in [0, 1] or null, got {v!r}")
        out["p_min"] = math.inf if pm is None else float(pm)
        out["s_min"] = math.inf if sm is None else float(sm)
        if not isinstance(d.get("in_warning"), bool):
            raise StateError("state: DDM 'in_warning' must be a bool")
        out["in_warning"] = d["in_warning"]
        return out
