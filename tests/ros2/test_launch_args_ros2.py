"""What a robotics engineer meets first under ``ros2 launch`` (ROS 2 Humble, rclpy nodes), each once broken:

- a launch argument outranks the parameter file: ``camera_topic:=`` with tinyndc.launch.py used to leave the
  extractor reliable and waiting for ground truth (the file's own ``extractor:`` entries won over the launch's ``/**``
  values), so a camera driver's best-effort frames never arrived; ``image_transport:=compressed`` was ignored by
  camera.launch.py for the same reason;
- the launch activates a lifecycle node once: a user's ``ros2 lifecycle set … deactivate`` used to be undone at once;
- ``ros2 run … -p autostart:=true`` goes through the node's state machine (``ros2 lifecycle get`` said unconfigured);
- a node that fails at start (or a lifecycle node whose first configure fails) ends the launch with exit code 1 (a
  replay used to run on without it and be scored at 0 %), and a ``/**`` name no node declares is an error naming the
  closest (it used to be dropped without a word).
"""

from __future__ import annotations

import json
import re
import signal
import time

import numpy as np
import pytest
import yaml

from tests.label_page import first_question
from tests.nodes.test_camera_extractor import camera_bag, camera_frame, camera_video
from tests.ros2.conftest import ROOT, params_file
from tinycl_nodes.datasets import load_mnist
from tinycl_nodes.fleet.broker import free_port

from .test_camera_ros2 import DRIVER


def _param(ros, node: str, name: str) -> str:
    return ros.run("ros2", "param", "get", node, name).stdout.strip()


def _lifecycle(ros, node: str, *transition: str) -> str:
    return ros.run("ros2", "lifecycle", *(("set", node, *transition) if transition else ("get", node))).stdout


