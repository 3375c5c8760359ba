import numpy as np
import pytest

from tests.conftest import blobs
from tinycl_nodes.core import state as st
from tinycl_nodes.core.clustering import NearestCentroid, TiedGaussianClusterer
from tinycl_nodes.core.errors import InputError, StateError


def _stream_accuracy(c, X, y, update=True):
    correct = 0
    for x, t in zip(X, y):
        p, _ = c.pseudo_label(x)
        correct += p == t
        if update:
            c.update(x, p)
    return correct / len(y)


def test_nearest_centroid_init_is_class_mean():
    X = np.array([[0, 0], [2, 0], [10, 10], [12, 10]], np.float32)
    c = NearestCentroid(2)
    c.init_from_labelled(X, [3, 3, 8, 8])
    assert c.classes == [3, 8]
    np.testing.assert_allclose(c.centroids, [[1, 0], [11, 10]])
    c.update(np.array([4, 0], np.float32), 3)  # running mean over 3 samples
    np.testing.assert_allclose(c.centroids[0], [2, 0])
    assert c.pseudo_label([11, 9])[0] == 8


def test_tied_gaussian_beats_l2_on_anisotropic_clusters():
    scale = np.ones(16)
    scale[:2] = 6.0  # two directions of large within-class spread shared by all classes
    X, y = blobs(300, list(range(5)), dim=16, sep=3.0, seed=1, cov_scale=scale)
    init = np.concatenate([np.flatnonzero(y == c)[:10] for c in range(5)])
    rest = np.setdiff1d(np.arange(len(y)), init)
    l2 = NearestCentroid(16)
    l2.init_from_labelled(X[init], y[init])
    tied = TiedGaussianClusterer(16)
    tied.init_from_labelled(X[init], y[init])
    acc_l2 = _stream_accuracy(l2, X[rest], y[rest])
    acc_tied = _stream_accuracy(tied, X[rest], y[rest])
    assert acc_tied > acc_l2 + 0.05, (acc_l2, acc_tied)
    assert acc_tied > 0.9


def test_tied_gaussian_works_from_one_label_per_class():
    X, y = blobs(200, list(range(4)), dim=16, sep=8.0, seed=2)
    init = np.array([np.flatnonzero(y == c)[0] for c in range(4)])
    c = TiedGaussianClusterer(16)
    c.init_from_labelled(X[init], y[init])
    assert _stream_accuracy(c, X, y) > 0.95


def test_new_class_online_and_confidence_range():
    c = TiedGaussianClusterer(4)
    c.init_from_labelled(np.eye(4, dtype=np.float32)[:2] * 5, [0, 1])
    c.update(np.array([0, 0, 5, 0], np.float32), 9)
    assert c.classes == [0, 1, 9]
    label, conf = c.pseudo_label(np.array([0, 0, 5, 0], np.float32))
    assert label == 9 and 1 / 3 <= conf <= 1.0


@pytest.mark.parametrize("cls", [NearestCentroid, TiedGaussianClusterer])
def test_state_round_trip_and_refusal(cls):
    X, y = blobs(50, [0, 1, 2], dim=8, seed=3)
    c = cls(8)
    c.init_from_labelled(X[:30], y[:30])
    for x in X[30:]:
        c.update(x, c.pseudo_label(x)[0])
    payload = st.to_bytes(c.state_dict())
    c2 = cls(8)
    c2.load_state_dict(st.from_bytes(payload))
    for x in X[:20]:
        assert c.pseudo_label(x) == pytest.approx(c2.pseudo_label(x))
    before = c2.centroids.copy()
    bad = st.from_bytes(payload)
    bad["arrays"]["centroids"] = bad["arrays"]["centroids"][:, :4]
    with pytest.raises(StateError, match="centroids"):
        c2.load_state_dict(bad)
    other = NearestCentroid(8) if cls is TiedGaussianClusterer else TiedGaussianClusterer(8)
    with pytest.raises(StateError, match="cannot load"):
        other.load_state_dict(c.state_dict())
    np.testing.assert_array_equal(c2.centroids, before)


def test_bad_input_refused_without_change():
    c = TiedGaussianClusterer(4)
    with pytest.raises(InputError, match="not initialised"):
        c.pseudo_label(np.zeros(4))
    c.init_from_labelled(np.eye(4, dtype=np.float32) * 3, [0, 1, 2, 3])
    snap = c.centroids.copy()
    with pytest.raises(InputError, match="NaN"):
        c.update([np.nan, 0, 0, 0], 1)
    with pytest.raises(InputError, match="shape"):
        c.update(np.zeros(5), 1)
    with pytest.raises(InputError, match="class id"):
        c.update(np.zeros(4), -2)
    np.testing.assert_array_equal(c.centroids, snap)
    with pytest.raises(InputError, match="shrinkage"):
        TiedGaussianClusterer(4, shrinkage=1.5)


