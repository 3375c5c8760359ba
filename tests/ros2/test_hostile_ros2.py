"""Hostile messages met by nodes under rclpy on the real ROS 2 (rmw_cyclonedds): CDR broken on the wire.

rmw_cyclonedds (Humble's) hands rclpy a message it could not deserialize as a valid one, filled in up to the fault.
Taken as messages, a LabeledFeatures cut before its name was learned whole, one whose feature count said 2^31 - 1 was
copied into Python (8 GB and some 25 s of CPU for a 400-byte message), and from the second such message on each one
printed rcutils's ten-line "error state is being overwritten" on stderr. The ROS 2 backend now takes every
subscription's samples as bytes and deserializes them itself (``bus/ros2.py``)."""

from __future__ import annotations

import json
from pathlib import Path

from tinycl_nodes.bus import create_bus

HERE = Path(__file__).resolve().parent


def test_a_message_broken_on_the_wire_is_one_line_and_is_not_learned(ros, fp32_extractor):
    learner = ros.start("ros2", "run", "tinycl_nodes", "learner", "--ros-args", "-r", "__ns:=/wf",
                        "-p", "preset:=supervised", "-p", "publish_every:=1", "-p", "autostart:=true",
                        "-p", f"state_dir:={ros.tmp / 'state'}", name="learner")
    bus = create_bus("wf_tester", "/wf", backend="dds", domain=ros.domain, dds_config="loopback")
    heads: list = []
    bus.create_subscription("head", "Head", heads.append, "latched")
    try:
        out = ros.run("python3", str(HERE / "wire_faults.py"), "--namespace", "/wf", "--hash", fp32_extractor.hash,
                      "--n-features", str(fp32_extractor.n_features), timeout_s=120)
        sent = json.loads(out.stdout.strip().splitlines()[-1])
        ros.wait_until("the last whole sample learned (class 3: every message before it taken)",
                       lambda: (bus.spin_once(0.2), heads and 3 in {c.id for c in heads[-1].classes})[1], timeout_s=60)
    finally:
        bus.shutdown()
    faults = sum(sent["faults"].values())
    dropped = [ln for ln in learner.lines if "labeled: dropped malformed tinycl_nodes/msg/LabeledFeatures (" in ln]
    print(f"{faults} broken messages {sent['faults']}: {len(dropped)} dropped, one line each; "
          f"learned {heads[-1].n_seen} of {sent['whole']} whole ones; e.g. {[d.split('] ', 1)[-1] for d in dropped[:1]]}")
    assert heads[-1].n_seen == sent["whole"] == 6, learner.text[-3000:]
    assert [c.name for c in heads[-1].classes] == ["walking", "seated", "running", "stairs"]
    assert len(dropped) == faults == 20, learner.text[-3000:]
    assert "error state is being overwritten" not in learner.text and "Traceback" not in learner.text
    assert learner.proc.poll() is None
    assert learner.stop() == 0

