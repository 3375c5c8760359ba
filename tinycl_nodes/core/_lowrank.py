"""Private numerics for the learners that keep an inverse of ``S + λI`` (a scatter plus a ridge) up to date.

Their covariance is ``a·(S + λI)``: the scatter ``S`` changes by rank-1 terms (one a sample), but the ridge ``λ``
(prior, shrinkage towards the mean variance, ``1/N`` normalisation) moves with every sample too, and that change is
full rank. So an exact inverse is followed in three parts, none of which costs O(F³) in one step:

* :func:`woodbury` — the known rank-k change of the scatter (O(F²k));
* :func:`ridge_solve` — the ridge's drift ``δ`` since the inverse was made, as a Neumann series in ``δ·G``;
* :class:`SteppedInverse` — a fresh exact inverse (which resets ``δ`` and any rounding drift), built a block of rows
  at a time over several samples (O(F²·F/steps) a step), so no one sample pays for all of it.
"""

from __future__ import annotations

import numpy as np


def woodbury(G: np.ndarray, U: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``inv(inv(G) + UᵀV)`` from ``G`` (F×F) and the k rank-1 terms ``U``, ``V`` (k×F): O(F²k), not O(F³).

    ``V`` may instead be k weights ``w`` (``V = diag(w)·U``) when ``G`` is symmetric: ``VG`` is then ``GUᵀ``'s
    rows scaled, two F×F×k products instead of three."""
    GU = G @ U.T                                   # F×k
    if V.ndim == 1:
        VG = V[:, None] * GU.T                     # k×F
        K = np.eye(U.shape[0]) + V[:, None] * (U @ GU)
    else:
        VG = V @ G
        K = np.eye(U.shape[0]) + V @ GU            # k×k
    return G - GU @ np.linalg.solve(K, VG)


def series_terms(ratio: float, tol: float) -> int:
    """How many terms of :func:`ridge_solve` bring its error below ``tol`` when ``δ·‖G‖ ≤ ratio``."""
    if ratio <= 0.0:
        return 0
    if ratio >= 0.5:
        raise ValueError(f"ridge drift ratio {ratio:.3g}: the series would converge too slowly")
    return int(np.ceil(np.log(tol) / np.log(ratio)))


def ridge_solve(G: np.ndarray, delta: float, Y: np.ndarray, terms: int) -> np.ndarray:
    """``inv(inv(G) + δI) @ Y`` by ``Σ_j (−δG)^j G Y``, ``j`` < ``terms`` (error ``(δ·‖G‖)^terms``, relative)."""
    Z = G @ Y
    if terms <= 1:
        return Z
    total = Z.copy()
    for _ in range(terms - 1):
        Z = G @ Z
        Z *= -delta
        total += Z
    return total


class SteppedInverse:
    """``inv(A)`` by bordering: after step j the inverse of ``A``'s leading j·m×j·m block is known; a step adds the
    next ``m`` rows and columns (Schur complement, O(F²m); ``balanced``: blocks of about equal cost instead). ``A``
    need not be symmetric (a scatter summed from float32 rank-1 terms is not, to rounding); it is kept, not copied.
    Exact up to rounding, as ``np.linalg.inv``."""

    def __init__(self, A: np.ndarray, steps: int, balanced: bool = False) -> None:
        self.A = A
        F, steps = A.shape[0], max(1, steps)
        self.m = max(1, -(-F // steps))
        # ``balanced``: blocks end at F·(j/steps)^(1/3). A step with k rows done costs ~6k²m, so equal m makes the
        # last steps the dearest (F³/4 each at 24 steps); equal cubes make every step ~2F³/steps
        self.ends = None if not balanced else \
            np.unique(np.clip(np.ceil(F * (np.arange(1, steps + 1) / steps) ** (1 / 3)), 1, F).astype(np.int64))
        self.k = 0
        self.out = np.empty_like(A)

    @property
    def done(self) -> bool:
        return self.k == self.A.shape[0]

    def step(self) -> bool:
        """Add the next block of rows; True once the inverse is complete."""
        A, out, k = self.A, self.out, self.k
        if self.ends is None:
            e = min(k + self.m, A.shape[0])
        else:
            e = int(self.ends[np.searchsorted(self.ends, k, side="right")]) if k < A.shape[0] else k
        if k == 0:
            out[:e, :e] = np.linalg.inv(A[:e, :e])
        elif e > k:
            Ak = out[:k, :k]
            X = Ak @ A[:k, k:e]                                    # A_kk⁻¹ B
            Y = A[k:e, :k] @ Ak                                    # C A_kk⁻¹
            Sinv = np.linalg.inv(A[k:e, k:e] - A[k:e, :k] @ X)     # inverse Schur complement (m×m)
            XS = X @ Sinv
            out[:k, :k] += XS @ Y
            out[:k, k:e] = -XS
            out[k:e, :k] = -Sinv @ Y
            out[k:e, k:e] = Sinv
        self.k = e
        return self.done

    def finish(self) -> np.ndarray:
        """The complete inverse (runs the remaining steps at once)."""
        while not self.step():
            pass
        return self.out