def test_camera_topic_outranks_the_parameter_file_and_a_deactivate_stays(ros, fp32_extractor, data_dir):
    X, _ = load_mnist("test", data_dir)
    frames = np.stack([camera_frame(X[i]) for i in range(3)])          # 480x640 rgb8
    np.savez(ros.tmp / "frames.npz", rgb=frames)
    shipped = yaml.safe_load((ROOT / "config" / "tinyndc.yaml").read_text())["extractor"]["ros__parameters"]
    assert shipped["image_qos"] == "reliable" and shipped["expect_ground_truth"] is True   # what must be outranked
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "namespace:=/cam",
                       "camera_topic:=/usb_cam/image_raw", name="ros2 launch camera")
    try:
        nodes = ros.wait_until("the camera graph's nodes",
                               lambda: (lambda s: s if "/cam/learner" in s and "/cam/extractor" in s else None)(
                                   ros.node_list()), timeout_s=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{launch.text[-3000:]}") from None
    assert "/cam/sensor" not in nodes
    info = ros.run("ros2", "node", "info", "/cam/extractor").stdout
    assert "/usb_cam/image_raw: sensor_msgs/msg/Image" in info.split("Publishers:")[0], info
    assert "sensor_data" in _param(ros, "/cam/extractor", "image_qos")
    assert "False" in _param(ros, "/cam/extractor", "expect_ground_truth")
    ros.wait_until("the extractor active", lambda: "active [3]" in _lifecycle(ros, "/cam/extractor"), timeout_s=60)
    # a driver with sensor-data (best-effort) QoS: its frames become features. 30 of them, within 10 s at 20 frames/s:
    # this is the wiring's test, not the rate's (make bench: the camera node at 30 frames/s); twice in fresh-clone runs
    # of the whole suite, frames sent for 3 s at a fixed time gave 5 and 12 features of 60 (never reproduced alone;
    # the likely cause, a socket buffer of two frames with the extractor their only reader: dds_config's
    # SOCKET_RECEIVE_BUFFER)
    out = ros.tmp / "driver.json"
    ros.run("python3", str(DRIVER), "--frames", str(ros.tmp / "frames.npz"), "--topic", "/usb_cam/image_raw",
            "--rate", "20", "--seconds", "10", "--expect", "30", "--listen", "/cam/features", "--out", str(out),
            timeout_s=90)
    result = json.loads(out.read_text())
    got = result["features"]["/cam/features"]
    frames_said = "\n".join(line for line in launch.text.splitlines() if "frames in the last" in line)
    assert len(got) >= 30, f"{len(got)} features of {result['sent']} frames sent; the extractor said:\n{frames_said}"
    assert "incompatible QoS" not in launch.text and "no ground truth" not in launch.text, launch.text[-2000:]
    # nor the metrics node: a replay's only, it has no ground truth to score (it held the predictions: ~100 MB)
    assert "/cam/metrics" not in ros.node_list() and "[metrics-" not in launch.text, launch.text[-2000:]
    # the user's deactivate stays until the user's activate
    ros.wait_until("the learner active", lambda: "active [3]" in _lifecycle(ros, "/cam/learner"), timeout_s=60)
    assert "Transitioning successful" in _lifecycle(ros, "/cam/learner", "deactivate")
    time.sleep(2.0)
    assert "inactive [2]" in _lifecycle(ros, "/cam/learner")
    assert "Transitioning successful" in _lifecycle(ros, "/cam/learner", "activate")
    assert "active [3]" in _lifecycle(ros, "/cam/learner")
    assert launch.proc.poll() is None        # a camera graph runs until Ctrl-C
    assert launch.stop() == 0
    print(f"camera_topic: {result['sent']} best-effort frames sent, {len(got)} features")


@pytest.mark.parametrize("source", ["camera", "rosbag"])
def test_a_parameter_file_whose_sensor_reads_a_camera_launches_a_live_camera(ros, source):
    """tinyndc.launch.py with a parameter file saying ``sensor: source: camera`` (OpenCV's VideoCapture; a video file
    stands in for /dev/video0), or ``source: rosbag`` (a recording of a camera): as for ``camera_topic``, no metrics
    node (it used to start, to score nothing), frames taken best-effort without waiting for ground truth (it used to be
    one warning per frame; with a bag, one error and each frame held 1 s), and the graph runs on when the frames end."""
    sensor = ({"source": "camera", "camera_device": camera_video(ros.tmp / "cam.avi", 90)} if source == "camera"
              else {"source": "rosbag", "bag": camera_bag(ros.tmp / "cam_bag", 90)})
    pf = params_file(ros.tmp, "tinyndc", sensor=sensor, extractor={"drop_report_s": 1.0})
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "namespace:=/oc", f"params_file:={pf}",
                       name="ros2 launch sensor camera")
    try:
        ros.wait_until("the camera's frames through the extractor", lambda: re.search(
            r"total \d+ dropped of [1-9]", launch.text), timeout_s=90)
        ros.wait_until("the sensor's end", lambda: "published 90 samples" in launch.text, timeout_s=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{launch.text[-3000:]}") from None
    assert "False" in _param(ros, "/oc/extractor", "expect_ground_truth")
    assert "sensor_data" in _param(ros, "/oc/extractor", "image_qos")
    time.sleep(2.0)
    assert "/oc/metrics" not in ros.node_list() and "[metrics-" not in launch.text, launch.text[-2000:]
    assert "ground truth" not in launch.text and "incompatible QoS" not in launch.text, launch.text[-2000:]
    assert launch.proc.poll() is None        # a camera's graph runs until Ctrl-C
    assert launch.stop() == 0


def test_image_transport_argument_outranks_the_camera_file(ros, data_dir):
    """``image_transport:=compressed`` takes both readers of the camera to ``image_raw/compressed``: the extractor's
    frames and the labeler's pictures. A driver publishing JPEG only is then learned from, and its question reaches the
    phone with the frame. (The labeler used to read both transports, whatever the argument said: a driver that
    publishes both, as image_transport does, cost it every raw frame too.)"""
    shipped = yaml.safe_load((ROOT / "config" / "camera.yaml").read_text())["/**"]["ros__parameters"]
    assert shipped["image_transport"] == "raw"
    port, token = free_port(), "pytest-pairing-token-0123"
    pf = params_file(ros.tmp, "camera", label_app={"host": "127.0.0.1", "qr": False, "token": token})
    launch = ros.start("ros2", "launch", "tinycl_nodes", "camera.launch.py", "namespace:=/ct", f"port:={port}",
                       f"params_file:={pf}", "image_transport:=compressed", name="ros2 launch camera compressed")
    ros.wait_until("the extractor and the labeler", lambda: {"/ct/extractor", "/ct/labeler"} <= ros.node_list(),
                   timeout_s=60)
    for name in ("extractor", "labeler"):
        assert "compressed" in _param(ros, f"/ct/{name}", "image_transport")

    def readers(topic: str) -> set[str]:
        info = ros.run("ros2", "topic", "info", "--verbose", topic, check=False).stdout
        return set(re.findall(r"Node name: (\w+)", info.split("Subscription count")[-1]))
    ros.wait_until("both readers on the compressed topic",
                   lambda: readers("/ct/image_raw/compressed") >= {"extractor", "labeler"}, timeout_s=30)
    assert not readers("/ct/image_raw") & {"extractor", "labeler"}
    X, _ = load_mnist("test", data_dir)
    np.savez(ros.tmp / "frames.npz", rgb=np.stack([camera_frame(X[i]) for i in (3, 4)]))
    ros.run("python3", str(DRIVER), "--frames", str(ros.tmp / "frames.npz"), "--topic", "/ct/image_raw",
            "--publish", "compressed", "--rate", "10", "--seconds", "4", "--listen", "/ct/features",
            "--out", str(ros.tmp / "driver.json"), timeout_s=90)
    got = json.loads((ros.tmp / "driver.json").read_text())["features"]["/ct/features"]
    assert got, launch.text[-3000:]                                   # the extractor learned from the JPEGs

    question = ros.wait_until("a question in the label app", lambda: first_question(f"http://127.0.0.1:{port}", token),
                              timeout_s=20)
    assert (question["width"], question["height"]) == (640, 480) and question["image"], question
    assert "no picture" not in question["reason"], question
    assert launch.stop() == 0
    # --show-args: the camera graph has no replay sensor for camera_topic to replace; it reads image_raw
    shown = ros.run("ros2", "launch", "tinycl_nodes", "camera.launch.py", "--show-args").stdout
    assert "topic; empty: image_raw in the namespace" in shown and "replay sensor" not in shown, shown


def test_autostart_goes_through_the_lifecycle(ros):
    learner = ros.start("ros2", "run", "tinycl_nodes", "learner", "--ros-args", "-r", "__ns:=/as",
                        "-p", f"state_dir:={ros.tmp / 'as_state'}", "-p", "autostart:=true", name="learner autostart")
    ros.wait_until("the learner active", lambda: "active [3]" in ros.run(
        "ros2", "lifecycle", "get", "/as/learner", check=False).stdout, timeout_s=60)
    assert "Transitioning successful" in _lifecycle(ros, "/as/learner", "deactivate")
    assert "inactive [2]" in _lifecycle(ros, "/as/learner")
    assert learner.stop() == 0


def test_a_bad_parameter_starts_no_node_and_a_failing_node_ends_the_launch(ros):
    """A parameter a node would refuse is refused before any node starts, in one line each (``preset:=bogus`` used to
    start the graph, fail the labeler and the learner each on its own and end the launch after the others had
    started); a node that fails once started (a missing model) ends the launch."""
    bad = params_file(ros.tmp, "tinyndc", learner={"publish_evrey": 5})
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "namespace:=/typo",
                       f"params_file:={bad}", name="ros2 launch typo")
    assert launch.wait(60) == 1, launch.text[-3000:]
    assert "tinycl: learner: unknown parameter 'publish_evrey' (did you mean 'publish_every'?): no node started" \
        in launch.text, launch.text[-3000:]
    assert "process started" not in launch.text, launch.text[-3000:]

    doc = yaml.safe_load(bad.read_text())
    del doc["learner"]["ros__parameters"]["publish_evrey"]
    doc["/**"]["ros__parameters"]["presett"] = "tinyndc"
    bad.write_text(yaml.safe_dump(doc))
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "namespace:=/typo2",
                       f"params_file:={bad}", name="ros2 launch typo2")
    assert launch.wait(60) == 1, launch.text[-3000:]
    assert "'/**' parameter 'presett' is declared by no tinycl node (did you mean 'preset'?): no node started" \
        in launch.text, launch.text[-3000:]
    assert "process started" not in launch.text, launch.text[-3000:]

    # a launch argument's value that the nodes taking it refuse: each says which presets it takes
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "namespace:=/typo5", "preset:=bogus",
                       name="ros2 launch preset bogus")
    assert launch.wait(60) == 1, launch.text[-3000:]
    refusals = [line for line in launch.lines if "parameter preset: Input should be" in line]
    assert sorted(re.search(r"tinycl: (\w+): parameter preset", line)[1] for line in refusals) == ["labeler", "learner"]
    assert all(line.endswith("(got 'bogus'): no node started") for line in refusals), launch.text[-3000:]
    assert "process started" not in launch.text, launch.text[-3000:]

    # a misspelt params_file:= ends the launch before any node starts (launch_ros only warned, and the graph ran on
    # the nodes' defaults: one labelled sample, a best-effort sensor at full speed, a replay scored at 0.20 %)
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "namespace:=/typo4",
                       f"params_file:={ros.tmp / 'tinyndc_tset.yaml'}", name="ros2 launch typo4")
    assert launch.wait(60) == 1, launch.text[-3000:]
    assert f"tinycl: parameter file not found: {ros.tmp / 'tinyndc_tset.yaml'}" in launch.text, launch.text[-3000:]
    assert "process started" not in launch.text, launch.text[-3000:]

    # a lifecycle node whose first configure fails (it brings itself up: autostart) exits 2: that ends the launch too
    del doc["/**"]["ros__parameters"]["presett"]
    doc["extractor"]["ros__parameters"]["model"] = str(ros.tmp / "nope.onnx")
    bad.write_text(yaml.safe_dump(doc))
    t0 = time.monotonic()
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "namespace:=/typo3",
                       f"params_file:={bad}", name="ros2 launch typo3")
    assert launch.wait(60) == 1, launch.text[-3000:]
    assert "final: accuracy" not in launch.text, launch.text[-3000:]    # no score of a run that learned nothing
    print(f"a failing extractor ended the launch in {time.monotonic() - t0:.1f} s")
    assert "extractor model not found" in launch.text
    assert "tinycl: the extractor node failed (exit code 2; its error is above): stopping the graph" in \
        launch.text, launch.text[-3000:]


