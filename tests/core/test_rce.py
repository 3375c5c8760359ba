"""TinyRCE: the learning rule exactly, unknowns, memory cap, aging, pruning, MAC count and state."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import blobs

from tinycl_nodes.core import state as st
from tinycl_nodes.core.errors import InputError, StateError, TinyclError
from tinycl_nodes.core.rce import AMBIGUOUS, COVERED, UNKNOWN, TinyRCE


def v(*xs: float) -> np.ndarray:
    return np.array(xs, np.float32)


def rce(**kw) -> TinyRCE:
    kw = {"r_max": 10.0, "grow_margin": 0.0, **kw}
    return TinyRCE(2, **kw)


# --- the classic rule ---------------------------------------------------------------------------
def test_first_prototype_gets_r_max_and_covers():
    r = rce()
    assert r.decide(v(0, 0)).reason == "empty" and r.decide(v(0, 0)).wants_label
    r.learn_one(v(0, 0), 7)
    assert r.n_prototypes == 1 and r.radii[0] == pytest.approx(10.0)
    d = r.decide(v(3, 4))
    assert (d.label, d.reason, d.candidates) == (7, COVERED, (7,)) and d.novelty == pytest.approx(0.5)


def test_commit_radius_is_distance_to_nearest_other_class_and_wrong_class_shrinks():
    r = rce()
    r.learn_one(v(0, 0), 0)
    r.learn_one(v(6, 0), 1)          # class-0 prototype fires on it: shrinks to 6; new one r=min(6, 10)
    assert r.n_prototypes == 2
    np.testing.assert_allclose(r.radii, [6.0, 6.0])
    assert r.decide(v(6, 0)).label == 1          # x sits on the shrunk boundary: no longer covered by 0
    r.learn_one(v(20, 0), 1)         # right class does not fire (d = 14 > 6): new prototype, r = min(20, 10)
    assert r.n_prototypes == 3 and r.radii[2] == pytest.approx(10.0)
    r.learn_one(v(1, 0), 0)          # covered by its own class: nothing changes but the hit count
    assert r.n_prototypes == 3 and int(r.hits[0]) == 1


def test_unknown_and_closest_firing_prototype_wins():
    r = rce()
    r.learn_one(v(0, 0), 0)
    r.learn_one(v(30, 0), 1)
    d = r.decide(v(15, 15))
    assert d.label is None and d.reason == UNKNOWN and d.wants_label and d.novelty > 1
    assert d.nearest in (0, 1) and r.predict_one(v(15, 15)) == d.nearest   # Head contract: best guess
    r2 = TinyRCE(2, r_max=10.0, grow_margin=0.0)
    r2.learn_one(v(0, 0), 0)
    r2.radii[0] = 8.0
    r2.centers = np.concatenate([r2.centers, v(6, 0)[None]])
    r2.radii = np.append(r2.radii, np.float32(8.0))
    r2.rows = np.append(r2.rows, np.uint16(0))
    r2.hits = np.append(r2.hits, np.uint32(0))
    r2.last_used = np.append(r2.last_used, np.uint32(0))
    r2.learn_one(v(100, 100), 1)
    r2.centers[2] = v(4, 1)
    r2.radii[2] = 3.0
    d = r2.decide(v(4, 0))            # fires all three; the class-1 prototype is closest (d = 1)
    assert d.reason == AMBIGUOUS and d.label == 1 and d.candidates == (1, 0) and d.distance == pytest.approx(1.0)
    assert r2.classify(v(4, 0)[None])[0].tolist() == [1]


def test_learns_separable_blobs_and_knows_what_it_does_not_know():
    X, y = blobs(200, [0, 1, 2, 3], dim=16, sep=6.0, seed=1)
    r = TinyRCE(16, memory_bytes=20_000, r_max=6.0)
    for x, c in zip(X[:600], y[:600]):
        r.learn_one(x, c)
    pred, known = r.classify(X[600:])
    assert (pred == y[600:]).mean() > 0.97 and known.mean() > 0.9
    far = np.full(16, 50.0, np.float32)
    assert r.decide(far).reason == UNKNOWN
    p = r.predict_proba(X[0])
    assert p.shape == (4,) and p.sum() == pytest.approx(1.0) and r.classes[int(p.argmax())] == r.predict_one(X[0])


def test_l1_metric():
    r = rce(metric="l1")
    r.learn_one(v(0, 0), 0)
    r.learn_one(v(3, 4), 1)          # L1 distance 7
    np.testing.assert_allclose(r.radii, [7.0, 7.0])


# --- MACs --------------------------------------------------------------------------------------
def test_learning_macs_are_counted_exactly():
    X, y = blobs(50, [0, 1, 2], dim=8, seed=2)
    r = TinyRCE(8, r_max=5.0, grow_margin=0.0)
    expected = 0
    for x, c in zip(X, y):
        expected += r.n_prototypes * 8
        r.learn_one(x, c)
    assert r.learning_macs == expected > 0
    before = r.learning_macs
    r.decide(X[0]), r.predict_one(X[0]), r.classify(X)      # inference is not learning
    assert r.learning_macs == before


def test_growth_macs_include_the_center_check():
    r = TinyRCE(2, r_max=20.0, grow_margin=0.5)
    r.learn_one(v(0, 0), 0)           # r = 20
    r.learn_one(v(30, 0), 1)          # r = min(30, 20)
    r.learn_one(v(12, 0), 1)          # fires class 0 (shrinks it to 12) and its own class (no commit)
    assert r.n_prototypes == 2 and r.radii[0] == pytest.approx(12.0)
    macs = r.learning_macs
    r.learn_one(v(-14, 0), 0)         # d/r = 1.17 < 1.5: grow prototype 0 to 14 after checking 1 other center
    assert r.n_prototypes == 2 and r.radii[0] == pytest.approx(14.0, rel=1e-3)
    assert r.counters["grown"] == 1 and r.learning_macs - macs == 2 * 2 + 1 * 2
    assert r.decide(v(-14, 0)).label == 0


# --- aging, cap, pruning -----------------------------------------------------------------------
def test_growth_never_reaches_another_class_center_nor_r_max():
    r = TinyRCE(2, r_max=10.0, grow_margin=1.0)
    r.learn_one(v(0, 0), 0)
    r.learn_one(v(12, 0), 1)          # shrinks nothing (d = 12 > 10), r = 10
    r.learn_one(v(-13, 0), 0)         # d/r = 1.3: would grow to 13 > r_max → commit instead
    assert r.counters["grown"] == 0 and r.n_prototypes == 3
    r2 = TinyRCE(2, r_max=20.0, grow_margin=1.0)
    r2.learn_one(v(0, 0), 0)
    r2.learn_one(v(8, 0), 1)          # shrinks 0 to 8
    r2.learn_one(v(0, 9), 0)          # d/r = 1.125 but r = 9 would cover the class-1 center at 8 → commit
    assert r2.counters["grown"] == 0 and r2.n_prototypes == 3


def test_memory_cap_holds_and_evicts_least_recently_useful():
    F = 4
    r = TinyRCE(F, memory_bytes=8 * 2 + 5 * (4 * F + 14), r_max=1.0, grow_margin=0.0)
    assert r.max_prototypes == 5
    rng = np.random.default_rng(0)
    for i in range(60):
        r.learn_one(rng.normal(0, 20, F).astype(np.float32), i % 2)
        assert r.n_prototypes <= r.max_prototypes and r.state_bytes <= r.memory_bytes
        assert set(r.rows.tolist()) == set(range(len(r.classes)))    # never loses a class
    assert r.counters["evicted"] > 0
    newest = rng.normal(0, 20, F).astype(np.float32)
    r.learn_one(newest, 0)
    assert np.any(np.all(r.centers == newest, axis=1))              # the new one was kept


def test_budget_smaller_than_one_prototype_is_refused():
    with pytest.raises(InputError, match="memory_bytes"):
        TinyRCE(64, memory_bytes=100)


def test_prototypes_shrunk_below_r_min_are_pruned():
    r = TinyRCE(2, r_max=10.0, r_min=1.0, grow_margin=0.0)
    r.learn_one(v(0, 0), 0)
    r.learn_one(v(0.5, 0), 1)         # shrinks class 0 to 0.5 < r_min → pruned; new one r = 0.5 → dropped
    assert r.counters["pruned"] == 1 and r.counters["dropped"] == 1 and r.n_prototypes == 0
    r.learn_one(v(5, 5), 0)
    assert r.n_prototypes == 1


# --- state -------------------------------------------------------------------------------------
def trained() -> TinyRCE:
    X, y = blobs(60, [3, 5, 9], dim=8, seed=4)
    r = TinyRCE(8, memory_bytes=4000, r_max=4.0, extractor_hash="abc")
    for x, c in zip(X, y):
        r.learn_one(x, c)
    return r


def test_state_round_trip_through_bytes():
    r = trained()
    r2 = TinyRCE(8, memory_bytes=4000, r_max=4.0, extractor_hash="abc")
    r2.load_state_dict(st.from_bytes(st.to_bytes(r.state_dict())))
    X, _ = blobs(20, [3, 5, 9], dim=8, seed=9)
    for x in X:
        assert r.decide(x) == r2.decide(x)
    assert r2.learning_macs == r.learning_macs and r2.counters == r.counters and r2.classes == r.classes
    assert r2.state_dict()["meta"] == r.state_dict()["meta"]


def _bad_states():
    good = trained().state_dict()

    def edit(fn):
        s = {**good, "arrays": dict(good["arrays"]), "meta": dict(good["meta"])}
        fn(s)
        return s
    yield "kind", edit(lambda s: s.update(kind="CWRStar"))
    yield "version", edit(lambda s: s.update(version=99))
    yield "shape", edit(lambda s: s["arrays"].update(centers=s["arrays"]["centers"][:, :4]))
    yield "NaN", edit(lambda s: s["arrays"].update(radii=np.full_like(s["arrays"]["radii"], np.nan)))
    yield "negative", edit(lambda s: s["arrays"].update(radii=-s["arrays"]["radii"]))
    yield "rows", edit(lambda s: s["arrays"].update(rows=s["arrays"]["rows"] + np.uint16(7)))
    yield "dtype", edit(lambda s: s["arrays"].update(rows=s["arrays"]["rows"].astype(np.int64)))
    yield "macs", edit(lambda s: s["meta"].update(learning_macs=-1))
    yield "counters", edit(lambda s: s["meta"].update(counters={"x": 1}))
    yield "extractor", edit(lambda s: s["meta"].update(extractor_hash="zzz"))
    big = {k: np.concatenate([a] * 20) for k, a in good["arrays"].items() if k not in ("classes", "class_seen")}
    yield "over budget", edit(lambda s: s["arrays"].update(big))


@pytest.mark.parametrize("name,bad", list(_bad_states()), ids=[n for n, _ in _bad_states()])
def test_bad_state_is_refused_and_nothing_changes(name, bad):
    r = trained()
    before = r.state_dict()
    with pytest.raises(TinyclError) as err:
        r.load_state_dict(bad)
    assert "\n" not in str(err.value)
    after = r.state_dict()
    assert after["meta"] == before["meta"]
    for k in before["arrays"]:
        assert np.array_equal(after["arrays"][k], before["arrays"][k]), k


def test_bad_payload_is_a_state_error():
    with pytest.raises(StateError):
        trained().load_state_dict(st.from_bytes(b"not a state"))


# --- input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("x", [v(1.0), v(np.nan, 0), [[1, 2]], "ab", v(np.inf, 1)])
def test_bad_features_are_one_line_input_errors(x):
    r = trained()
    before = r.state_dict()
    for call in (lambda: r.learn_one(x, 3), lambda: r.decide(x), lambda: r.predict_one(x)):
        with pytest.raises(InputError) as err:
            call()
        assert "\n" not in str(err.value)
    assert r.n_seen == before["meta"]["n_seen"]


@pytest.mark.parametrize("y", [-1, 1.5, True, "3", None])
def test_bad_labels_are_refused(y):
    r = trained()
    n = r.n_prototypes
    with pytest.raises(InputError):
        r.learn_one(np.zeros(8, np.float32), y)
    assert r.n_prototypes == n


@pytest.mark.parametrize("kw", [{"r_max": 0}, {"r_max": float("nan")}, {"r_min": -1}, {"r_min": 20, "r_max": 10},
                                {"grow_margin": -0.1}, {"metric": "cosine"}, {"memory_bytes": 1.5},
                                {"memory_bytes": True}])
def test_bad_hyper_parameters_fail_in_init(kw):
    with pytest.raises(InputError):
        TinyRCE(8, **kw)


def test_batch_classify_matches_decide():
    r = trained()
    X, _ = blobs(30, [3, 5, 9], dim=8, seed=11)
    pred, known = r.classify(X)
    for x, p, k in zip(X, pred, known):
        d = r.decide(x)
        assert k == d.known and p == (d.label if d.known else d.nearest)
    with pytest.raises(InputError):
        r.classify(np.zeros((2, 7)))
