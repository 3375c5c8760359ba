"""The sensor replays a rosbag2 file (MCAP and SQLite3, written here with rosbags) onto the graph."""

import time

import numpy as np
import pytest
from tests.nodes.conftest import node, spin_until
from tests.nodes.test_camera_extractor import image_bag
from tinycl_nodes.bus import create_bus
from tinycl_nodes.datasets import load_mnist


@pytest.mark.parametrize("plugin", ["mcap", "sqlite3"])
def test_sensor_replays_a_rosbag(tmp_path, domain, plugin):
    X, _ = load_mnist("test")
    bag = tmp_path / f"bag_{plugin}"
    image_bag(bag, X[:12], plugin)
    bus = create_bus("bag_reader", backend="dds", dds_config="loopback", domain=domain)
    got = []
    bus.create_subscription("image", "sensor_msgs/msg/Image", got.append, "reliable")
    try:
        with node("sensor", domain, "source:=rosbag", f"bag:={bag}", "linger_s:=1.0", "qos:=reliable") as sensor:
            assert spin_until(bus, lambda: len(got) == 12, 30), sensor.lines[-10:]
            sensor.wait_for_line("published 12 samples")
        for msg, img in zip(got, X[:12]):
            assert (msg.height, msg.width, msg.encoding) == (28, 28, "mono8")
            np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(28, 28), img)
    finally:
        bus.shutdown()


def test_missing_bag_is_one_line(tmp_path, domain):
    with node("sensor", domain, "source:=rosbag", f"bag:={tmp_path / 'none'}") as sensor:
        line = sensor.wait_for_line("rosbag not found")
        sensor.proc.wait(timeout=20)   # it exits by itself (leaving the block early would SIGINT it)
        assert "Traceback" not in "\n".join(sensor.lines)
    assert sensor.proc.returncode == 2, line


@pytest.mark.parametrize("rate_hz", [0.0, 200.0])
def test_a_bag_plays_at_the_pace_it_was_recorded_unless_rate_hz_says_otherwise(tmp_path, domain, rate_hz):
    """A robot's bag replayed all at once would send its best-effort frames in one burst (most lost at a busy
    extractor); like ros2 bag play, the sensor keeps the recorded gaps: 20 frames 50 ms apart take 0.95 s."""
    X, _ = load_mnist("test")
    bag = tmp_path / "bag"
    image_bag(bag, X[:20], period_ns=50_000_000)
    bus = create_bus("bag_reader", backend="dds", dds_config="loopback", domain=domain)
    arrived = []
    bus.create_subscription("image", "sensor_msgs/msg/Image", lambda _: arrived.append(time.monotonic()), "reliable")
    try:
        with node("sensor", domain, "source:=rosbag", f"bag:={bag}", "linger_s:=1.0", "qos:=reliable",
                  f"rate_hz:={rate_hz}") as sensor:
            assert spin_until(bus, lambda: len(arrived) == 20, 30), sensor.lines[-10:]
            span = arrived[-1] - arrived[0]
            if rate_hz:
                assert span < 0.5, span      # 19 gaps of 5 ms
            else:
                assert 0.85 < span < 1.5, span
                assert min(np.diff(arrived)) > 0.02, np.diff(arrived)   # no two frames sent together
                sensor.wait_for_line("played at the pace they were recorded")
    finally:
        bus.shutdown()
