"""Bad input sent to running nodes: one clear error line each, the node keeps running, nothing
learned is lost — and learned state survives a restart."""


import time
from dataclasses import dataclass

import numpy as np
from cyclonedds.idl import IdlStruct
from cyclonedds.idl import annotations as annotate
from cyclonedds.idl.types import sequence, uint8
from cyclonedds.pub import DataWriter
from cyclonedds.qos import Policy, Qos
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from tests.nodes.conftest import node, spin_until
from tinycl_nodes.bus import create_bus
from tinycl_nodes.extractor import FrozenExtractor, model_path


@dataclass
@annotate.final
class Bogus(IdlStruct, typename="tinycl_nodes::msg::dds_::LabeledFeatures_"):
    blob: sequence[uint8]


def _sample(bus, x, label, extractor_hash, stamp_ns, label_name=""):
    Header, Time = bus.msg("std_msgs/msg/Header"), bus.msg("builtin_interfaces/msg/Time")
    h = Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9))
    f = bus.msg("Features")(header=h, data=np.asarray(x, np.float32), extractor_hash=extractor_hash, sample_id=stamp_ns % 10**6)
    return bus.msg("LabeledFeatures")(header=h, features=f, label=label, confidence=1.0, source=2,
                                      label_name=label_name)


def test_learner_survives_bad_input_and_restores_state(domain, tmp_path):
    good_hash = FrozenExtractor(model_path("mnist_0to5_fp32")).hash
    other_hash = FrozenExtractor(model_path("mnist_0to5_int8")).hash
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, (3, 64))
    params = ("preset:=supervised", f"state_dir:={tmp_path}", "publish_every:=1", "publish_period_s:=0.2")
    bus = create_bus("tester", backend="dds", dds_config="loopback", domain=domain)
    preds, heads = [], []
    bus.create_subscription("predictions", "Prediction", preds.append, "reliable")
    bus.create_subscription("head", "Head", heads.append, "latched")
    pub = bus.create_publisher("labeled", "LabeledFeatures", "reliable")
    try:
        with node("learner", domain, *params) as learner:
            assert spin_until(bus, lambda: pub.get_subscription_count() > 0, 20), learner.lines
            stamp = time.time_ns()
            for i in range(60):  # learn 3 classes (CWR* consolidates every 32 samples)
                pub.publish(_sample(bus, centers[i % 3] + rng.normal(0, .3, 64), i % 3, good_hash, stamp + i))
            assert spin_until(bus, lambda: len(preds) == 60, 20), learner.lines[-10:]
            bad = [
                (_sample(bus, np.ones(10), 1, good_hash, stamp + 100), "expected shape (64,)"),
                (_sample(bus, np.full(64, np.nan), 1, good_hash, stamp + 101), "NaN"),
                (_sample(bus, centers[0], 0, other_hash, stamp + 102), "extractor"),
                (_sample(bus, centers[0], -5, good_hash, stamp + 103), "class id"),
            ]
            for msg, _ in bad:
                pub.publish(msg)
            # a writer of another type on the same topic never matches (DDS checks types)
            wrong = DataWriter(bus.participant, Topic(bus.participant, "rt/labeled", Bogus),
                               Qos(Policy.Reliability.Reliable(duration(seconds=1))))
            wrong.write(Bogus(blob=[1, 2, 3]))
            assert wrong.get_publication_matched_status().current_count == 0
            for _, text in bad:
                line = learner.wait_for_line(text)
                assert "ERROR" in line and "Traceback" not in "\n".join(learner.lines)
            pub.publish(_sample(bus, centers[2], 2, good_hash, stamp + 200, label_name="gamma"))
            assert spin_until(bus, lambda: len(preds) == 61, 20), "learner stopped answering after bad input"
            assert preds[-1].class_id == 2
            assert learner.proc.poll() is None
        assert learner.proc.returncode == 0
        assert (tmp_path / "learner.state").is_file()
        # the head published at shutdown holds every good sample, and none of the bad ones
        assert spin_until(bus, lambda: max(h.n_seen for h in heads) == 61, 10), [h.n_seen for h in heads]
        heads.clear()
        with node("learner", domain, *params) as again:
            again.wait_for_line("restored head (3 classes, 61 samples)")
            assert spin_until(bus, lambda: pub.get_subscription_count() > 0, 20)
            time.sleep(0.3)
            pub.publish(_sample(bus, centers[2], 2, good_hash, time.time_ns()))
            assert spin_until(bus, lambda: any(h.n_seen == 62 for h in heads), 20), again.lines[-10:]
            assert preds[-1].class_name == "gamma"  # a learned class name survives the restart
    finally:
        bus.shutdown()


