"""TinyRCE's early-exit distance count: fewer MACs, never more, and the learning itself unchanged."""

import numpy as np

from tests.conftest import blobs
from tinycl_nodes.core.rce import TinyRCE


def test_early_exit_counts_fewer_macs_for_the_same_learning():
    X, y = blobs(60, [0, 1, 2, 3], dim=64, sep=8.0, seed=3)
    for metric in ("l1", "l2"):
        rce = TinyRCE(64, memory_bytes=40 * 1024, r_max=30.0 if metric == "l1" else 6.0, metric=metric)
        for x, c in zip(X, y):
            rce.learn_one(x, int(c))
        assert 0 < rce.learning_macs_early_exit < rce.learning_macs
        state = rce.state_dict()
        back = TinyRCE(64, memory_bytes=40 * 1024, r_max=rce.r_max, metric=metric)
        back.load_state_dict(state)
        assert back.learning_macs_early_exit == rce.learning_macs_early_exit
        assert np.array_equal(back.radii, rce.radii)


def test_early_exit_bound_keeps_every_distance_that_matters():
    rng = np.random.default_rng(0)
    rce = TinyRCE(16, r_max=5.0, metric="l1")
    for c in range(3):
        for _ in range(5):
            rce.learn_one(rng.normal(c * 3, 1, 16).astype(np.float32), c)
    x = rng.normal(3, 1, 16).astype(np.float32)
    right = rce.rows == rce._index[1]
    d = rce._dist(x)
    bound = np.where(right, rce.radii * (1 + rce.grow_margin), rce.r_max)
    needed = d <= bound                       # these distances must be computed in full
    full = int(needed.sum()) * 16
    assert rce._early_exit_macs(x, right, chunk=4) >= full
