"""Memory is bounded by bytes, not message counts: unmatched ground truth with 64 KB names, big
images at the RCE labeler, messages held by a paused node — each floods a real node (local bus)
and the node's memory stays within its byte bound (tracemalloc), with one warning line."""

from __future__ import annotations

import logging
import tracemalloc

import numpy as np

from tinycl_nodes.bus import create_bus
from tinycl_nodes.bus.local import LocalGraph
from tinycl_nodes.interfaces import as_sequence
from tinycl_nodes.nodes.extractor import Extractor, ExtractorParams
from tinycl_nodes.nodes.labeler import Labeler, LabelerParams
from tinycl_nodes.nodes.learner import Learner, LearnerParams

NAME = "n" * 65536


def grown_mb(flood) -> float:
    """MB still allocated after ``flood()`` (what the node kept)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    flood()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / 2**20


def peer(graph):
    bus = create_bus("attacker", "/", backend="local", graph=graph)
    return bus, bus.msg("std_msgs/msg/Header"), bus.msg("builtin_interfaces/msg/Time")


def test_unmatched_ground_truth_with_64kb_names(caplog):
    """Was: 2,000 of them grew the extractor by 129 MB."""
    graph = LocalGraph()
    bus, Header, Time = peer(graph)
    bus.create_subscription("features", "Features", lambda m: None)       # its reader: it starts at once
    ex = Extractor(create_bus("extractor", "/", backend="local", graph=graph), ExtractorParams(expect_ground_truth=True))
    ex.bring_up()
    GT = bus.msg("GroundTruth")
    pub = bus.create_publisher("ground_truth", GT)

    def flood():
        for k in range(2000):
            pub.publish(GT(header=Header(stamp=Time(sec=1, nanosec=k)), label=3, class_name=NAME + str(k),
                           learnable=True))      # a fresh 64 KB string each: as received off the wire

    with caplog.at_level(logging.WARNING):
        mb = grown_mb(flood)
    print(f"extractor after 2,000 unmatched truths with 64 KB names: +{mb:.1f} MB")
    assert mb < 4
    ex.bus.shutdown()


def test_big_images_at_the_rce_labeler(tmp_path, caplog):
    """Was: 64 images of 2 MB grew the RCE labeler by 100 MB."""
    graph = LocalGraph()
    lab = Labeler(create_bus("labeler", "/", backend="local", graph=graph),
                  LabelerParams(preset="rce", state_dir=str(tmp_path)))
    bus, Header, Time = peer(graph)
    Image = bus.msg("sensor_msgs/msg/Image")
    pub = bus.create_publisher("image", Image, "sensor_data")

    def flood():
        for k in range(64):
            pub.publish(Image(header=Header(stamp=Time(sec=1, nanosec=k)), height=1024, width=2048,
                              encoding="mono8", step=2048, data=as_sequence(np.zeros(2 << 20, np.uint8), "B")))
        for k in range(64):   # drawable ones: kept, up to the byte bound
            pub.publish(Image(header=Header(stamp=Time(sec=2, nanosec=k)), height=600, width=1000,
                              encoding="mono8", step=1000, data=as_sequence(np.zeros(600_000, np.uint8), "B")))

    with caplog.at_level(logging.WARNING):
        mb = grown_mb(flood)
    print(f"RCE labeler after 64 images of 2 MB and 64 of 600 KB: +{mb:.1f} MB")
    assert mb < 12 and lab._raw_bytes <= 8 << 20
    assert caplog.text.count("too big to show") == 1


def test_a_paused_node_holds_messages_up_to_a_byte_bound(tmp_path, caplog):
    graph = LocalGraph()
    learner = Learner(create_bus("learner", "/", backend="local", graph=graph), LearnerParams(state_dir=str(tmp_path)))
    learner.bring_up()
    learner.deactivate()
    learner.HOLD_BYTES = 8 << 20
    bus, Header, Time = peer(graph)
    LF, F = bus.msg("LabeledFeatures"), bus.msg("Features")
    pub = bus.create_publisher("labeled", LF)

    def flood():
        for k in range(500):
            pub.publish(LF(header=Header(stamp=Time(sec=1, nanosec=k)), features=F(data=as_sequence(
                np.zeros(64), "f"), extractor_hash=learner.hash), label=1, label_name=NAME + str(k)))

    with caplog.at_level(logging.WARNING):
        mb = grown_mb(flood)
    print(f"paused learner after 500 messages with 64 KB names: +{mb:.1f} MB held")
    assert mb < 12 and learner._held_bytes <= 8 << 20
    assert caplog.text.count("messages held: the oldest are dropped") == 1
