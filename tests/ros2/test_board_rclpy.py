"""The micro-ROS board's messages, decoded by ROS 2 Humble itself (the kit's rclpy + rmw_cyclonedds_cpp).

The firmware built against libmicroros.a runs on QEMU mps2-an500, its UART0 on a pty served by the real
MicroXRCEAgent (Fast DDS); `ros2 topic echo` of the colcon-built tinycl_nodes types prints its
predictions, features and (transient-local, as the board publishes it) head.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..firmware.conftest import tool_module


def test_rclpy_decodes_the_micro_ros_board(ros, data_dir):
    demo = tool_module("demo_board")
    uros = demo.build_uros()
    work = Path(tempfile.mkdtemp(dir=ros.tmp))
    elf, _ = demo.build_firmware(work, uros["LIBMICROROS"], 400, 0, "0-9", 100, ros.domain, str(data_dir))
    qemu = demo.Qemu(elf, work / "board.log")
    agent = demo.Agent(uros["AGENT"], qemu.pty, work / "agent.log")
    agent.start()
    try:
        ros.wait_until("the board to connect", lambda: "LOG connected" in qemu.text(), timeout_s=60)
        pred = ros.run("ros2", "topic", "echo", "--once", "/board1/tinycl/predictions", "tinycl_nodes/msg/Prediction",
                       timeout_s=60).stdout
        assert "sample_id:" in pred and "class_id:" in pred and "class_name:" in pred, pred
        feat = ros.run("ros2", "topic", "echo", "--once", "--field", "extractor_hash", "/board1/tinycl/features",
                       "tinycl_nodes/msg/Features", timeout_s=60).stdout
        assert len(feat.split()[0].strip("'")) == 64, feat
        head = ros.run("ros2", "topic", "echo", "--once", "--qos-durability", "transient_local", "--qos-reliability",
                       "reliable", "/board1/tinycl/head", "tinycl_nodes/msg/Head", timeout_s=60).stdout
        assert "kind: CWRStar" in head and "n_features: 64" in head, head[:2000]
    finally:
        agent.stop()
        qemu.stop()
