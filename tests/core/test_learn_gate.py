"""The learning gate: pseudo-labels of a scene unlike every class, or of the view just learned, are not learned; a
shuffled stream of real samples passes untouched; a person's label always goes through."""

import math

import numpy as np
import pytest

from tests.conftest import blobs
from tinycl_nodes.core import InputError, NearestCentroid, StreamingLDA, TiedGaussianClusterer, TinyNDC
from tinycl_nodes.core.learn_gate import LearnGate


def _system(**gate) -> TinyNDC:
    return TinyNDC(TiedGaussianClusterer(16), StreamingLDA(16), cluster_update="self", **gate)


def _started(system: TinyNDC, X, y, k: int = 5) -> np.ndarray:
    idx = np.concatenate([np.flatnonzero(y == c)[:k] for c in np.unique(y)])
    system.init_from_labelled(X[idx], y[idx])
    return np.setdiff1d(np.arange(len(y)), idx)


def test_a_shuffled_stream_of_real_samples_is_learned_whole():
    X, y = blobs(200, [0, 1, 2, 3], dim=16, seed=7)
    gated, plain = _system(outlier_factor=3.5, repeat_factor=0.1), _system()
    rest = _started(gated, X, y)
    _started(plain, X, y)
    for i in rest:
        a, b = gated.step(X[i]), plain.step(X[i])
        assert a.prediction == b.prediction and a.learned and a.not_learned_because == ""
    assert gated.gate.counts == {LearnGate.OUTLIER: 0, LearnGate.REPEAT: 0}
    np.testing.assert_array_equal(gated.clusterer.centroids, plain.clusterer.centroids)


def test_a_scene_unlike_every_class_is_not_learned():
    X, y = blobs(200, [0, 1, 2, 3], dim=16, seed=8)
    system = _system(outlier_factor=3.5, repeat_factor=0.1)
    for i in _started(system, X, y):
        system.step(X[i])
    seen, centroids = system.head.n_seen, system.clusterer.centroids.copy()
    rng = np.random.default_rng(0)
    wall = X.mean(0) + 12.0 * rng.normal(size=16)          # far from every class, each frame a little different
    for _ in range(300):
        step = system.step((wall + rng.normal(size=16)).astype(np.float32))
        assert step.pseudo_label is not None and not step.learned
        assert step.not_learned_because == LearnGate.OUTLIER
    assert system.head.n_seen == seen and system.gate.counts[LearnGate.OUTLIER] == 300
    np.testing.assert_array_equal(system.clusterer.centroids, centroids)
    # without the gate (the paper's loop) every one of them is filed under some class
    plain = _system()
    for i in _started(plain, X, y):
        plain.step(X[i])
    assert all(plain.step((wall + rng.normal(size=16)).astype(np.float32)).learned for _ in range(300))


def test_the_same_view_again_is_learned_once_and_a_new_view_again():
    X, y = blobs(200, [0, 1, 2, 3], dim=16, seed=9)
    system = _system(outlier_factor=3.5, repeat_factor=0.1)
    for i in _started(system, X, y):
        system.step(X[i])
    rng = np.random.default_rng(1)
    view = X[3]
    learned = [system.step((view + 0.01 * rng.normal(size=16)).astype(np.float32)).learned for _ in range(200)]
    assert learned[0] and not any(learned[1:]) and system.gate.counts[LearnGate.REPEAT] == 199
    assert system.step(X[17]).learned                           # the camera looks elsewhere: learned
    # a person's label for the view is learned whatever the gate says
    n = system.head.n_seen
    assert system.step(view, int(y[3])).learned and system.head.n_seen == n + 1


@pytest.mark.parametrize("kwargs, words", [
    ({"outlier_factor": 0.0}, "outlier_factor"), ({"outlier_factor": math.nan}, "outlier_factor"),
    ({"repeat_factor": -1.0}, "repeat_factor"), ({"outlier_factor": 2.0, "repeat_factor": 2.0}, "repeat_factor"),
    ({"recent": 0}, "recent")])
def test_bad_gate_values_are_refused_in_one_line(kwargs, words):
    with pytest.raises(InputError, match=words):
        LearnGate(16, **{"outlier_factor": 3.5, "repeat_factor": 0.1, **kwargs})


def test_the_gate_needs_a_covariance():
    with pytest.raises(InputError, match="TiedGaussianClusterer"):
        TinyNDC(NearestCentroid(16), StreamingLDA(16), outlier_factor=3.0)
