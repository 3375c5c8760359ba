"""The micro-ROS firmware for real: built against libmicroros.a from the kit, run on QEMU mps2-an500,
joined to the Python graph through the real MicroXRCEAgent (serial, XRCE framing on UART0 ⇄ a pty).

A short `make demo-board` (micro_ros_firmware/tools/demo_board.py): the board's features, predictions,
label requests and heads arrive and are decoded by the Python side (dds backend) — every message the
board sent after the graph discovered the agent's writers was received (but one the agent held when it was killed); label answers and a fleet global head reach the board and change what it
predicts (its head gains the classes it had no labelled sample of); the agent is killed for a few
seconds and restarted mid-run and the board reconnects and keeps learning; its predictions are
identical to the host build of the same C core replaying the same stream and events; bad input (an
answer to an unknown request, a global head of another extractor, one larger than the board's buffers)
is one board log line and dropped, and so is each message broken on the wire that rclpy (ROS 2's python,
tests/ros2/wire_faults.py) sends it through the agent: an answer, a change of an answer, a rename and a global head
cut in half, or with a length of 2^31 - 1; and so is each whole message with a class name no node keeps (longer than 256 bytes, more than 64
characters, not UTF-8, a control character).
The global head comes from a real fleet round with the board as one device (``--fleet``): its mqtt_bridge node takes
the board's head over a TLS mosquitto (one identity per device) to the aggregator, which merges it with two peer
devices' heads (each had one digit the board never gets an answer for, and named it with as long a name as the graph
keeps); the global head comes back through the bridge and the agent, and the board then predicts those digits and
its head carries their names.
The graph's side comes after five other DDS processes on the domain (a robot's own nodes): without multicast the agent
finds a process only by announcing itself to its participant index, and Fast DDS's default announces to the first
four (config/fastdds-agent-loopback.xml covers every index the graph's nodes can take).
The first run builds the agent and libmicroros.a into ~/.cache/tinycl (minutes); later runs reuse them.
"""

from __future__ import annotations


import os
import subprocess
from pathlib import Path

from tests.ros2_env import LOOPBACK
from tinycl_nodes.core.names import MAX_NAME_BYTES, MAX_NAME_CHARS, check_class_name

from .conftest import need, tool_module

WIRE_FAULTS = Path(__file__).resolve().parents[1] / "ros2" / "wire_faults.py"


