"""The model prior weighed by the labelled samples (core/prior_worth.py): full weight when they agree with it,
about as many samples as the robot's class means really scatter when they do not."""

import math

import numpy as np
import pytest

from tinycl_nodes.core import InputError, StreamingLDA, TiedGaussianClusterer, TinyNDC
from tinycl_nodes.core.federated import HeadSnapshot
from tinycl_nodes.core.prior_worth import prior_meta, prior_taken, prior_worth, weighed

F, C = 16, 4


def _model(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class means and a shared covariance of a model's features."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(F, F)) / np.sqrt(F)
    return rng.normal(scale=4.0, size=(C, F)), A @ A.T + 0.1 * np.eye(F)


def _prior(means: np.ndarray, cov: np.ndarray, n: int = 5000) -> HeadSnapshot:
    """The statistics of ``n`` samples per class as model_prior.py ships them (exact moments)."""
    return HeadSnapshot(np.arange(C), [str(c) for c in range(C)], np.full(C, n), means.astype(np.float32),
                        np.zeros(C, np.float32), "StreamingLDA", "", shared=cov * n * C)


def _samples(means: np.ndarray, cov: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.multivariate_normal(m, cov, per_class) for m in means])
    return X, np.repeat(np.arange(C), per_class)


def test_samples_from_the_models_own_distribution_keep_the_prior_at_full_weight():
    means, cov = _model()
    prior = _prior(means, cov)
    kept = [prior_worth(prior, *_samples(means, cov, k, seed), z=2.0) for k in (1, 10) for seed in range(10)]
    assert sum(math.isinf(w) for w in kept) >= 18          # false alarms at z = 2: about 2 %
    assert prior_worth(prior, *_samples(means, cov, 10, 0), z=math.inf) == math.inf


@pytest.mark.parametrize("true_worth", [2.0, 20.0])
def test_shifted_class_means_give_about_as_many_samples_as_they_scatter(true_worth):
    """The robot's class means drawn around the model's with covariance Σ/N0: the estimate finds N0 (within a
    factor 2, from 200 labelled samples of 4 classes)."""
    means, cov = _model()
    rng = np.random.default_rng(1)
    robot = means + rng.multivariate_normal(np.zeros(F), cov / true_worth, C)
    estimates = [prior_worth(_prior(means, cov), *_samples(robot, cov, 50, seed), z=0.0) for seed in range(5)]
    assert true_worth / 2 < np.median(estimates) < true_worth * 2, estimates
    # labelled samples of classes the prior does not have say nothing about it
    X, y = _samples(robot, cov, 5, 0)
    assert prior_worth(_prior(means, cov), X, y + 10, z=0.0) == math.inf


def test_one_label_per_class_shows_a_shift_every_class_shares():
    """With one labelled sample per class the per-class distances T cannot tell a small camera shift from chance;
    the part every class shares (Tc, √k times less noisy) can: a shared shift is shown in nearly every draw, per-class
    deviations of the same size (the same T) in few."""
    means, cov = _model()
    prior = _prior(means, cov)
    L = np.linalg.cholesky(cov)
    size = np.sqrt(1.8 * F / C)              # n‖δ‖²_Σ⁻¹ / F = 1.8: under 3 of T's standard deviations (2.1)
    rng = np.random.default_rng(7)

    def shown(shared: bool) -> int:
        found = 0
        for seed in range(20):
            u = rng.normal(size=(1 if shared else C, F))
            delta = (u / np.linalg.norm(u, axis=1, keepdims=True) * size) @ L.T
            found += math.isfinite(prior_worth(prior, *_samples(means + delta, cov, 1, seed), z=3.0))
        return found

    assert shown(shared=True) >= 18
    assert shown(shared=False) <= 10


