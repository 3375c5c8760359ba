"""An IMU driver as the tests need one, in rclpy (run with the ROS 2 kit's python).

    python3 imu_driver.py --csv DATA/s13/s13_01_sp.csv --topic /phone/imu

Publishes the readings of a HAR phone recording (``x_acc … z_gyro`` in m/s² and rad/s, ``timestamp`` in ms) as
``sensor_msgs/Imu`` with sensor-data QoS, as IMU drivers do: at the pace they were recorded, stamped with the ROS time
of the first one plus the recording's own offsets (its jitter and its repeated stamps kept), frame ``imu_link``, no
orientation (orientation_covariance[0] = -1, sensor_msgs' "not provided"). The recording plays in a loop, 0.1 s
between the loops, until the driver is stopped.
"""

import argparse
import time

import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Imu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--topic", required=True)
    args = ap.parse_args()
    rows = [line.split(",") for line in open(args.csv).read().splitlines()[1:] if line]
    values = [[float(x) for x in r[:6]] for r in rows]
    offsets_ns = [(int(r[6]) - int(rows[0][6])) * 1_000_000 for r in rows]
    loop_ns = offsets_ns[-1] + 100_000_000
    rclpy.init()
    node = rclpy.create_node("imu_driver")
    pub = node.create_publisher(Imu, args.topic, qos_profile_sensor_data)
    start_ns, start = node.get_clock().now().nanoseconds, time.monotonic()
    try:
        for loop in range(1_000_000):
            for v, off in zip(values, offsets_ns):
                at = loop * loop_ns + off
                while (d := start + at * 1e-9 - time.monotonic()) > 0:
                    rclpy.spin_once(node, timeout_sec=d)
                msg = Imu()
                msg.header.frame_id = "imu_link"
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(start_ns + at, 1_000_000_000)
                msg.orientation_covariance[0] = -1.0
                a, g = msg.linear_acceleration, msg.angular_velocity
                a.x, a.y, a.z, g.x, g.y, g.z = v
                pub.publish(msg)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
