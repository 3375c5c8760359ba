"""Online deep clustering on frozen features: the pseudo-labelers of TinyNDC.

Two clusterers share one small interface — ``init_from_labelled(X, y)`` with a few labelled
samples per class, ``pseudo_label(x) -> (class id, confidence)``, ``update(x, y)`` — so the
TinyNDC loop (``tinyndc.py``) can use either:

* :class:`NearestCentroid` — the paper's clustering: L2 distance to per-class centroids, centroid
  moved to the running mean of the samples assigned to it.
* :class:`TiedGaussianClusterer` — tinycl's: the same centroids, but distances are Mahalanobis
  under one shared (tied) within-class covariance that is itself learned from the stream, and
  the confidence is the Gaussian posterior, so the loop can learn only from confident
  pseudo-labels. It is online hard-EM of a tied-covariance Gaussian mixture anchored by the
  labelled samples: the shape of the clusters, not just their centres, adapts to the new classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import state as st
from ._lowrank import SteppedInverse, ridge_solve, series_terms, woodbury
from ._util import check_covariance_features
from .errors import InputError, StateError
from .validation import check_batch, check_features, check_label, check_positive


class NearestCentroid:
    """TinyNDC's online clustering: nearest L2 centroid as pseudo-label, running-mean updates.

    ``max_count`` caps the weight of the past in a centroid (``None`` = pure running mean, as the
    paper); a cap keeps centroids following a drifting stream.
    """

    kind = "NearestCentroid"
    version = 1

    def __init__(self, n_features: int, max_count: int | None = None) -> None:
        if max_count is not None:
            check_positive(max_count, "max_count")
        self.n_features = int(n_features)
        self.max_count = max_count
        self.classes: list[int] = []
        self.centroids = np.zeros((0, n_features), np.float32)
        self.counts = np.zeros(0, np.float64)

    def init_from_labelled(self, X: Any, y: Any) -> None:
        """Centroids = mean of the labelled samples of each class (the paper's k per class)."""
        Xv = check_batch(X, self.n_features, "init features")
        yv = np.asarray([check_label(v, "init label") for v in np.asarray(y).ravel()], np.int64)
        if yv.size != Xv.shape[0] or yv.size == 0:
            raise InputError(f"init: {Xv.shape[0]} samples but {yv.size} labels")
        self.classes = sorted(set(yv.tolist()))
        self.centroids = np.stack([Xv[yv == c].mean(0) for c in self.classes]).astype(np.float32)
        self.counts = np.array([np.sum(yv == c) for c in self.classes], np.float64)
        self._after_init(Xv, yv)

    def init_from_statistics(self, classes: Any, means: Any, counts: Any, scatter: Any) -> None:
        """Centroids from class statistics instead of samples: ``means`` (C, F), ``counts`` (C,) and the
        within-class scatter ``Σ (x − μ_y)(x − μ_y)ᵀ`` (F, F) of the samples they summarise — e.g. the frozen
        model's training classes together with the labelled samples (``TinyNDC.init_from_labelled``'s prior)."""
        cls = [check_label(c, "class") for c in np.asarray(classes).ravel()]
        M = check_batch(means, self.n_features, "class means")
        n = np.asarray(counts, np.float64).ravel()
        S = np.array(scatter, np.float64)
        if len(set(cls)) != len(cls) or M.shape[0] != len(cls) or n.shape != (len(cls),) or not cls:
            raise InputError(f"class statistics: {len(cls)} distinct class ids, {M.shape[0]} means and {n.size} "
                             f"counts: they must match (and not be empty)")
        if not (np.isfinite(n).all() and (n >= 1).all()):
            raise InputError("class statistics: every count must be a finite number ≥ 1")
        if S.shape != (self.n_features, self.n_features) or not np.isfinite(S).all():
            raise InputError(f"class statistics: scatter must be a finite {self.n_features}×{self.n_features} "
                             f"matrix, got shape {S.shape}")
        order = np.argsort(cls)
        self.classes = [cls[i] for i in order]
        self.centroids = M[order].astype(np.float32)
        self.counts = n[order]
        self._after_statistics(S)

    def _after_init(self, X: np.ndarray, y: np.ndarray) -> None:
        """Hook for subclasses that learn more than centroids from the labelled samples."""

    def _after_statistics(self, scatter: np.ndarray) -> None:
        """Hook for subclasses that learn more than centroids from class statistics."""

    def _scores(self, x: np.ndarray) -> np.ndarray:
        """``−‖c − x‖² + ‖x‖²`` per centroid: same argmax and softmax as ``−‖c − x‖²``, one mat-vec."""
        return 2.0 * self.centroids.dot(x) - (self.centroids * self.centroids).sum(1)

    def pseudo_label(self, x: Any) -> tuple[int, float]:
        """(class id of the nearest centroid, confidence = softmax(-d) of that class)."""
        xv = check_features(x, self.n_features)
        return self.pseudo_label_valid(xv)

    def pseudo_label_valid(self, x: np.ndarray) -> tuple[int, float]:
        """``pseudo_label`` for ``x`` already checked by ``check_features`` (the TinyNDC loop)."""
        if not self.classes:
            raise InputError("clusterer: not initialised (call init_from_labelled first)")
        neg = self._scores(x)
        i = int(neg.argmax())
        return self.classes[i], float(1.0 / np.exp(neg - neg[i]).sum())

    def update(self, x: Any, y: Any) -> None:
        """Move the centroid of class ``y`` towards ``x`` (a class never seen gets a new centroid)."""
        self.update_valid(check_features(x, self.n_features), check_label(y))

    def _row(self, y: int, x: np.ndarray) -> int | None:
        try:
            return self.classes.index(y)
        except ValueError:
            self.classes.append(y)
            self.centroids = np.vstack([self.centroids, x[None]])
            self.counts = np.append(self.counts, 1.0)
            return None

    def update_valid(self, x: np.ndarray, y: int) -> None:
        """``update`` for an already checked ``x`` and ``y``."""
        i = self._row(y, x)
        if i is None:
            return
        n = self.counts[i] + 1.0
        if self.max_count is not None:
            n = min(n, float(self.max_count))
        self.counts[i] = n
        self.centroids[i] += (x - self.centroids[i]) / n

    def drop_classes(self, classes: Any) -> list[int]:
        """Forget the centroids (and counts) of ``classes``; returns those it had. A class that left the head (a fleet
        round took out the only samples of it) would otherwise go on pseudo-labelling samples as it."""
        drop = {int(c) for c in classes}
        keep = [i for i, c in enumerate(self.classes) if c not in drop]
        gone = [c for c in self.classes if c in drop]
        if gone:
            self.classes = [self.classes[i] for i in keep]
            self.centroids, self.counts = self.centroids[keep], self.counts[keep]
            self._after_drop()
        return gone

    def _after_drop(self) -> None:
        """Hook for subclasses that keep more per class than the centroid and count."""

    # --- state ------------------------------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        return {"max_count": self.max_count}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"centroids": self.centroids, "counts": self.counts}

    def state_dict(self) -> dict[str, Any]:
        arrays = {"classes": np.asarray(self.classes, np.int64), **self._arrays()}
        return st.make_state(self.kind, self.version, self._params(), arrays,
                             {"n_features": self.n_features})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace learned state; validates everything first so a bad state changes nothing."""
        st.check_state(state, self.kind, self.version, ("classes", "centroids", "counts"))
        if state.get("meta", {}).get("n_features") != self.n_features:
            raise StateError(f"state: {self.kind} has {state['meta'].get('n_features')} features, "
                             f"this one has {self.n_features}")
        classes = [int(c) for c in np.asarray(state["arrays"]["classes"]).ravel()]
        c = len(classes)
        loaded = {"centroids": st.expect_shape(state, "centroids", (c, self.n_features)).astype(np.float32),
                  "counts": st.expect_shape(state, "counts", (c,)).astype(np.float64)}
        loaded.update(self._load_extra(state))
        self.classes = classes
        for k, v in loaded.items():
            setattr(self, k, v)

    def _load_extra(self, state: dict[str, Any]) -> dict[str, Any]:
        return {}


class TiedGaussianClusterer(NearestCentroid):
    """Centroids + one shared covariance, learned online; Mahalanobis pseudo-labels.

    Hyper-parameters:
      ``shrinkage`` — weight of the isotropic part in the covariance (keeps it invertible);
      ``prior_strength`` — how many samples' worth of weight the isotropic prior (scaled to the
      labelled data's variance) keeps against the scatter of pseudo-labelled samples. The
      fewer labels per class, the more wrong pseudo-labels shape an early covariance, so the
      default (``None``) is ``prior_scale / k`` with ``k`` the fewest labelled samples of a
      class at initialisation (2000 for k = 1, 200 for k = 10: measured on the MNIST protocol,
      93% vs 88% at k = 1 against a fixed 200, with no loss at k = 10);
      ``refresh_every`` — bring the precision up to date every so many covariance updates (it
      changes slowly; between refreshes only the moved class mean is followed);
      ``max_count`` — as in :class:`NearestCentroid`.

    The covariance is ``a·(S + λI)`` (``_ridge``): the scatter ``S`` changes by one rank-1 term a sample, but the
    ridge ``λ`` (prior and shrinkage towards the mean variance) grows with ``tr S``, a full-rank change. The precision
    is kept as ``G = inv(S + λ_G I)``, followed through the scatter terms by the Woodbury identity at each refresh
    (O(F²k)), and applied with the ridge's drift ``λ − λ_G`` as a short series (``core/_lowrank.py``); a fresh
    ``G`` (resetting the drift and rounding) is built a block of rows a sample while the stream goes on. No update
    of a stream costs O(F³) (at F = 1280 an inverse was a 0.13–0.23 s stall every 25 samples); initialising,
    loading, a ridge jump over ``MAX_DRIFT`` and a new class while a fresh ``G`` is being built still invert at once.
    """

    kind = "TiedGaussianClusterer"
    #: start a fresh exact ``G`` when the ridge has drifted by this fraction of ``λ_G`` (series ratio ≤ this) ...
    REBASE_DRIFT = 0.02
    #: ... or after this many Woodbury updates since the last one (bounds their rounding: alone, 800 of them drifted
    #: 3e-14 from the exact inverse at F = 64-1280, ``tools/bench_wide.py --drift``)
    REBASE_UPDATES = 40
    #: a ridge drift beyond this fraction (one sample far off the clusters) is met by an exact inverse at once
    MAX_DRIFT = 0.25

    def __init__(self, n_features: int, shrinkage: float = 0.05, prior_strength: float | None = None,
                 prior_scale: float = 2000.0, refresh_every: int = 25, max_count: int | None = None) -> None:
        super().__init__(check_covariance_features(n_features, self.kind), max_count)
        self.shrinkage = check_positive(shrinkage, "shrinkage", allow_zero=True)
        if not 0.0 <= self.shrinkage < 1.0:
            raise InputError(f"shrinkage: must be in [0, 1), got {shrinkage}")
        self.prior_strength = None if prior_strength is None else check_positive(prior_strength, "prior_strength")
        self.prior_scale = check_positive(prior_scale, "prior_scale")
        self.prior_weight = self.prior_strength or self.prior_scale  # resolved at init
        self.refresh_every = int(check_positive(refresh_every, "refresh_every"))
        d = n_features
        self.scatter = np.zeros((d, d), np.float64)   # sum of within-class outer products
        self.n_scatter = 0.0
        # Rank-1 scatter terms queued since the last refresh, applied as one matrix product
        # (one BLAS call per refresh instead of a d×d outer product per sample; same result).
        self._pending_u = np.zeros((self.refresh_every, d), np.float32)
        self._pending_v = np.zeros((self.refresh_every, d), np.float32)
        self.prior_var = 1.0
        self._since_refresh = 0                        # terms queued since the last refresh ...
        self._flushed = 0                              # ... of which already in the scatter
        self._G = np.eye(d, dtype=np.float64)         # inv(S + λ_G I), S as of the last refresh
        self._G32 = np.eye(d, dtype=np.float32)        # its float32 copy for the per-sample products
        self._lam_G = 0.0
        self._delta = 0.0                              # λ − λ_G at the last refresh
        self._a = 1.0                                  # covariance = a·(S + λI)
        self._terms = 1                                # F×F products per precision product (the drift's series)
        self._woodburys = 0                            # Woodbury updates since G was last made exactly
        self._next_G: SteppedInverse | None = None     # a fresh G being built, one block a sample
        self._next_lam = 0.0
        self._W = np.zeros((0, d), np.float32)
        self._b = np.zeros(0, np.float32)

    def _after_init(self, X: np.ndarray, y: np.ndarray) -> None:
        R = X - self.centroids[np.searchsorted(self.classes, y)]
        self._init_covariance((R.T @ R).astype(np.float64), float(R.shape[0]), float(X.var(0).mean()))

    def _after_statistics(self, scatter: np.ndarray) -> None:
        n = self.counts
        N = float(n.sum())
        mu = (n @ self.centroids.astype(np.float64)) / N
        between = float(n @ ((self.centroids - mu) ** 2).sum(1))
        self._init_covariance(scatter, N, (float(np.trace(scatter)) + between) / N / self.n_features)

    def _init_covariance(self, scatter: np.ndarray, n: float, total_var: float) -> None:
        """The shared covariance's start: the within-class ``scatter`` of ``n`` samples whose total
        variance per feature is ``total_var``, and the isotropic prior's weight and variance."""
        fewest = int(self.counts.min())
        self.prior_weight = self.prior_strength or self.prior_scale / fewest
        self._since_refresh = self._flushed = 0
        self.scatter = scatter
        self.n_scatter = n
        # Isotropic prior scaled to the data: with 1 sample per class there is no within-class
        # spread yet, so fall back to a fraction of the total variance.
        within = float(np.trace(self.scatter) / max(self.n_scatter, 1.0) / self.n_features)
        self.prior_var = within if within > 1e-12 else 0.25 * max(total_var, 1e-6)
        self._refresh(exact=True)

    def _flush_scatter(self) -> None:
        """Add the queued terms not yet in the scatter; they stay queued for the precision's next refresh (saving
        the state mid-way changes neither the precision nor when it refreshes)."""
        j, k = self._flushed, self._since_refresh
        if k > j:
            self.scatter += self._pending_u[j:k].T.astype(np.float64) @ self._pending_v[j:k].astype(np.float64)
            self._flushed = k

    def _ridge(self) -> tuple[float, float]:
        """``(a, λ)`` with the covariance ``a·(S + λI)`` (the scatter flushed): ``(1−s)·(S + w·v·I)/(n + w)``, the
        prior-weighted scatter, plus ``s·tr(·)/F·I``, shrinkage towards its mean variance."""
        self._flush_scatter()
        d, w, s = self.n_features, self.prior_weight, self.shrinkage
        a = (1.0 - s) / (self.n_scatter + w)
        lam = w * self.prior_var + s / (1.0 - s) * (float(np.trace(self.scatter)) / d + w * self.prior_var)
        return a, lam

    def covariance(self) -> np.ndarray:
        """The current tied covariance: prior-weighted scatter, shrunk towards isotropic."""
        a, lam = self._ridge()
        cov = a * self.scatter
        cov.reshape(-1)[::self.n_features + 1] += a * lam
        return cov

    def precision(self) -> np.ndarray:
        """The precision the pseudo-labels use now (as of the last refresh), as an F×F matrix (O(F³): for checks)."""
        return self._apply(np.eye(self.n_features, dtype=np.float32))

    def _apply(self, Y: np.ndarray) -> np.ndarray:
        """The precision (as of the last refresh) times ``Y`` (F or F×m), float32."""
        return ridge_solve(self._G32, self._delta, Y, self._terms) / np.float32(self._a)

    def _refresh(self, exact: bool = False) -> None:
        """Bring the precision to the current scatter: Woodbury with the queued terms, or (``exact``: at
        initialisation and load, or when the ridge jumped, e.g. after an outlier) a full inverse."""
        k = self._since_refresh
        U = self._pending_u[:k].astype(np.float64)
        V = self._pending_v[:k].astype(np.float64)
        a, lam = self._ridge()
        self._since_refresh = self._flushed = 0
        if not exact:
            if self._next_G is not None:      # started at the last refresh: the queued terms are the ones since
                self._G, self._lam_G, self._woodburys = self._next_G.finish(), self._next_lam, 0
                self._next_G = None
            exact = abs(lam - self._lam_G) > self.MAX_DRIFT * self._lam_G
        if exact:
            self._next_G = None
            self._G = np.linalg.inv(self.scatter + lam * np.eye(self.n_features))
            self._lam_G, self._woodburys = lam, 0
        else:
            if k:
                self._G = woodbury(self._G, U, V)
                self._woodburys += 1
            if abs(lam - self._lam_G) > self.REBASE_DRIFT * self._lam_G or self._woodburys >= self.REBASE_UPDATES:
                A = self.scatter.copy()
                A.reshape(-1)[::self.n_features + 1] += lam
                self._next_G, self._next_lam = SteppedInverse(A, max(1, self.refresh_every - 1)), lam
        self._G32 = self._G.astype(np.float32)
        self._a, self._delta = a, lam - self._lam_G
        # ‖G‖ ≤ 1/λ_G (S is positive semi-definite): the series' ratio is at most δ/λ_G; 3e-8 is float32 rounding
        self._terms = max(1, series_terms(abs(self._delta) / self._lam_G, 3e-8))
        self._W = np.ascontiguousarray(self._apply(self.centroids.T).T)
        self._b = -0.5 * np.einsum("ij,ij->i", self._W, self.centroids)

    def pseudo_label_valid(self, x: np.ndarray) -> tuple[int, float]:
        if not self.classes:
            raise InputError("clusterer: not initialised (call init_from_labelled first)")
        s = self._W @ x + self._b
        i = int(s.argmax())
        return self.classes[i], float(1.0 / np.exp(s - s[i]).sum())

    def mahalanobis(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """``(Px, d²)``: the precision times ``x``, and the squared Mahalanobis distance from ``x`` to the nearest class
        mean (``xᵀPx − 2 max_c score_c``, as ``score_c = cᵀPx − ½cᵀPc``); a few F×F products, for ``learn_gate``."""
        Px = self._apply(x)
        return Px, max(0.0, float(x.astype(np.float64) @ Px) - 2.0 * float((self._W @ x + self._b).max()))

    def update_valid(self, x: np.ndarray, y: int) -> None:
        i = self._row(y, x)
        if i is None:
            self._refresh()
            return
        n = self.counts[i] + 1.0
        if self.max_count is not None:
            n = min(n, float(self.max_count))
        self.counts[i] = n
        delta = x - self.centroids[i]
        self.centroids[i] += delta / n
        # Welford-style within-class scatter: (x - old mean)(x - new mean)^T
        k = self._since_refresh
        self._pending_u[k] = delta
        np.subtract(x, self.centroids[i], out=self._pending_v[k])
        self._since_refresh = k + 1
        self.n_scatter += 1.0
        if self._since_refresh >= self.refresh_every:
            self._refresh()
        else:  # the mean of class i moved: its row of W and b follow exactly; the precision lags
            w = self._W[i] = self._apply(self.centroids[i])
            self._b[i] = -0.5 * float(w.dot(self.centroids[i]))
            if self._next_G is not None:
                self._next_G.step()

    def _after_drop(self) -> None:
        """The score rows of the classes left. The pooled scatter keeps the spread the dropped classes' samples had
        about their means: it is not separable per class, and it is the shape of real samples in this feature space."""
        self._refresh()

    def _params(self) -> dict[str, Any]:
        return {"max_count": self.max_count, "shrinkage": self.shrinkage, "prior_strength": self.prior_strength,
                "prior_scale": self.prior_scale, "refresh_every": self.refresh_every}

    def _arrays(self) -> dict[str, np.ndarray]:
        self._flush_scatter()
        return {"centroids": self.centroids, "counts": self.counts, "scatter": self.scatter,
                "scalars": np.array([self.n_scatter, self.prior_var, self.prior_weight], np.float64)}

    def _load_extra(self, state: dict[str, Any]) -> dict[str, Any]:
        d = self.n_features
        scatter = st.expect_shape(state, "scatter", (d, d)).astype(np.float64)
        n_scatter, prior_var, prior_weight = st.expect_shape(state, "scalars", (3,)).tolist()
        if n_scatter < 0 or prior_var <= 0 or prior_weight <= 0:
            raise StateError("state: TiedGaussianClusterer scalars out of range")
        return {"scatter": scatter, "n_scatter": float(n_scatter), "prior_var": float(prior_var),
                "prior_weight": float(prior_weight)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._since_refresh = self._flushed = 0
        self._refresh(exact=True)
