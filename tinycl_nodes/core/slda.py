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

from ._lowrank import SteppedInverse, ridge_solve, series_terms, woodbury
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

    From ``WIDE_FEATURES`` features on (a user's backbone: at F = 1280 the solve stalled one sample in 25 by
    ~45 ms) the refresh does not solve. The shrunk covariance is ``a·(S + λI)`` with ``a = (1−ε)/N`` and
    ``λ = εN/(1−ε)``: the scatter ``S`` changes by the queued rank-1 terms, the ridge by ``1/N`` a sample (full
    rank). ``G = inv(S + λ_G I)`` follows the terms by the Woodbury identity and is applied with the drift
    ``λ − λ_G`` as a series (``core/_lowrank.py``, as the clusterer); a fresh ``G``, for a ridge a little ahead,
    is built a block of rows a sample between refreshes: a refresh at F = 1280 costs ~18 ms instead of ~45.
    Scores equal the solve's to float32 rounding (8e-7). Until a ``G`` is at hand (the first ~70 samples, a loaded
    head's first refresh if it comes early, the refresh after an unlearned sample) or when the ridge drifted too far,
    it solves as before.

    ``shrinkage`` (ε, in (0, 1]) keeps Σ invertible before it has F independent directions;
    1e-4 is the public code's default.
    """

    kind = "StreamingLDA"
    version = 1
    #: from this many features on, no refresh solves (below, the solve is as cheap and every result stays bit-exact)
    WIDE_FEATURES = 512
    #: the ridge may drift this fraction of ``λ_G`` (series ratio); a fresh ``G`` aims this far ahead
    MAX_DRIFT = 0.2

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
        self._pend_w = np.zeros(self.refresh_every, np.float64)   # their weights: v = w·u (for G's Woodbury)
        self._n_pend = 0
        self._W = np.zeros((0, F), np.float32)        # cache: rows ΛMᵀ (float32: 2× faster mat-vec)
        self._b = np.zeros(0, np.float64)             # cache: ½ μ_cᵀΛμ_c
        self._stale = 0                               # updates since the cache was built
        # Wide features only (derived, never saved): the queued terms [:_flushed] are in the scatter but not yet in
        # G = inv(S_G + λ_G I) (λ_G = εN_G/(1−ε)); _next builds a fresh one for N = _next_N.
        self._wide = F >= self.WIDE_FEATURES
        self._flushed = 0
        self._G: np.ndarray | None = None
        self._G32: np.ndarray | None = None
        self._N_G = 0.0
        self._next: SteppedInverse | None = None
        self._next_N = 0.0

    # --- public extras ----------------------------------------------------------------------
    def _flush_scatter(self) -> None:
        """Add the queued terms to the scatter (wide features: they stay queued for ``G``'s next Woodbury update)."""
        j, k = self._flushed, self._n_pend
        if k > j:
            self.scatter += self._pend_u[j:k].T @ self._pend_v[j:k]
        if self._wide:
            self._flushed = k
        else:
            self._n_pend = 0

    def _make_room(self) -> None:
        """A free row in the term queue (it holds a refresh's worth: only a state loaded mid-way can fill it)."""
        if self._n_pend == self._pend_u.shape[0]:
            self._flush_scatter()
            if self._wide:
                self._G, self._N_G = self._absorb()
                self._next = None
                self._G32 = None if self._G is None else self._G.astype(np.float32)
                self._n_pend = self._flushed = 0

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
        self._make_room()      # what _update would do first: the same sums, before the undo point
        refresh = self._stale + 1 >= self.refresh_every or self._W.shape[0] != self.means.shape[0]
        scatter = self.scatter.copy() if refresh else None    # a refresh flushes this sample into it
        undo = (self.means[idx].copy(), int(self.counts[idx]), self.n_updates, self._n_pend, self._flushed,
                self._stale)
        try:
            self._update(x, idx)
        except Exception as exc:
            self.means[idx], self.counts[idx], self.n_updates, self._n_pend, self._flushed, self._stale = undo
            if scatter is not None:
                self.scatter[...] = scatter
            raise InputError(f"{self.kind}: sample not learned, head unchanged ({exc})") from None

    def _update(self, x: np.ndarray, idx: int) -> None:
        n_c = int(self.counts[idx])
        mu = self.means[idx]
        d = x - mu
        if n_c:
            n = n_c if self.scatter_update == "class" else self.n_updates
            self._make_room()
            k = self._n_pend
            self._pend_u[k] = d
            np.multiply(d, n / (n + 1.0), out=self._pend_v[k])
            self._pend_w[k] = n / (n + 1.0)
            self._n_pend = k + 1
        d *= 1.0 / (n_c + 1)
        mu += d
        self.counts[idx] = n_c + 1
        self.n_updates += 1
        self._stale += 1
        if self._stale >= self.refresh_every or self._W.shape[0] != self.means.shape[0]:
            self._refresh()
        elif self._next is not None:
            try:
                self._next.step()
            except np.linalg.LinAlgError:     # (a leading block of S + λI is positive definite: not expected)
                self._next = None

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
        if self._wide:     # no downdate of G: a negative Woodbury term magnified its rounding (1e-4 relative after
            self._G = self._G32 = self._next = None    # four); the refresh solves (the check above cost as much)
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
        if self._wide:
            self._refresh_lowrank()
            return
        W = np.linalg.solve(self._shrunk(), self.means.T).T     # rows μ_cᵀΛ (Λ is symmetric)
        self._b = 0.5 * (self.means * W).sum(axis=1)
        self._W = W.astype(np.float32, order="C")
        self._stale = 0

    def _absorb(self) -> tuple[np.ndarray | None, float]:
        """``(G, N_G)`` with the queued terms in ``G`` (scatter flushed; nothing changed here). A finished fresh
        ``G`` replaces the old one (it was started with the queue empty); an unfinished one is dropped (finishing it
        would stall this sample). Over ``F/8`` queued terms the Woodbury update costs more than a solve: no ``G``."""
        G, N_G, nxt = self._G, self._N_G, self._next
        if nxt is not None and nxt.done:
            G, N_G = nxt.out, self._next_N
        k = self._n_pend
        if G is not None and k:
            G = woodbury(G, self._pend_u[:k], self._pend_w[:k]) if 8 * k <= self.n_features else None
        return G, N_G

    def _refresh_lowrank(self) -> None:
        """The cache from ``G`` (Woodbury, then the ridge series), or by the solve when no ``G`` is close enough;
        then perhaps start a fresh ``G`` for the ridge a little ahead. All-or-nothing (a failed solve changes no
        ``G``); the queue is absorbed only when it succeeds."""
        self._flush_scatter()
        G, N_G = self._absorb()
        nxt = None
        N, R, D, eps = self.n_updates, self.refresh_every, self.MAX_DRIFT, self.shrinkage
        c = eps / (1.0 - eps)                            # λ = c·N
        ratio = abs(N - N_G) / N_G if G is not None else np.inf
        G32 = None if G is None else G.astype(np.float32)
        if G32 is not None and ratio <= D and N:
            terms = max(1, series_terms(ratio, 3e-8))     # ‖G‖ ≤ 1/λ_G: the series' ratio is at most the drift's
            Y = ridge_solve(G32, c * (N - N_G), self.means.T.astype(np.float32), terms)
            W = np.ascontiguousarray(Y.T * np.float32(N / (1.0 - eps)))     # Λ = inv(a·(S + λI)), a = (1−ε)/N
            b = 0.5 * (self.means * W).sum(axis=1)
        else:
            W64 = np.linalg.solve(self._shrunk(), self.means.T).T
            W, b = W64.astype(np.float32, order="C"), 0.5 * (self.means * W64).sum(axis=1)
        next_N = self._next_N
        if G is None or abs(N + R - N_G) > D * N_G:
            nxt, next_N = self._start_next(N + R)
        self._G, self._G32, self._N_G, self._next, self._next_N = G, G32, N_G, nxt, next_N
        self._n_pend = self._flushed = 0
        self._W, self._b, self._stale = W, b, 0

    def _start_next(self, n_ready: int) -> tuple[SteppedInverse | None, float]:
        """A fresh ``G`` to build over the samples until the refresh at ``N = n_ready`` (the queue is empty now).
        It aims at the ridge there plus ``MAX_DRIFT`` (``D``), so it serves from ``n_ready`` up to ``n_ready·(1+D)²``;
        none if that spans under two refreshes (the first ~``R/2D`` samples solve), nor with no samples between, nor
        when a refresh queues more than F/8 terms (``_absorb`` would drop it: a Woodbury update then costs more)."""
        R, D, eps = self.refresh_every, self.MAX_DRIFT, self.shrinkage
        if R < 2 or n_ready * (2 * D + D * D) < R or 8 * R > self.n_features:   # the last: _absorb would drop it
            return None, 0.0
        n_G = n_ready * (1 + D)
        A = self.scatter.copy()
        A.reshape(-1)[::A.shape[0] + 1] += eps / (1.0 - eps) * n_G
        return SteppedInverse(A, R - 1, balanced=True), n_G

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
        out = {"means": means, "counts": counts, "scatter": scatter, "n_updates": n_updates,
               "_W": W, "_b": b, "_stale": stale, "_n_pend": 0}
        if self._wide:     # G is derived: a fresh one is built over the samples before the next refresh
            self.scatter, keep = scatter, self.scatter
            nxt, next_N = self._start_next(n_updates + self.refresh_every - stale)
            self.scatter = keep
            out.update(_flushed=0, _G=None, _G32=None, _N_G=0.0, _next=nxt, _next_N=next_N)
        return out
