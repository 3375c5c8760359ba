"""IMU windows on the graph: the sensor replays HAR as ImuWindow + GroundTruth, the extractor (input:
imu) turns them into the same features as the in-process ELM; a window of the wrong shape is one
error line; a model that is not (channels, samples) is refused at start-up."""

import time

import numpy as np

from tests.nodes.conftest import node, spin_until
from tinycl_nodes.bus import create_bus
from tinycl_nodes.datasets.har import load_har
from tinycl_nodes.extractor import FrozenExtractor, model_path


def test_har_windows_become_features(domain):
    ex = FrozenExtractor(model_path("har_elm"))
    stream = load_har(subjects=[13])
    lab = load_har(subjects=[1])
    n_labelled = sum(min(2, int((lab.y == c).sum())) for c in (0, 2))
    bus = create_bus("tester", backend="dds", dds_config="loopback", domain=domain)
    feats = []
    bus.create_subscription("features", "Features", feats.append, "reliable")
    imu = bus.create_publisher("imu", "ImuWindow", "reliable")
    try:
        with node("extractor", domain, "model:=har_elm", "input:=imu", "expect_ground_truth:=true",
                  "image_qos:=reliable") as extractor, \
                node("sensor", domain, "source:=har", "labels_per_class:=2", "labelled_classes:=[0, 2]",
                     "stream_length:=8", "har_labelled_subjects:=[1]", "har_stream_subjects:=[13]", "qos:=reliable") as sensor:
            assert spin_until(bus, lambda: len(feats) == n_labelled + 8, 30), (sensor.lines[-5:], extractor.lines[-5:])
            assert [f.labelled for f in feats] == [True] * n_labelled + [False] * 8
            assert {f.true_label for f in feats[:n_labelled]} == {0, 2}
            assert [f.true_label for f in feats[n_labelled:]] == stream.y[:8].tolist()
            got = np.array([f.data for f in feats[n_labelled:]], np.float32)
            assert np.allclose(got, ex.extract(stream.X[:8]), atol=1e-5)
            assert all(f.extractor_hash == ex.hash for f in feats)
            # a window of 3 channels: one line, dropped, the extractor keeps going
            assert spin_until(bus, lambda: imu.get_subscription_count() > 0, 10)
            Header, Time = bus.msg("std_msgs/msg/Header"), bus.msg("builtin_interfaces/msg/Time")
            h = Header(stamp=Time(sec=1, nanosec=2))
            imu.publish(bus.msg("ImuWindow")(header=h, data=np.zeros(150, np.float32), n_channels=3, rate_hz=51.0))
            assert "ERROR" in extractor.wait_for_line("imu window has 3 channels, the extractor takes 6", 10)
            imu.publish(bus.msg("ImuWindow")(header=Header(stamp=Time(sec=1, nanosec=3)),
                                             data=np.zeros(300, np.float32), n_channels=6, rate_hz=51.0))
            assert spin_until(bus, lambda: len(feats) == n_labelled + 9, 10), extractor.lines[-5:]
            assert extractor.proc.poll() is None and "Traceback" not in "\n".join(extractor.lines)
    finally:
        bus.shutdown()


def test_extractor_refuses_an_image_model_for_imu(domain):
    with node("extractor", domain, "model:=mnist_0to5_fp32", "input:=imu") as extractor:
        deadline = time.monotonic() + 20
        while extractor.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert extractor.proc.returncode == 2
        assert "not (channels, samples)" in extractor.wait_for_line("input: imu")


def test_windows_at_another_rate_than_the_models_are_refused_once(domain):
    """A robotics engineer with a 200 Hz IMU sets the sensor's imu_rate_hz to 200 (it is the model's rate: the readings
    are resampled to it): 50-sample windows of 0.25 s, 8 a second, went into har_elm, made on 1 s windows at 51 Hz,
    and were learned and asked about without a word. They are dropped, said once (then once a minute)."""
    bus = create_bus("tester", backend="dds", dds_config="loopback", domain=domain)
    feats = []
    bus.create_subscription("features", "Features", feats.append, "reliable")
    imu = bus.create_publisher("imu", "ImuWindow", "reliable")
    Header, Time = bus.msg("std_msgs/msg/Header"), bus.msg("builtin_interfaces/msg/Time")
    window = np.random.default_rng(0).normal(0, 1, 300).astype(np.float32)
    try:
        with node("extractor", domain, "model:=har_elm", "input:=imu", "image_qos:=reliable") as extractor:
            assert spin_until(bus, lambda: imu.get_subscription_count() > 0, 30), extractor.lines[-5:]
            time.sleep(1.0)
            for i in range(5):
                imu.publish(bus.msg("ImuWindow")(header=Header(stamp=Time(sec=1, nanosec=i)), data=window,
                                                 n_channels=6, rate_hz=200.0))
            line = extractor.wait_for_line("windows at 200 Hz, the model har_elm was made on windows at 51 Hz", 10)
            imu.publish(bus.msg("ImuWindow")(header=Header(stamp=Time(sec=2, nanosec=0)), data=window,
                                             n_channels=6, rate_hz=51.0))
            assert spin_until(bus, lambda: len(feats) >= 1, 10), extractor.lines[-5:]
            bus.spin(0.5)
            assert len(feats) == 1 and feats[0].header.stamp.sec == 2, [f.header.stamp for f in feats]
            assert sum("Hz, the model har_elm" in ln for ln in extractor.lines) == 1, extractor.lines[-8:]
            assert "imu_rate_hz" in line and extractor.proc.poll() is None
    finally:
        bus.shutdown()