@pytest.mark.parametrize("cls", [NearestCentroid, TiedGaussianClusterer])
def test_drop_classes_forgets_their_centroids_and_nothing_else(cls):
    """A class a fleet round took out of the head leaves the clusterer: a sample at its centroid is labelled as one of
    the classes left, whose centroids, counts (and, tied, covariance) are unchanged; the state keeps the change."""
    X = np.array([[0, 0], [1, 0], [10, 0], [11, 0], [0, 10], [1, 10]], np.float32)
    c = cls(2)
    c.init_from_labelled(X, [1, 1, 4, 4, 7, 7])
    assert c.pseudo_label([10.5, 0])[0] == 4
    kept = {k: v[[0, 2]].copy() for k, v in (("centroids", c.centroids), ("counts", c.counts))}
    cov = c.covariance() if cls is TiedGaussianClusterer else None
    assert c.drop_classes([4, 9]) == [4] and c.drop_classes([4]) == []
    assert c.classes == [1, 7] and c.pseudo_label([10.5, 0])[0] in (1, 7)
    np.testing.assert_array_equal(c.centroids, kept["centroids"])
    np.testing.assert_array_equal(c.counts, kept["counts"])
    if cov is not None:
        np.testing.assert_allclose(c.covariance(), cov)
    again = cls(2)
    again.load_state_dict(c.state_dict())
    assert again.classes == [1, 7]


def _largest_inverse(monkeypatch) -> list[int]:
    """Record the size of every matrix ``np.linalg.inv``/``solve`` is given (the real functions still run)."""
    sizes: list[int] = []
    for name in ("inv", "solve"):
        real = getattr(np.linalg, name)

        def spy(a, *args, _real=real, **kw):
            sizes.append(int(np.shape(a)[-1]))
            return _real(a, *args, **kw)
        monkeypatch.setattr(np.linalg, name, spy)
    return sizes


def test_tied_gaussian_stream_never_inverts_the_full_covariance(monkeypatch):
    # at F = 1280 one inverse of the covariance was a 0.13-0.23 s stall every 25 samples: a stream's updates now
    # follow it by rank-k (Woodbury) and a row block at a time, and the precision stays the exact inverse
    from tests.core._blobs import Blobs

    F = 64
    X, y = Blobs(10, F, noise=0.6, seed=3).sample(range(10), 3100)
    init = np.concatenate([np.flatnonzero(y[:100] == c)[:3] for c in range(10)])
    c = TiedGaussianClusterer(F)
    c.init_from_labelled(X[init], y[init])
    sizes, seen = _largest_inverse(monkeypatch), []
    for j, x in enumerate(X[100:], 1):
        c.update(x, c.pseudo_label(x)[0])
        if j % 1000 == 0:      # a refresh just happened (every 25)
            seen += sizes
            assert seen and max(seen) <= c.refresh_every, f"a stream update inverted a {max(seen)}² matrix"
            exact = np.linalg.inv(c.covariance())
            np.testing.assert_allclose(c.precision(), exact, rtol=0, atol=1e-6 * np.abs(exact).max())
            sizes.clear()      # the check's own inverse


def test_tied_gaussian_precision_exact_after_an_outlier():
    # one sample far off the clusters moves the ridge (shrinkage towards the mean variance) too far for the series:
    # that refresh inverts exactly, and the precision is still the covariance's inverse
    from tests.core._blobs import Blobs

    X, y = Blobs(5, 32, seed=4).sample(range(5), 200)
    c = TiedGaussianClusterer(32, refresh_every=5)
    c.init_from_labelled(X[:50], y[:50])
    for x in X[50:]:
        c.update(x, c.pseudo_label(x)[0])
    c.update(X[0] * 1000.0, int(y[0]))
    for x in X[50:59]:      # 150 + 1 + 9 updates: the last one refreshes (every 5)
        c.update(x, c.pseudo_label(x)[0])
    exact = np.linalg.inv(c.covariance())
    np.testing.assert_allclose(c.precision(), exact, rtol=0, atol=1e-6 * np.abs(exact).max())


def test_tied_gaussian_saving_state_changes_nothing_learned():
    # the labeler saves the clusterer's state as it runs: that must not move when the precision refreshes (it did:
    # saving flushed the queued scatter terms and restarted the count to the next refresh)
    from tests.core._blobs import Blobs

    X, y = Blobs(5, 16, noise=0.5, seed=5).sample(range(5), 150)
    runs = []
    for save in (False, True):
        c = TiedGaussianClusterer(16, refresh_every=10)
        c.init_from_labelled(X[:25], y[:25])
        out = []
        for j, x in enumerate(X[25:]):
            if save and j % 7 == 3:
                c.state_dict()
            p, conf = c.pseudo_label(x)
            out.append((p, conf))
            c.update(x, p)
        runs.append(out)
    assert runs[0] == runs[1]
