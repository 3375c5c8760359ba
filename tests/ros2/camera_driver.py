"""A camera driver as the tests need one, in rclpy (run with the ROS 2 kit's python).

    python3 camera_driver.py --frames frames.npz --topic /robot1/tinycl/image_raw --rate 30 \
        --seconds 3 --listen /robot1/tinycl/features --out result.json

Publishes the frames of ``frames.npz`` (``rgb``: (k, H, W, 3) uint8) round-robin as
``sensor_msgs/Image`` rgb8 with a padded step (rows aligned to 64 bytes, as many drivers do) and
sensor-data QoS, frame i stamped ``i`` nanoseconds after second 1; ``--publish compressed``: as
``sensor_msgs/CompressedImage`` JPEG (quality 90) on ``<topic>/compressed`` instead, ``both``: on both, as a
driver through image_transport publishes them (the same stamp); meanwhile it collects the
``tinycl_nodes/Features`` of every ``--listen`` topic and writes them (stamp → frame index) to
``--out`` as JSON. ``--publish none`` only listens (``--linger`` seconds, or until every topic
has ``--expect`` messages; with frames to publish, ``--expect`` ends the publishing too).
"""

import argparse
import array
import json
import time

import cv2
import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from tinycl_nodes.msg import Features


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames")
    ap.add_argument("--topic")
    ap.add_argument("--publish", default="raw", choices=["raw", "compressed", "both", "none"])
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--listen", default="")
    ap.add_argument("--wait-for", type=int, default=1, help="subscribers to wait for before publishing")
    ap.add_argument("--linger", type=float, default=3.0, help="seconds to go on listening after publishing")
    ap.add_argument("--expect", type=int, default=0,
                    help="stop publishing and listening once every topic has this many")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rclpy.init()
    node = rclpy.create_node("camera_driver")
    got: dict[str, list] = {t: [] for t in args.listen.split(",") if t}
    for topic, items in got.items():
        node.create_subscription(Features, topic, lambda m, items=items: items.append(
            [m.header.stamp.nanosec, [float(v) for v in m.data], m.extractor_hash]), 100)
    sent = 0
    if args.publish != "none":
        rgb = np.load(args.frames)["rgb"]
        k, h, w, _ = rgb.shape
        step = (w * 3 + 63) // 64 * 64
        rows = np.zeros((k, h, step), np.uint8)
        rows[:, :, : w * 3] = rgb.reshape(k, h, w * 3)
        raw = args.publish in ("raw", "both")
        pub = node.create_publisher(Image, args.topic, qos_profile_sensor_data) if raw else \
            node.create_publisher(CompressedImage, args.topic + "/compressed", qos_profile_sensor_data)
        jpeg_pub = node.create_publisher(CompressedImage, args.topic + "/compressed", qos_profile_sensor_data) \
            if args.publish == "both" else (None if raw else pub)
        jpegs = [array.array("B", cv2.imencode(".jpg", f[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
                 for f in rgb] if jpeg_pub is not None else []
        # discovery through before the first frame: our writer matched to a reader, the features' writer known to us
        # (a frame sent before the extractor's reader knows this writer, or a feature before its writer knows our
        # reader, is gone; discovery is slower on a busy host)
        end = time.monotonic() + 30
        publishers = [pub] if jpeg_pub in (None, pub) else [pub, jpeg_pub]
        while (sum(p.get_subscription_count() for p in publishers) < args.wait_for
               or not all(node.count_publishers(t) for t in got)) and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
        payloads = [array.array("B", rows[i].tobytes()) for i in range(k)]   # rclpy's fast path for uint8[]
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.seconds and not (args.expect and got and
                                                              all(len(v) >= args.expect for v in got.values())):
            if raw:
                msg = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=step)
                msg.header.stamp.sec, msg.header.stamp.nanosec = 1, sent
                msg.header.frame_id = "camera"
                msg.data = payloads[sent % k]
                pub.publish(msg)
            if jpeg_pub is not None:
                jpeg = CompressedImage(format="jpeg")
                jpeg.header.stamp.sec, jpeg.header.stamp.nanosec = 1, sent
                jpeg.header.frame_id = "camera"
                jpeg.data = jpegs[sent % k]
                jpeg_pub.publish(jpeg)
            sent += 1
            next_t = t0 + sent / args.rate
            while (d := next_t - time.monotonic()) > 0:
                rclpy.spin_once(node, timeout_sec=d)
    end = time.monotonic() + args.linger    # the last features on their way
    while time.monotonic() < end and not (args.expect and all(len(v) >= args.expect for v in got.values())):
        rclpy.spin_once(node, timeout_sec=0.05)
    with open(args.out, "w") as fh:
        json.dump({"sent": sent, "features": got}, fh)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
