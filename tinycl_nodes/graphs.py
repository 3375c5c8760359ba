"""The graphs tinycl runs: one list of each graph's nodes (and of the launch arguments a graph takes beyond every
graph's), shared by the ROS 2 launch files (``ros_launch``), ``tinycl launch`` (``launcher``), ``make demo`` and the
fleet demo.

Plain Python on purpose: ROS 2 launch files import it with ROS 2's own interpreter.
"""

from __future__ import annotations

from typing import NamedTuple

#: nodes in start order — sinks first, so every reader exists before its writer sends
GRAPHS: dict[str, tuple[str, ...]] = {
    "tinyndc": ("exporter", "learner", "labeler", "extractor", "metrics", "sensor"),
    "tinyrce": ("label_app", "exporter", "learner", "labeler", "extractor", "metrics", "sensor"),
    # the C learning core as a board in place of the Python learner (micro_ros_firmware, ctypes)
    "tinyndc_board": ("exporter", "board", "labeler", "extractor", "metrics", "sensor"),
    # a fleet device: the bridge to the broker in place of the exporter
    "fleet_device": ("mqtt_bridge", "learner", "labeler", "extractor", "sensor"),
    # a robot's camera driver is the sensor: its frames on image_raw, people answer on the phone
    "camera": ("label_app", "exporter", "learner", "labeler", "extractor"),
    # a robot's IMU driver: the sensor windows its readings (source: imu), people answer on the phone
    "imu": ("label_app", "exporter", "learner", "labeler", "extractor", "sensor"),
}

#: graphs whose sensor is not a camera's (it windows an IMU's readings): their launch files take no ``camera_topic`` or
#: ``image_transport`` (a camera_topic left out the IMU sensor and pointed the extractor at images it cannot take)
NO_CAMERA = frozenset({"imu"})


class LaunchArgument(NamedTuple):
    """A launch argument some graphs' launch files take beyond every graph's (``ros_launch``): it sets one parameter of
    one node."""

    default: str
    description: str
    node: str
    parameter: str


#: the label app's port, in every graph that has a label app
PORT = LaunchArgument("", "label app HTTP(S) port; empty: the parameter file's (8080 in the shipped ones); 0: any free "
                          "port (logged)", "label_app", "port")

#: graph → the launch arguments its launch file takes beyond every graph's (name → what it sets): the one list,
#: which ``launch/<graph>.launch.py`` declares and by which ``ros2 launch`` refuses another graph's (``port:=`` for a
#: graph without a label app)
LAUNCH_ARGUMENTS: dict[str, dict[str, LaunchArgument]] = {
    graph: {**({"port": PORT} if "label_app" in nodes else {}),
            **({"imu_topic": LaunchArgument("", "the IMU driver's sensor_msgs/Imu topic; empty: the parameter file's "
                                                "(imu_raw in the namespace)", "sensor", "imu_topic")}
               if graph in NO_CAMERA else {})}
    for graph, nodes in GRAPHS.items()
}

#: the presets a launch's ``preset:=`` can name: it sets the labeler's and the learner's, so those both take (each
#: node's parameter model owns its own list; tests/nodes/test_param_descriptions.py keeps this in step). Plain
#: names here: a launch file runs under ROS 2's own python, which cannot import the nodes' models (pydantic 2).
#: (``supervised`` was offered, which every graph's labeler refuses.)
LAUNCH_PRESETS = ("tinyndc", "tinycl", "rce")

#: nodes a launch stops before the others, though started first: the label app is the people's side of the graph,
#: not a sink that must take the last messages (a question the labeler sends as it stops is kept in its state and
#: sent again at the next start); stopped after the labeler, it told the phones and the terminal that "the labeler
#: is unreachable" at every Ctrl-C
STOP_FIRST = ("label_app",)

#: topic remaps of every node of a graph, (from, to) as ``-r from:=to``: the camera graph reads
#: ``image_raw`` relative to its namespace, as a driver publishes it (a remap points it elsewhere)
REMAPS: dict[str, tuple[tuple[str, str], ...]] = {
    "camera": (("image", "image_raw"),),
}

#: every node executable's module (``scripts/<name>``, ``ros2 run tinycl_nodes <name>``; tests check the two agree)
NODE_MODULES: dict[str, str] = {**{n: f"tinycl_nodes.nodes.{n}" for g in GRAPHS.values() for n in g},
                                "aggregator": "tinycl_nodes.fleet.aggregator"}

#: lifecycle nodes under rclpy (``Node.managed``; tests/ros2 checks the two agree)
MANAGED = frozenset({"extractor", "learner"})

#: the node whose exit ends a finite run (a replay): it exits once every prediction is scored
FINISHER = "metrics"

#: the nodes only a replay needs: with a camera driver as the sensor (a launch's ``camera_topic``) they do not start —
#: the replay itself, and the metrics node, which has no ground truth to score against (it would only hold the
#: predictions: about 100 MB of a robot's memory)
REPLAY_ONLY = frozenset({"sensor", FINISHER})

#: the sensor's sources without ground truth, taken as a camera's frames are: a camera, a recording of one (a bag),
#: and a live IMU's windows
LIVE_SOURCES = frozenset({"camera", "rosbag", "imu"})

#: what every node takes when the frames come live from a camera (a driver's topic as a launch's ``camera_topic``, or
#: the sensor's own ``LIVE_SOURCES``): the camera's QoS (best effort), and no ground truth to wait for; nor is the
#: metrics node started (``FINISHER``: nothing to score), and the graph runs until stopped
LIVE_CAMERA_PARAMS = {"image_qos": "sensor_data", "expect_ground_truth": False}


def nodes_started(nodes: list[str] | tuple[str, ...], live: bool, camera_driver: bool = False) -> list[str]:
    """The nodes a launch starts, in order: a live camera leaves out the metrics node (nothing to score); a camera
    driver as the sensor (``camera_driver``, live too) leaves out every ``REPLAY_ONLY`` node."""
    left_out = REPLAY_ONLY if camera_driver else frozenset({FINISHER}) if live else frozenset()
    return [n for n in nodes if n not in left_out]
