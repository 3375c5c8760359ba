"""kill -9 of the learner between two checkpoints loses nothing it learned: what came after the last checkpoint is in
its journal (journal.py), learned again at the restart without a prediction published twice."""

from __future__ import annotations

import time

import numpy as np

from tests.nodes.test_bad_input import _sample
from tinycl_nodes.bus import create_bus
from tinycl_nodes.datasets import load_mnist
from tinycl_nodes.extractor import FrozenExtractor, model_path
from tinycl_nodes.nodes.learner import HEAD_PRESETS
from tinycl_nodes.storage import load_states

from .conftest import node, spin_until


def test_a_learner_killed_between_checkpoints_loses_nothing_it_learned(domain, tmp_path):
    X, y = load_mnist("train")
    ext = FrozenExtractor(model_path("mnist_0to5_fp32"))
    F, Y = ext.extract(X[:250]), y[:250].astype(int)
    # checkpoints after the 100th and the 200th learned sample only (a head version published would take one too)
    params = (f"state_dir:={tmp_path}", "preset:=tinycl", "model_prior:=false", "save_every:=100",
              "save_period_s:=3600", "publish_every:=100000", "publish_period_s:=3600")
    bus = create_bus("tester", backend="dds", dds_config="loopback", domain=domain)
    preds: list = []
    bus.create_subscription("predictions", "Prediction", preds.append, "reliable")
    pub = bus.create_publisher("labeled", "LabeledFeatures", "reliable")
    unlearn = bus.create_publisher("unlearn", "LabeledFeatures", "reliable")
    renamed = bus.create_publisher("class_renamed", "ClassInfo", "reliable")
    stamp = time.time_ns()

    def send(i: int) -> None:
        msg = _sample(bus, F[i], int(Y[i]), ext.hash, stamp + i)
        msg.source, msg.confidence = msg.PSEUDO, 0.99        # the stream's pseudo-labels
        pub.publish(msg)

    try:
        with node("learner", domain, *params) as learner:
            assert spin_until(bus, lambda: pub.get_subscription_count() > 0 and unlearn.get_subscription_count() > 0
                              and renamed.get_subscription_count() > 0, 20), learner.lines
            for i in range(220):
                send(i)
            assert spin_until(bus, lambda: len(preds) == 220, 20), learner.lines[-10:]
            unlearn.publish(_sample(bus, F[0], int(Y[0]), ext.hash, stamp))     # a person's changed answer
            renamed.publish(bus.msg("ClassInfo")(id=int(Y[0]), name="a renamed class"))
            spin_until(bus, lambda: False, 0.5)
            for i in range(220, 250):
                send(i)
            assert spin_until(bus, lambda: len(preds) == 250, 20), learner.lines[-10:]
            spin_until(bus, lambda: False, 0.3)
            learner.proc.kill()
            learner.proc.wait()
        journal = sorted(p.name for p in tmp_path.glob("learner.journal-*"))
        assert journal, "nothing journaled after the last checkpoint"
        with node("learner", domain, *params) as learner:
            line = learner.wait_for_line("restored head (", 30)
            spin_until(bus, lambda: False, 1.0)
    finally:
        bus.shutdown()
    # the head equals one that learned the same messages in the same order: counts exactly, the float64 statistics to
    # their last bits (a learner never killed differs from this process's by ~3e-14 too: its BLAS's order of sums)
    head = HEAD_PRESETS["tinycl"](ext.n_features, ext.hash).head
    for i in range(220):
        head.learn_valid(F[i], int(Y[i]))
    head.unlearn_valid(F[0], int(Y[0]))
    for i in range(220, 250):
        head.learn_valid(F[i], int(Y[i]))
    # after the checkpoint of the 200th sample: 50 samples, the answer taken back, the rename
    assert f"{head.n_seen} samples" in line and "and its journal (52 messages learned again)" in line, line
    assert len(preds) == 250, "a prediction was published again by the replay"
    assert not list(tmp_path.glob("learner.journal-*")), "the clean stop's checkpoint holds all: no segment is left"
    saved = load_states(tmp_path / "learner.state")["head"]
    want = head.state_dict()["arrays"]
    assert set(saved["arrays"]) == set(want)
    for k, v in want.items():
        got = saved["arrays"][k]
        assert got.dtype == v.dtype and got.shape == v.shape, k
        assert np.array_equal(got, v) if v.dtype.kind in "iub" else np.allclose(got, v, rtol=1e-12, atol=1e-12), k
    assert saved["meta"]["class_names"][str(int(Y[0]))] == "a renamed class"
