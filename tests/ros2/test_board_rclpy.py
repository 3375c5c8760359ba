"""The micro-ROS board's messages, decoded by ROS 2 Humble itself (the kit's rclpy + rmw_cyclonedds_cpp).

The firmware built against libmicroros.a runs on QEMU mps2-an500, its UART0 on a pty served by the real
MicroXRCEAgent (Fast DDS); `ros2 topic echo` of the colcon-built tinycl_nodes types prints its
predictions, features and (transient-local, as the board publishes it) head, and of diagnostic_msgs its health
on /diagnostics (one DiagnosticStatus beside every other node's).
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

from ..firmware.conftest import tool_module
from .conftest import diagnostics

#: what the board's board_id() reads on QEMU mps2-an500: the AN500 image's SCC_ID register (boards/mps2_an500.c)
HARDWARE_ID = "mps2-an500 scc-id 0x41045000"
#: board log lines that make a status other than OK right (app/src/main.c: publish_diagnostics)
TROUBLE = re.compile(r"LOG (publish on \w+ failed|.*received message\(s\) lost|label answer|global head|a received "
                     r"message could not be decoded|state: (the storage|writing failed))")


def board_status(ros, name: str, tries: int = 3) -> dict:
    """The board's DiagnosticStatus from `ros2 topic echo --once /diagnostics` (other nodes' statuses skipped; as
    ``diagnostics`` reads it: ``level`` an int, ``values`` a dict)."""
    seen: list[str] = []
    for _ in range(tries):
        got = diagnostics(ros.run("ros2", "topic", "echo", "--once", "/diagnostics",
                                  "diagnostic_msgs/msg/DiagnosticArray", timeout_s=60).stdout)
        if name in got:
            return got[name][0]
        seen += list(got)
    raise AssertionError(f"no status named {name} on /diagnostics in {tries} messages (seen: {seen})")


def test_rclpy_decodes_the_micro_ros_board(ros, data_dir):
    demo = tool_module("demo_board")
    uros = demo.build_uros()
    work = Path(tempfile.mkdtemp(dir=ros.tmp))
    elf, _ = demo.build_firmware(work, uros["LIBMICROROS"], 400, 0, "0-9", 100, ros.domain, str(data_dir))
    t0 = time.monotonic()
    qemu = demo.Qemu(elf, work / "board.log")
    agent = demo.Agent(uros["AGENT"], qemu.pty, work / "agent.log")
    agent.start()
    try:
        ros.wait_until("the board to connect", lambda: "LOG connected" in qemu.text(), timeout_s=60)
        pred = ros.run("ros2", "topic", "echo", "--once", "/board1/tinycl/predictions", "tinycl_nodes/msg/Prediction",
                       timeout_s=60).stdout
        assert "sample_id:" in pred and "class_id:" in pred and "class_name:" in pred, pred

        st = board_status(ros, f"/{demo.DEVICE}/tinycl/tinycl_board")
        wall_s = time.monotonic() - t0
        log = qemu.text()
        banner = re.search(r"initial learner, (\d+) samples learned, (\d+) classes", log)
        assert banner, log[-2000:]
        assert st["hardware_id"] == HARDWARE_ID, st
        values = st["values"]
        if TROUBLE.search(log):   # something went wrong on this run: WARN is right, and it says what
            assert (st["level"], st["message"]) == (0, "OK") or st["level"] == 1 and re.search(
                r"failed|dropped|lost", st["message"]), st
        else:
            assert (st["level"], st["message"]) == (0, "OK"), st
        frames = int(values["frames_processed"])
        assert 0 < frames <= 400, values
        assert int(banner[1]) <= int(values["samples_learned"]) <= int(banner[1]) + frames, values
        assert int(banner[2]) <= int(values["classes_known"]) <= 10, values
        assert 0 < int(values["uptime_s"]) <= wall_s + 1, (values, wall_s)
        assert values["messages_received"] == values["bad_input_dropped"] == "0", values   # nothing was sent to it
        assert int(values["head_version"]) >= 1, values   # published once connected
        assert int(values["state_saves"]) >= 1 and values["state_save_failures"] == "0", values   # the boot's save
        assert int(values["last_checkpoint_frame"]) <= frames and "checkpoint_age_s" in values, values
        for key in ("questions_pending", "publish_failures", "agent_reconnects", "boot", "messages_published",
                    "received_messages_lost"):
            assert values[key].isdigit(), (key, values)

        feat = ros.run("ros2", "topic", "echo", "--once", "--field", "extractor_hash", "/board1/tinycl/features",
                       "tinycl_nodes/msg/Features", timeout_s=60).stdout
        assert len(feat.split()[0].strip("'")) == 64, feat
        head = ros.run("ros2", "topic", "echo", "--once", "--qos-durability", "transient_local", "--qos-reliability",
                       "reliable", "/board1/tinycl/head", "tinycl_nodes/msg/Head", timeout_s=60).stdout
        assert "kind: CWRStar" in head and "n_features: 64" in head, head[:2000]
    finally:
        agent.stop()
        qemu.stop()
