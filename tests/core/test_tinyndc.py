import numpy as np
import pytest

from tests.conftest import blobs
from tinycl_nodes.core import (CWRStar, InputError, NearestCentroid, StreamingLDA,
                               TiedGaussianClusterer, TinyNDC)


def _init(system, X, y, k=5):
    idx = np.concatenate([np.flatnonzero(y == c)[:k] for c in np.unique(y)])
    system.init_from_labelled(X[idx], y[idx])
    return np.setdiff1d(np.arange(len(y)), idx)


def test_paper_loop_centroids_follow_head_prediction():
    X, y = blobs(100, [0, 1, 2], dim=8, seed=4)
    nc, head = NearestCentroid(8), CWRStar(8)
    system = TinyNDC(nc, head, cluster_update="head")
    rest = _init(system, X, y)
    counts0 = nc.counts.copy()
    x = X[rest[0]]
    pred = head.predict_one(x)
    step = system.step(x)
    assert step.prediction == pred and step.learned
    # exactly the centroid of the head's prediction gained a sample
    grown = np.flatnonzero(nc.counts != counts0)
    assert [nc.classes[i] for i in grown] == [pred]
    assert head.n_seen == 15 + 1  # 5 labelled per class + one pseudo-label


def test_unsupervised_stream_learns_and_labels_count():
    X, y = blobs(150, [0, 1, 2, 3], dim=16, seed=5)
    system = TinyNDC(TiedGaussianClusterer(16), StreamingLDA(16), min_confidence=0.9, cluster_update="self")
    rest = _init(system, X, y, k=3)
    preds = [system.step(X[i]).prediction for i in rest]
    assert np.mean(np.array(preds) == y[rest]) > 0.95
    assert system.n_labels == 12
    assert system.n_pseudo + system.n_skipped == len(rest)


def test_confidence_gate_skips_uncertain_samples():
    system = TinyNDC(NearestCentroid(2), CWRStar(2), min_confidence=0.99, cluster_update="self")
    system.init_from_labelled(np.array([[-1, 0], [1, 0]], np.float32), [0, 1])
    seen = system.head.n_seen
    step = system.step(np.array([0.0, 0.0], np.float32))  # equidistant: confidence 0.5
    assert not step.learned and step.confidence == pytest.approx(0.5)
    assert system.head.n_seen == seen and system.n_skipped == 1


def test_true_label_overrides_pseudo_label_and_adds_class():
    system = TinyNDC(NearestCentroid(2), CWRStar(2))
    system.init_from_labelled(np.array([[-1, 0], [1, 0]], np.float32), [0, 1])
    system.step(np.array([0.0, 5.0], np.float32), label=7)
    assert 7 in system.head.classes and 7 in system.clusterer.classes


def test_clustering_only_and_supervised_only():
    X, y = blobs(80, [0, 1], dim=4, seed=6)
    only_c = TinyNDC(NearestCentroid(4), None, cluster_update="head")  # falls back to "self"
    assert only_c.cluster_update == "self"
    _init(only_c, X, y)
    assert only_c.step(X[-1]).prediction in (0, 1)
    sup = TinyNDC(None, CWRStar(4))
    _init(sup, X, y)
    with pytest.raises(InputError, match="label"):
        sup.step(X[-1])
    assert sup.step(X[-1], label=int(y[-1])).learned


def test_bad_configuration_and_input():
    with pytest.raises(InputError):
        TinyNDC(None, None)
    with pytest.raises(InputError, match="min_confidence"):
        TinyNDC(NearestCentroid(2), min_confidence=2)
    with pytest.raises(InputError, match="cluster_update"):
        TinyNDC(NearestCentroid(2), cluster_update="sometimes")
    system = TinyNDC(NearestCentroid(2), CWRStar(2))
    system.init_from_labelled(np.array([[-1, 0], [1, 0]], np.float32), [0, 1])
    before = system.clusterer.centroids.copy()
    for bad in ([np.nan, 0], [1, 2, 3], "xy"):
        with pytest.raises(InputError):
            system.step(bad)
    with pytest.raises(InputError, match="class id"):
        system.step([0.5, 0.5], label=-1)
    np.testing.assert_array_equal(system.clusterer.centroids, before)
