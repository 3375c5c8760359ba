"""What a node learns from, it journals as it came (CDR bytes, before it is learned), so a message is checked before
that. A label name, a frame id, an extractor hash or a renamed class's name longer than ``messages.MAX_TEXT_CHARS`` is
one error line naming the field, and the message is dropped (was: learned, and journaled whole, 64 KB on disk a
sample); so is a labelled sample whose confidence is not a number from 0 to 1 or whose source no labeler sends (was:
learned). Real nodes on the local bus: the learner, both labelers, and the extractor, whose features keep a frame's
header and which refuses such a frame id at the source."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tests.nodes.test_labeler_checkpoints import CameraLabeler
from tests.reliability.test_memory import peer
from tinycl_nodes.bus import create_bus
from tinycl_nodes.bus.local import LocalGraph
from tinycl_nodes.interfaces import as_sequence
from tinycl_nodes.nodes.extractor import Extractor, ExtractorParams
from tinycl_nodes.nodes.learner import Learner, LearnerParams
from tinycl_nodes.nodes.messages import MAX_TEXT_CHARS

BIG = "n" * 65536


def journaled(store) -> int:
    store.flush()
    return sum(1 for _ in store.journal.records(0))


def started(node_cls, params, graph: LocalGraph):
    """A real node of ``node_cls`` on ``graph``'s local bus, configured and active."""
    node = node_cls(create_bus(node_cls.__name__.lower(), "/", backend="local", graph=graph), params)
    node.bring_up()
    return node


def learner_on(graph: LocalGraph, tmp_path) -> Learner:
    """The learner these tests feed: no class statistics (its head starts empty), no checkpoint by time."""
    return started(Learner, LearnerParams(state_dir=str(tmp_path), model_prior=False, save_period_s=3600.0), graph)


def test_the_learner_refuses_oversized_texts_before_its_journal(tmp_path, caplog):
    graph = LocalGraph()
    learner = learner_on(graph, tmp_path)
    bus, Header, Time = peer(graph)
    LF, F, Info = bus.msg("LabeledFeatures"), bus.msg("Features"), bus.msg("ClassInfo")
    pub = bus.create_publisher("labeled", LF)
    renames = bus.create_publisher("class_renamed", Info, "reliable")
    x = as_sequence(np.random.default_rng(0).normal(0, 0.5, 64), "f")

    def sample(k: int, label_name: str = "", frame: str = "", feature_frame: str = "", hash_: str | None = None):
        return LF(header=Header(stamp=Time(sec=1, nanosec=k), frame_id=frame), label=1, confidence=1.0,
                  source=LF.HUMAN, label_name=label_name,
                  features=F(header=Header(stamp=Time(sec=1, nanosec=k), frame_id=feature_frame), data=x,
                             extractor_hash=learner.hash if hash_ is None else hash_))

    before = journaled(learner.state)
    with caplog.at_level(logging.ERROR):
        pub.publish(sample(1, label_name=BIG))
        pub.publish(sample(2, frame=BIG))
        pub.publish(sample(3, feature_frame=BIG))
        pub.publish(sample(4, hash_=BIG))
        renames.publish(Info(id=1, name=BIG, sample_count=0))
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 5, said
    for field, line in zip(["label_name", "frame_id", "frame_id", "features.extractor_hash", "name"], said):
        assert f"{field} of 65536 characters, at most {MAX_TEXT_CHARS}: dropped" in line and "\n" not in line, line
    assert journaled(learner.state) == before and int(learner.head.state_dict()["arrays"]["counts"].sum()) == 0
    assert 1 not in learner.class_names
    pub.publish(sample(5, label_name="cup"))                     # a clean one: learned, journaled, named
    assert journaled(learner.state) == before + 1 and learner.class_names[1] == "cup"
    learner.bus.shutdown()


