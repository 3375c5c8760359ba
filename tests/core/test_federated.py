"""Federated heads: identity rule, fedavg by counts, robust aggregates, refusals, device-side merge."""

from __future__ import annotations

import numpy as np
import pytest

from tinycl_nodes.core.cwr import CWRStar
from tinycl_nodes.core.errors import ExtractorMismatchError, InputError
from tinycl_nodes.core.federated import (HeadSnapshot, RefusedHead, aggregate, check_snapshot,
                                         load_snapshot_into, merge_global, snapshot_from_head)

from ..conftest import blobs

H = "a" * 64


def snap(ids, names, counts, W, device="d", b=None, version=1, h=H) -> HeadSnapshot:
    W = np.asarray(W, np.float32)
    return HeadSnapshot(ids, names, counts, W, np.zeros(len(ids), np.float32) if b is None else b,
                        "CWRStar", h, version, int(sum(counts)), device)


def test_fedavg_weights_by_per_class_counts_and_unions_classes() -> None:
    a = snap([0, 1], ["cat", "dog"], [30, 10], [[1, 0], [0, 1]], "a")
    b = snap([1, 2], ["dog", "cow"], [30, 5], [[0, 3], [2, 2]], "b")
    r = aggregate([a, b], "fedavg", version=7)
    g = r.head
    assert g.keys == [(0, "cat"), (1, "dog"), (2, "cow")]
    np.testing.assert_allclose(g.weights[0], [1, 0])                       # only a
    np.testing.assert_allclose(g.weights[1], [0, (10 * 1 + 30 * 3) / 40])  # count-weighted
    np.testing.assert_allclose(g.weights[2], [2, 2])
    assert g.counts.tolist() == [30, 40, 5] and g.version == 7
    assert r.support[(1, "dog")] == 2 and r.conflicts == []


def test_identity_rule_same_id_other_name_and_same_name_other_id_never_merge() -> None:
    a = snap([3], ["bird"], [10], [[1, 1]], "a")
    b = snap([3], ["boat"], [10], [[-5, -5]], "b")
    c = snap([4], ["bird"], [10], [[9, 9]], "c")
    r = aggregate([a, b, c])
    assert r.head.keys == [(3, "bird"), (3, "boat"), (4, "bird")]
    np.testing.assert_allclose(r.head.weights, [[1, 1], [-5, -5], [9, 9]])
    assert len(r.conflicts) == 2 and "kept apart" in r.conflicts[0]
    # device side: the clashing id is not imported, the other is
    local = snap([3], ["bird"], [10], [[1, 1]], "a")
    m = merge_global(local, r.head, "blend")
    assert m.head.keys == [(3, "bird"), (4, "bird")]
    assert m.imported == [(4, "bird")] and len(m.skipped) == 1 and "'boat'" in m.skipped[0]
    # a device that has neither: the id with two names in the global head is not imported at all
    m2 = merge_global(snap([], [], [], np.zeros((0, 2))), r.head)
    assert m2.head.keys == [(4, "bird")] and len(m2.skipped) == 2


def test_all_zero_counts_fall_back_to_plain_mean() -> None:
    a = snap([0], ["x"], [0], [[2, 0]], "a")
    b = snap([0], ["x"], [0], [[0, 2]], "b")
    np.testing.assert_allclose(aggregate([a, b]).head.weights, [[1, 1]])


def _fleet(n_honest=6, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (3, 8)).astype(np.float32)
    return base, [snap([0, 1, 2], list("abc"), [20, 20, 20], base + rng.normal(0, 0.01, base.shape), f"d{i}")
                  for i in range(n_honest)]


@pytest.mark.parametrize("method", ["median", "trimmed_mean"])
def test_poisoned_device_does_not_move_robust_aggregate(method) -> None:
    base, honest = _fleet()
    poison = snap([0, 1, 2], list("abc"), [10_000] * 3, np.full((3, 8), 500.0), "evil")
    check_snapshot(poison, max_norm=1e4)               # below the absurd-norm limit: it gets through
    robust = aggregate(honest + [poison], method, trim=0.2).head
    assert np.abs(robust.weights - base).max() < 0.05
    fedavg = aggregate(honest + [poison], "fedavg").head
    assert np.abs(fedavg.weights - base).max() > 100, "fedavg by counts is what the poison moves"