def test_only_the_first_labelled_samples_weigh_the_prior():
    """The first WEIGH_MAX labelled samples weigh it — what the learner holds through its wait, so that labeler,
    learner and the in-process loop weigh it alike: samples after them, however far off, change nothing."""
    from tinycl_nodes.core.prior_worth import WEIGH_MAX

    means, cov = _model()
    prior = _prior(means, cov)
    X, y = _samples(means, cov, WEIGH_MAX // C, 11)
    far, far_y = _samples(means + 5.0, cov, 50, 12)
    both = np.concatenate([X, far]), np.concatenate([y, far_y])
    assert prior_worth(prior, *both, z=3.0) == prior_worth(prior, X, y, z=3.0) == math.inf
    assert math.isfinite(prior_worth(prior, both[0][::-1], both[1][::-1], z=3.0))     # the far ones first


def test_weighed_caps_the_counts_and_scales_the_scatter_alike():
    means, cov = _model()
    prior = _prior(means, cov)
    w = weighed(prior, 12.4)
    assert w.counts.tolist() == [12] * C and w.n_seen == 12 * C
    np.testing.assert_allclose(w.shared / w.counts.sum(), prior.shared / prior.counts.sum())
    np.testing.assert_array_equal(w.weights, prior.weights)
    assert weighed(prior, math.inf) is prior and weighed(prior, 1e9).counts.tolist() == prior.counts.tolist()
    assert weighed(w, 12.4).counts.tolist() == w.counts.tolist()        # weighing twice changes nothing
    np.testing.assert_allclose(weighed(w, 12.4).shared, w.shared)


def test_a_system_takes_the_prior_weighed_by_its_labelled_samples():
    """init_from_labelled with a finite prior_z: clusterer and head start from the weighed prior and the labelled
    samples, exactly as a system at full weight given the weighed prior."""
    means, cov = _model()
    prior = _prior(means, cov)
    robot = means + 3.0                                      # a shift every class shares (exposure, say)
    X, y = _samples(robot, cov, 10, 3)
    system = TinyNDC(TiedGaussianClusterer(F), StreamingLDA(F), model_prior=True, prior_z=2.0)
    system.init_from_labelled(X, y, prior)
    assert 0 < system.prior_samples < 10
    same = TinyNDC(TiedGaussianClusterer(F), StreamingLDA(F), model_prior=True)
    same.init_from_labelled(X, y, weighed(prior, system.prior_samples))
    assert same.prior_samples == math.inf
    np.testing.assert_allclose(system.clusterer.centroids, same.clusterer.centroids)
    for a, b in zip(system.head.state_dict()["arrays"].values(), same.head.state_dict()["arrays"].values()):
        np.testing.assert_allclose(a, b)
    assert system.head.state_dict()["arrays"]["counts"].tolist() == [1 + 10] * C    # capped at 1, plus 10 labels
    # the head's class means sit near the robot's, not the model's
    assert np.abs(system.head.state_dict()["arrays"]["means"] - robot).max() < 2.0
    full = TinyNDC(TiedGaussianClusterer(F), StreamingLDA(F), model_prior=True)
    full.init_from_labelled(X, y, prior)
    assert np.abs(full.head.state_dict()["arrays"]["means"] - means).max() < 0.1
    with pytest.raises(InputError, match="prior_z"):
        TinyNDC(TiedGaussianClusterer(F), StreamingLDA(F), model_prior=True, prior_z=-1.0)


def test_what_a_head_took_is_written_and_read_back():
    for taken in (False, math.inf, 37.5):
        assert prior_taken(prior_meta(taken)) == taken
    assert prior_meta(math.inf) is True and prior_taken(True) == math.inf
    for bad in (None, "x", -3, 0, [1]):
        assert prior_taken(bad) is False


def test_a_class_a_fleet_round_brings_gets_a_centroid_at_its_mean():
    """cluster_update='self': the merged head knows a class the clusterer has never seen; take_classes gives it a
    centroid at the fleet's mean, and the samples of that class are then pseudo-labelled as it."""
    from tinycl_nodes.core.federated import snapshot_from_head

    means, cov = _model()
    X, y = _samples(means, cov, 30, 5)
    system = TinyNDC(TiedGaussianClusterer(F), StreamingLDA(F), cluster_update="self")
    old = y < 3
    system.init_from_labelled(X[old][::3], y[old][::3])
    fleet = StreamingLDA(F)
    for x, label in zip(X, y):
        fleet.learn_one(x, int(label))
    snap = snapshot_from_head(fleet)
    assert [system.clusterer.pseudo_label(x)[0] for x in X[~old]].count(3) == 0
    assert system.take_classes(snap) == [3] and system.take_classes(snap) == []
    np.testing.assert_allclose(system.clusterer.centroids[system.clusterer.classes.index(3)], fleet.means[3], rtol=1e-5)
    assert np.mean([system.clusterer.pseudo_label(x)[0] == 3 for x in X[~old]]) > 0.9