def test_a_users_small_params_file_layers_on_the_shipped_one(ros):
    """``params_file:=`` of a few lines changes those and keeps the graph's shipped file: a file that sets only the
    sensor's rate (and a short stream, to keep the test short) replays losslessly with that rate in effect. It used
    to replace the shipped file: the nodes then ran on their built-in defaults, a camera's (best-effort frames, no
    waiting for ground truth), and 104 of 8100 samples were lost without an error. The replay waits for one more
    reader of its ground truth, the test's, until ``ros2 param get`` has read the rate: on a loaded machine it once
    reached the sensor as the sensor exited at the stream's end, and waited for an answer until killed (60 s)."""
    from tinycl_nodes.bus import create_bus

    mine = ros.tmp / "r100.yaml"
    mine.write_text("sensor:\n  ros__parameters:\n    rate_hz: 100.0\n    stream_length: 500\n"
                    "    wait_for_truth_subscribers: 4\n    wait_timeout_s: 300.0\n")
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "namespace:=/pf",
                       f"params_file:={mine}", name="ros2 launch small params file")
    ros.wait_until("the sensor", lambda: "/pf/sensor" in ros.node_list(), timeout_s=60)
    assert "Double value is: 100.0" in _param(ros, "/pf/sensor", "rate_hz")       # the user's value
    assert "reliable" in _param(ros, "/pf/extractor", "image_qos")                # the shipped file's
    assert "published 600 samples" not in launch.text, launch.text[-3000:]        # the replay is held, not ended
    bus = create_bus("truth_reader", "/pf", backend="dds", domain=ros.domain, dds_config="loopback")
    try:
        bus.create_subscription("ground_truth", "GroundTruth", lambda m: None, "reliable")   # the fourth: it starts
        assert launch.wait(120) == 0, launch.text[-3000:]
    finally:
        bus.shutdown()
    final = launch.wait_for_line("final: accuracy")
    assert "of 500 stream samples (600 predictions, 0 lost)" in final, final


