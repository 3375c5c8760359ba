"""A robot parked in front of one view, its labeler started again (stopped, or kill -9): the views it last passed
on to be learned are part of its state (``learn_gate.RecentViews``), so the view is learned once in all, not once more
after each restart. Was: a labeler started again learned the first frame of the held view again (a robot parked in
front of a wall that restarts every few minutes learned it each time). Real labeler processes over DDS: TinyNDC
(tinycl's gate, MNIST through the real extractor) and TinyRCE (its ``rce_repeat_factor`` ring)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.nodes.conftest import node, spin_until, wait_for_new_matches
from tinycl_nodes.bus import create_bus
from tinycl_nodes.datasets import load_mnist
from tinycl_nodes.extractor import FrozenExtractor, model_path
from tinycl_nodes.interfaces import as_sequence
from tinycl_nodes.nodes.labeler import VIEWS
from tinycl_nodes.storage import load_states, save_states

pytestmark = pytest.mark.waits      # what make test does with it: pyproject.toml

FRAMES = 12                   # frames of the held view before the restart, and as many after


class Camera:
    """The test's side of the bus: features in, what the labeler passes on collected (label -1: predicted only)."""

    def __init__(self, domain: int, model: str) -> None:
        self.bus = b = create_bus("tester", backend="dds", dds_config="loopback", domain=domain)
        self.hash = FrozenExtractor(model_path(model)).hash
        self.passed: dict[int, int] = {}
        self.labeled = b.create_subscription("labeled", "LabeledFeatures", self._on_labeled, "reliable")
        self.features = b.create_publisher("features", "Features", "reliable")
        self.stamp = time.time_ns()

    def _on_labeled(self, m) -> None:
        self.passed[m.features.header.stamp.sec * 10**9 + m.features.header.stamp.nanosec] = int(m.label)

    def send(self, x: np.ndarray, label: int = -1) -> int:
        self.stamp += 1000
        Header, Time = self.bus.msg("std_msgs/msg/Header"), self.bus.msg("builtin_interfaces/msg/Time")
        ns = self.stamp
        self.features.publish(self.bus.msg("Features")(
            header=Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9)), data=as_sequence(x, "f"),
            extractor_hash=self.hash, sample_id=ns % 10**6, true_label=label, labelled=label >= 0))
        return ns

    def wait_for_labeler(self, labeler, since: tuple[int, int] = (0, 0)) -> tuple[int, int]:
        """Until a labeler reads our features and we read what it passes on (both ways: what it publishes before
        our reader matched is lost to us); ``since``: the counts before a restart (``matches_made``)."""
        return wait_for_new_matches(self.bus, (self.features, self.labeled), since, labeler)

    def held(self, frames: np.ndarray, labeler) -> list[int]:
        """The frames of the held view; what the labeler passed on for each (-1: not learned)."""
        sent = [self.send(x) for x in frames]
        assert spin_until(self.bus, lambda: all(k in self.passed for k in sent), 30), labeler.lines[-10:]
        return [self.passed[k] for k in sent]


def _restart(stop: str, labeler, state_dir) -> None:
    """Stop the labeler as a launch's restart finds it: SIGINT (it saves), or kill -9 after its checkpoint; "older
    file": SIGINT, and its state file then as one written before the views were kept (without them)."""
    if stop == "kill -9":
        time.sleep(2.5)       # its 1 s timer checkpoints what changed (save_period_s 1): the kill comes after that
        labeler.proc.kill()
        labeler.proc.wait()
        return
    assert labeler.stop() == 0, labeler.lines[-10:]
    if stop == "older file":
        states = load_states(state_dir / "labeler.state")
        assert VIEWS in states and len(states[VIEWS]["arrays"]["X"]) <= 16     # small: 16 rows of F floats at most
        save_states(state_dir / "labeler.state", {k: v for k, v in states.items() if k != VIEWS})