@pytest.mark.parametrize("config", ["tinyndc", "camera"], ids=["tinyndc labeler", "rce labeler"])
def test_the_labelers_refuse_oversized_texts_before_their_journal(tmp_path, caplog, config):
    cam = CameraLabeler(tmp_path, config, save_period_s=3600.0,
                        **({"follow_head": "", "recover_topic": "", "global_topic": ""} if config == "tinyndc" else {}))
    lab = cam.lab
    x = np.random.default_rng(0).normal(0, 0.5, 64).astype(np.float32)
    Features = cam.bus.msg("Features")
    before = journaled(lab.state)
    with caplog.at_level(logging.ERROR):
        cam.pub.publish(Features(header=cam.Header(stamp=cam.Time(sec=1, nanosec=1), frame_id=BIG),
                                 data=as_sequence(x, "f"), extractor_hash=lab.hash, labelled=True, true_label=0))
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 1 and f"frame_id of 65536 characters, at most {MAX_TEXT_CHARS}: dropped" in said[0], said
    assert journaled(lab.state) == before and not cam.labeled
    cam.send(x, 0)                                               # the same sample, a short frame id: learned
    assert journaled(lab.state) == before + 1 and len(cam.labeled) == (1 if config == "camera" else 0)
    lab.close()


def test_the_extractor_refuses_a_frame_id_its_features_would_carry(caplog):
    graph = LocalGraph()
    bus, Header, Time = peer(graph)
    features: list = []
    bus.create_subscription("features", "Features", features.append)
    ex = started(Extractor, ExtractorParams(expect_ground_truth=False, image_qos="reliable"), graph)
    Image = bus.msg("sensor_msgs/msg/Image")
    pub = bus.create_publisher("image", Image, "reliable")
    frame = lambda k, frame_id: Image(header=Header(stamp=Time(sec=1, nanosec=k), frame_id=frame_id),  # noqa: E731
                                      height=28, width=28, encoding="mono8", step=28,
                                      data=as_sequence(np.full((28, 28), 100, np.uint8), "B"))
    with caplog.at_level(logging.ERROR):
        pub.publish(frame(1, BIG))
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 1 and f"frame_id of 65536 characters, at most {MAX_TEXT_CHARS}: dropped" in said[0], said
    assert not features
    pub.publish(frame(2, "camera_optical_frame"))
    assert [f.header.frame_id for f in features] == ["camera_optical_frame"]
    ex.bus.shutdown()


BAD_LABELLED = {"confidence nan": dict(confidence=float("nan")), "confidence 1.5": dict(confidence=1.5),
                "confidence -0.1": dict(confidence=-0.1), "confidence inf": dict(confidence=float("inf")),
                "source 7": dict(source=7), "stamp -5 s": dict(sec=-5), "stamp 1e9 ns": dict(nanosec=10**9)}


@pytest.mark.parametrize("bad", BAD_LABELLED, ids=list(BAD_LABELLED))
def test_the_learner_refuses_a_confidence_a_source_or_a_stamp_no_labeler_sends(tmp_path, caplog, bad):
    """A pseudo-label of NaN confidence passed every ``min_confidence`` (NaN < x is false): it was learned. A sample
    stamped -5 s was learned, and its stamp saved with the head made the whole state file unloadable at the next start
    (moved aside: everything learned was lost). A learner started again on what this one saved holds its sample."""
    words, fields = bad, dict(BAD_LABELLED[bad])
    stamp = {k: fields.pop(k) for k in ("sec", "nanosec") if k in fields}
    learner = learner_on(graph := LocalGraph(), tmp_path)
    bus, Header, Time = peer(graph)
    LF, F = bus.msg("LabeledFeatures"), bus.msg("Features")
    pub = bus.create_publisher("labeled", LF)
    x = as_sequence(np.random.default_rng(0).normal(0, 0.5, 64), "f")

    def sample(k: int, sec: int = 1, nanosec: int | None = None, **kw):
        header = Header(stamp=Time(sec=sec, nanosec=k if nanosec is None else nanosec))
        return LF(**{"header": header, "label": 1, "confidence": 1.0, "source": LF.PSEUDO,
                     "features": F(header=header, data=x, extractor_hash=learner.hash), **kw})

    with caplog.at_level(logging.ERROR):
        pub.publish(sample(1, **stamp, **fields))
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 1 and words.split()[0] in said[0] and "dropped" in said[0], said
    assert int(learner.head.state_dict()["arrays"]["counts"].sum()) == 0
    pub.publish(sample(2))
    assert int(learner.head.state_dict()["arrays"]["counts"].sum()) == 1
    learner.close()
    learner.bus.shutdown()
    again = learner_on(LocalGraph(), tmp_path)
    assert int(again.head.state_dict()["arrays"]["counts"].sum()) == 1
    again.bus.shutdown()


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), -50.0], ids=str)
def test_the_extractor_refuses_an_imu_window_at_a_rate_that_is_no_rate(caplog, rate):
    """Was: taken as a window whose rate is not said (0), its features learned downstream."""
    graph = LocalGraph()
    bus, Header, Time = peer(graph)
    features: list = []
    bus.create_subscription("features", "Features", features.append)
    ex = started(Extractor, ExtractorParams(input="imu", model="har_elm", expect_ground_truth=False,
                                            image_qos="reliable"), graph)
    Window = bus.msg("ImuWindow")
    pub = bus.create_publisher("imu", Window, "reliable")
    channels, samples = ex.shape
    window = lambda k, hz: Window(header=Header(stamp=Time(sec=1, nanosec=k)), n_channels=channels,  # noqa: E731
                                  rate_hz=hz, data=as_sequence(np.zeros(channels * samples), "f"))
    with caplog.at_level(logging.ERROR):
        pub.publish(window(1, rate))
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 1 and "a rate must be a number from 0 (not said) up: dropped" in said[0], said
    assert not features
    pub.publish(window(2, 0.0))                                  # not said: taken
    pub.publish(window(3, ex.window_rate_hz))
    assert len(features) == 2
    ex.bus.shutdown()


