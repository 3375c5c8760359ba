"""ROS 2 launch: the TinyNDC graph (sensor → extractor → labeler → learner → exporter).

    ros2 launch tinycl_nodes tinyndc.launch.py namespace:=/robot1/tinycl preset:=tinycl

Without ROS 2 the same nodes and parameter file run with `tinycl launch tinyndc`.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

NODES = ("sensor", "extractor", "labeler", "learner", "exporter")


def generate_launch_description() -> LaunchDescription:
    params = LaunchConfiguration("params_file")
    namespace = LaunchConfiguration("namespace")
    overrides = {"preset": LaunchConfiguration("preset"), "model": LaunchConfiguration("model")}
    args = [
        DeclareLaunchArgument("params_file", description="ROS 2 parameter file",
                              default_value=PathJoinSubstitution([FindPackageShare("tinycl_nodes"), "config",
                                                                  "tinyndc.yaml"])),
        DeclareLaunchArgument("namespace", default_value="/tinycl", description="namespace of every node"),
        DeclareLaunchArgument("preset", default_value="tinycl", description="tinycl | tinyndc"),
        DeclareLaunchArgument("model", default_value="mnist_0to5_fp32", description="frozen extractor"),
    ]
    nodes = [Node(package="tinycl_nodes", executable=name, name=name, namespace=namespace, output="screen",
                  emulate_tty=True, parameters=[params, {} if name == "sensor" else overrides])
             for name in NODES]
    return LaunchDescription(args + nodes)
