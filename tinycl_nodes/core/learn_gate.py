"""Which pseudo-labelled samples are worth learning: not a scene unlike every class, not the view just learned.

A robot's camera is not a shuffled dataset. Parked in front of a grey wall it sends thousands of frames that belong
to no class, and the clusterer files every one under its nearest class with full confidence; parked in front of one
object it sends the same view thousands of times, and that class's centroid and count collapse onto it. Measured in
process (MNIST, tinycl after its 8,000-sample stream; 18,000 frames = 10 minutes at 30 frames/s, sensor noise σ 6):
a grey wall cost 4.9–5.4 points of held-out accuracy, one digit held in view 0.9–2.5, and neither came back with
2,000 more digits. Both are told apart by squared Mahalanobis distances under the clusterer's tied covariance, in
units of the feature count ``F`` (scale-free: a class's own samples lie near ``F`` from its mean):

* ``outlier_factor`` — a sample farther than ``outlier_factor · F`` from every class mean is unlike every class
  and is not learned. MNIST's held-out digits reach 2.4 F at the 99.9th percentile; a grey wall, texture or noise
  lies at 3.5–4.3 F.
* ``repeat_factor`` — a sample within ``repeat_factor · F`` of one of the ``recent`` samples last learned is that
  view again and is not learned. Sensor noise moves a digit's features 0.003–0.12 F (σ 3–12 grey levels); a 1-pixel
  shift 0.17–0.35 F; two different digits of one class lie 2 F apart (0.36 F at the closest of 360 pairs).

A person's label is always learned: the gate sees only pseudo-labels. What was gated is counted, not kept. The
views remembered are kept: they are part of a labeler's state (:meth:`RecentViews.state_dict`), so a labeler started
again does not learn the view it was parked in front of once more.
:class:`RecentViews` is the repeat test alone, in any of the metrics the labelers use: TinyRCE's labeler (no
covariance; its distances are L2 or L1) passes on no covered sample as learnable within ``rce_repeat_factor ·
rce_r_max`` (0.05 · 8 = 0.4 for the MNIST camera) of one just passed on. Its nearest-class-mean learner lost 3.4 points
after 100 s of one view; a still camera's frames (sensor noise σ 3–12 on a 320x240 frame) lie 0.04–0.12 apart, two
different digits 2.0 or more.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from . import state as st
from .errors import InputError, StateError

Metric = Literal["mahalanobis", "l2", "l1"]


class RecentViews:
    """The last ``recent`` samples learned, and whether a sample is one of them again: within ``radius`` of one,
    in ``metric`` (``mahalanobis``: under a precision ``P``, given as ``Px`` to each call, so one F×F product per
    sample serves every remembered view — each is kept with its ``xᵀPx``)."""

    def __init__(self, n_features: int, radius: float, metric: Metric = "l2", recent: int = 16) -> None:
        if not (np.isfinite(radius) and radius >= 0):
            raise InputError(f"repeat radius: must be a finite number ≥ 0 (0: off), got {radius}")
        if metric not in ("mahalanobis", "l2", "l1"):
            raise InputError(f"repeat metric: must be mahalanobis, l2 or l1, got {metric!r}")
        if not 1 <= int(recent) <= 4096:
            raise InputError(f"recent: must be in [1, 4096], got {recent}")
        self.radius, self.metric, self.recent = float(radius), metric, int(recent)
        self._X = np.zeros((self.recent, int(n_features)), np.float32)
        self._q = np.zeros(self.recent, np.float64)
        self._n = 0          # samples remembered so far (the ring is full once it reaches ``recent``)

    def seen(self, x: np.ndarray, Px: np.ndarray | None = None) -> bool:
        """Whether ``x`` is within ``radius`` of a remembered view."""
        return self.match(x, Px) >= 0

    def match(self, x: np.ndarray, Px: np.ndarray | None = None) -> int:
        """The serial number (:meth:`remember`'s) of the nearest remembered view within ``radius`` of ``x``, or -1:
        a labeler journals a view once it is held (:meth:`view` gives it back)."""
        if not self._n or self.radius == 0:
            return -1
        R = self._X[:min(self._n, self.recent)]
        if self.metric == "mahalanobis":
            d2 = float(x.astype(np.float64) @ Px) - 2.0 * (R @ Px) + self._q[:len(R)]
            j = int(d2.argmin())
            inside = float(d2[j]) < self.radius ** 2
        else:
            diff = R - x
            d = np.abs(diff).sum(1) if self.metric == "l1" else np.sqrt(np.einsum("ij,ij->i", diff, diff))
            j = int(d.argmin())
            inside = float(d[j]) < self.radius
        if not inside:
            return -1
        newest = (self._n - 1) % self.recent          # slot j holds serial n-1 - ((newest - j) mod recent)
        return self._n - 1 - (newest - j) % self.recent

    def view(self, serial: int) -> np.ndarray | None:
        """The view remembered as ``serial``, while the ring still holds it (else None)."""
        if not self._n - min(self._n, self.recent) <= serial < self._n:
            return None
        return self._X[serial % self.recent].copy()

    def remember(self, x: np.ndarray, Px: np.ndarray | None = None) -> int:
        """``x`` was learned: later samples too close to it are repeats. Its serial number (0, 1, …)."""
        i = self._n % self.recent
        self._X[i] = x
        if self.metric == "mahalanobis":
            self._q[i] = float(x.astype(np.float64) @ Px)
        self._n += 1
        return self._n - 1

    def state_dict(self) -> dict[str, Any]:
        """The views remembered, oldest first (at most ``recent`` rows of F floats, each with its ``xᵀPx``)."""
        k = min(self._n, self.recent)
        order = (np.arange(k) + self._n - k) % self.recent
        return st.make_state("RecentViews", 1, {"metric": self.metric}, {"X": self._X[order], "q": self._q[order]})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Remember the views of :meth:`state_dict` (the last ``recent`` of them). A bad state, or views kept under
        another metric (their distances are not comparable), is a StateError and changes nothing."""
        st.check_state(state, "RecentViews", 1, ("X", "q"))
        metric = (state.get("params") or {}).get("metric")
        if metric != self.metric:
            raise StateError(f"recent views kept under the {metric!r} metric, this gate's is {self.metric!r}")
        rows = np.asarray(state["arrays"]["X"])
        k = rows.shape[0] if rows.ndim == 2 else -1            # -1: not rows of features, refused below
        X = st.expect_shape(state, "X", (k, self._X.shape[1]))
        q = st.expect_shape(state, "q", (k,))
        k = min(k, self.recent)
        self._X[:] = 0.0
        self._q[:] = 0.0
        self._X[:k], self._q[:k] = X[len(X) - k:], q[len(q) - k:]
        self._n = k


class LearnGate:
    """The two tests above, on a sample ``x`` given ``Px`` (the clusterer's precision times ``x``) and its squared
    distance to the nearest class mean; counts what it held back, by reason."""

    OUTLIER = "unlike every class"
    REPEAT = "a repeat of a view just learned"

    def __init__(self, n_features: int, outlier_factor: float, repeat_factor: float, recent: int = 16) -> None:
        if not (outlier_factor > 0 and np.isfinite(outlier_factor) or outlier_factor == np.inf):
            raise InputError(f"outlier_factor: must be > 0 (inf: never an outlier), got {outlier_factor}")
        if not 0 <= repeat_factor < outlier_factor:
            raise InputError(f"repeat_factor: must be in [0, outlier_factor), got {repeat_factor}")
        self.n_features = int(n_features)
        self.outlier_factor = float(outlier_factor)
        self.repeat_factor = float(repeat_factor)
        self.views = RecentViews(n_features, float(np.sqrt(repeat_factor * n_features)), "mahalanobis", recent)
        self.counts = {self.OUTLIER: 0, self.REPEAT: 0}

    def reason(self, x: np.ndarray, Px: np.ndarray, nearest_d2: float) -> str:
        """Why ``x`` is not to be learned ("" if it is); counted under that reason."""
        why = ""
        if nearest_d2 > self.outlier_factor * self.n_features:
            why = self.OUTLIER
        elif self.views.seen(x, Px):
            why = self.REPEAT
        if why:
            self.counts[why] += 1
        return why

    def remember(self, x: np.ndarray, Px: np.ndarray) -> None:
        """``x`` was learned: later samples too close to it are repeats."""
        self.views.remember(x, Px)
