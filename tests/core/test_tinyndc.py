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


def _prior(X, y, h=""):
    """The class statistics of (X, y) as model_prior.py ships them: a streaming-LDA snapshot."""
    from tinycl_nodes.core.federated import snapshot_from_head
    from tinycl_nodes.model_prior import fit_prior

    return snapshot_from_head(fit_prior(X, y, h))


def test_a_model_prior_starts_the_system_as_if_it_had_the_models_training_samples():
    """init_from_labelled(X, y, prior) with model_prior=True: the clusterer and the streaming-LDA head are those
    of init_from_labelled on the prior's samples and the labelled ones together, and so are the predictions."""
    X, y = blobs(120, [0, 1, 2, 3, 4], dim=12, seed=7)
    old = np.isin(y, [0, 1, 2])
    Xp, yp = X[old][:240], y[old][:240]                       # what the model was trained on: old classes only
    lab = np.concatenate([np.flatnonzero(y == c)[-1:] for c in range(5)])   # one label per class
    both = TinyNDC(TiedGaussianClusterer(12), StreamingLDA(12), model_prior=True)
    both.init_from_labelled(X[lab], y[lab], _prior(Xp, yp))
    union = TinyNDC(TiedGaussianClusterer(12), StreamingLDA(12))
    union.init_from_labelled(np.concatenate([Xp, X[lab]]), np.concatenate([yp, y[lab]]))
    assert both.clusterer.classes == union.clusterer.classes == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(both.clusterer.centroids, union.clusterer.centroids, atol=1e-5)
    np.testing.assert_array_equal(both.clusterer.counts, union.clusterer.counts)
    np.testing.assert_allclose(both.clusterer.covariance(), union.clusterer.covariance(), rtol=1e-4, atol=1e-6)
    assert both.clusterer.prior_weight == union.clusterer.prior_weight
    for a, b in zip(both.head.state_dict()["arrays"].values(), union.head.state_dict()["arrays"].values()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    rest = np.setdiff1d(np.arange(len(y)), np.concatenate([np.flatnonzero(old)[:240], lab]))
    assert [both.step(X[i]).prediction for i in rest] == [union.step(X[i]).prediction for i in rest]
    # without model_prior the prior is not taken in: exactly the labelled samples alone
    alone, plain = (TinyNDC(TiedGaussianClusterer(12), StreamingLDA(12)) for _ in range(2))
    alone.init_from_labelled(X[lab], y[lab], _prior(Xp, yp))
    plain.init_from_labelled(X[lab], y[lab])
    np.testing.assert_array_equal(alone.clusterer.covariance(), plain.clusterer.covariance())
    assert alone.head.n_seen == plain.head.n_seen == 5


def test_a_model_prior_that_does_not_fit_is_refused_with_one_line():
    X, y = blobs(40, [0, 1], dim=8, seed=3)
    prior = _prior(X, y, "a" * 64)
    with pytest.raises(InputError, match="starts a StreamingLDA head, not a CWRStar"):
        TinyNDC(TiedGaussianClusterer(8), CWRStar(8), model_prior=True).init_from_labelled(X[:2], y[:2], prior)
    with pytest.raises(InputError, match="prior has 8 features, the system 6"):
        TinyNDC(TiedGaussianClusterer(6), StreamingLDA(6), model_prior=True).init_from_labelled(
            X[:2, :6], y[:2], prior)
    with pytest.raises(Exception, match="extractor"):     # the prior of another extractor's features
        TinyNDC(TiedGaussianClusterer(8), StreamingLDA(8, extractor_hash="b" * 64),
                model_prior=True).init_from_labelled(X[:2], y[:2], prior)
    with pytest.raises(InputError, match="class statistics: every count"):
        TiedGaussianClusterer(8).init_from_statistics([0, 1], X[:2], [1, 0], np.eye(8))
