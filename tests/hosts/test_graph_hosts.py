"""The TinyNDC graph split over two hosts: sensor + extractor on ``robot1``, labeler + learner +
exporter (+ metrics) on ``cloud``, over DDS on a real interface (``eth0`` of each namespace) —
with multicast discovery, and unicast-only with multicast switched off on the link. Both give
exactly the predictions of the in-process loop (which the one-host graph also equals:
tests/nodes/test_graph.py)."""

from __future__ import annotations

import os

import pytest
from rich.console import Console

from tests.domains import free_domain
from tinycl_nodes.bus.dds_config import network_config
from tinycl_nodes.demo import run_demo
from tinycl_nodes.netns import HostNet

from .conftest import need_hosts

SPLIT = {"sensor": "robot1", "extractor": "robot1",
         "labeler": "cloud", "learner": "cloud", "exporter": "cloud", "metrics": "cloud"}
STREAM = 300


@pytest.mark.parametrize("multicast", [True, False], ids=["multicast", "unicast"])
def test_graph_split_over_two_hosts_equals_in_process(tmp_path, multicast, monkeypatch) -> None:
    need_hosts()
    with HostNet(["cloud", "robot1"], multicast=multicast) as net:
        # the nodes find each other by host name (unicast) or by multicast; the monitor (this
        # process, in cloud's namespace, without its /etc/hosts) uses the addresses
        nodes_xml = tmp_path / "dds.xml"
        nodes_xml.write_text(network_config("eth0", [] if multicast else ["cloud", "robot1"], multicast))
        mon_xml = network_config("eth0", [] if multicast else [net.ip("cloud"), net.ip("robot1")], multicast)
        wrap = {node: net.command(host, []) for node, host in SPLIT.items()}
        monkeypatch.setenv("ROS_DOMAIN_ID", str(free_domain()))   # the monitor configures it here, with mon_xml
        result = net.call_in("cloud", lambda: run_demo(
            None, [f"sensor.stream_length:={STREAM}", f"exporter.out_dir:={tmp_path}", f"dds_config:={nodes_xml}"],
            out=str(tmp_path / "demo.json"), console=Console(file=open(os.devnull, "w")), wrap=wrap,
            monitor_dds_config=mon_xml), timeout=300)
    assert net.leftovers() == []
    g, ref = result["graph"], result["in_process"]
    assert g["samples"] == 10 * 10 + STREAM and g["lost"] == 0, g
    assert ref["identical_predictions"] == ref["of"] == STREAM
    assert all(code == 0 for code in g["exit_codes"].values()), g["exit_codes"]
    assert (tmp_path / "head.onnx").is_file()
