"""A robot's IMU under ``ros2 launch`` (ROS 2 Humble): ``imu.launch.py imu_topic:=/phone/imu`` with a driver in
rclpy publishing ``sensor_msgs/Imu`` readings of a real phone (a HAR recording, at its own pace and stamps):

- every node of the graph in its namespace, no replay and no metrics node; the sensor reads the driver's topic;
- the robot starts knowing nothing: its windows are novel, and a label request reaches ``label_request`` and the phone's
  page with a plot of the window;
- answered from ROS 2 with a new class name, it is learned (``label_status``) and later predictions carry the name;
- the graph runs until Ctrl-C, which ends it with exit code 0.

And without ROS 2: ``tinycl launch imu`` (the dds backend, on the DDS configuration the robot's ROS 2 uses) hears the
same rclpy driver and asks about its windows.
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import yaml

from tests.ros2.conftest import params_file
from tests.ros2_env import LOOPBACK
from tests.ros2.test_rce_launch import TOKEN, _echo_blocks, _get, _subscriptions, answer_new_class
from tests.label_page import page_state
from tinycl_nodes.datasets.har import har_folder
from tinycl_nodes.fleet.broker import free_port
from tinycl_nodes.graphs import GRAPHS

DRIVER = Path(__file__).with_name("imu_driver.py")
NS = "/imu_r"
ACTIVITY = "getting up"


def assert_heard(text: str) -> None:
    """The sensor heard the driver: any "cannot hear the IMU" it said (no reading for 5 s: the driver is started after
    the graph, and an rclpy process can take that long to start on a loaded machine) is followed by "could hear the
    IMU … again". A DDS configuration that cannot hear the driver says the first line only (and asks nothing)."""
    silent = text.rfind("cannot hear the IMU")
    assert silent < 0 or "could hear the IMU on /phone/imu again" in text[silent:], text[-3000:]