@pytest.mark.parametrize("stop", ["SIGINT", "kill -9", "older file"])
def test_a_tinyndc_labeler_started_again_does_not_learn_the_held_view_once_more(stop, domain, tmp_path, data_dir,
                                                                                 fp32_extractor):
    Xtr, ytr = load_mnist("train", data_dir)
    Xte, _ = load_mnist("test", data_dir)
    init = np.concatenate([np.flatnonzero(ytr == c)[:10] for c in range(10)])
    labelled = fp32_extractor.extract(Xtr[init])
    rng = np.random.default_rng(0)          # a 7 held in view, sensor noise σ 6 (as tests/test_parked_camera.py)
    frames = fp32_extractor.extract(np.clip(Xte[0] + rng.normal(0, 6, (2 * FRAMES, 28, 28)), 0, 255).astype(np.uint8))
    t = Camera(domain, "mnist_0to5_fp32")
    # alone: no learner's head to follow or labelled samples to recover; save_every 1: a kill -9 finds a checkpoint
    # holding the held view (what the journal holds is learned again anyway)
    args = ("preset:=tinycl", f"state_dir:={tmp_path}", "follow_head:=''", "recover_topic:=''", "global_topic:=''",
            "save_every:=1", "save_period_s:=1.0")
    try:
        with node("labeler", domain, *args) as labeler:
            seen = t.wait_for_labeler(labeler)
            for x, y in zip(labelled, ytr[init]):
                t.send(x, int(y))
            before = t.held(frames[:FRAMES], labeler)
            assert before[0] >= 0 and before[1:] == [-1] * (FRAMES - 1), before     # learned once, then held back
            _restart(stop, labeler, tmp_path)
        with node("labeler", domain, *args) as again:
            again.wait_for_line("restored state (", 30)
            t.wait_for_labeler(again, seen)
            after = t.held(frames[FRAMES:], again)
            if stop == "older file":         # it loads, with no view remembered: the first frame is learned again
                assert after[0] >= 0 and after[1:] == [-1] * (FRAMES - 1), after
                assert not any("ERROR" in ln for ln in again.lines), again.lines
            else:
                assert after == [-1] * FRAMES, after             # was: its first frame learned again
            line = again.wait_for_line("pseudo-labels not learned", 15)
            assert "a repeat of a view just learned" in line, line
        assert not any("Traceback" in ln for ln in labeler.lines + again.lines)
    finally:
        t.bus.shutdown()


@pytest.mark.parametrize("stop", ["SIGINT", "kill -9"])
def test_an_rce_labeler_started_again_does_not_pass_the_held_view_on_once_more(stop, domain, tmp_path):
    rng = np.random.default_rng(1)
    centers = rng.normal(0, 3, (2, 64))          # classes 0, 1 from labels (as tests/nodes/test_rce_graph.py)
    view = (centers[0] + rng.normal(0, 0.5, 64)).astype(np.float32)        # covered by class 0, not a labelled one
    frames = (view + rng.normal(0, 0.005, (2 * FRAMES, 64))).astype(np.float32)   # a still camera's frames
    t = Camera(domain, "har_elm")
    args = ("model:=har_elm", "preset:=rce", f"state_dir:={tmp_path}", "class_names:={0: walking, 1: seated}",
            "global_topic:=''", "save_period_s:=1.0")
    try:
        with node("labeler", domain, *args) as labeler:
            seen = t.wait_for_labeler(labeler)
            taught = [t.send((centers[i % 2] + rng.normal(0, 0.1, 64)).astype(np.float32), i % 2) for i in range(6)]
            assert spin_until(t.bus, lambda: all(k in t.passed for k in taught), 30), labeler.lines[-10:]
            if stop == "kill -9":
                time.sleep(2.5)    # the labels checkpointed: the view's frames alone change what the next one holds
            before = t.held(frames[:FRAMES], labeler)
            assert before == [0] + [-1] * (FRAMES - 1), before
            _restart(stop, labeler, tmp_path)
        with node("labeler", domain, *args) as again:
            again.wait_for_line("restored state from", 30)
            t.wait_for_labeler(again, seen)
            after = t.held(frames[FRAMES:], again)
            assert after == [-1] * FRAMES, after                 # was: its first frame passed on to be learned again
        assert not any("Traceback" in ln for ln in labeler.lines + again.lines)
    finally:
        t.bus.shutdown()
