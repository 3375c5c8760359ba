"""A rosbag2 (MCAP or SQLite3) of camera images as a labelled dataset for the experiments.

The images are a ``sensor_msgs/Image`` or ``CompressedImage`` topic; their labels the
``tinycl_nodes/GroundTruth`` messages of another topic with the same header stamps — what a tinycl
graph publishes beside its images, so ``ros2 bag record /robot1/tinycl/image /robot1/tinycl/ground_truth``
of a labelled session is such a dataset. Class names are the GroundTruth ``class_name``s (the id
when empty); an image without a label, or one that does not decode, is one line and left out.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..core.errors import TinyclError
from .paths import DataError

log = logging.getLogger("tinycl.datasets")
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def load_bag_images(bag: str | Path, image_topic: str, truth_topic: str,
                    at_least: tuple[int, int] | None = None) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """(decoded images, class ids, class names) of a bag's labelled images."""
    from rosbags.highlevel import AnyReader

    from ..images import compressed_image_of, image_of
    from ..interfaces.typestore import typestore

    path = Path(bag)
    if not path.exists():
        raise DataError(f"rosbag not found: {path}")
    images: dict[int, np.ndarray] = {}
    truths: dict[int, tuple[int, str]] = {}
    try:
        with AnyReader([path], default_typestore=typestore("humble")) as reader:
            conns = {c.topic: c for c in reader.connections}
            for topic, kinds in ((image_topic, IMAGE_TYPES), (truth_topic, ("tinycl_nodes/msg/GroundTruth",))):
                if topic not in conns or conns[topic].msgtype not in kinds:
                    raise DataError(f"{path}: no {' or '.join(kinds)} topic {topic} (has: "
                                    f"{', '.join(f'{t} [{c.msgtype}]' for t, c in sorted(conns.items()))})")
            for conn, _, raw in reader.messages(connections=[conns[image_topic], conns[truth_topic]]):
                msg = reader.deserialize(raw, conn.msgtype)
                stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
                if conn.topic == truth_topic:
                    truths[stamp] = (int(msg.label), str(msg.class_name) or str(int(msg.label)))
                    continue
                try:
                    images[stamp] = (image_of(msg) if conn.msgtype.endswith("/Image")
                                     else compressed_image_of(msg, at_least))
                except TinyclError as exc:
                    log.warning("skipped the image stamped %d: %s", stamp, exc)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - rosbags raises several types for a bad bag
        raise DataError(f"cannot read rosbag {path}: {str(exc).splitlines()[0][:160]}") from None
    unlabelled = sorted(set(images) - set(truths))
    if unlabelled:
        log.warning("%d images of %s have no ground truth on %s: left out", len(unlabelled), image_topic, truth_topic)
    stamps = sorted(set(images) & set(truths))
    labels = sorted({truths[s] for s in stamps})
    ids = sorted({lab for lab, _ in labels})
    names = {lab: name for lab, name in labels}
    if len(ids) < 2:
        raise DataError(f"{path}: {len(ids)} labelled class(es) on {truth_topic}: at least 2 are needed")
    y = np.array([ids.index(truths[s][0]) for s in stamps], np.int64)
    return [images[s] for s in stamps], y, [names[i] for i in ids]
