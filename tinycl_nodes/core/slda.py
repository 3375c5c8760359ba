"""Deep streaming LDA (Hayes & Kanan, 2020): class means + one shared covariance, learned online.

Learning is the public code's update, one sample at a time (``N`` = samples seen before this one,
``μ_y`` the class mean before this sample)::

    d  = x − μ_y
    Σ ← (N·Σ + N/(N+1)·d dᵀ) / (N + 1)
    μ_y ← μ_y + d / (count_y + 1);   count_y += 1

with two deliberate differences. (1) By default (``scatter="class"``) the rank-1 term is weighted
by the class count, ``count_y/(count_y+1)·d dᵀ`` (Welford's update): ``N·Σ`` is then exactly the
within-class scatter of every sample seen, whatever their order — the sufficient statistics
(counts, means, scatter) of two devices merge into exactly the head trained on the union of their
data (``core/federated.py``). ``scatter="total"`` is the public code's ``N/(N+1)`` weight (order-
dependent; it over-weights each class's first samples). (2) For the *first* sample of a class the public code uses
``d = x − 0`` (its means start at zero), which adds a spurious ``x xᵀ`` to the covariance each
time a class appears; here ``d = 0`` for that sample (it has no class mean to deviate from),
which matters when every class arrives online instead of from a batch initialisation.

Prediction: ``Λ = inv((1 − ε)Σ + εI)`` (shrinkage ``ε``), ``score_c = μ_cᵀΛx − ½ μ_cᵀΛμ_c``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._util import add_zero_row, check_covariance_features, check_int, expect_array, expect_int, expect_rows
from .errors import InputError, StateError
from .head import Head
from .validation import check_positive


class StreamingLDA(Head):
    """Streaming LDA head with a lazily refreshed scoring cache.

    Learning is O(F²) (a rank-1 covariance update); the O(F³) part — ``W = ΛMᵀ`` (done as one
    ``solve((1−ε)Σ + εI, Mᵀ)``, about twice as cheap as forming ``Λ``) and ``b_c = ½ μ_cᵀΛμ_c`` —
    runs at learning time, every ``refresh_every`` updates and whenever a class was added.
    Predicting never changes state, so predicting more or less often (a node predicts every
    sample, an experiment only some) cannot change what is learned. ``refresh_every=1`` is exact;
    larger values trade staleness of the shared covariance for speed (class means still enter
    scores only through the cache, so a stale cache lags by at most ``refresh_every − 1`` samples).
    At F = 64 the exact refresh costs ~45–60 µs here (the LAPACK solve), learning ~10 µs: with
    ``refresh_every=1`` a learn+predict stream runs at ~100 µs/sample, with 16 at ~30 µs.
    (An O(F²) Sherman–Morrison update is not exact for this shrinkage: ``εI`` does not scale
    with Σ's ``1/N`` normalisation, so every update is full-rank.)

    ``shrinkage`` (ε, in (0, 1]) keeps Σ invertible before it has F independent directions;
    1e-4 is the public code's default.
    """

    kind = "StreamingLDA"
    version = 1

    def __init__(self, n_features: int, shrinkage: float = 1e-4, refresh_every: int = 1,
                 extractor_hash: str = "", scatter: str = "class") -> None:
        super().__init__(check_covariance_features(n_features, self.kind), extractor_hash)
        self.shrinkage = check_positive(shrinkage, "shrinkage")
        if self.shrinkage > 1.0:
            raise InputError(f"shrinkage: must be in (0, 1], got {shrinkage}")
        self.refresh_every = check_int(refresh_every, "refresh_every")
        if scatter not in ("class", "total"):
            raise InputError(f"scatter: must be 'class' (exact, mergeable) or 'total' (public code), got {scatter!r}")
        self.scatter_update = scatter
        F = n_features
        self.means = np.zeros((0, F), np.float64)
        self.counts = np.zeros(0, np.int64)
        self.scatter = np.zeros((F, F), np.float64)   # N·Σ: one rank-1 add per sample, no rescale
        self.n_updates = 0
        # Rank-1 scatter terms queued until the scatter is next needed, then applied as one
        # matrix product (exact; saves a d×d outer product per sample).
        self._pend_u = np.zeros((self.refresh_every, F), np.float64)
        self._pend_v = np.zeros((self.refresh_every, F), np.float64)
        self._n_pend = 0
        self._W = np.zeros((0, F), np.float32)        # cache: rows ΛMᵀ (float32: 2× faster mat-vec)
        self._b = np.zeros(0, np.float64)             # cache: ½ μ_cᵀΛμ_c
        self._stale = 0                               # updates since the cache was built

    # --- public extras ----------------------------------------------------------------------
    def _flush_scatter(self) -> None:
        k = self._n_pend
        if k:
            self.scatter += self._pend_u[:k].T @ self._pend_v[:k]
            self._n_pend = 0

    @property
    def covariance(self) -> np.ndarray:
        """The shared covariance Σ (a copy)."""
        self._flush_scatter()
        return self.scatter / self.n_updates if self.n_updates else np.zeros_like(self.scatter)

    def precision(self) -> np.ndarray:
        """``Λ = inv((1 − ε)Σ + εI)``, computed on demand (scoring never needs it explicitly)."""
        return np.linalg.inv(self._shrunk())

    # --- Head -------------------------------------------------------------------------------
    def _add_class_rows(self) -> None:
        self.means = add_zero_row(self.means)
        self.counts = add_zero_row(self.counts)

    def _learn(self, x: np.ndarray, idx: int) -> None:
        """One sample; if the solve fails (a poisoned sample), mean, counts and scatter are put back."""
        if self._n_pend == self._pend_u.shape[0]:
            self._flush_scatter()      # what _update would do first: the same sums, before the undo point
        refresh = self._stale + 1 >= self.refresh_every or self._W.shape[0] != self.means.shape[0]
        scatter = self.scatter.copy() if refresh else None    # a refresh flushes this sample into it
        undo = (self.means[idx].copy(), int(self.counts[idx]), self.n_updates, self._n_pend, self._stale)
        try:
            self._update(x, idx)
        except Exception as exc:
            self.means[idx], self.counts[idx], self.n_updates, self._n_pend, self._stale = undo
            if scatter is not None:
                self.scatter[...] = scatter
            raise InputError(f"{self.kind}: sample not learned, head unchanged ({exc})") from None

    def _update(self, x: np.ndarray, idx: int) -> None:
        n_c = int(self.counts[idx])
        mu = self.means[idx]
        d = x - mu
        if n_c:
            n = n_c if self.scatter_update == "class" else self.n_updates
            k = self._n_pend
            if k == self._pend_u.shape[0]:
                self._flush_scatter()
                k = 0
            self._pend_u[k] = d
            np.multiply(d, n / (n + 1.0), out=self._pend_v[k])
            self._n_pend = k + 1
        d *= 1.0 / (n_c + 1)
        mu += d
        self.counts[idx] = n_c + 1
        self.n_updates += 1
        self._stale += 1
        if self._stale >= self.refresh_every or self._W.shape[0] != self.means.shape[0]:
            self._refresh()

    can_unlearn = True

    def _unlearn(self, x: np.ndarray, idx: int) -> None:
        """Class mean, count and scatter exactly as without ``x`` with ``scatter="class"`` (Welford's
        update is order-free); with ``scatter="total"`` the scatter is downdated by the rank-1 term
        with the current weight (exact for the latest sample, O(1/N) off for an old one: the public
        update weights a sample by the number seen before it).

        A sample the head never learned (a learner that missed it, or a hostile ``unlearn``) can leave a scatter that
        no samples give: one far from the class mean made the covariance indefinite and changed 29 of 200
        predictions. So the covariance that scoring uses must still have a Cholesky factor, or nothing changes."""
        self._flush_scatter()
        n_c = int(self.counts[idx])
        mu_before = (self.means[idx] * n_c - x) / (n_c - 1)
        d = x - mu_before
        n = n_c - 1 if self.scatter_update == "class" else self.n_updates - 1
        scatter = self.scatter
        self.scatter = scatter - np.outer(d, d) * (n / (n + 1.0))
        self.n_updates -= 1
        try:
            np.linalg.cholesky(self._shrunk())
        except np.linalg.LinAlgError:
            self.scatter, self.n_updates = scatter, self.n_updates + 1
            raise InputError(f"{self.kind}: a sample of class {self.classes[idx]} that was never learned: taking it "
                             f"back would leave a covariance no samples give; head unchanged") from None
        self.means[idx] = mu_before
        self.counts[idx] = n_c - 1
        self._refresh()

    def _class_rows(self) -> tuple[str, ...]:
        return ("means", "counts")

    def _drop_class(self, idx: int) -> None:
        super()._drop_class(idx)
        self.n_updates -= 1        # the class's first sample added no scatter, only a count

    def refresh(self) -> None:
        """Rebuild the scoring cache now (e.g. after loading merged statistics)."""
        self._refresh()

    def _shrunk(self) -> np.ndarray:
        """``(1 − ε)Σ + εI`` as a new array."""
        self._flush_scatter()
        eps = self.shrinkage
        A = self.scatter * ((1.0 - eps) / self.n_updates if self.n_updates else 0.0)
        A.reshape(-1)[::A.shape[0] + 1] += eps      # the diagonal, as a view
        return A

    def _refresh(self) -> None:
        W = np.linalg.solve(self._shrunk(), self.means.T).T     # rows μ_cᵀΛ (Λ is symmetric)
        self._b = 0.5 * (self.means * W).sum(axis=1)
        self._W = W.astype(np.float32, order="C")
        self._stale = 0

    def _scores(self, x: np.ndarray) -> np.ndarray:
        return self._W.dot(x) - self._b

    def linear(self) -> tuple[np.ndarray, np.ndarray]:
        # exactly what predictions use (no refresh here: exporting a head must not change it)
        return self._W.copy(), (-self._b).astype(np.float32)

    def _params(self) -> dict[str, Any]:
        return {"shrinkage": self.shrinkage, "refresh_every": self.refresh_every, "scatter": self.scatter_update}

    def _arrays(self) -> dict[str, np.ndarray]:
        self._flush_scatter()
        return {"means": self.means, "counts": self.counts, "scatter": self.scatter,
                "n_updates": np.asarray(self.n_updates, np.int64),
                "cache_W": self._W, "cache_b": self._b,
                "cache_stale": np.asarray(self._stale, np.int64)}

    def _load_arrays(self, state: dict[str, Any], n_classes: int) -> dict[str, Any]:
        F = self.n_features
        means = expect_array(state, "means", (n_classes, F), np.float64)
        counts = expect_array(state, "counts", (n_classes,), np.int64)
        scatter = expect_array(state, "scatter", (F, F), np.float64)
        n_updates = expect_int(state, "n_updates", 0, 2**62)
        if int(counts.sum()) != n_updates:
            raise StateError(f"state: class counts sum to {int(counts.sum())}, "
                             f"n_updates is {n_updates}")
        k = expect_rows(state, "cache_W", n_classes)
        W = expect_array(state, "cache_W", (k, F), np.float32)
        b = expect_array(state, "cache_b", (k,), np.float64)
        stale = expect_int(state, "cache_stale", 0, n_updates)
        return {"means": means, "counts": counts, "scatter": scatter, "n_updates": n_updates,
                "_W": W, "_b": b, "_stale": stale, "_n_pend": 0}
