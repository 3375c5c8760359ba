"""A node's health as the runner puts it on /diagnostics (nodes/diagnostics.py), built from a real learner on the local
bus: bad input dropped in the last period is WARN with its count, a state folder that can no longer be written is
ERROR naming the file, and both clear again. (tests/ros2/test_graph_ros2.py reads /diagnostics with ``ros2 topic
echo`` from every node of a launch and from dds-backend nodes.)"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.nodes.test_bad_input import _sample
from tinycl_nodes.bus import create_bus
from tinycl_nodes.bus.local import LocalGraph
from tinycl_nodes.extractor import FrozenExtractor, model_path
from tinycl_nodes.nodes.diagnostics import ERROR, OK, WARN, Diagnostics
from tinycl_nodes.nodes.learner import Learner, LearnerParams


class Folder:
    """A state folder that :meth:`read_only` turns read-only while a node runs on it (a bind mount of itself, ro: the
    files it holds open stay as they were, as on a file system remounted read-only) and :meth:`writable` turns back."""

    def __init__(self, path: Path) -> None:
        self.path, self.mounted = path, False

    def read_only(self) -> None:
        for args in (["--bind"], ["-o", "remount,bind,ro"]):
            out = subprocess.run(["mount", *args, *([str(self.path)] * (2 if args == ["--bind"] else 1))],
                                 capture_output=True, text=True)
            assert out.returncode == 0, f"a read-only folder needs a bind mount (make test runs as root): {out.stderr}"
            self.mounted = True

    def writable(self) -> None:
        subprocess.run(["umount", str(self.path)], check=True)
        self.mounted = False


@pytest.fixture
def folder(tmp_path):
    f = Folder(tmp_path / "state")
    f.path.mkdir()
    try:
        yield f
    finally:
        if f.mounted:
            subprocess.run(["umount", "-l", str(f.path)], check=False)


def test_bad_input_is_warn_with_its_count_and_an_unwritable_state_folder_is_error(folder):
    graph = LocalGraph()
    learner = Learner(create_bus("learner", "/r1/tinycl", backend="local", graph=graph),
                      LearnerParams(state_dir=str(folder.path), preset="supervised"))
    learner.bring_up()
    diag = Diagnostics(learner, 1.0)
    bus = create_bus("tester", "/r1/tinycl", backend="local", graph=graph)
    got: list = []
    bus.create_subscription("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", got.append, "reliable")
    pub = bus.create_publisher("labeled", "LabeledFeatures")
    xhash = FrozenExtractor(model_path("mnist_0to5_fp32")).hash
    rng = np.random.default_rng(0)
    try:
        for i in range(6):
            pub.publish(_sample(bus, rng.normal(size=64) + 3 * (i % 2), i % 2, xhash, 10**18 + i))
        learner.state.save()
        st = diag.status()
        assert st.level == OK and st.message == "OK", st
        v = st.values
        assert (v["lifecycle_state"], v["messages_received"], v["bad_input_dropped"]) == ("active", "6", "0"), v
        assert (v["classes_known"], v["samples_learned"]) == ("2", "6"), v
        assert v["state_file"] == str(folder.path / "learner.state") and v["last_checkpoint"] != "none yet", v

        for stamp in (10**18 + 100, 10**18 + 101):     # two of the wrong size, one good: dropped, said, learned
            pub.publish(_sample(bus, np.ones(10), 1, xhash, stamp))
        pub.publish(_sample(bus, rng.normal(size=64), 0, xhash, 10**18 + 102))
        st = diag.status()
        assert st.level == WARN and st.message.startswith("2 bad input(s) dropped in the last 1 s (last: "), st
        assert "expected shape (64,)" in st.message, st
        assert (st.values["messages_received"], st.values["bad_input_dropped"]) == ("9", "2"), st.values
        assert diag.status().level == OK                # a period without: OK again, the total stays
        assert diag.status().values["bad_input_dropped"] == "2"

        folder.read_only()                              # the folder can no longer be written
        pub.publish(_sample(bus, rng.normal(size=64), 1, xhash, 10**18 + 103))
        assert learner.state.save() is False
        st = diag.status()
        assert st.level == ERROR, st
        assert st.message.startswith(f"state cannot be saved to {folder.path / 'learner.state'}: "), st
        assert "Read-only file system" in st.message, st
        diag.publish()                                  # as the timer does: the message ROS 2 tools read
        s = got[-1].status[0]
        assert (s.level, s.name, s.message) == (ERROR, "/r1/tinycl/learner", st.message), s
        assert {kv.key: kv.value for kv in s.values}["state_file"] == str(folder.path / "learner.state")

        folder.writable()                               # writable again: the next checkpoint lands, OK again
        assert learner.state.save() is True
        assert diag.status().level == OK
        folder.read_only()                              # a failure within one period, then a checkpoint that lands
        assert learner.state.save() is False
        folder.writable()
        assert learner.state.save() is True
        st = diag.status()
        assert st.level == WARN and st.message == "1 checkpoint(s) of learner.state failed in the last 1 s", st
    finally:
        learner.close()
        bus.shutdown()
        learner.bus.shutdown()


def test_the_metrics_node_says_its_running_scores_and_warns_when_predictions_stop():
    """The metrics node's own values: the scores it last published (stream samples, predictions, accuracy over its
    window); WARN once stream samples came and no prediction for ``idle_timeout_s`` (the extractor or the learner
    stopped mid-replay), not while the graph is starting or its predictions lag their ground truth."""
    from tinycl_nodes.interfaces import ns_to_time
    from tinycl_nodes.nodes.metrics import Metrics, MetricsParams

    graph = LocalGraph()
    metrics = Metrics(create_bus("metrics", "/m", backend="local", graph=graph),
                      MetricsParams(window=4, exit_when_done=False, idle_timeout_s=0.3))
    metrics.bring_up()
    diag = Diagnostics(metrics, 1.0)
    bus = create_bus("replay", "/m", backend="local", graph=graph)
    truth, preds = bus.create_publisher("ground_truth", "GroundTruth"), bus.create_publisher("predictions",
                                                                                            "Prediction")
    GT, P, Header, Time = (bus.msg(t) for t in ("GroundTruth", "Prediction", "std_msgs/msg/Header",
                                                "builtin_interfaces/msg/Time"))
    try:
        assert diag.status().values["stream_samples"] == "0"
        labels = [3, 1, 4, 1, 5, 9, 2, 6]
        heads = [Header(stamp=ns_to_time(10**18 + i * 1000, Time)) for i in range(len(labels))]

        def truths(idx: range) -> None:
            for i in idx:
                truth.publish(GT(header=heads[i], label=labels[i], class_name="", learnable=False))

        def predictions(idx: range) -> None:                # one of them wrong (the first)
            for i in idx:
                preds.publish(P(header=heads[i], sample_id=i, class_id=labels[i] if i else 0, class_name="",
                                confidence=0.9))

        truths(range(2))                                # no prediction yet: the graph warming up, not a stop
        metrics.tick()
        st = diag.status()
        assert st.level == OK and (st.values["stream_samples"], st.values["predictions"]) == ("2", "0"), st
        predictions(range(2))
        truths(range(2, 4))
        predictions(range(2, 4))
        metrics.tick()
        st = diag.status()
        assert st.level == OK, st
        assert (st.values["stream_samples"], st.values["predictions"], st.values["accuracy_pct"]) == \
            ("4", "4", "75.00"), st.values
        truths(range(4, 8))                             # the learner has stopped
        metrics.tick()
        assert diag.status().level == OK                # not yet: a prediction comes after its ground truth
        time.sleep(0.4)
        metrics.tick()
        st = diag.status()
        assert st.level == WARN and re.fullmatch(r"no prediction for \d+ s while 4 stream sample\(s\) came",
                                                 st.message), st
        assert (st.values["stream_samples"], st.values["window_predictions"]) == ("8", "0"), st.values
    finally:
        metrics.close()
        bus.shutdown()
        metrics.bus.shutdown()
