"""ROS 2 launch: learning what a robot's IMU feels, people answering on a phone.

    IMU driver ──imu_raw──▶ sensor (windows) ──▶ extractor ──▶ labeler (TinyRCE) ──▶ learner ──▶ exporter
                                                                 │ label_request  ▲ label_answer
                                                                 ▼                │
                                                              label_app (phone web page)

    ros2 launch tinycl_nodes imu.launch.py namespace:=/robot1/tinycl imu_topic:=/imu/data

The sensor windows the driver's ``sensor_msgs/Imu`` readings (``imu_topic``, default ``imu_raw`` in the namespace)
as the model takes them; no replay, no metrics node, the graph runs until Ctrl-C. Arguments and behaviour:
tinycl_nodes/ros_launch.py, plus the graph's own (tinycl_nodes/graphs.py, LAUNCH_ARGUMENTS; `--show-args`
lists them). Without ROS 2 the same nodes and parameter file run with ``tinycl launch imu``.
"""

from tinycl_nodes.ros_launch import launch_description


def generate_launch_description():
    return launch_description("imu")
