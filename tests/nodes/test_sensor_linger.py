"""A replay's sensor goes once its readers hold all it sent, ``linger_s`` at most. It kept its writers ``linger_s``
after its last sample whatever its readers had (2 s by default): every replay, and every graph waiting for its end,
ended that much late. Here on the dds backend and the local one; under rclpy in tests/ros2/test_sensor_linger_ros2.py.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

import pytest

from tests.nodes.conftest import NodeProcess, node, spin_until
from tinycl_nodes.bus import create_bus
from tinycl_nodes.bus.local import LocalGraph
from tinycl_nodes.nodes.sensor import Sensor, SensorParams

#: a 40-sample stream after the 100 labelled samples, fast: the sensor's own time is all linger
PARAMS = ("stream_length:=40", "rate_hz:=200", "wait_for_truth_subscribers:=1")


def linger_s_of(qos: str) -> float:
    """Long for a reliable writer (the sensor must not use it), short for a best-effort one (it must use it all)."""
    return 20.0 if qos == "reliable" else 3.0


def replay_end(bus: Any, start: Callable[..., Any], qos: str) -> None:
    """Start the sensor (``start(*params)``, a context manager giving a NodeProcess) with a reliable ground-truth
    reader and an image reader of ``qos`` on ``bus``, and check when it goes after its last sample, and what came."""
    linger_s = linger_s_of(qos)
    images, truths = [], []
    bus.create_subscription("image", "sensor_msgs/msg/Image", images.append, qos)
    bus.create_subscription("ground_truth", "GroundTruth", truths.append, "reliable")
    with start(*PARAMS, f"qos:={qos}", f"linger_s:={linger_s}") as sensor:
        sensor: NodeProcess
        assert spin_until(bus, lambda: sensor.proc.poll() is not None or any(
            "published " in ln for ln in sensor.lines), 60), sensor.lines[-10:]
        published = time.monotonic()
        assert spin_until(bus, lambda: sensor.proc.poll() is not None, linger_s + 20), sensor.lines[-10:]
        took = time.monotonic() - published
        n = int(re.search(r"published (\d+) samples", "\n".join(sensor.lines))[1])   # the labelled ones too
        spin_until(bus, lambda: len(images) == n and len(truths) == n, 5)
    assert sensor.proc.returncode == 0, sensor.lines[-10:]
    assert n == 140 and len(truths) == n, (n, len(images), len(truths))   # the reliable ground truth: every one
    if qos == "reliable":
        assert len(images) == n and took < linger_s / 2, (len(images), took)
    else:
        assert took >= linger_s - 0.5, took


@pytest.mark.parametrize("qos", ["reliable", "sensor_data"])
def test_a_replay_ends_once_its_readers_have_the_last_samples(domain, qos):
    """A best-effort writer is never acknowledged: it still lingers the whole time."""
    bus = create_bus("replay_reader", backend="dds", dds_config="loopback", domain=domain)
    try:
        replay_end(bus, lambda *params: node("sensor", domain, *params), qos)
    finally:
        bus.shutdown()


def test_in_process_the_replay_ends_with_its_last_sample():
    """The local backend delivers each sample inside publish(): nothing left to wait for."""
    graph = LocalGraph()
    bus = create_bus("reader", backend="local", graph=graph)
    truths = []
    bus.create_subscription("ground_truth", "GroundTruth", truths.append, "reliable")
    sensor_bus = create_bus("sensor", backend="local", graph=graph)
    sensor = Sensor(sensor_bus, SensorParams(stream_length=40, qos="reliable", linger_s=20.0))
    bus.create_subscription("image", "sensor_msgs/msg/Image", lambda _: None, "reliable")
    t0 = time.monotonic()
    sensor.run()
    took = time.monotonic() - t0
    assert len(truths) == 140 and took < 10.0, (len(truths), took)