def test_exporter_refuses_head_of_other_extractor(domain, tmp_path):
    from tinycl_nodes.core import CWRStar
    from tinycl_nodes.nodes.messages import head_message

    other_hash = FrozenExtractor(model_path("mnist_0to5_int8")).hash
    good_hash = FrozenExtractor(model_path("mnist_0to5_fp32")).hash
    bus = create_bus("tester2", backend="dds", dds_config="loopback", domain=domain)
    pub = bus.create_publisher("head", "Head", "latched")
    req = bus.create_publisher("export_request", "std_msgs/msg/String", "reliable")
    try:
        with node("exporter", domain, f"out_dir:={tmp_path}", "period_s:=0") as exporter:
            assert spin_until(bus, lambda: pub.get_subscription_count() > 0 and req.get_subscription_count() > 0, 20)
            foreign = CWRStar(64, extractor_hash=other_hash)
            foreign.learn_one(np.ones(64, np.float32), 4)
            header = bus.msg("std_msgs/msg/Header")()
            pub.publish(head_message(bus.msg("Head"), bus.msg("ClassInfo"), foreign, 1, header))
            exporter.wait_for_line("refused")
            ours = CWRStar(64, extractor_hash=good_hash, batch_size=1)
            for c in range(3):
                ours.learn_one(np.eye(64, dtype=np.float32)[c] * 5, c)
            pub.publish(head_message(bus.msg("Head"), bus.msg("ClassInfo"), ours, 2, header))
            time.sleep(0.5)
            req.publish(bus.msg("std_msgs/msg/String")(data=""))
            exporter.wait_for_line("exported head v2")
            assert (tmp_path / "head.onnx").is_file() and (tmp_path / "head.h").is_file()
    finally:
        bus.shutdown()


def test_the_same_bad_input_at_a_cameras_rate_is_said_20_times_then_once_a_minute(domain, tmp_path):
    """A labeler on another model than the extractor's (``model:=`` given to one node only) refused every frame's
    features in a line of its own: 30 a second into the robot's log. Now the same reason is said 20 times, the 20th
    saying so; /diagnostics still counts every one. 150 such features at 30 Hz: 20 lines, then one feature of a
    reason not said before is said at once."""
    bus = create_bus("flooder", backend="dds", dds_config="loopback", domain=domain)
    pub = bus.create_publisher("features", "Features", "reliable")
    Features = bus.msg("Features")
    try:
        with node("labeler", domain, "model:=mnist_0to5_fp32", "preset:=tinycl", f"state_dir:={tmp_path}",
                  "wait_for_subscribers:=0") as labeler:
            assert spin_until(bus, lambda: pub.get_subscription_count() > 0, 30), labeler.lines[-10:]
            for i in range(150):
                pub.publish(Features(data=np.ones(64, np.float32).tolist(), extractor_hash="f" * 64,
                                     sample_id=i + 1))
                bus.spin_once(1 / 30)
            good = FrozenExtractor(model_path("mnist_0to5_fp32")).hash
            pub.publish(Features(data=np.ones(63, np.float32).tolist(), extractor_hash=good, sample_id=999))
            errors = lambda: [ln for ln in labeler.lines if "ERROR" in ln]    # noqa: E731
            assert spin_until(bus, lambda: len(errors()) == 21 and "63" in errors()[-1], 10), errors()[-3:]
            said = [ln for ln in labeler.lines if "ExtractorMismatchError" in ln]
            assert len(said) == 20, len(said)
            assert said[-1].endswith("; the same again is said once every 60 s, with a count"), said[-1]
            assert labeler.proc.poll() is None
    finally:
        bus.shutdown()
