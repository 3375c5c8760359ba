"""ROS 2 launch: the TinyNDC graph (sensor → extractor → labeler → learner → exporter, + metrics).

    ros2 launch tinycl_nodes tinyndc.launch.py namespace:=/robot1/tinycl preset:=tinycl
    ros2 launch tinycl_nodes tinyndc.launch.py camera_topic:=/camera/image_raw   # a robot's camera

Arguments and behaviour: tinycl_nodes/ros_launch.py. Without ROS 2 the same nodes and parameter
file run with `tinycl launch tinyndc`.
"""

from tinycl_nodes.ros_launch import launch_description


def generate_launch_description():
    return launch_description("tinyndc")