def test_a_params_files_label_app_port_is_the_one_served(ros):
    """A parameter file's ``label_app.port`` is the port, unless ``port:=`` says another: the launch argument's default
    (8080) used to outrank every parameter file, so a robot's own port in its file was never used."""
    port = free_port()
    mine = ros.tmp / "port.yaml"
    mine.write_text(f"label_app:\n  ros__parameters:\n    port: {port}\n    host: 127.0.0.1\n    qr: false\n")
    launch = ros.start("ros2", "launch", "tinycl_nodes", "camera.launch.py", "namespace:=/lp",
                       f"params_file:={mine}", name="ros2 launch label app port")
    ros.wait_until("the label app", lambda: "/lp/label_app" in ros.node_list(), timeout_s=60)
    assert f"Integer value is: {port}" in _param(ros, "/lp/label_app", "port")
    line = launch.wait_for_line("label app on", 30)
    assert f":{port}" in line, line
    launch.stop()


@pytest.mark.parametrize("arg, expected", [("use_sim_time:=maybe", "expected true or false"),
                                           ("use_sim_time:=1", "expected true or false"),
                                           ("log_level:=verbose", "expected one of debug, info, warn, error, fatal")])
def test_use_sim_time_and_log_level_take_their_words_only(ros, arg, expected):
    """``use_sim_time:=maybe`` (or 1, an integer to ROS 2) is refused in one line before any node starts; it used to
    mean false without a word. ``log_level:=verbose`` failed each node on its own (six rcl lines) and the launch went
    on."""
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "namespace:=/st", arg,
                       name=f"ros2 launch {arg}")
    assert launch.wait(60) == 1, launch.text[-3000:]
    assert f"tinycl: {arg}: {expected}: no node started" in launch.text, launch.text
    assert "process started" not in launch.text, launch.text[-3000:]


