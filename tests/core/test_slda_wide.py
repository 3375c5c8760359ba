"""StreamingLDA on wide features: its scoring cache comes from a Woodbury-updated inverse and a ridge series
(core/_lowrank.py), not a solve; it must still be the exact solve's to float32 rounding, through unlearning, a new
class and a state round trip."""

from __future__ import annotations

import numpy as np

from tinycl_nodes.core import state as st
from tinycl_nodes.core.slda import StreamingLDA

F = 512
TOL = 4e-6      # relative (to the largest entry); float32 products over 512 features: ~8e-7 seen


def _stream(n: int, seed: int = 0, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters with a correlated spread over two decades (as a backbone's features), float32."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 1.0, (classes + 1, F))
    spread = np.exp(rng.uniform(np.log(0.05), np.log(5.0), F)) / np.sqrt(F)
    mix = np.linalg.qr(rng.normal(size=(F, F)))[0]
    y = rng.integers(0, classes, n)
    return (means[y] + (rng.normal(size=(n, F)) * spread) @ mix.T).astype(np.float32), y


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def _check_exact(head: StreamingLDA) -> None:
    """The cache (fresh after a refresh) against a solve of the shrunk covariance, and that it did not solve."""
    assert head._stale == 0 and head._G is not None, "the cache must come from G here"
    W = np.linalg.solve(head._shrunk(), head.means.T).T
    assert _rel(head._W, W) < TOL
    assert _rel(head._b, 0.5 * (head.means * W).sum(axis=1)) < TOL


def _learn_to_refresh(head: StreamingLDA, X: np.ndarray, y: np.ndarray, i: int) -> int:
    while head._stale:
        head.learn_valid(X[i], int(y[i]))
        i += 1
    return i


def test_wide_cache_is_the_exact_solve_through_unlearn_new_class_and_state():
    assert StreamingLDA(F)._wide and not StreamingLDA(64)._wide
    X, y = _stream(2200)
    head = StreamingLDA(F, refresh_every=25)
    i, checked = 0, 0
    for stop in (300, 700, 1100, 1500):
        while i < stop:
            head.learn_valid(X[i], int(y[i]))
            i += 1
        i = _learn_to_refresh(head, X, y, i)
        _check_exact(head)
        checked += 1
    for j in (3, 50, 900):                 # take back learned samples: G is dropped (a downdate magnified its
        head.unlearn_valid(X[j], int(y[j]))     # rounding), the refresh solves, and a fresh G is built after
        assert head._G is None and head._stale == 0
        W = np.linalg.solve(head._shrunk(), head.means.T).T
        assert _rel(head._W, W) < TOL
    while head._G is None:
        head.learn_valid(X[i], int(y[i]))
        i += 1
    i = _learn_to_refresh(head, X, y, i)
    _check_exact(head)
    head.learn_valid(X[i] + 3.0, 10)        # a new class: an early refresh
    i += 1
    _check_exact(head)
    for _ in range(12):
        head.learn_valid(X[i] + 3.0, 10)
        i += 1
    i = _learn_to_refresh(head, X, y, i)
    _check_exact(head)

    state = st.from_bytes(st.to_bytes(head.state_dict()))
    assert set(state["arrays"]) == {"classes", "class_seen", "means", "counts", "scatter", "n_updates", "cache_W",
                                    "cache_b", "cache_stale"}
    other = StreamingLDA(F, refresh_every=25)
    other.load_state_dict(state)
    probe = X[2000:2200]
    for x in probe[:50]:
        assert np.array_equal(head.predict_proba(x), other.predict_proba(x))
    for h in (head, other):                 # G is derived: the loaded head builds its own, then agrees
        for x, t in zip(X[i:i + 200], y[i:i + 200]):
            h.learn_valid(x, int(t))
        _learn_to_refresh(h, X, y, i + 200)
        _check_exact(h)
    assert [head.predict_valid(x) for x in probe] == [other.predict_valid(x) for x in probe]
    assert checked == 4
