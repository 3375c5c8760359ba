"""The TinyNDC graph split over two hosts under rclpy (the ROS 2 kit, rmw_cyclonedds_cpp): sensor +
extractor on ``robot1``, labeler + learner + exporter + metrics on ``cloud`` (network namespaces,
``tinycl_nodes.netns``), unicast discovery by host name on the hosts' ``eth0`` with multicast off
on the link — the configuration a robot and an edge server on a network without multicast need
(``CYCLONEDDS_URI`` from ``dds_config.network_config``). Predictions equal the in-process run's."""

from __future__ import annotations

import json

import numpy as np

from tests.hosts.conftest import need_hosts
from tests.ros2.conftest import params_file
from tinycl_nodes.bus.dds_config import network_config
from tinycl_nodes.graphs import MANAGED
from tinycl_nodes.netns import HostNet

SPLIT = {"exporter": "cloud", "learner": "cloud", "labeler": "cloud", "metrics": "cloud",
         "extractor": "robot1", "sensor": "robot1"}
STREAM = 300


def test_rclpy_graph_split_over_two_hosts_equals_in_process(ros, data_dir):
    from tinycl_nodes import presets
    from tinycl_nodes.experiments import tinyndc as exp

    need_hosts()
    feats = exp.extract_features(exp.load_extractor("mnist_0to5_fp32"), str(data_dir))
    ref = exp.run_one(presets.tinycl_best, False, feats, 0, exp.Protocol(labels_per_class=10, stream_length=STREAM),
                      10, keep_predictions=True)
    out = ros.tmp / "metrics.json"
    pf = params_file(ros.tmp, sensor={"stream_length": STREAM}, metrics={"out": str(out)})
    xml = ros.tmp / "cyclonedds-net.xml"
    xml.write_text(network_config("eth0", ["cloud", "robot1"], multicast=False))
    ros.env["CYCLONEDDS_URI"] = xml.as_uri()
    with HostNet(["cloud", "robot1"], multicast=False) as net:
        procs = {}
        for name, host in SPLIT.items():
            args = ["--ros-args", "--params-file", str(pf), "-r", "__ns:=/robot1/tinycl", "-r", f"__node:={name}"]
            if name in MANAGED:                     # lifecycle nodes under rclpy: configure + activate
                args += ["-p", "autostart:=true"]
            procs[name] = ros.start(*net.command(host, ["ros2", "run", "tinycl_nodes", name, *args]),
                                    name=f"{name}@{host}")
        try:
            assert procs["metrics"].wait(240) == 0
        finally:
            ros.stop_all()
    assert net.leftovers() == []
    result = json.loads(out.read_text())
    preds, want = np.asarray(result["stream_predictions"]), np.asarray(ref["predictions"])
    logs = "\n".join(f"--- {p.name}\n" + "\n".join(p.lines[-6:]) for p in procs.values())
    assert result["lost"] == 0 and result["predictions"] == 100 + STREAM, logs
    assert preds.shape == want.shape and int((preds == want).sum()) == want.size
