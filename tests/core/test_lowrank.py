"""The low-rank numerics behind the covariance learners' precision (core/_lowrank.py), against np.linalg.inv."""

import numpy as np
import pytest

from tinycl_nodes.core._lowrank import SteppedInverse, ridge_solve, series_terms, woodbury


def _spd(F: int, seed: int) -> np.ndarray:
    M = np.random.default_rng(seed).normal(size=(F, 2 * F))
    return M @ M.T / F + 0.1 * np.eye(F)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("F,steps", [(1, 3), (7, 1), (64, 24), (130, 24)])
def test_stepped_inverse_is_the_inverse(F, steps):
    A = _spd(F, F) + 1e-3 * np.random.default_rng(1).normal(size=(F, F))   # not symmetric: a float32 scatter's
    s = SteppedInverse(A, steps)
    n = 1
    while not s.step():
        n += 1
    assert n <= steps and _rel(s.out, np.linalg.inv(A)) < 1e-12


def test_woodbury_and_ridge_series_are_the_inverse():
    F = 50
    A = _spd(F, 2)
    U = np.random.default_rng(3).normal(size=(6, F))
    G = woodbury(np.linalg.inv(A), U, 0.9 * U)
    assert _rel(G, np.linalg.inv(A + 0.9 * U.T @ U)) < 1e-12
    delta = 0.02 * 0.1                 # 2 % of the smallest ridge: ratio ≤ 0.02
    terms = series_terms(0.02, 1e-15)
    assert _rel(ridge_solve(G, delta, np.eye(F), terms), np.linalg.inv(A + 0.9 * U.T @ U + delta * np.eye(F))) < 1e-12
    with pytest.raises(ValueError, match="ratio"):
        series_terms(0.6, 1e-8)
