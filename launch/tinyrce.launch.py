"""ROS 2 launch: the TinyRCE graph with label requests answered from a phone.

    sensor → extractor → labeler (TinyRCE) → learner → exporter
                           │ label_request  ▲ label_answer
                           ▼                │
                        label_app (phone web page, pairing token + QR code)

    ros2 launch tinycl_nodes tinyrce.launch.py namespace:=/robot1/tinycl port:=8080

Without ROS 2 the same nodes and parameter file run with `tinycl launch tinyrce`.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

NODES = ("sensor", "extractor", "labeler", "learner", "exporter", "label_app")


def generate_launch_description() -> LaunchDescription:
    params = LaunchConfiguration("params_file")
    namespace = LaunchConfiguration("namespace")
    model = {"model": LaunchConfiguration("model")}
    args = [
        DeclareLaunchArgument("params_file", description="ROS 2 parameter file",
                              default_value=PathJoinSubstitution([FindPackageShare("tinycl_nodes"), "config",
                                                                  "tinyrce.yaml"])),
        DeclareLaunchArgument("namespace", default_value="/tinycl", description="namespace of every node"),
        DeclareLaunchArgument("model", default_value="mnist_0to5_fp32",
                              description="frozen extractor (har_elm / cwru_elm for IMU / vibration windows)"),
        DeclareLaunchArgument("port", default_value="8080", description="label app HTTP(S) port"),
    ]
    overrides = {"sensor": {}, "label_app": {"port": LaunchConfiguration("port")}}
    nodes = [Node(package="tinycl_nodes", executable=name, name=name, namespace=namespace, output="screen",
                  emulate_tty=True, parameters=[params, overrides.get(name, model)])
             for name in NODES]
    return LaunchDescription(args + nodes)
