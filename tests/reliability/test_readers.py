"""Start-up race on ``labeled``: the labeler handles no sample before its expected readers are matched
(the learner or board, and the label app in tinyrce), so a reader that starts late — the board takes
seconds to import — loses nothing; each graph's parameter file asks for as many readers as the
graph has nodes that read ``labeled``."""

from __future__ import annotations

import time

import numpy as np
import pytest
import yaml

from tinycl_nodes.bus import create_bus
from tinycl_nodes.graphs import GRAPHS
from tinycl_nodes.interfaces import as_sequence, ns_to_time
from tinycl_nodes.launcher import CONFIG_DIR
from tinycl_nodes.param_files import sensor_is_live

from tests.nodes.conftest import node, spin_until

#: the nodes that read the labeler's ``labeled``
LABELED_READERS = {"learner", "board", "label_app"}
#: the nodes that read the sensor's ``ground_truth`` (the learner for the class names)
TRUTH_READERS = {"extractor", "metrics", "learner"}
CONFIGS = {"fleet_device": "fleet"}          # graph → its parameter file, where not the same name


@pytest.mark.parametrize("preset", ["rce"])     # tinyrce: the learner and the label app (tinycl: the same wait)
def test_labeler_waits_for_every_expected_reader_of_labeled(preset, domain, tmp_path, mnist_features):
    bus = create_bus("tester", "/", backend="dds", dds_config="loopback", domain=domain)
    Features, Time = bus.msg("Features"), bus.msg("builtin_interfaces/msg/Time")
    Header = bus.msg("std_msgs/msg/Header")
    pub = bus.create_publisher("features", Features, "reliable")
    early: list[int] = []
    bus.create_subscription("labeled", "LabeledFeatures", lambda m: early.append(int(m.features.sample_id)),
                            "reliable")
    try:
        with node("labeler", domain, f"preset:={preset}", f"state_dir:={tmp_path}", "wait_for_subscribers:=2",
                  "wait_timeout_s:=60") as labeler:
            assert spin_until(bus, lambda: pub.get_subscription_count() >= 1, 60), labeler.lines[-10:]
            X, y = mnist_features.train_rows(np.arange(60)), mnist_features.train_y[:60]
            for i, (x, label) in enumerate(zip(X, y)):      # 30 labelled, then 30 unlabelled samples
                pub.publish(Features(header=Header(stamp=ns_to_time(time.time_ns(), Time)),
                                     data=as_sequence(x.astype(np.float32), "f"),
                                     extractor_hash=mnist_features.extractor_hash, sample_id=i + 1,
                                     true_label=int(label), labelled=i < 30))
            spin_until(bus, lambda: False, 3.0)
            assert early == [], f"the labeler handled {len(early)} samples with 1 of 2 readers matched"
            late_bus = create_bus("late", "/", backend="dds", dds_config="loopback", domain=domain)
            late: list[int] = []
            late_bus.create_subscription("labeled", "LabeledFeatures",
                                         lambda m: late.append(int(m.features.sample_id)), "reliable")
            try:
                assert spin_until(late_bus, lambda: len(late) == 60, 30), (len(late), labeler.lines[-10:])
            finally:
                late_bus.shutdown()
            assert sorted(late) == list(range(1, 61))
            assert not any("Traceback" in ln for ln in labeler.lines)
    finally:
        bus.shutdown()


def test_labeler_gives_up_waiting_in_one_line(domain, tmp_path):
    with node("labeler", domain, f"state_dir:={tmp_path}", "wait_for_subscribers:=2", "wait_timeout_s:=1") as labeler:
        line = labeler.wait_for_line("starting anyway", 30)
        assert "labeled (0 of 2)" in line and labeler.proc.poll() is None


@pytest.mark.parametrize("graph", sorted(g for g, nodes in GRAPHS.items() if "labeler" in nodes))
def test_each_graph_config_waits_for_its_readers_of_labeled(graph):
    """The parameter file of each graph with a labeler names as many readers as the graph has."""
    doc = yaml.safe_load((CONFIG_DIR / f"{CONFIGS.get(graph, graph)}.yaml").read_text())
    wanted = doc.get("labeler", {}).get("ros__parameters", {}).get("wait_for_subscribers", 1)
    assert wanted == len(LABELED_READERS & set(GRAPHS[graph])), graph


@pytest.mark.parametrize("graph", sorted(g for g, nodes in GRAPHS.items() if "sensor" in nodes))
def test_each_graph_config_waits_for_its_readers_of_ground_truth(graph):
    """The sensor starts once every reader of ``ground_truth`` is there: the learner reading it too (class names),
    a count one short let the replay begin before the extractor's reader was matched."""
    path = CONFIG_DIR / f"{CONFIGS.get(graph, graph)}.yaml"
    doc = yaml.safe_load(path.read_text())
    sensor = doc.get("sensor", {}).get("ros__parameters", {})
    if sensor_is_live([str(path)], "/", {}, {}):        # a live IMU or camera: no ground truth, no reader waited for
        assert "wait_for_truth_subscribers" not in sensor, graph
        return
    assert sensor.get("wait_for_truth_subscribers", 1) == len(TRUTH_READERS & set(GRAPHS[graph])), graph