def test_imu_launch_learns_a_drivers_readings_from_a_persons_answer(ros, data_dir):
    import urllib.request
    from http.cookiejar import CookieJar

    port = free_port()
    pf = params_file(ros.tmp, "imu", label_app={"host": "127.0.0.1", "token": TOKEN, "qr": False})
    launch = ros.start("ros2", "launch", "tinycl_nodes", "imu.launch.py", f"namespace:={NS}", f"port:={port}",
                       f"params_file:={pf}", "imu_topic:=/phone/imu", name="ros2 launch imu")
    expected = {f"{NS}/{n}" for n in GRAPHS["imu"]}
    try:
        ros.wait_until("the imu graph's nodes", lambda: expected <= ros.node_list(), timeout_s=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{launch.text[-3000:]}") from None
    info = ros.run("ros2", "node", "info", f"{NS}/sensor").stdout
    assert "/phone/imu: sensor_msgs/msg/Imu" in info.split("Publishers:")[0], info
    sends = info.split("Publishers:")[1].split("Service Servers:")[0]    # only what it sends: no image, no truth
    assert f"{NS}/imu: tinycl_nodes/msg/ImuWindow" in sends and "image" not in sends and "ground_truth" not in sends, info
    driver = ros.start("python3", str(DRIVER), "--csv", str(har_folder(data_dir) / "DATA/s13/s13_01_sp.csv"),
                       "--topic", "/phone/imu", name="imu driver")

    # a window the robot cannot place: a question, with the plot of the window, on ROS 2 and on the phone's page
    out = ros.run("ros2", "topic", "echo", "--once", "--no-daemon", "--full-length", f"{NS}/label_request",
                  timeout_s=90).stdout
    asked = yaml.safe_load(out.split("\n---")[0])
    request_id = asked["request_id"]
    phone = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    base = f"http://127.0.0.1:{port}"
    assert _get(f"{base}/?token={TOKEN}", opener=phone)[0] == 200

    def app_pending():
        return next((p for p in page_state(base, opener=phone)["pending"] if p["id"] == request_id), None)
    pending = ros.wait_until(f"request {request_id} pending in the label app", app_pending, timeout_s=20)
    assert (pending["width"], pending["height"]) == (320, 200) and not pending["candidates"], pending  # a plot
    status, ctype, picture = _get(f"{base}/{pending['image']}", opener=phone)
    assert status == 200 and ctype == "image/jpeg" and picture.startswith(b"\xff\xd8"), (status, ctype, picture[:16])
    (ros.tmp / "question.jpg").write_bytes(picture)

    # the answer, from ROS 2: a new class, learned; later predictions carry its name
    status_echo = ros.start("ros2", "topic", "echo", "--no-daemon", "--full-length", f"{NS}/label_status",
                            name="echo label_status")
    preds = ros.start("ros2", "topic", "echo", "--no-daemon", f"{NS}/predictions", "--field", "class_name",
                      name="echo predictions")
    ros.wait_until("the echoes subscribed", lambda: _subscriptions(ros, f"{NS}/label_status") >= 1
                   and _subscriptions(ros, f"{NS}/predictions") >= 1, timeout_s=30)
    learned = answer_new_class(ros, NS, request_id, ACTIVITY, status_echo)
    assert learned["status"] == "learned" and learned["class_name"] == ACTIVITY, learned
    ros.wait_until(f"a prediction named {ACTIVITY!r}",
                   lambda: ACTIVITY in {b.strip() for b in _echo_blocks(preds.lines)}, timeout_s=40)

    # no replay, nothing to score; nothing refused; it runs until Ctrl-C
    for p in (status_echo, preds, driver):
        p.stop(signal.SIGINT)
    assert f"{NS}/metrics" not in ros.node_list() and "[metrics-" not in launch.text, launch.text[-2000:]
    for bad in ("cannot take the IMU readings", "incompatible QoS", "Traceback", "process has died"):
        assert bad not in launch.text, (bad, launch.text[-3000:])
    assert_heard(launch.text)
    assert re.search(r"IMU on /phone/imu: windows of 50 samples at 51 Hz", launch.text), launch.text[-3000:]
    assert launch.proc.poll() is None
    assert launch.stop(signal.SIGINT) == 0, launch.text[-3000:]


def test_tinycl_launch_imu_hears_a_ros2_driver(ros, data_dir):
    """Both sides on the DDS configuration of $CYCLONEDDS_URI, as on a robot that sets it for every process (the
    shipped imu.yaml's dds_config null takes it; loopback-only here, so that nothing leaves the test machine). (By
    hand, without $CYCLONEDDS_URI: a driver on CycloneDDS's default was heard with dds_config null, and never with
    the other graphs' loopback-only config, "cannot hear the IMU".)"""
    ros.dds_env["CYCLONEDDS_URI"] = LOOPBACK.as_uri()
    port = free_port()
    launch = ros.start(sys.executable, "-m", "tinycl_nodes.cli", "launch", "imu", "--namespace", "/imu_d",
                       "-p", "sensor.imu_topic:=/phone/imu", "-p", f"state_dir:={ros.tmp / 'state'}",
                       "-p", f"exporter.out_dir:={ros.tmp / 'export'}", "-p", "label_app.host:=127.0.0.1",
                       "-p", f"label_app.port:={port}", "-p", "label_app.qr:=false", dds=True, name="tinycl launch imu")
    launch.wait_for_line("IMU on /phone/imu: windows of 50 samples", timeout_s=60)
    ros.start("python3", str(DRIVER), "--csv", str(har_folder(data_dir) / "DATA/s13/s13_01_sp.csv"),
              "--topic", "/phone/imu", name="imu driver")
    out = ros.run("ros2", "topic", "echo", "--once", "--no-daemon", "/imu_d/label_request", "--field", "reason",
                  timeout_s=90).stdout
    assert "haven't learned anything yet" in out, out
    assert_heard(launch.text)
    assert launch.stop(signal.SIGINT) == 0, launch.text[-3000:]
