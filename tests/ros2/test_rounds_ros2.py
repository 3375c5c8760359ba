"""The fleet's rounds topic (``global_head``, ``bus.qos.ROUNDS``) under ROS 2 Humble (rclpy, rmw_cyclonedds_cpp): a
learner node that starts after rounds were handed (it was down) gets the last 16, oldest first, from the bridge's
publisher in another process. Each is an addition to its head: at the ``LATCHED`` depth of 1 it got the newest
only, and lacked the rest (tests/fleet/test_exact_restart.py has the fleet's side)."""

from __future__ import annotations

import sys

from tests.ros2.conftest import Ros

NS = "/dev2/tinycl"
BRIDGE = f"""
import time
from tinycl_nodes.bus import ROUNDS, create_bus
bus = create_bus("mqtt_bridge", {NS!r}, backend="ros2")
pub = bus.create_publisher("global_head", "Head", ROUNDS)
Head = bus.msg("Head")
for v in range(1, 21):
    pub.publish(Head(version=v))
print("HANDED", flush=True)
while True:
    bus.spin_once(0.1)
"""
LEARNER = f"""
import time
from tinycl_nodes.bus import ROUNDS, create_bus
bus = create_bus("learner", {NS!r}, backend="ros2")
got = []
bus.create_subscription("global_head", "Head", lambda m: got.append(m.version), ROUNDS)
end = time.monotonic() + 20
while time.monotonic() < end and len(got) < 16:
    bus.spin_once(0.1)
end = time.monotonic() + 1.0                 # and nothing more comes
while time.monotonic() < end:
    bus.spin_once(0.1)
print("GOT", *got, flush=True)
bus.shutdown()
"""


def test_a_learner_that_starts_late_gets_the_last_16_rounds_in_order_under_ros2(ros: Ros) -> None:
    scripts = {}
    for name, text in (("bridge", BRIDGE), ("learner", LEARNER)):   # run as files: the colcon install's
        scripts[name] = ros.tmp / f"rounds_{name}.py"                # tinycl_nodes, not the checkout's (no messages)
        scripts[name].write_text(text)
    bridge = ros.start("python3", str(scripts["bridge"]), name="bridge (rclpy)")
    bridge.wait_for_line("HANDED", 60)
    out = ros.run("python3", str(scripts["learner"]), timeout_s=60).stdout
    got = next(line for line in out.splitlines() if line.startswith("GOT")).split()[1:]
    assert [int(v) for v in got] == list(range(5, 21)), out[-2000:]
    print(f"ros2: a late learner got rounds {got[0]}-{got[-1]} of 20 ({len(got)}), in order", file=sys.stderr)
