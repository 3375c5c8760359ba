"""/rosout from a dds-backend node, as real ROS 2 sees it.

A tinycl node on the ``dds`` backend (no ROS 2 in its process) publishes each log record as
``rcl_interfaces/msg/Log`` on ``/rosout`` with rcl's rosout QoS (reliable, transient-local, depth
1000: ``bus/dds.py``, ``RosoutWriter``). Here the exporter runs in /logs on that backend; a real
``ros2 topic pub`` asks it to export before it has a head, which it refuses with one WARN line;
then ``ros2 topic echo /rosout`` — one started before the line (live) and one started after it
(late joiner: only transient-local durability brings it) — must both print that record with the
node's logger name ``logs.exporter``.
"""

from __future__ import annotations

import re
import signal
import sys

NS = "/logs"
LOGGER = "logs.exporter"                                  # rcl's logger name of /logs/exporter
TEXT = "export requested but no head received yet"        # exporter.export() without a head: WARN
WARN = 30                                                 # rcl_interfaces/msg/Log.WARN


def _records(lines: list[str]) -> list[dict[str, str]]:
    """``ros2 topic echo`` YAML output → one dict of top-level scalar fields per message."""
    out: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for line in lines:
        if line.strip() == "---":
            if cur:
                out.append(cur)
            cur = {}
            continue
        m = re.match(r"^(\w+):\s*(.*)$", line)       # top-level only (stamp's sec/nanosec are indented)
        if m:
            value = m.group(2).strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            cur[m.group(1)] = value
    return out


def _ours(echo) -> list[dict[str, str]]:
    return [r for r in _records(list(echo.lines)) if r.get("name") == LOGGER]


def _subscriptions(ros, topic: str) -> int:
    out = ros.run("ros2", "topic", "info", "--no-daemon", "--spin-time", "1", topic, timeout_s=30, check=False).stdout
    m = re.search(r"Subscription count: (\d+)", out)
    return int(m.group(1)) if m else -1


def _echo(ros, label: str):
    # --no-daemon: no ros2 daemon left behind on the shared machine; the QoS is the default
    # choice of ros2 topic echo (it matches the publishers': reliable + transient-local here)
    return ros.start("ros2", "topic", "echo", "--no-daemon", "/rosout", name=f"echo /rosout ({label})")


def test_dds_node_logs_reach_ros2_rosout(ros):
    exporter = ros.start(sys.executable, "-m", "tinycl_nodes.nodes.exporter", "--ros-args", "-r", f"__ns:={NS}",
                         "-p", "period_s:=0.0", dds=True, name="exporter (dds)")
    ros.wait_until("the dds exporter in `ros2 node list`", lambda: f"{NS}/exporter" in ros.node_list(),
                   timeout_s=45)
    assert exporter.proc.poll() is None, exporter.text
    # ROS 2 sees the dds node's /rosout writer as the node's, with rcl's rosout QoS
    info = ros.run("ros2", "topic", "info", "-v", "--no-daemon", "--spin-time", "2", "/rosout", timeout_s=30).stdout
    ours = [b for b in info.split("Node name: ")[1:] if b.startswith("exporter\nNode namespace: /logs\n")]
    assert len(ours) == 1, info
    assert "Topic type: rcl_interfaces/msg/Log" in ours[0], ours[0]
    assert "Endpoint type: PUBLISHER" in ours[0], ours[0]
    assert "Reliability: RELIABLE" in ours[0], ours[0]
    assert "Durability: TRANSIENT_LOCAL" in ours[0], ours[0]
    assert "KEEP_LAST (1000)" in ours[0], ours[0]
    rcl = [b for b in info.split("Node name: ")[1:] if not b.startswith("exporter\n")]   # ros2cli's own, via rcl
    lifespan = re.search(r"Lifespan: (.*)", ours[0])
    assert lifespan and rcl and all(f"Lifespan: {lifespan.group(1)}" in b for b in rcl), info
    assert "Infinite" not in lifespan.group(1), lifespan.group(1)

    # a live reader, subscribed before the line is logged; its own /rosout lines are ros2cli's
    live = _echo(ros, "live")
    ros.wait_until("the live echo's subscription on /rosout", lambda: _subscriptions(ros, "/rosout") >= 1,
                   timeout_s=30)
    assert live.proc.poll() is None, live.text

    # the exporter is asked to export with no head yet: one WARN line (on its console and /rosout)
    ros.run("ros2", "topic", "pub", "--once", f"{NS}/export_request", "std_msgs/msg/String", "{data: ''}",
            timeout_s=45)
    console = exporter.wait_for_line(TEXT, timeout_s=30)
    assert "[WARN]" in console and f"[{LOGGER}]" in console, console

    got = ros.wait_until("the WARN record on the live /rosout echo",
                         lambda: [r for r in _ours(live) if r.get("msg") == TEXT], timeout_s=30)
    # a late joiner: started after the line was logged, it gets it from the writer's history
    late = _echo(ros, "late")
    late_got = ros.wait_until("the WARN record on a /rosout echo started after it was logged",
                              lambda: [r for r in _ours(late) if r.get("msg") == TEXT], timeout_s=40)

    for rec in (got[0], late_got[0]):
        assert rec["name"] == LOGGER
        assert rec["msg"] == TEXT
        assert int(rec["level"]) == WARN, rec
        assert rec.get("function") == "export", rec
        assert rec.get("file", "").endswith("exporter.py"), rec
        assert int(rec.get("line", "0")) > 0, rec
    # once: the record is not repeated on either reader
    assert len([r for r in _ours(live) if r.get("msg") == TEXT]) == 1, live.text[-3000:]
    assert len([r for r in _ours(late) if r.get("msg") == TEXT]) == 1, late.text[-3000:]

    for echo in (live, late):
        echo.stop(signal.SIGINT)
        assert echo.proc.poll() is not None, f"{echo.name} did not exit on SIGINT"
    assert exporter.stop(signal.SIGINT) == 0, exporter.text[-3000:]
