"""A dds-backend node with default parameters, seen by a real ROS 2 Humble (the kit, rmw_cyclonedds_cpp).

Nothing tells the node which distro it talks to: it must announce itself in Humble's
ros_discovery_info layout (Gid char[24]) because the `ros2` process's reader is a Humble one, and
its endpoints carry the Jazzy-style `typehash=` USER_DATA, which Humble must ignore (a message still
flows: `ros2 topic echo`). Domain 41 (41-49 are this work's).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.bus.conftest import ROOT, peer_env
from tests.ros2_env import ros2_env

DOMAIN = 41
NS, NAME = "/tinycl_humble", "probe"
NODE = f"""
import time
from tinycl_nodes.bus import RELIABLE, create_bus
bus = create_bus({NAME!r}, {NS!r}, backend="dds", domain={DOMAIN}, dds_config="loopback")  # default ros_distro
pubs = [bus.create_publisher("chatter", "std_msgs/msg/String", RELIABLE),
        bus.create_publisher("features", "Features", RELIABLE)]
sub = bus.create_subscription("labels", "LabelAnswer", lambda m: None, RELIABLE)
print("READY", bus.ros_distro, flush=True)
String = bus.msg("std_msgs/msg/String")
end = time.monotonic() + 60
while time.monotonic() < end:
    pubs[0].publish(String(data="hello humble"))
    bus.spin_once(0.1)
bus.shutdown()
"""


def ros2(args: list[str], timeout_s: float = 20.0) -> subprocess.CompletedProcess:
    return subprocess.run(["ros2", *args], env=ros2_env(DOMAIN), capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture(scope="module")
def node():
    ros2_env(DOMAIN)   # locate the kit first: a missing kit fails here, before anything is started
    proc = subprocess.Popen([sys.executable, "-c", NODE], cwd=ROOT, env=peer_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if line.split()[:1] != ["READY"]:
            proc.kill()
            pytest.fail(f"dds node did not start: {line!r} {proc.stderr.read()[-2000:]}")
        assert line.split()[1] == "auto", "the node runs with the default ros_distro"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)
        ros2(["daemon", "stop"], timeout_s=30)   # none should run (every call here is --no-daemon); never leave one


def test_humble_ros2_node_list_shows_default_dds_node(node) -> None:
    fqn = f"{NS}/{NAME}"
    end, out = time.monotonic() + 20, None
    while time.monotonic() < end:
        out = ros2(["node", "list", "--no-daemon"])
        if fqn in out.stdout.split():
            break
    assert out is not None and out.stdout.split().count(fqn) == 1, (out.stdout, out.stderr)


def test_humble_ros2_node_info_lists_its_topics(node) -> None:
    end, out = time.monotonic() + 20, None
    while time.monotonic() < end:
        out = ros2(["node", "info", f"{NS}/{NAME}", "--no-daemon"])
        if f"{NS}/chatter" in out.stdout:
            break
    text = out.stdout
    assert "Publishers:" in text and "Subscribers:" in text, (text, out.stderr)
    publishers = text.split("Publishers:")[1].split("Service Servers:")[0]
    subscribers = text.split("Subscribers:")[1].split("Publishers:")[0]
    assert f"{NS}/chatter: std_msgs/msg/String" in publishers, text
    assert f"{NS}/features: tinycl_nodes/msg/Features" in publishers, text
    assert f"{NS}/labels: tinycl_nodes/msg/LabelAnswer" in subscribers, text


def test_humble_receives_from_an_endpoint_with_type_hash_user_data(node) -> None:
    out = ros2(["topic", "echo", "--once", "--no-daemon", "--qos-reliability", "reliable", f"{NS}/chatter",
                "std_msgs/msg/String"],
               timeout_s=20)
    assert out.returncode == 0 and "data: hello humble" in out.stdout, (out.stdout, out.stderr)