def test_board_joins_the_graph_through_the_real_agent(tmp_path, data_dir, robot_processes, ros2_ws):
    need("cmake", "arm-none-eabi-gcc", "qemu-system-arm")
    robot_processes(5)
    demo = tool_module("demo_board")

    def wire_faults() -> subprocess.Popen:
        """Messages broken on the wire, from rclpy (ROS 2's python) to the board through the agent."""
        env = {**ros2_ws, "ROS_DOMAIN_ID": os.environ["ROS_DOMAIN_ID"], "RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp",
               "CYCLONEDDS_URI": LOOPBACK.as_uri(), "ROS_HOME": str(tmp_path / "ros_home"), "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen(["python3", str(WIRE_FAULTS), "board", "--namespace", f"/{demo.DEVICE}/tinycl",
                                 "--n-features", "64", "--hash", demo.model_sha(tmp_path), "--on-stdin"], env=env,
                                stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)

    r = demo.run(n_stream=150, period_ms=100, outage_s=4.0, seed=1, classes="0-7", data=str(data_dir),
                 work=tmp_path, out=None, timeout_s=150, fleet=True, wire_faults=wire_faults)
    # sent = confirmed by the agent; a publish unconfirmed in time (publish_failures) may still arrive. Messages the
    # board publishes before the graph's DDS has discovered the agent's writers (after the first connection and
    # after the restart) have no reader yet (volatile, as for any new ROS 2 publisher): that window is measured and
    # bounded; after it every message must arrive but the one whose publish found the agent gone.
    spans = r["connected_spans"]
    assert len(spans) == 2 and spans[0][0] <= spans[0][1] < spans[1][0] <= spans[1][1] == 150, spans
    for topic in ("features", "predictions", "label_request"):
        d = r["delivery"][topic]
        assert d["missing_after_discovery"] == [], (topic, d)
        if topic != "label_request":     # requests are sparse: their first one may come late in a span
            assert all(w is not None and w <= 30 for w in d["discovery_frames"]), (topic, d)
    window = sum(r["delivery"]["features"]["discovery_frames"])
    for topic, m in r["messages"].items():
        assert m["sent_by_board"] > 0, (topic, r["messages"])
        assert m["received_by_graph"] <= m["sent_by_board"] + r["publish_failures"], (topic, r["messages"])
    assert r["messages"]["features"]["received_by_graph"] >= r["messages"]["features"]["sent_by_board"] - 1 - window
    assert r["messages"]["head"]["received_by_graph"] >= r["messages"]["head"]["sent_by_board"] - len(spans)  # latched
    assert r["decode_errors_on_graph"] == []
    assert r["heads_decoded"] >= 2 and r["last_head"]["kind"] == "CWRStar"
    assert r["host_build"]["identical_predictions_and_pseudo_labels"] == r["host_build"]["of"] == r["frames"] == 150
    assert r["label_answers"]["applied_by_board"] == r["label_answers"]["sent"] >= 1
    assert r["global_head"]["applied_by_board"] == 1
    assert {8, 9} & set(r["accuracy"]["predicted_classes_after_global"])      # classes the board only got from the fleet
    assert r["reconnect"]["board_reconnects"] == 1 and r["reconnect"]["graph_first_message_after_restart_s"] is not None
    assert r["refused_by_board"] >= 3
    refusals = " | ".join(r["board_log_refusals"])
    assert "unknown request 'board1-999999'" in refusals and "another extractor" in refusals
    assert "could not be decoded" in refusals   # 12 classes: larger than the receive buffers
    # and each message broken on the wire (rclpy's bytes, through the agent): one line, dropped — none applied (the
    # answers and the global head the board applied are counted above, its predictions equal the host build's)
    assert r["wire_faults_sent"]["faults"] == {
        "label_answer cut in half": 1, "label_answer request id length past the end": 1,
        "label_correction cut in half": 1, "label_correction request id length past the end": 1,
        "rename_class cut in half": 1, "rename_class name length past the end": 1, "global_head cut in half": 1,
        "global_head weight count past the end": 1}, r
    assert r["could_not_be_decoded_before_the_outage"] == 1 + 8, r["board_log_refusals"]
    # whole messages with a class name no node keeps (core.names): one line each naming what is wrong, dropped
    assert len(r["wire_faults_sent"]["names"]) == r["name_refusals_before_the_outage"] == 4, r["board_log_refusals"]
    assert f"the new class's name is longer than {MAX_NAME_BYTES} bytes" in refusals
    assert f"class 0's name has more than {MAX_NAME_CHARS} characters" in refusals
    assert "class 0's name is not UTF-8" in refusals and "class 0's name holds a control character" in refusals
    # its health on /diagnostics, read by the graph: the hardware id its board layer reads, and the bad input sent to
    # it reported as WARN with its count (the level goes back to OK in a period without)
    d = r["diagnostics"]
    assert d["statuses"] >= 3 and d["hardware_ids"] == ["mps2-an500 scc-id 0x41045000"], d
    assert d["levels"][0] == 0 and 1 in d["levels"] and 2 not in d["levels"], d
    assert any("bad input(s) dropped in the last" in m for m in d["messages"]), d
    assert d["max"]["bad_input_dropped"] >= 3 and d["max"]["messages_received"] >= 3, d
    assert d["max"]["agent_reconnects"] == 1, d      # the outage: a status after the reconnection reached the graph
    if d["max"]["publish_failures"]:                  # and said what failed in it (repeated until the graph sees it)
        assert any("publish(es) failed in the last" in m for m in d["messages"]), d
    assert {"head.onnx", "head.h"} <= set(r["export"]), (tmp_path / "exporter.log").read_text(errors="replace")[-2000:]
    # the fleet round: the board's head went through its bridge and the broker, was merged with the peers', and the
    # global head came back through the bridge to the board, which now knows and predicts the peers' digits
    f = r["fleet_round"]
    assert f["round"] == 1 and set(f["heads_in_round"]) == {"board1", "devA", "devB"}, f
    board_before = set(f["heads_in_round"]["board1"]["classes"])
    assert board_before <= set(range(8)) and {8, 9} <= set(f["global_classes"]), f
    assert f["bridge_handed_global_to_board"] and f["applied_s"] is not None, f
    assert {8, 9} <= set(f["board_head_classes_after"]), f
    # with the names the peers' people gave them, as long as a name can be (one of 256 bytes): the board kept them
    assert all(check_class_name(name) == name for name in demo.PEER_NAMES.values())
    assert max(len(name.encode()) for name in demo.PEER_NAMES.values()) == MAX_NAME_BYTES
    assert {c: r["last_head"]["names"][c] for c in (8, 9)} == demo.PEER_NAMES, r["last_head"]
    assert not {8, 9} & set(r["accuracy"]["predicted_classes_before_global"]), r["accuracy"]
    assert r["accuracy"]["new_classes_before_global"]["accuracy"] in (0.0, None), r["accuracy"]   # could not predict them
    after = r["accuracy"]["new_classes_after_global"]
    assert after["frames"] >= 5 and after["accuracy"] >= 50.0, r["accuracy"]
