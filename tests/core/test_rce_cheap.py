"""TinyRCE's cheaper distances: int8 codes in integer arithmetic, and a cap on the prototypes visited."""

import numpy as np
import pytest
from tests.conftest import blobs

from tinycl_nodes.core.errors import InputError, StateError
from tinycl_nodes.core.rce import TinyRCE
from tinycl_nodes.export.c_state import rce_from_bytes, rce_to_bytes

F = 64


_X, _Y = blobs(70, list(range(6)), dim=F, sep=6.0, seed=5)
TEST = (_X[240:], _Y[240:])   # 180 held-out samples of the same six blobs


def _learned(**kw) -> tuple[TinyRCE, np.ndarray, np.ndarray]:
    X, y = _X[:240], _Y[:240]
    r = TinyRCE(F, memory_bytes=40 * 1024, r_max=70.0, metric="l1", **kw)
    for x, c in zip(X, y):
        r.learn_one(x, int(c))
    return r, X, y


def test_int8_distance_ranking_agrees_with_fp32_on_a_seeded_set():
    rng = np.random.default_rng(7)
    centers = rng.normal(0, 1, (200, F)).astype(np.float32)
    queries = rng.normal(0, 1, (300, F)).astype(np.float32)
    same = {}
    for metric in ("l1", "l2"):
        fp = TinyRCE(F, r_max=100.0, metric=metric)
        q8 = TinyRCE(F, r_max=100.0, metric=metric, int8_range=4.0)
        fp.centers, q8.centers = centers, q8._code(centers)
        d_fp = np.stack([fp._dist(x) for x in queries])
        d_q8 = np.stack([q8._dist(q8._code(x)) for x in queries])
        assert q8.centers.dtype == np.int8
        assert np.abs(d_q8 / d_fp - 1).max() < 0.02            # measured 0.70% (l1) / 1.19% (l2)
        near_fp, near_q8 = d_fp.argmin(1), d_q8.argmin(1)
        same[metric] = float(np.mean(near_q8 == near_fp))
        s = np.sort(d_fp, 1)
        tie = (s[:, 1] - s[:, 0]) / s[:, 0] < 0.01
        assert np.all(tie[near_q8 != near_fp])                  # they differ only on near-ties (< 1%)
        top5 = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(d_q8.argsort(1)[:, :5], d_fp.argsort(1)[:, :5])])
        assert top5 >= 0.95, (metric, top5)                      # measured 97.9% (l1) / 97.4% (l2)
    # random queries among random centers (the hardest case: every distance alike): the nearest
    # prototype is the same for 96.3% (l1) / 98.0% (l2) of the 300 queries with these seeds
    assert same["l1"] >= 0.95 and same["l2"] >= 0.95, same


def test_int8_learner_matches_fp32_decisions_and_stores_int8_codes():
    fp, X, y = _learned()
    q8, _, _ = _learned(int8_range=12.0)
    assert q8.centers.dtype == np.int8 and q8.prototype_bytes == F + 14 < fp.prototype_bytes
    Xt, yt = TEST
    p_fp, p_q8 = fp.classify(Xt)[0], q8.classify(Xt)[0]
    assert np.mean(p_fp == p_q8) >= 0.95
    assert np.mean(p_q8 == yt) >= np.mean(p_fp == yt) - 0.05
    back = TinyRCE(F, memory_bytes=40 * 1024, r_max=70.0, metric="l1", int8_range=12.0)
    back.load_state_dict(q8.state_dict())
    assert np.array_equal(back.centers, q8.centers) and np.array_equal(back.classify(Xt)[0], p_q8)
    fp32_reader = TinyRCE(F, memory_bytes=40 * 1024, r_max=70.0, metric="l1")
    with pytest.raises(StateError, match="dtype int8"):
        fp32_reader.load_state_dict(q8.state_dict())
    c_form = rce_from_bytes(rce_to_bytes(q8))                  # the C state format carries int8 heads too
    assert np.array_equal(c_form.centers, q8.centers) and np.array_equal(c_form.classify(Xt)[0], p_q8)


def test_visit_cap_is_respected_when_learning_and_predicting():
    cap, K = 12, 8
    r, X, y = _learned(max_visit=cap, prefix_features=K)
    assert r.n_prototypes > cap
    for x, c in zip(X[:50], y[:50]):
        xc = r._code(x)
        seen = r._visit(xc)
        assert seen.size == cap
        coarse = np.abs(r.centers[:, :K] - xc[:K]).sum(1)          # the cap nearest by the prefix pass
        assert coarse[seen].max() <= np.sort(coarse)[cap - 1] + 1e-5
        before, P = r.learning_macs, r.n_prototypes
        r.learn_one(x, int(c))
        grow = cap * F                                              # the growth check's center distances
        assert r.learning_macs - before <= P * K + cap * (F - K) + grow
    assert r.inference_macs == r.n_prototypes * K + cap * (F - K) < r.n_prototypes * F
    assert r.state_bytes <= r.memory_bytes
    Xt, yt = TEST
    pred, _ = r.classify(Xt)
    assert np.mean(pred == yt) >= 0.9
    assert all(r.decide(x).label in (None, *r.classes) for x in Xt[:5])


def test_uncapped_learning_is_unchanged_below_the_cap():
    a, X, _ = _learned()
    b, _, _ = _learned(max_visit=10_000)
    np.testing.assert_array_equal(a.radii, b.radii)
    assert a.learning_macs == b.learning_macs


@pytest.mark.parametrize("kw", [{"int8_range": -1.0}, {"int8_range": float("nan")}, {"max_visit": -1},
                                {"max_visit": 2.5}, {"max_visit": True}, {"max_visit": 4, "prefix_features": 8},
                                {"max_visit": 4, "prefix_features": 0}])
def test_bad_cheap_hyper_parameters_fail_in_init(kw):
    with pytest.raises(InputError):
        TinyRCE(8, **kw)