@pytest.mark.parametrize("how", ["ctrl-c", "kill -9"])
def test_a_launch_leaves_no_parameter_file_in_tmp(ros, how):
    """However the launch ends — Ctrl-C to its process group, or kill -9 of ``ros2 launch`` — no parameter file is
    left in TMPDIR. The launch's own ``/**`` file used to be a temporary file removed only by a shutdown handler (left
    by a kill -9 always, by a Ctrl-C often), and launch_ros wrote one more (``launch_params_*``, never removed) for
    each lifecycle node's ``autostart`` dict."""
    tmp = ros.tmp / "tmpdir"
    tmp.mkdir()
    ros.env["TMPDIR"] = str(tmp)
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "namespace:=/lt",
                       "camera_topic:=/lt_camera/image_raw", name=f"ros2 launch {how}")
    ros.wait_until("the graph's nodes", lambda: {"/lt/extractor", "/lt/learner"} <= ros.node_list(), timeout_s=60)
    if how == "kill -9":
        launch.proc.kill()
        launch.proc.wait(timeout=10)
        ros.wait_until("the nodes gone", lambda: not {"/lt/extractor", "/lt/learner"} & ros.node_list(),
                       timeout_s=60)
    else:
        assert launch.stop(signal.SIGINT) == 0, launch.text[-3000:]
    left = sorted(p.name for p in tmp.iterdir() if p.name.startswith(("tinycl_", "launch_params_")))
    assert not left, left
    log_dirs = list((ros.tmp / "ros_home" / "log").glob("*/tinycl_tinyndc_parameters.yaml"))
    assert len(log_dirs) == 1 and "image_qos: sensor_data" in log_dirs[0].read_text()   # with the launch's logs