def test_trimmed_mean_with_too_few_devices_is_mean() -> None:
    a = snap([0], ["x"], [1], [[0.0]], "a")
    b = snap([0], ["x"], [1], [[2.0]], "b")
    np.testing.assert_allclose(aggregate([a, b], "trimmed_mean", trim=0.2).head.weights, [[1.0]])


def test_refusals_have_one_line_reasons() -> None:
    ok = snap([0], ["x"], [1], [[1.0, 2.0]], "dev1")
    check_snapshot(ok, extractor_hash=H, allowed_devices=["dev1"], n_features=2, kind="CWRStar")
    cases = {
        "not allowed": dict(allowed_devices=["dev2"]),
        "extractor": dict(extractor_hash="b" * 64),
        "features": dict(n_features=3),
        "kind": dict(kind="TinyOL"),
    }
    for words, kw in cases.items():
        with pytest.raises(RefusedHead, match=words) as e:
            check_snapshot(ok, **kw)
        assert "\n" not in str(e.value)
    bad = snap([0], ["x"], [1], [[np.nan, 0]], "dev1")
    with pytest.raises(RefusedHead, match="NaN"):
        check_snapshot(bad)
    huge = snap([0], ["x"], [1], [[1e9, 0]], "dev1")
    with pytest.raises(RefusedHead, match="absurd norm"):
        check_snapshot(huge, max_norm=1e4)


def test_an_empty_head_or_absurd_statistics_are_refused() -> None:
    """A 0-class head was accepted and then failed every later round (one device stalled the fleet); a scatter of
    -1e300 (finite) or an asymmetric one was accepted and published in the global head."""
    from dataclasses import replace

    from tinycl_nodes.core.federated import snapshot_from_head

    heads, _ = _slda_devices()
    good = snapshot_from_head(heads[0], version=1)
    check_snapshot(good, max_norm=1e4)
    empty = replace(good, class_ids=[], class_names=[], counts=np.zeros(0), weights=np.zeros((0, good.n_features)),
                    bias=np.zeros(0), shared=None, scoring=None)
    cases = {"no classes: nothing to merge": empty,
             "negative eigenvalue": replace(good, shared=np.full_like(good.shared, -1e300)),
             "not symmetric": replace(good, shared=good.shared + np.triu(np.ones_like(good.shared), 1)),
             "absurd statistics": replace(good, shared=good.shared * 1e12)}
    for words, bad in cases.items():
        with pytest.raises(RefusedHead, match=words) as e:
            check_snapshot(bad, max_norm=1e4)
        assert "\n" not in str(e.value)


def test_snapshot_shape_checks() -> None:
    with pytest.raises(InputError, match="weight rows"):
        snap([0, 1], ["a"], [1], [[1.0]])
    with pytest.raises(InputError, match="appears twice"):
        snap([0, 0], ["a", "a"], [1, 1], [[1.0], [2.0]])
    with pytest.raises(InputError, match="negative"):
        snap([0], ["a"], [-1], [[1.0]])


def test_aggregate_refuses_mixed_inputs_and_bad_options() -> None:
    a = snap([0], ["x"], [1], [[1.0]], "a")
    with pytest.raises(ExtractorMismatchError):
        aggregate([a, snap([0], ["x"], [1], [[1.0]], "b", h="c" * 64)])
    with pytest.raises(InputError, match="method"):
        aggregate([a], "mean")
    with pytest.raises(InputError, match="no heads"):
        aggregate([])


def test_merge_policies() -> None:
    local = snap([0, 1], ["a", "b"], [10, 30], [[1, 1], [0, 0]], "me")
    glob = snap([1, 2], ["b", "c"], [10, 50], [[4, 4], [7, 7]], "global")
    rep = merge_global(local, glob, "replace").head
    assert rep.keys == [(0, "a"), (1, "b"), (2, "c")]
    np.testing.assert_allclose(rep.weights, [[1, 1], [4, 4], [7, 7]])
    assert rep.counts.tolist() == [10, 10, 50]
    bl = merge_global(local, glob, "blend").head
    np.testing.assert_allclose(bl.weights[1], [1, 1])       # (30*0 + 10*4) / 40
    assert bl.counts.tolist() == [10, 30, 50], "counts: max, not sum (global includes local)"
    with pytest.raises(ExtractorMismatchError):
        merge_global(local, glob.copy(extractor_hash="f" * 64))
    with pytest.raises(InputError, match="policy"):
        merge_global(local, glob, "average")


