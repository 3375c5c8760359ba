"""The learning gate: pseudo-labels of a scene unlike every class, or of the view just learned, are not learned; a
shuffled stream of real samples passes untouched; a person's label always goes through."""

import math

import numpy as np
import pytest

from tests.conftest import blobs
from tinycl_nodes.core import InputError, NearestCentroid, StreamingLDA, TiedGaussianClusterer, TinyNDC
from tinycl_nodes.core import state as st
from tinycl_nodes.core.errors import StateError
from tinycl_nodes.core.learn_gate import LearnGate, RecentViews


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


def test_the_views_remembered_are_state_the_last_recent_of_them_oldest_first():
    rng = np.random.default_rng(2)
    views = RecentViews(8, 0.5, "l2", recent=4)
    X = rng.normal(size=(6, 8)).astype(np.float32)
    for x in X:
        views.remember(x)
    state = st.from_bytes(st.to_bytes(views.state_dict()))
    np.testing.assert_array_equal(state["arrays"]["X"], X[2:])           # 4 rows of F floats, oldest first
    again = RecentViews(8, 0.5, "l2", recent=4)
    again.load_state_dict(state)
    assert all(again.seen(x) for x in X[2:]) and not again.seen(X[0])
    again.remember(X[0])                                # the oldest (X[2]) makes room, as in the ring saved
    assert again.seen(X[0]) and not again.seen(X[2]) and again.seen(X[3])
    smaller = RecentViews(8, 0.5, "l2", recent=2)       # a smaller ring keeps the last views
    smaller.load_state_dict(state)
    assert smaller.seen(X[5]) and smaller.seen(X[4]) and not smaller.seen(X[3])
    other = RecentViews(8, 0.5, "l1", recent=4)         # another metric: not comparable, refused, none remembered
    with pytest.raises(StateError, match="'l2' metric, this gate's is 'l1'"):
        other.load_state_dict(state)
    assert not any(other.seen(x) for x in X)


@pytest.mark.parametrize("metric", ["l2", "l1", "mahalanobis"])
def test_a_repeat_names_the_view_it_repeats_while_the_ring_holds_it(metric):
    """``match`` gives the serial ``remember`` gave the view repeated (the nearest within the radius), ``view`` that
    view back: the TinyRCE labeler journals a view once it is held. A view pushed out of the ring is not given."""
    rng = np.random.default_rng(3)
    P = np.eye(8)
    views = RecentViews(8, 0.5, metric, recent=4)
    X = (3 * rng.normal(size=(6, 8))).astype(np.float32)
    Px = (lambda x: P @ x) if metric == "mahalanobis" else (lambda x: None)
    assert [views.remember(x, Px(x)) for x in X] == [0, 1, 2, 3, 4, 5]
    for i in (2, 3, 4, 5):
        near = X[i] + np.float32(0.01)
        assert views.match(near, Px(near)) == i
        np.testing.assert_array_equal(views.view(i), X[i])
    assert views.match(X[0], Px(X[0])) == -1 and views.view(0) is None and views.view(1) is None   # pushed out
    assert views.view(6) is None and views.view(-1) is None
    far = X[5] + np.float32(1.0)
    assert views.match(far, Px(far)) == -1


def test_a_gate_restored_holds_back_the_held_view_as_the_one_it_was_saved_from():
    X, y = blobs(200, [0, 1, 2, 3], dim=16, seed=9)
    system, restarted = _system(outlier_factor=3.5, repeat_factor=0.1), _system(outlier_factor=3.5, repeat_factor=0.1)
    _started(system, X, y)
    assert system.step(X[3]).learned
    restarted.clusterer.load_state_dict(system.clusterer.state_dict())
    restarted.head.load_state_dict(system.head.state_dict())
    assert restarted.step(X[3]).learned                 # without the views: the held view is learned once more
    restarted.gate.views.load_state_dict(st.from_bytes(st.to_bytes(system.gate.views.state_dict())))
    a, b = system.step(X[3]), restarted.step(X[3])
    assert not a.learned and not b.learned and b.not_learned_because == LearnGate.REPEAT


@pytest.mark.parametrize("change, words", [
    (lambda s: s["arrays"].update(X=np.zeros((2, 7), np.float32)), "'X' has shape"),
    (lambda s: s["arrays"].update(q=np.zeros(3)), "'q' has shape"),
    (lambda s: s["arrays"].update(X=np.full((2, 8), np.nan, np.float32)), "NaN"),
    (lambda s: s["arrays"].pop("q"), "lacks array"),
    (lambda s: s.update(kind="Head"), "cannot load it into a 'RecentViews'")])
def test_bad_views_are_refused_in_one_line_and_change_nothing(change, words):
    views = RecentViews(8, 0.5, "l2")
    x = np.ones(8, np.float32)
    views.remember(x)
    other = RecentViews(8, 0.5, "l2")
    other.remember(2 * x)
    other.remember(3 * x)
    state = other.state_dict()
    change(state)
    with pytest.raises(StateError, match=words):
        views.load_state_dict(state)
    assert views.seen(x) and not views.seen(2 * x)
