"""ROS 2 launch: learning the objects in front of a robot's camera, people answering on a phone.

    camera driver ──image_raw──▶ extractor ──▶ labeler (TinyRCE) ──▶ learner ──▶ exporter
                                                 │ label_request  ▲ label_answer
                                                 ▼                │
                                              label_app (phone web page)

    ros2 launch tinycl_nodes camera.launch.py namespace:=/robot1/tinycl      # reads /robot1/tinycl/image_raw
    ros2 launch tinycl_nodes camera.launch.py camera_topic:=/camera/image_raw image_transport:=compressed

No sensor node: the extractor reads ``image_raw`` (relative: the namespace or ``camera_topic``
points it at any driver) with sensor-data QoS, newest frame wins. Arguments and behaviour:
tinycl_nodes/ros_launch.py, plus the graph's own (tinycl_nodes/graphs.py, LAUNCH_ARGUMENTS; `--show-args`
lists them). Without ROS 2 the same nodes and parameter file run with ``tinycl launch camera``.
"""

from tinycl_nodes.ros_launch import launch_description


def generate_launch_description():
    return launch_description("camera")