def test_cwr_round_trip_and_fleet_learns_every_class() -> None:
    """Three CWR* devices share base classes 0, 1 and each learns 2 new ones; the fedavg head knows all 8.

    (Devices with fully disjoint class sets average less well: each row is discriminative only
    against the classes its device saw; the shared base classes anchor the logits.)
    """
    X, y = blobs(120, list(range(8)), dim=16, seed=3)
    n = len(y) * 2 // 3
    Xtr, ytr, Xte, yte = X[:n], y[:n], X[n:], y[n:]
    snaps = []
    for d, own in enumerate([(0, 1, 2, 3), (0, 1, 4, 5), (0, 1, 6, 7)]):
        h = CWRStar(16, extractor_hash=H)
        for x, c in zip(Xtr, ytr):
            if c in own:
                h.learn_one(x, int(c))
        h.flush()
        snaps.append(snapshot_from_head(h, version=d + 1, device=f"d{d}"))
        assert snaps[-1].counts.sum() == h.n_seen
    g = aggregate(snaps, "fedavg", version=1).head
    assert sorted(g.class_ids.tolist()) == list(range(8))
    assert (g.predict(Xte) == yte).mean() > 0.88
    # loading the merged head into a device's CWR* keeps learning working
    h0 = CWRStar(16, extractor_hash=H)
    for x, c in zip(Xtr[:40], ytr[:40]):
        if c in (0, 1, 2, 3):
            h0.learn_one(x, int(c))     # leaves a partial batch
    merged = merge_global(snapshot_from_head(h0), g, "replace").head
    load_snapshot_into(h0, merged)
    assert sorted(h0.classes) == list(range(8)) and h0.n_batch == 0
    acc = np.mean([h0.predict_one(x) == c for x, c in zip(Xte, yte)])
    assert acc > 0.88
    h0.learn_one(Xtr[0], int(ytr[0]))
    with pytest.raises(ExtractorMismatchError):
        load_snapshot_into(CWRStar(16, extractor_hash="e" * 64), merged)


# --- exact federation of streaming-LDA heads (sufficient statistics) -----------------------------------
def _slda_devices(F: int = 6, seed: int = 0):
    from tinycl_nodes.core.slda import StreamingLDA

    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (5, F))
    data = []
    for d, classes in enumerate(([0, 1, 2], [0, 1, 3], [1, 2, 4])):
        y = rng.choice(classes, 150)
        data.append((centers[y] + rng.normal(0, 1, (150, F)) @ rng.normal(0, 0.5, (F, F)), y))
    heads = []
    for X, y in data:
        h = StreamingLDA(F, extractor_hash="e" * 64)
        for x, c in zip(X, y):
            h.learn_one(x, int(c))
        heads.append(h)
    return heads, data