def test_the_learner_keeps_as_many_class_names_as_a_head_has_classes(tmp_path, caplog):
    """Ground truth names the classes a replay teaches; one of 20,000 class ids, none of them a head's class, kept
    20,000 names (1.6 MB more in every checkpoint). At most MAX_CLASSES are kept: the names past that are one line
    each; a class already named can still be renamed."""
    from tinycl_nodes.core.federated import MAX_CLASSES

    graph = LocalGraph()
    learner = learner_on(graph, tmp_path)
    bus, Header, Time = peer(graph)
    GT, Info = bus.msg("GroundTruth"), bus.msg("ClassInfo")
    truths = bus.create_publisher("ground_truth", GT, "sensor_data")
    renames = bus.create_publisher("class_renamed", Info, "reliable")
    with caplog.at_level(logging.ERROR):
        for i in range(MAX_CLASSES + 3):
            truths.publish(GT(header=Header(stamp=Time(sec=1, nanosec=i)), label=1000 + i, class_name=f"c{i}"))
        renames.publish(Info(id=7, name="seven", sample_count=0))          # a class with no name yet: no room
        renames.publish(Info(id=1000, name="renamed", sample_count=0))    # one named already
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 4 and all(f"{MAX_CLASSES} classes have a name already" in s for s in said), said[:2]
    assert len(learner.class_names) == MAX_CLASSES and learner.class_names[1000] == "renamed"
    learner.bus.shutdown()


def test_the_learner_refuses_to_take_back_a_sample_it_never_learned(tmp_path, caplog):
    """``unlearn`` of a sample the learner never learned (it missed it, or a hostile writer): the streaming LDA head
    refuses it, one line, and nothing is journaled; it was taken, and made the covariance indefinite. A learner started
    again on what this one saved holds the same head and says no journal record failed."""
    learner = learner_on(graph := LocalGraph(), tmp_path)
    assert learner.head.kind == "StreamingLDA"
    bus, Header, Time = peer(graph)
    LF, F = bus.msg("LabeledFeatures"), bus.msg("Features")
    pub, unlearn = bus.create_publisher("labeled", LF), bus.create_publisher("unlearn", LF, "reliable")
    rng = np.random.default_rng(0)

    def sample(k: int, x: np.ndarray, label: int):
        header = Header(stamp=Time(sec=1, nanosec=k))
        return LF(header=header, label=label, confidence=1.0, source=LF.HUMAN,
                  features=F(header=header, data=as_sequence(x, "f"), extractor_hash=learner.hash))

    for k in range(30):
        pub.publish(sample(k, rng.normal(0, 0.5, 64), k % 3))
    counts = learner.head.sample_counts()
    before = journaled(learner.state)
    with caplog.at_level(logging.ERROR):
        unlearn.publish(sample(99, np.full(64, 10.0), 1))
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 1 and "a sample of class 1 that was never learned" in said[0], said
    assert learner.head.sample_counts() == counts and journaled(learner.state) == before
    W = learner.head.linear()[0]
    learner.close()
    learner.bus.shutdown()
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        again = learner_on(LocalGraph(), tmp_path)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert again.head.sample_counts() == counts and np.array_equal(again.head.linear()[0], W)
    again.bus.shutdown()
