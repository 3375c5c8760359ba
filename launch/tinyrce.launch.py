"""ROS 2 launch: the TinyRCE graph with label requests answered from a phone.

    sensor → extractor → labeler (TinyRCE) → learner → exporter
                           │ label_request  ▲ label_answer
                           ▼                │
                        label_app (phone web page, pairing token + QR code)

    ros2 launch tinycl_nodes tinyrce.launch.py namespace:=/robot1/tinycl port:=8080

Arguments and behaviour: tinycl_nodes/ros_launch.py, plus the graph's own (tinycl_nodes/graphs.py,
LAUNCH_ARGUMENTS; `--show-args` lists them). Without ROS 2 the same nodes and parameter file run with
`tinycl launch tinyrce`.
"""

from tinycl_nodes.ros_launch import launch_description


def generate_launch_description():
    return launch_description("tinyrce")