def test_slda_fleet_merge_equals_the_head_trained_on_the_union():
    from tinycl_nodes.core.federated import aggregate, load_snapshot_into, snapshot_from_head
    from tinycl_nodes.core.slda import StreamingLDA
    from tinycl_nodes.fleet.payload import decode, encode

    F = 6
    heads, data = _slda_devices(F)
    # through the wire format, as the aggregator receives them
    snaps = [decode(encode(snapshot_from_head(h, device=f"d{i}"), "lab", f"d{i}"))[1] for i, h in enumerate(heads)]
    merged = aggregate(snaps).head
    union = StreamingLDA(F, extractor_hash="e" * 64)
    X = np.concatenate([x for x, _ in data])
    y = np.concatenate([c for _, c in data])
    for i in np.random.default_rng(1).permutation(len(y)):      # any order: the statistics are the same
        union.learn_one(X[i], int(y[i]))
    u = snapshot_from_head(union)
    order = [u.class_ids.tolist().index(c) for c in merged.class_ids]
    assert merged.counts.tolist() == u.counts[order].tolist()
    np.testing.assert_allclose(merged.weights, u.weights[order], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(merged.shared, u.shared, rtol=1e-6)          # means travel as float32
    # loaded into a device's head, it predicts like the union head
    dev = StreamingLDA(F, extractor_hash="e" * 64)
    load_snapshot_into(dev, merged)
    assert [dev.predict_one(x) for x in X] == [union.predict_one(x) for x in X]
    np.testing.assert_allclose(dev.covariance, union.covariance, rtol=1e-6, atol=1e-9)
    # the snapshot's own scoring is the head's
    assert merged.predict(X).tolist() == [union.predict_one(x) for x in X]


def test_fleet_member_shares_only_its_own_learning_and_honours_opt_out():
    from tinycl_nodes.core.federated import FleetMember, aggregate_exact, load_snapshot_into, snapshot_from_head

    heads, data = _slda_devices()
    members = [FleetMember(f"d{i}", opt_out=[3] if i == 1 else ()) for i in range(3)]
    reports = [m.report(snapshot_from_head(h, device=m.device), 1) for m, h in zip(members, heads)]
    assert 3 not in reports[1].class_ids.tolist() and 3 in heads[1].classes      # class 3 stays private
    g = aggregate_exact(reports, 1)
    assert 3 not in g.class_ids.tolist()
    n_before = [int(h.counts.sum()) for h in heads]
    for m, h in zip(members, heads):
        load_snapshot_into(h, m.take(snapshot_from_head(h), g, 1))
    # each device now holds everyone's shared data plus its own private class, nothing counted twice
    total_shared = int(g.counts.sum())
    assert int(heads[0].counts.sum()) == total_shared
    assert int(heads[1].counts.sum()) == total_shared + int((data[1][1] == 3).sum())
    # a second round with nothing new learned changes nothing (no dilution, no double counting)
    reports = [m.report(snapshot_from_head(h), 2) for m, h in zip(members, heads)]
    g2 = aggregate_exact(reports, 2)
    assert g2.counts.tolist() == g.counts.tolist() and sum(n_before) - int((data[1][1] == 3).sum()) == total_shared
    np.testing.assert_allclose(g2.weights, g.weights, atol=1e-5)


def test_delta_keeps_what_the_head_learned_after_the_bridge_saw_it():
    """The bridge's exact mode: it hands the learner what to add; samples the learner learned after
    the bridge's last look are kept, and the result is the head of everybody's data."""
    from tinycl_nodes.core.federated import FleetMember, aggregate_exact, merge_into_head, snapshot_from_head
    from tinycl_nodes.core.slda import StreamingLDA

    heads, data = _slda_devices()
    members = [FleetMember(f"d{i}") for i in range(3)]
    reports = [m.report(snapshot_from_head(h, version=1), 1) for m, h in zip(members, heads)]
    g = aggregate_exact(reports, 1)
    seen_by_bridge = snapshot_from_head(heads[0])
    X0, y0 = data[0]
    extra = X0[:20] + 0.5
    for x, c in zip(extra, y0[:20]):                          # learned after the bridge looked
        heads[0].learn_one(x, int(c))
    res = merge_into_head(heads[0], members[0].delta(seen_by_bridge, g, 1), "add")
    assert res.imported == [(3, "3"), (4, "4")]
    union = StreamingLDA(6, extractor_hash="e" * 64)
    for X, y in [*data, (extra, y0[:20])]:
        for x, c in zip(X, y):
            union.learn_one(x, int(c))
    assert sorted(heads[0].classes) == sorted(union.classes)
    order = [union.classes.index(c) for c in heads[0].classes]
    assert heads[0].counts.tolist() == union.counts[order].tolist()
    np.testing.assert_allclose(heads[0].means, union.means[order], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(heads[0].covariance, union.covariance, rtol=1e-5, atol=1e-7)


def test_an_addition_that_only_takes_samples_out_is_checked_like_any_other():
    """An exact-mode addition of a round that only removed samples (a device left) has no class that gains any: its
    view is empty, its signed statistics say it all. One of another feature count is refused in one line before
    anything is touched (before, it passed unchecked and failed inside the sum with numpy's broadcasting error)."""
    from tinycl_nodes.core.federated import Moments, check_merge
    from tinycl_nodes.core.slda import StreamingLDA

    head = StreamingLDA(4, extractor_hash=H)
    head.learn_one(np.ones(4, np.float32), 0)
    out = Moments([(0, "0")], np.array([-1.0]), -np.ones((1, 8)), -np.eye(8))
    add = out.snapshot("StreamingLDA", H, 2)
    assert add.n_classes == 0
    add.moments = out
    with pytest.raises(RefusedHead, match="8 features, the round has 4"):
        check_merge(head, add, "add")
    assert head.counts.tolist() == [1]


def test_a_model_prior_every_device_started_from_is_not_shared_and_comes_back_once():
    """Each device's head starts from the frozen model's class statistics (the same on every device): the
    fleet shares only what the devices learned, and after the round each device holds the prior once plus everybody's
    data — the head of the prior's samples and the union of the devices' data, not the prior counted per device."""
    from tinycl_nodes.core.federated import (FleetMember, Moments, aggregate_exact, load_snapshot_into,
                                             merge_into_head, snapshot_from_head)
    from tinycl_nodes.core.slda import StreamingLDA

    _, data = _slda_devices()
    rng = np.random.default_rng(5)
    Xp, yp = rng.normal(size=(90, 6)).astype(np.float32), np.arange(90) % 3       # the model's training classes
    prior_head = StreamingLDA(6, extractor_hash="e" * 64)
    for x, c in zip(Xp, yp):
        prior_head.learn_one(x, int(c))
    prior = snapshot_from_head(prior_head)
    heads = []
    for X, y in data:                                          # each device: the prior, then its own data
        h = StreamingLDA(6, extractor_hash="e" * 64)
        load_snapshot_into(h, prior)
        for x, c in zip(X, y):
            h.learn_one(x, int(c))
        heads.append(h)
    members = [FleetMember(f"d{i}", baseline=Moments.of(prior)) for i in range(3)]
    reports = [m.report(snapshot_from_head(h), 1) for m, h in zip(members, heads)]
    g = aggregate_exact(reports, 1)
    assert int(g.counts.sum()) == sum(len(y) for _, y in data)          # the devices' learning, no prior
    for m, h in zip(members, heads):
        merge_into_head(h, m.delta(snapshot_from_head(h), g, 1), "add")
    union = StreamingLDA(6, extractor_hash="e" * 64)
    for X, y in [(Xp, yp), *data]:
        for x, c in zip(X, y):
            union.learn_one(x, int(c))
    for h in heads:
        order = [union.classes.index(c) for c in h.classes]
        assert sorted(h.classes) == sorted(union.classes) and h.counts.tolist() == union.counts[order].tolist()
        np.testing.assert_allclose(h.means, union.means[order], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(h.covariance, union.covariance, rtol=1e-5, atol=1e-7)


def test_a_few_samples_learned_in_a_large_exact_fleet_are_shared_and_taken_in():
    """A device that learned fewer samples than there are features, in a fleet whose heads hold thousands: its own
    statistics (its report) and what its peers are handed to add (their delta) are scatters of rank below the feature
    count, computed from means that travel as float32. Their null directions came out slightly negative (-0.00015,
    -0.0003 on MNIST features in a fleet of 2,540), the aggregator refused the report and the peers' learners the
    delta ("negative eigenvalue"), and those samples never reached the fleet."""
    from tinycl_nodes.core.federated import FleetMember, aggregate_exact, merge_into_head, snapshot_from_head
    from tinycl_nodes.core.slda import StreamingLDA

    F, rng = 64, np.random.default_rng(0)
    centers = rng.normal(0, 4, (5, F)) + 6.0              # features of a ReLU backbone: all positive, norms ~50
    mix = rng.normal(0, 0.4, (F, F))

    def samples(n):
        y = rng.integers(0, 5, n)
        return centers[y] + rng.normal(0, 1, (n, F)) @ mix, y

    heads = [StreamingLDA(F, extractor_hash="e" * 64) for _ in range(3)]
    members = [FleetMember(f"d{i}") for i in range(3)]
    for i, n in ((0, 2000), (1, 500)):
        for x, c in zip(*samples(n)):
            heads[i].learn_one(x, int(c))

    def round_(version, devices):
        reports = {i: members[i].report(snapshot_from_head(heads[i], version=version), version) for i in devices}
        for r in reports.values():
            check_snapshot(r)                   # as the aggregator does
        g = aggregate_exact(list(reports.values()), version)
        for i in range(3):
            if heads[i].classes:                # the report the global holds (its provenance), as the bridge reads it
                d = members[i].delta(snapshot_from_head(heads[i]), g, reports[i].version if i in reports else None)
                if d.n_classes:
                    merge_into_head(heads[i], d, "add")
        return g

    round_(1, [0, 1])
    for i in range(2):                  # the new device takes the fleet in, then learns 20 samples twice
        for x, c in zip(*samples(20)):
            heads[2].learn_one(x, int(c))
        g = round_(2 + i, [0, 1, 2])
    assert int(g.counts.sum()) == 2540
    assert [int(np.sum(h.counts)) for h in heads] == [2540, 2540, 2540]