@pytest.mark.parametrize("graph, arg, expected", [
    ("tinyndc", "namepsace:=/robot1/tinycl", "did you mean 'namespace'?"),
    ("tinyndc", "port:=19000", "not one of tinyndc.launch.py's"),
    ("imu", "camera_topic:=/camera/image_raw", "not one of imu.launch.py's"),
])
def test_a_misspelt_or_foreign_launch_argument_is_refused(ros, graph, arg, expected):
    """``ros2 launch`` ignores an argument no launch file declares: ``namepsace:=/robot1/tinycl`` ran the graph in
    /tinycl without a word (where it moved aside the state another graph had learned there), ``port:=`` on a graph
    without a label app did nothing, and imu.launch.py took ``camera_topic:=``, which left out its IMU sensor."""
    name = arg.split(":=")[0]
    launch = ros.start("ros2", "launch", "tinycl_nodes", f"{graph}.launch.py", arg, name=f"ros2 launch {arg}")
    assert launch.wait(60) == 1, launch.text[-3000:]
    assert f"tinycl: {arg}: {graph}.launch.py has no argument '{name}' ({expected} `ros2 launch tinycl_nodes " \
           f"{graph}.launch.py --show-args` lists them): no node started" in launch.text, launch.text
    assert "process started" not in launch.text, launch.text[-3000:]


def test_show_args_offer_what_the_graph_takes(ros):
    """``preset`` listed ``supervised`` (the labeler refuses it); imu.launch.py offered ``camera_topic`` and
    ``image_transport``, which make no sense for an IMU."""
    shown = ros.run("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "--show-args").stdout
    assert "learning preset (" in shown and "supervised" not in shown, shown
    imu = ros.run("ros2", "launch", "tinycl_nodes", "imu.launch.py", "--show-args").stdout
    assert "'imu_topic'" in imu and "'port'" in imu and "'camera_topic'" not in imu \
        and "'image_transport'" not in imu, imu


def test_an_including_launch_files_own_arguments_are_left_to_it(ros):
    """The check above is the command line's, for the file ``ros2 launch`` was given: a user's launch file that takes
    ``port:=`` itself and includes tinyndc.launch.py starts the graph."""
    short = ros.tmp / "short.yaml"                   # a short replay: the graph's start is what is tested
    short.write_text("sensor:\n  ros__parameters:\n    stream_length: 500\n")
    parent = ros.tmp / "bringup.launch.py"
    parent.write_text(
        "from launch import LaunchDescription\n"
        "from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription\n"
        "from launch.launch_description_sources import PythonLaunchDescriptionSource\n"
        "from launch.substitutions import PathJoinSubstitution\n"
        "from launch_ros.substitutions import FindPackageShare\n\n\n"
        "def generate_launch_description():\n"
        "    graph = PathJoinSubstitution([FindPackageShare('tinycl_nodes'), 'launch', 'tinyndc.launch.py'])\n"
        "    return LaunchDescription([DeclareLaunchArgument('port', default_value='1'), IncludeLaunchDescription(\n"
        "        PythonLaunchDescriptionSource(graph),\n"
        f"        launch_arguments={{'namespace': '/inc', 'params_file': {str(short)!r}}}.items())])\n")
    launch = ros.start("ros2", "launch", str(parent), "port:=19000", name="ros2 launch bringup")
    assert launch.wait(180) == 0, launch.text[-3000:]              # the replay ran and was scored
    assert "no node started" not in launch.text and "[inc.metrics]: final: accuracy" in launch.text, \
        launch.text[-3000:]
    assert "of 500 stream samples" in launch.text, launch.text[-3000:]
