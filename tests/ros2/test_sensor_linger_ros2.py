"""The replay's sensor under rclpy (the kit's rmw_cyclonedds_cpp) goes once its readers hold all it sent, as on the dds
backend (tests/nodes/test_sensor_linger.py): rclpy's ``wait_for_all_acked``, and a best-effort publisher, which rclpy
calls acknowledged at once, still lingering the whole ``linger_s``."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest

from tests.nodes.test_sensor_linger import replay_end
from tests.ros2.conftest import Proc, Ros


@pytest.mark.parametrize("qos", ["reliable", "sensor_data"])
def test_a_replay_under_rclpy_ends_once_its_readers_have_the_last_samples(ros: Ros, qos):
    from tinycl_nodes.bus import create_bus

    @contextmanager
    def sensor(*params: str) -> Iterator[Proc]:
        args = [a for p in params for a in ("-p", p)]
        proc = ros.start("ros2", "run", "tinycl_nodes", "sensor", "--ros-args", "-r", "__node:=sensor", *args,
                         name="ros2 run sensor")
        try:
            yield proc
        finally:
            proc.stop()

    bus = create_bus("replay_reader", backend="dds", dds_config="loopback", domain=ros.domain)
    try:
        replay_end(bus, sensor, qos)
    finally:
        bus.shutdown()
