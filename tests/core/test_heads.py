"""Active heads: learning behaviour, exact update rules, state round trips and refusal of bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tests.core._blobs import Blobs, accuracy, late_class_stream, learn_all

from tinycl_nodes.core import state as st
from tinycl_nodes.core.cwr import CWRStar
from tinycl_nodes.core.errors import InputError, StateError
from tinycl_nodes.core.ncm import StreamingNCM
from tinycl_nodes.core.replay import LatentReplayHead
from tinycl_nodes.core.slda import StreamingLDA
from tinycl_nodes.core.tinyol import TinyOL
from tinycl_nodes.core.tybox import TyBoxHead

F = 64
TYBOX_BYTES = 4 * 10 * (F + 1) + 120 * (4 * F + 1)      # model + 120 buffered samples

FACTORIES = {
    "cwr": lambda F=F: CWRStar(F),
    "cwr_epochs": lambda F=F: CWRStar(F, batch_size=8, epochs=3),
    "tinyol": lambda F=F: TinyOL(F),
    "ncm": lambda F=F: StreamingNCM(F),
    "slda": lambda F=F: StreamingLDA(F),
    "slda_lazy": lambda F=F: StreamingLDA(F, refresh_every=7),
    "replay": lambda F=F: LatentReplayHead(F, memory_size=150, batch_size=16, seed=3),
    "replay_int8": lambda F=F: LatentReplayHead(F, memory_size=150, batch_size=16, seed=3,
                                                quantized=True),
    "tybox": lambda F=F: TyBoxHead(F, memory_bytes=4 * 10 * (F + 1) + 120 * (4 * F + 1), seed=5),
}
HEADS = list(FACTORIES)


def make(name: str, n_features: int = F):
    return FACTORIES[name](n_features)


def assert_same_state(a: dict, b: dict) -> None:
    assert (a["kind"], a["version"], a["params"], a["meta"]) == \
           (b["kind"], b["version"], b["params"], b["meta"])
    assert a["arrays"].keys() == b["arrays"].keys()
    for k in a["arrays"]:
        assert a["arrays"][k].dtype == b["arrays"][k].dtype, k
        assert np.array_equal(a["arrays"][k], b["arrays"][k]), k


def trained(name: str, n: int = 203, seed: int = 0):
    """A head after an odd number of samples (mid-batch for the batched heads), late classes incl."""
    head = make(name)
    X, y = late_class_stream(Blobs(seed=seed), n1=n // 2, n2=n - n // 2)
    learn_all(head, X, y)
    return head


# --- learning ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", HEADS)
def test_high_accuracy_with_classes_that_arrive_later(name):
    blobs = Blobs(noise=0.35, seed=1)
    head = make(name)
    X, y = late_class_stream(blobs, 500, 500)
    learn_all(head, X, y)
    if hasattr(head, "flush"):
        head.flush()
    assert sorted(head.classes) == list(range(10))
    Xt, yt = blobs.sample(range(10), 1000)
    late = yt >= 6
    assert accuracy(head, Xt, yt) >= 0.95
    assert accuracy(head, Xt[late], yt[late]) >= 0.93


@pytest.mark.parametrize("name", ["cwr", "slda", "ncm", "replay"])
def test_class_incremental_without_forgetting(name):
    """Old classes never seen again after the new ones arrive are still recognised."""
    blobs = Blobs(noise=0.35, seed=2)
    head = make(name)
    X, y = late_class_stream(blobs, 500, 500, only_new=True)
    learn_all(head, X, y)
    if hasattr(head, "flush"):
        head.flush()
    Xt, yt = blobs.sample(range(10), 1000)
    old = yt < 6
    assert accuracy(head, Xt[old], yt[old]) >= 0.9
    assert accuracy(head, Xt[~old], yt[~old]) >= 0.9


def test_tinyol_forgets_in_class_incremental_stream():
    """Sanity check of the test above: the bufferless last-sample learner does forget."""
    blobs = Blobs(noise=0.35, seed=2)
    head = TinyOL(F)
    X, y = late_class_stream(blobs, 500, 500, only_new=True)
    learn_all(head, X, y)
    Xt, yt = blobs.sample(range(6), 500)
    assert accuracy(head, Xt, yt) < 0.5


def test_predict_before_any_class():
    for name in HEADS:
        head = make(name)
        assert head.predict_one(np.zeros(F)) is None
        assert head.predict_proba(np.zeros(F)).shape == (0,)


# --- CWR* --------------------------------------------------------------------------------------
def test_cwr_consolidation_formula_by_hand():
    head = CWRStar(2, batch_size=4)
    for c in (7, 9):
        head.learn_one(np.zeros(2), c)           # two classes; the zero samples change nothing
    head.flush()
    head.cw[:] = [[0.5, 0.5], [0.0, 0.0]]
    head.past[:] = [3, 0]
    head.tw[:] = [[1.0, 3.0], [2.0, 6.0]]
    head.cur[:] = [1, 3]
    head._consolidate()
    globavg = (1 + 3 + 2 + 6) / 4                # scalar mean over the batch classes' rows
    w = math.sqrt(3 / 1)
    expected0 = [(0.5 * w + (1 - globavg)) / (w + 1), (0.5 * w + (3 - globavg)) / (w + 1)]
    expected1 = [2 - globavg, 6 - globavg]       # first consolidation: cw = new_w
    assert np.allclose(head.cw, [expected0, expected1], atol=1e-6)
    assert head.past.tolist() == [4, 3]


def _cwr_reference(X, y, lr, batch_size, epochs):
    """Plain re-implementation of the documented streaming CWR* rule (float64, dicts, loops)."""
    cw, past = {}, {}
    tw, cur, batch = {}, {}, []

    def sgd(x, c):
        classes = list(cw)
        z = [sum(a * b for a, b in zip(tw[k], x)) for k in classes]
        m = max(z)
        e = [math.exp(v - m) for v in z]
        s = sum(e)
        for k, ek in zip(classes, e):
            g = lr * (ek / s - (1.0 if k == c else 0.0))
            tw[k] = [w - g * xi for w, xi in zip(tw[k], x)]

    def end_batch():
        for _ in range(epochs - 1):
            for x, c in batch:
                sgd(x, c)
        present = [k for k in cw if cur.get(k, 0)]
        avg = sum(sum(tw[k]) for k in present) / (len(present) * len(x0))
        for k in present:
            wp = math.sqrt(past[k] / cur[k])
            cw[k] = [(a * wp + (t - avg)) / (wp + 1) for a, t in zip(cw[k], tw[k])]
            past[k] += cur[k]
        for k in cw:
            tw[k] = [0.0] * len(x0)
        cur.clear()
        batch.clear()

    x0 = X[0]
    for x, c in zip(X.astype(float).tolist(), y.tolist()):
        if c not in cw:
            cw[c], past[c], tw[c] = [0.0] * len(x), 0, [0.0] * len(x)
        if not cur.get(c):
            tw[c] = [a + b for a, b in zip(tw[c], cw[c])]
        cur[c] = cur.get(c, 0) + 1
        batch.append((x, c))
        sgd(x, c)
        if len(batch) == batch_size:
            end_batch()
    if batch:
        end_batch()
    return cw, past


@pytest.mark.parametrize("epochs", [1, 3])
def test_cwr_stream_matches_reference(epochs):
    X, y = late_class_stream(Blobs(n_features=5, seed=4), 11, 12)
    head = CWRStar(5, lr=0.7, batch_size=4, epochs=epochs)
    learn_all(head, X, y)
    head.flush()
    cw, past = _cwr_reference(X, y, 0.7, 4, epochs)
    for i, c in enumerate(head.classes):
        assert np.allclose(head.cw[i], cw[c], atol=1e-5)
        assert head.past[i] == past[c]
    assert head.sample_counts() == past
    assert int(head.past.sum()) == len(y)


def test_cwr_predicts_with_consolidated_weights_only():
    head = CWRStar(F, batch_size=4)
    X, y = Blobs(seed=5).sample([0, 1], 3)
    learn_all(head, X, y)
    assert not head.cw.any()                      # nothing consolidated yet
    assert np.allclose(head.predict_proba(X[0]), 1.0 / len(head.classes))
    head.learn_one(X[0], int(y[0]))               # 4th sample closes the batch
    assert head.cw.any() and not head.tw.any() and head.n_batch == 0


# --- TinyOL ------------------------------------------------------------------------------------
def test_tinyol_update_matches_formula():
    head = TinyOL(F, lr=0.3)
    X, y = Blobs(seed=6).sample(range(4), 40)
    learn_all(head, X, y)
    for x, c, new in ((X[0], int(y[0]), False), (X[1], 42, True)):
        W = head.W.astype(np.float64)
        b = head.b.astype(np.float64)
        if new:                                   # an unseen label: a zero-initialised neuron
            W = np.vstack([W, np.zeros(F)])
            b = np.append(b, 0.0)
        z = W @ x + b
        p = np.exp(z - z.max())
        p /= p.sum()
        onehot = np.zeros(len(b))
        onehot[head.classes.index(c) if not new else len(b) - 1] = 1.0
        head.learn_one(x, c)
        assert np.allclose(head.W, W - 0.3 * np.outer(p - onehot, x), atol=1e-6)
        assert np.allclose(head.b, b - 0.3 * (p - onehot), atol=1e-6)
    assert head.classes[-1] == 42


# --- NCM and SLDA ------------------------------------------------------------------------------
def test_ncm_running_means_and_scores():
    X, y = Blobs(seed=7).sample(range(3), 60)
    head = StreamingNCM(F)
    learn_all(head, X, y)
    for i, c in enumerate(head.classes):
        assert np.allclose(head.means[i], X[y == c].astype(np.float64).mean(axis=0))
        assert head.counts[i] == (y == c).sum()
    x = X[0].astype(np.float64)
    d2 = ((head.means - x) ** 2).sum(axis=1)
    assert np.allclose(head._scores(X[0]), -d2, atol=1e-5)
    p = np.exp(-d2 - (-d2).max())
    assert np.allclose(head.predict_proba(X[0]), p / p.sum(), atol=1e-5)


def _anisotropic(seed: int):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, F)) * 0.3
    std = np.full(F, 0.3)
    std[:8] = 3.0                                 # a few directions of large shared variance
    L = np.linalg.qr(rng.normal(size=(F, F)))[0] * std

    def sample(classes, n):
        yy = rng.choice(np.asarray(list(classes)), n)
        return (centers[yy] + rng.normal(size=(n, F)) @ L.T).astype(np.float32), yy
    return sample


def test_slda_beats_ncm_on_shared_anisotropic_covariance():
    sample = _anisotropic(1)
    X1, y1 = sample(range(6), 500)
    X2, y2 = sample(range(10), 500)
    Xt, yt = sample(range(10), 1000)
    accs = {}
    for head in (StreamingNCM(F), StreamingLDA(F)):
        learn_all(head, np.concatenate([X1, X2]), np.concatenate([y1, y2]))
        accs[type(head).__name__] = accuracy(head, Xt, yt)
    assert accs["StreamingLDA"] >= 0.95
    assert accs["StreamingLDA"] >= accs["StreamingNCM"] + 0.2


def test_slda_class_scatter_is_the_exact_within_class_scatter():
    """Default: N·Σ is the within-class scatter of the samples, whatever their order (mergeable)."""
    sample = _anisotropic(2)
    X, y = sample(range(4), 80)
    Xd = X.astype(np.float64)
    within = sum((Xd[y == c] - Xd[y == c].mean(0)).T @ (Xd[y == c] - Xd[y == c].mean(0)) for c in range(4))
    for order in (np.arange(len(y)), np.random.default_rng(0).permutation(len(y))):
        head = StreamingLDA(F)
        learn_all(head, X[order], y[order])
        assert np.allclose(head.covariance, within / len(y), atol=1e-9)


def test_slda_matches_direct_computation():
    sample = _anisotropic(2)
    X, y = sample(range(4), 80)
    eps = 1e-3
    head = StreamingLDA(F, shrinkage=eps, scatter="total")
    learn_all(head, X, y)
    # the documented recursion, written out
    sigma, means, counts, n = np.zeros((F, F)), {}, {}, 0
    for x, c in zip(X.astype(np.float64), y.tolist()):
        if c in means:
            d = x - means[c]
            sigma = (n * sigma + n / (n + 1) * np.outer(d, d)) / (n + 1)
            means[c] = means[c] + d / (counts[c] + 1)
            counts[c] += 1
        else:
            sigma = n * sigma / (n + 1)
            means[c], counts[c] = x.copy(), 1
        n += 1
    assert np.allclose(head.covariance, sigma, atol=1e-9)
    lam = np.linalg.inv((1 - eps) * sigma + eps * np.eye(F))
    M = np.stack([means[c] for c in head.classes])
    scores = M @ lam @ X[0] - 0.5 * np.einsum("cf,fg,cg->c", M, lam, M)
    assert np.allclose(head._scores(X[0]), scores, rtol=1e-4, atol=1e-3)
    assert np.allclose(head.precision(), lam)


def test_slda_refresh_every_is_lazy():
    sample = _anisotropic(3)
    X, y = sample([0, 1, 2], 40)
    head = StreamingLDA(F, refresh_every=5)
    learn_all(head, X, y)
    s0 = head._scores(X[0])                      # refresh: the cache is now exact
    head.learn_one(X[1], int(y[1]))
    assert np.array_equal(head._scores(X[0]), s0)            # 1 pending update < 5: cached
    for x, c in zip(X[2:6], y[2:6]):
        head.learn_one(x, int(c))
    assert not np.array_equal(head._scores(X[0]), s0)        # 5 pending: refreshed
    exact = StreamingLDA(F)
    exact.load_state_dict(head.state_dict())
    exact._stale = 1                                         # force a refresh on this copy
    assert np.allclose(head._scores(X[0]), exact._scores(X[0]))
    head.learn_one(X[7], 99)                                 # a new class always refreshes
    assert head._scores(X[0]).shape == (4,)


# --- state -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("via_bytes", [False, True])
def test_state_round_trip_identical_predictions_and_future(name, via_bytes):
    head = trained(name)
    state = head.state_dict()
    if via_bytes:
        state = st.from_bytes(st.to_bytes(state))
    other = make(name)
    other.load_state_dict(state)
    Xt, yt = Blobs(seed=9).sample(range(10), 50)
    for x in Xt:
        assert np.array_equal(head.predict_proba(x), other.predict_proba(x))
    assert_same_state(head.state_dict(), other.state_dict())
    # buffers, pending samples, rng and detector state came along: the futures are identical too
    for h in (head, other):
        learn_all(h, Xt, yt)
        if hasattr(h, "flush"):
            h.flush()
    assert_same_state(head.state_dict(), other.state_dict())


@pytest.mark.parametrize("name", HEADS)
def test_snapshot_is_not_changed_by_later_learning(name):
    head = trained(name)
    state = head.state_dict()
    copy = st.from_bytes(st.to_bytes(state))
    X, y = Blobs(seed=10).sample(range(10), 40)
    learn_all(head, X, y)
    assert_same_state(state, copy)


def _bad_states(name: str):
    good = trained(name).state_dict()
    other_kind = (TinyOL(F) if name != "tinyol" else StreamingNCM(F))
    other_kind.learn_one(np.ones(F), 1)
    yield "other kind", other_kind.state_dict()
    s = trained(name).state_dict()
    s["version"] = 2
    yield "other version", s
    small = make(name, 32)
    small.learn_one(np.ones(32), 1)
    yield "other n_features", small.state_dict()
    yield "not a state", {"kind": good["kind"]}
    for key, arr in good["arrays"].items():
        if key == "classes" or arr.ndim == 0:
            continue
        s = trained(name).state_dict()
        s["arrays"][key] = (arr[..., :-1] if arr.ndim == 2
                            else np.append(arr, np.zeros(1, arr.dtype)))
        yield f"{key} wrong shape", s
        s = trained(name).state_dict()
        del s["arrays"][key]
        yield f"{key} missing", s
        if arr.dtype.kind == "f" and arr.size:
            s = trained(name).state_dict()
            s["arrays"][key] = arr.copy()
            s["arrays"][key].flat[0] = np.nan
            yield f"{key} NaN", s
    s = trained(name).state_dict()
    s["arrays"]["classes"] = np.array([3, 3] + list(range(4, 4 + len(good["arrays"]["classes"]) - 2)))
    yield "duplicate classes", s
    s = trained(name).state_dict()
    s["arrays"]["classes"] = s["arrays"]["classes"][:-1]
    yield "one class fewer", s
    s = trained(name).state_dict()
    s["meta"]["n_seen"] = "many"
    yield "bad n_seen", s
    if "rng_state" in good["meta"]:
        s = trained(name).state_dict()
        s["meta"]["rng_state"] = {"bit_generator": "MT19937"}
        yield "bad rng state", s


@pytest.mark.parametrize("name", HEADS)
def test_bad_state_raises_and_changes_nothing(name):
    head = trained(name, seed=11)
    probe = Blobs(seed=12).sample(range(10), 5)[0]
    p_before = [head.predict_proba(x) for x in probe]   # (may refresh a lazy cache: do it first)
    before = head.state_dict()
    for label, bad in _bad_states(name):
        with pytest.raises(StateError):
            head.load_state_dict(bad)
        assert_same_state(head.state_dict(), before)
        assert all(np.array_equal(head.predict_proba(x), p) for x, p in zip(probe, p_before)), label


# --- input validation --------------------------------------------------------------------------
BAD_SAMPLES = [
    (np.full(F, np.nan), 1), (np.r_[np.ones(F - 1), np.inf], 1), (np.ones(F - 1), 1),
    (np.ones((1, F)), 1), ("abc", 1), (np.ones(F), -1), (np.ones(F), 1.5), (np.ones(F), "3"),
    (np.ones(F), True), (np.ones(F), np.float32(2.0)), (np.ones(F), None), (np.ones(F), 2**40),
]


@pytest.mark.parametrize("name", HEADS)
def test_bad_input_raises_input_error_and_changes_nothing(name):
    head = trained(name, n=101)
    before = head.state_dict()
    for x, yv in BAD_SAMPLES:
        with pytest.raises(InputError):
            head.learn_one(x, yv)
        assert_same_state(head.state_dict(), before)
    for x in (np.full(F, np.nan), np.ones(F + 1), [[1.0] * F]):
        with pytest.raises(InputError):
            head.predict_one(x)
        with pytest.raises(InputError):
            head.predict_proba(x)
    assert_same_state(head.state_dict(), before)


@pytest.mark.parametrize("ctor", [
    lambda: CWRStar(F, lr=0), lambda: CWRStar(F, lr=-1.0), lambda: CWRStar(F, lr=float("nan")),
    lambda: CWRStar(F, batch_size=0), lambda: CWRStar(F, batch_size=2.5),
    lambda: CWRStar(F, epochs=0), lambda: CWRStar(0), lambda: CWRStar(True),
    lambda: TinyOL(F, lr=0.0), lambda: TinyOL(F, lr="fast"),
    lambda: StreamingLDA(F, shrinkage=0), lambda: StreamingLDA(F, shrinkage=1.5),
    lambda: StreamingLDA(F, refresh_every=0),
    lambda: LatentReplayHead(F, memory_size=0), lambda: LatentReplayHead(F, epochs=0),
    lambda: LatentReplayHead(F, lr=0), lambda: LatentReplayHead(F, quantizer="int8"),
    lambda: LatentReplayHead(F, seed=-1), lambda: LatentReplayHead(F, calibration_margin=-0.1),
    lambda: TyBoxHead(F, memory_bytes=10), lambda: TyBoxHead(F, memory_bytes=10**6, lr=0),
    lambda: TyBoxHead(F, memory_bytes=10**6, max_classes=0),
    lambda: TyBoxHead(F, memory_bytes=10**6, model_bytes=-1),
])
def test_bad_hyper_parameters(ctor):
    with pytest.raises(InputError):
        ctor()


# --- linear form: what the exporter and the Head message carry --------------------------------
@pytest.mark.parametrize("make", [
    lambda: __import__("tinycl_nodes.core", fromlist=["x"]).CWRStar(16, lr=0.5, batch_size=4),
    lambda: __import__("tinycl_nodes.core", fromlist=["x"]).TinyOL(16),
    lambda: __import__("tinycl_nodes.core", fromlist=["x"]).StreamingNCM(16),
    lambda: __import__("tinycl_nodes.core", fromlist=["x"]).StreamingLDA(16, refresh_every=7),
    lambda: __import__("tinycl_nodes.core", fromlist=["x"]).LatentReplayHead(16, memory_size=40, batch_size=8),
    lambda: __import__("tinycl_nodes.core", fromlist=["x"]).TyBoxHead(16, memory_bytes=20000),
])
def test_linear_form_matches_predictions(make):
    from tests.conftest import blobs
    X, y = blobs(40, [0, 3, 5], dim=16, seed=9)
    head = make()
    for x, t in zip(X[:90], y[:90]):
        head.learn_one(x, int(t))
    W, b = head.linear()
    assert W.shape == (3, 16) and b.shape == (3,) and W.dtype == np.float32
    for x in X[90:]:
        z = W @ x + b
        assert head.classes[int(np.argmax(z))] == head.predict_one(x)
        e = np.exp(z - z.max())
        np.testing.assert_allclose(e / e.sum(), head.predict_proba(x), rtol=2e-3, atol=2e-4)
