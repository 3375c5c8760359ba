"""The sensor windowing a live IMU (``source: imu``): a driver's ``sensor_msgs/Imu`` readings in, the model's windows
out on ``imu``, as the windower cuts them from the same readings; a bad reading, a gap and a silent driver each said in
one line, and the node runs on. (The same under ROS 2 Humble with an rclpy driver: tests/ros2/test_imu_ros2.py.)"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from tests.nodes.conftest import node, spin_until
from tinycl_nodes.bus import create_bus
from tinycl_nodes.datasets.har import RATE_HZ, STEP, WINDOW, har_folder
from tinycl_nodes.imu_windows import ImuWindower
from tinycl_nodes.interfaces import ns_to_time
from tinycl_nodes.nodes.messages import stamp_ns

pytestmark = pytest.mark.waits      # what make test does with it: pyproject.toml


def recording(data_dir: str, name: str = "s13/s13_01_sp.csv") -> tuple[np.ndarray, np.ndarray]:
    """(stamps in ns, readings (n, 6)) of one HAR phone recording."""
    rows = [line.split(",") for line in (har_folder(data_dir) / "DATA" / name).read_text().splitlines()[1:] if line]
    return np.array([int(r[6]) * 1_000_000 for r in rows], np.int64), np.array([r[:6] for r in rows], np.float64)


def test_the_sensor_windows_a_drivers_readings_and_says_what_it_cannot_take(domain, data_dir):
    t, values = recording(data_dir)
    t, values = t[:600], values[:600]                       # about 6 s of a phone at ~102 Hz
    windower = ImuWindower(RATE_HZ, WINDOW, STEP)
    want = [w for i in range(t.size) for w in windower.add(int(t[i]), values[i])]
    bus = create_bus("imu_driver", "/", backend="dds", dds_config="loopback", domain=domain)
    Imu, Vector3, Time = (bus.msg(f"{k}") for k in ("sensor_msgs/msg/Imu", "geometry_msgs/msg/Vector3",
                                                     "builtin_interfaces/msg/Time"))
    pub = bus.create_publisher("imu_raw", Imu, "sensor_data")
    got: list = []
    bus.create_subscription("imu", "ImuWindow", got.append, "sensor_data")

    def send(stamp_ns: int, v: np.ndarray, gyro_known: bool = True) -> None:
        msg = Imu(linear_acceleration=Vector3(x=v[0], y=v[1], z=v[2]), angular_velocity=Vector3(x=v[3], y=v[4], z=v[5]),
                  angular_velocity_covariance=[0.0 if gyro_known else -1.0] + [0.0] * 8)
        msg.header.stamp = ns_to_time(int(stamp_ns), Time)
        pub.publish(msg)
    try:
        with node("sensor", domain, "source:=imu", "wait_for_subscribers:=1") as sensor:
            assert spin_until(bus, lambda: pub.get_subscription_count() >= 1, 30), sensor.lines[-10:]
            start = time.monotonic()
            for i in range(t.size):                         # at the pace the phone recorded them
                while time.monotonic() - start < (t[i] - t[0]) * 1e-9:
                    bus.spin_once(0.002)
                send(t[i], values[i])
                if i == 300:                                # a NaN and a reading without angular velocity: dropped
                    send(t[i] + 1_000_000, np.full(6, np.nan))
                    send(t[i] + 2_000_000, values[i], gyro_known=False)
            assert spin_until(bus, lambda: len(got) >= len(want), 10), (len(got), len(want), sensor.lines[-10:])
            line = sensor.wait_for_line("cannot take the IMU readings on /imu_raw")
            assert "NaN or inf" in line or "no angular velocity" in line, line
            send(t[-1] + 2_000_000_000, values[-1])                   # two seconds later: a gap
            sensor.wait_for_line("gap of 2.000 s")
            silent = sensor.wait_for_line("cannot hear the IMU on /imu_raw", timeout_s=15)
            assert "no reading for 5 s" in silent, silent
            time.sleep(1.0)
            send(t[-1] + 9_000_000_000, values[-1])
            back = sensor.wait_for_line("could hear the IMU on /imu_raw again")   # the silence, not 50 ms checks
            assert re.search(r"again, after ([6-9]|1\d) s\b", back), back
            assert sensor.proc.poll() is None and not any("Traceback" in ln for ln in sensor.lines)
    finally:
        bus.shutdown()
    assert len(got) == len(want) and len(want) >= 8, (len(got), len(want))   # 6 s: a window every 0.49 s
    for msg, w in zip(got, want):                           # row-major samples x channels, as the extractor reads it
        assert (msg.n_channels, msg.rate_hz) == (6, RATE_HZ) and list(msg.channel_names)[0] == "x_acc"
        np.testing.assert_allclose(np.asarray(msg.data, np.float32).reshape(WINDOW, 6).T, w.values, atol=1e-6)
        # stamped on the driver's clock (2022 here: the recording's), the time of the window's first reading, not
        # when the sensor sent it: under use_sim_time or from a bag, predictions and questions were stamped with the
        # wall clock (1796431769 s beside a /clock at 1039 s)
        assert stamp_ns(msg.header) == w.start_ns, (stamp_ns(msg.header), w.start_ns)


def test_an_imu_topic_that_is_the_sensors_own_windows_topic_is_refused(domain):
    """``imu_topic:=imu`` (a driver's usual name) in the graph's namespace is the sensor's own ``imu`` (ImuWindow): the
    sensor subscribed to it as sensor_msgs/Imu, said only "cannot hear the IMU", and ``ros2 topic echo/hz`` of it then
    fails ("it contains more than one type"). One line at start, exit code 2."""
    with node("sensor", domain, "source:=imu", "imu_topic:=imu") as sensor:
        line = sensor.wait_for_line("imu_topic 'imu' is /imu, the sensor's own 'imu' topic")
        sensor.proc.wait(timeout=20)
        assert "Traceback" not in "\n".join(sensor.lines)
    assert sensor.proc.returncode == 2, line


def test_bad_readings_that_come_and_go_are_not_two_lines_each(domain):
    """A driver with a NaN reading now and then (here one every 0.25 s among 200 readings a second) was two lines for
    each: "cannot take the IMU readings …" then "could take the IMU readings … again" (the trial's driver with one NaN
    a second: 38 lines in 19 s). The first is said, the rest counted and said at most once a minute."""
    bus = create_bus("imu_driver", "/", backend="dds", dds_config="loopback", domain=domain)
    Imu, Vector3, Time = (bus.msg(f"{k}") for k in ("sensor_msgs/msg/Imu", "geometry_msgs/msg/Vector3",
                                                     "builtin_interfaces/msg/Time"))
    pub = bus.create_publisher("imu_raw", Imu, "sensor_data")
    try:
        with node("sensor", domain, "source:=imu", "wait_for_subscribers:=0") as sensor:
            assert spin_until(bus, lambda: pub.get_subscription_count() >= 1, 30), sensor.lines[-10:]
            start, t0 = time.monotonic(), time.time_ns()
            for i in range(800):                            # 4 s at 200 Hz
                while time.monotonic() - start < i / 200:
                    bus.spin_once(0.002)
                v = np.full(3, np.nan) if i % 50 == 25 else np.array([0.1 * np.sin(i / 10), 0.0, 9.81])
                msg = Imu(linear_acceleration=Vector3(x=v[0], y=v[1], z=v[2]), angular_velocity=Vector3(x=0.0, y=0.0, z=0.0))
                msg.header.stamp = ns_to_time(t0 + i * 5_000_000, Time)
                pub.publish(msg)
            sensor.wait_for_line("cannot take the IMU readings on /imu_raw")
            bus.spin(1.0)
            said = [ln for ln in sensor.lines if "take the IMU readings" in ln]
            assert len(said) == 1 and "NaN or inf" in said[0], said
            assert sensor.proc.poll() is None
    finally:
        bus.shutdown()
