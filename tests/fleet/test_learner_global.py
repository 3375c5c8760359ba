"""The learner (and the labeler's head replica) merging the fleet's global head, on the local bus.

Refusals are one error line each and change nothing; a round is merged once (also across a
restart); nothing learned locally is lost; the labeler's replica stays equal to the learner's head.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tinycl_nodes.bus import create_bus
from tinycl_nodes.bus.local import LocalGraph
from tinycl_nodes.core.cwr import CWRStar
from tinycl_nodes.core.federated import HeadSnapshot, snapshot_from_head
from tinycl_nodes.interfaces.heads import to_msg
from tinycl_nodes.nodes.labeler import Labeler, LabelerParams
from tinycl_nodes.nodes.learner import Learner, LearnerParams
from tinycl_nodes.presets import CWR_PARAMS

NS = "/d1/tinycl"
F = 64



CENTERS = np.random.default_rng(0).normal(0, 3, (10, F)).astype(np.float32)


def _x(rng, c: int) -> np.ndarray:
    return (CENTERS[c] + rng.normal(0, 0.3, F)).astype(np.float32)


def _global(xhash: str, classes=(0, 1, 2), version: int = 1, n: int = 64, seed: int = 1) -> HeadSnapshot:
    """A 'global head': a CWR* head trained on ``classes`` elsewhere (same extractor)."""
    rng = np.random.default_rng(seed)
    h = CWRStar(F, extractor_hash=xhash, **CWR_PARAMS)
    for i in range(n * len(classes)):
        h.learn_one(_x(rng, classes[i % len(classes)]), classes[i % len(classes)])
    h.flush()
    return snapshot_from_head(h, version=version, device="global")


class Rig:
    """A learner on a local bus, a publisher of global heads, and a recorder of its heads."""

    def __init__(self, tmp_path, xhash: str, graph: LocalGraph | None = None, **params) -> None:
        self.graph = graph or LocalGraph()
        self.bus = create_bus("learner", NS, backend="local", graph=self.graph)
        p = {"preset": "supervised", "state_dir": str(tmp_path), "publish_every": 10_000, **params}
        self.learner = Learner(self.bus, LearnerParams(**p))
        self.learner.bring_up()
        self.tester = create_bus("tester", NS, backend="local", graph=self.graph)
        self.HeadMsg, self.ClassInfo = self.tester.msg("Head"), self.tester.msg("ClassInfo")
        self.pub = self.tester.create_publisher("global_head", self.HeadMsg, "latched")
        self.heads: list = []
        self.tester.create_subscription("head", self.HeadMsg, self.heads.append, "latched")

    def send(self, snap: HeadSnapshot) -> None:
        self.pub.publish(to_msg(snap, self.HeadMsg, self.ClassInfo))

    def state(self) -> dict:
        return {k: np.array(v) for k, v in self.learner.head.state_dict()["arrays"].items()}


def _teach(head, classes, n: int, seed: int = 2) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        c = classes[i % len(classes)]
        head.learn_one(_x(rng, c), c)


def test_global_head_is_merged_once_and_nothing_learned_is_lost(tmp_path, xhash) -> None:
    rig = Rig(tmp_path, xhash)
    head = rig.learner.head
    _teach(head, (0, 1, 3), 70)                    # 64 consolidated + 6 pending in the batch
    assert head.n_batch == 6
    g = _global(xhash)
    rig.send(g)
    assert head.classes == [0, 1, 3, 2]            # local rows first, the fleet's class 2 imported
    assert head.n_batch == 0 and head.n_seen == 70  # the pending batch was consolidated, not dropped
    past = dict(zip(head.classes, head.past.tolist()))
    assert past[3] == 23 and past[2] == 64         # local-only class kept; imported with its count
    assert past[0] == max(24, 64)                  # blend: max(n_L, n_G), no double counting
    row = {c: head.cw[i] for i, c in enumerate(head.classes)}
    assert np.array_equal(row[2], g.weights[list(g.class_ids).index(2)])
    assert rig.learner.global_round == 1
    assert len(rig.heads) == 1 and rig.heads[-1].version == 1 and len(rig.heads[-1].classes) == 4
    # the same round again (re-delivery): nothing changes, nothing is republished
    before = rig.state()
    rig.send(g)
    assert all(np.array_equal(before[k], v) for k, v in rig.state().items())
    assert len(rig.heads) == 1
    # a newer round is merged
    rig.send(g.copy(version=2))
    assert rig.learner.global_round == 2 and len(rig.heads) == 2
    # the merged round survives a restart: the latched global head is not merged twice
    rig.learner.close()
    saved = rig.state()
    again = Rig(tmp_path, xhash, graph=LocalGraph())
    again.send(g.copy(version=2))
    assert again.learner.global_round == 2
    assert all(np.array_equal(saved[k], v) for k, v in again.state().items())


def test_blend_and_replace_policies(tmp_path, xhash) -> None:
    g = _global(xhash, classes=(0, 1))
    rows = {}
    for policy in ("blend", "replace"):
        rig = Rig(tmp_path / policy, xhash, global_policy=policy)
        _teach(rig.learner.head, (0, 1), 64, seed=5)
        local = rig.learner.head.cw.copy()
        rig.send(g)
        rows[policy] = rig.learner.head.cw.copy()
        if policy == "replace":
            assert np.array_equal(rows[policy], g.weights)
        else:  # equal counts (32 vs 64): 1/3 local + 2/3 global
            assert np.allclose(rows[policy], local / 3 + 2 * g.weights / 3, atol=1e-6)


@pytest.mark.parametrize("case, words", [
    ("extractor", "extractor"),
    ("nan", "NaN"),
    ("norm", "absurd norm"),
    ("features", "features"),
])
def test_bad_global_head_is_refused_with_one_line_and_changes_nothing(tmp_path, xhash, caplog, case, words) -> None:
    rig = Rig(tmp_path, xhash)
    _teach(rig.learner.head, (0, 1), 40)
    before = rig.state()
    g = _global(xhash)
    if case == "extractor":
        g = g.copy(extractor_hash="f" * 64)
    elif case == "nan":
        w = g.weights.copy()
        w[1, 3] = np.nan
        g = g.copy(weights=w)
    elif case == "norm":
        g = g.copy(weights=g.weights * 1e6)
    else:
        g = g.copy(weights=g.weights[:, :32])
    with caplog.at_level(logging.ERROR):
        rig.send(g)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1 and words in lines[0] and "\n" not in lines[0], lines
    assert all(np.array_equal(before[k], v) for k, v in rig.state().items())
    assert rig.learner.global_round == 0 and rig.heads == []
    # the learner keeps working: a good global head afterwards is merged
    rig.send(_global(xhash, version=3))
    assert rig.learner.global_round == 3


@pytest.mark.parametrize("policy, words", [("blend", "CWR*"),              # only CWR* blends
                                           ("auto", "head kind 'CWRStar'")])  # auto: SLDA adds statistics
def test_slda_head_refuses_a_linear_global_head(tmp_path, xhash, caplog, policy, words) -> None:
    rig = Rig(tmp_path, xhash, preset="tinycl", global_policy=policy)
    _teach(rig.learner.head, (0, 1), 40)
    before = list(rig.learner.head.classes)            # (with the model's class statistics: 0–5)
    with caplog.at_level(logging.ERROR):
        rig.send(_global(xhash))
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1 and words in lines[0], lines
    assert rig.learner.global_round == 0 and rig.learner.head.classes == before


def test_labeler_replica_stays_equal_to_the_learner_head(tmp_path, xhash) -> None:
    """labeler + learner on one bus: features in, a global head mid-stream, more features."""
    graph = LocalGraph()
    rig = Rig(tmp_path / "learner", xhash, graph=graph, preset="tinyndc")
    lbus = create_bus("labeler", NS, backend="local", graph=graph)
    labeler = Labeler(lbus, LabelerParams(preset="tinyndc", state_dir=str(tmp_path / "labeler")))
    Features = rig.tester.msg("Features")
    Header, Time = rig.tester.msg("std_msgs/msg/Header"), rig.tester.msg("builtin_interfaces/msg/Time")
    fpub = rig.tester.create_publisher("features", Features, "reliable")
    rng = np.random.default_rng(3)
    sid = 0

    def feed(labels, labelled: bool) -> None:
        nonlocal sid
        for c in labels:
            sid += 1
            fpub.publish(Features(header=Header(stamp=Time(sec=1, nanosec=sid)), data=_x(rng, c),
                                  extractor_hash=xhash, sample_id=sid, true_label=c, labelled=labelled))

    def equal(replica: Labeler | None = None) -> bool:
        a, b = rig.learner.head.state_dict()["arrays"], (replica or labeler).system.head.state_dict()["arrays"]
        return all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)

    feed([c for c in range(4) for _ in range(5)], True)            # labelled init of classes 0-3
    feed(rng.integers(0, 3, 45).tolist(), False)                     # stream of 0-2
    assert rig.learner.head.n_seen == 65 and equal()
    rig.send(_global(xhash, classes=(0, 1, 2, 3), n=80))            # the fleet knows 3 well
    assert rig.learner.global_round == labeler.global_round == 1
    assert equal()
    feed(rng.integers(0, 4, 60).tolist(), False)
    assert rig.learner.head.n_seen == 125 and equal()
    # killed now (no clean stop): restarted, the labeler has the merge from a checkpoint and the 60 samples after it
    # from its journal, in that order, before any global head reaches it (before, the checkpoint came before the
    # merge: the samples were learned again on the unmerged replica, and the merge came after them)
    again = Labeler(create_bus("labeler", NS, backend="local", graph=LocalGraph()),
                    LabelerParams(preset="tinyndc", state_dir=str(tmp_path / "labeler"), follow_head=""))
    assert again.global_round == 1 and again.system.head.n_seen == 125 and equal(again)
