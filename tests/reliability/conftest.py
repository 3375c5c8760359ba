"""A TinyNDC graph of real node processes (dds backend) that a test can kill, restart and feed.

Reuses the node harness of ``tests/nodes/conftest.py``; adds the in-process reference (the same
preset, seed and stream through the core loop: what an uninterrupted graph learns, sample for
sample — ``tests/nodes/test_graph.py`` checks that equality) and the held-out accuracy of a head.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from tests.nodes.conftest import ROOT, NodeProcess, domain, node  # noqa: F401 - fixture re-exported
from tinycl_nodes import presets
from tinycl_nodes.bus import create_bus
from tinycl_nodes.core.head import Head
from tinycl_nodes.experiments import tinyndc as exp
from tinycl_nodes.export import c_state
from tinycl_nodes.nodes.learner import HEAD_PRESETS
from tinycl_nodes.nodes.messages import stamp_ns
from tinycl_nodes.storage import load_states

CONFIGS = {"learner": str(ROOT / "config" / "tinyndc.yaml"), "board": str(ROOT / "config" / "tinyndc_board.yaml")}
SEED, LABELS = 0, 10


@pytest.fixture(scope="session")
def mnist_features(data_dir):
    return exp.extract_features(exp.load_extractor("mnist_0to5_fp32"), str(data_dir))


def held_out(feats, stream_length: int) -> tuple[np.ndarray, np.ndarray]:
    _, _, held = exp.split(SEED, feats, exp.Protocol(LABELS, stream_length), LABELS)
    return feats.test[held], feats.test_y[held]


def accuracy(head: Head, X: np.ndarray, y: np.ndarray) -> float:
    """Held-out accuracy in percent."""
    return 100.0 * float(np.mean([head.predict_valid(x) == t for x, t in zip(X, y)]))


def reference_head(feats, preset: str, stream_length: int, clean_stream: bool = True) -> Head:
    """The head an uninterrupted graph ends with: the in-process TinyNDC loop on the same stream."""
    factory = {"tinycl": presets.tinycl_best, "tinyndc": presets.tinyndc_paper}[preset]
    init, stream, _ = exp.split(SEED, feats, exp.Protocol(LABELS, stream_length), LABELS)
    system = factory(feats.n_features, feats.extractor_hash)
    system.init_from_labelled(feats.train_rows(init), feats.train_y[init], feats.prior)   # as the nodes start
    for x in feats.test[stream]:
        system.step(x)
    return system.head


def saved_head(state_dir: Path, preset: str, n_features: int, extractor_hash: str, learner: str = "learner") -> Head:
    """The head the learner (or the board: its C head, read as the Python CWR*) saved."""
    if learner == "board":
        blob = load_states(state_dir / "board.state")["board"]["arrays"]["head"]
        return c_state.cwr_from_bytes(np.asarray(blob, np.uint8).tobytes())
    head = HEAD_PRESETS[preset](n_features, extractor_hash).head
    head.load_state_dict(load_states(state_dir / "learner.state")["head"])
    return head


class Graph:
    """sensor → extractor → labeler → learner (or board) as processes, plus a watcher of ``labeled``."""

    def __init__(self, stack: ExitStack, domain_id: int, state_dir: Path, stream_length: int, rate_hz: float,
                 preset: str = "tinycl", learner: str = "learner") -> None:
        self.stack, self.domain, self.state_dir = stack, domain_id, state_dir
        self.stream_length, self.rate_hz, self.preset, self.learner = stream_length, rate_hz, preset, learner
        self.bus = create_bus("watcher", "/", backend="dds", dds_config="loopback", domain=domain_id)
        stack.callback(self.bus.shutdown)
        self.labels = 0                        # labels (≥ 0) the labeler sent
        self.labeled = 0                       # LabeledFeatures it sent (one per sample it handled)
        self.learned = 0                       # labels the learner handled (its prediction came back)
        self._label_stamps: set[int] = set()
        self.last_label_t = time.monotonic()
        self.bus.create_subscription("labeled", "LabeledFeatures", self._on_labeled, "reliable")
        self.bus.create_subscription("predictions", "Prediction", self._on_prediction, "reliable")
        self.head_versions: list[int] = []     # versions of the heads published on ``head``, in order
        self.bus.create_subscription("head", "Head", lambda m: self.head_versions.append(int(m.version)), "latched")
        self.procs: dict[str, NodeProcess] = {}

    def _on_labeled(self, msg) -> None:
        self.labeled += 1
        if msg.label >= 0:
            self.labels += 1
            self._label_stamps.add(stamp_ns(msg.header))
            self.last_label_t = time.monotonic()

    def _on_prediction(self, msg) -> None:
        """The learner predicts a sample right before learning its label: what it learned so far."""
        if stamp_ns(msg.header) in self._label_stamps:
            self.learned += 1

    def start(self, name: str, *params: str) -> NodeProcess:
        common = {"learner": (f"state_dir:={self.state_dir}", f"preset:={self.preset}"),
                  "board": (f"state_dir:={self.state_dir}",),
                  # this watcher reads `labeled` too: the labeler waits for it and the learner / board
                  "labeler": (f"state_dir:={self.state_dir}", f"preset:={self.preset}", "wait_for_subscribers:=2"),
                  "sensor": (f"stream_length:={self.stream_length}", f"rate_hz:={self.rate_hz}",
                             f"wait_for_truth_subscribers:={2 if self.learner == 'learner' else 1}",
                             f"seed:={SEED}")}.get(name, ())
        self.procs[name] = self.stack.enter_context(node(name, self.domain, *common, *params,
                                                         params_file=CONFIGS[self.learner]))
        return self.procs[name]

    def start_all(self) -> None:
        for name in (self.learner, "labeler", "extractor"):
            self.start(name)
        self.start("sensor")

    def spin_until(self, predicate, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.bus.spin_once(0.02)
            if predicate():
                return True
        return predicate()

    def kill9_and_restart(self, name: str) -> NodeProcess:
        self.procs[name].proc.kill()
        self.procs[name].proc.wait()
        return self.start(name)

    def finish(self, timeout_s: float = 120.0) -> None:
        """Wait for the sensor's end and the last label, then stop the learning nodes (they save)."""
        sensor = self.procs["sensor"].proc
        assert self.spin_until(lambda: sensor.poll() is not None, timeout_s), "the sensor did not finish"
        self.spin_until(lambda: time.monotonic() - self.last_label_t > 2.0, 30)
        for name in ("extractor", "labeler", self.learner):
            assert self.procs[name].stop() == 0, "\n".join(self.procs[name].lines[-20:])
