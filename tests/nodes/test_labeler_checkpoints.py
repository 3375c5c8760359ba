"""What makes the TinyRCE labeler write its state: what it learns from labels; not each sample it merely passes on, nor
the samples that join or form a question's group, nor the questions it asks, nor a person's answers, changes of
answers and renames (a journal record each, fsynced) or skips, nor the views it passes on (its ring of recent views:
a view the camera holds is a journal record, as such a sample, a question, an answer and a skip are; a checkpoint
comes once they weigh as much as the last). And the TinyNDC labeler: not the frames its learn gate holds back. In a
soak of camera.launch.py under ROS 2 (30 frames/s), its labeler wrote its whole state 245 times in 211 s (1.8 MB
each, waiting for each write): every second, since each sample it passed on counted as learned and its 1 s timer
saved whatever had changed (a real node on the local bus here, MNIST digits through the real extractor)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.reliability.test_memory import peer
from tinycl_nodes.bus import create_bus
from tinycl_nodes.bus.local import LocalGraph
from tinycl_nodes.datasets import load_mnist
from tinycl_nodes.extractor import FrozenExtractor, model_path
from tinycl_nodes.interfaces import as_sequence
from tinycl_nodes.journal import unpack
from tinycl_nodes.nodes.label_requests import NEW_CLASS, NO_CLASS
from tinycl_nodes.nodes.labeler import Labeler, LabelerParams
from tinycl_nodes.storage import load_states


class CameraLabeler:
    """The camera graph's labeler (config/camera.yaml, or ``config``'s, ``overrides`` on top) as a real node on the
    local bus, a peer that sends it features (:meth:`send`) and what it published on ``labeled``."""

    def __init__(self, tmp_path: Path, config: str = "camera", **overrides: Any) -> None:
        camera = yaml.safe_load((Path(__file__).parents[2] / "config" / f"{config}.yaml").read_text())
        shared = {k: v for k, v in camera["/**"]["ros__parameters"].items() if k in LabelerParams.model_fields}
        self.params = {**shared, **camera.get("labeler", {}).get("ros__parameters", {}),
                       "wait_for_subscribers": 0, "state_dir": str(tmp_path), **overrides}
        graph = LocalGraph()
        self.lab = Labeler(create_bus("labeler", "/", backend="local", graph=graph), LabelerParams(**self.params))
        self.bus, self.Header, self.Time = peer(graph)
        self.pub = self.bus.create_publisher("features", self.bus.msg("Features"), "reliable")
        self.answers = self.bus.create_publisher("label_answer", self.bus.msg("LabelAnswer"), "reliable")
        self.changes = {topic: self.bus.create_publisher(topic, self.bus.msg("LabelAnswer"), "reliable")
                        for topic in ("label_correction", "rename_class")}
        self.status: list[dict[str, Any]] = []
        self.bus.create_subscription("label_status", "std_msgs/msg/String",
                                     lambda m: self.status.append(json.loads(m.data)), "reliable")
        self.labeled: list[Any] = []
        self.bus.create_subscription("labeled", "LabeledFeatures", self.labeled.append, "reliable")
        self.stamp = iter(range(1, 10**6))

    def again(self) -> Labeler:
        """Another labeler started on what this one left in its state folder (as after kill -9: nothing closed)."""
        return Labeler(create_bus("labeler", "/", backend="local", graph=LocalGraph()), LabelerParams(**self.params))

    def answer(self, request_id: str, class_id: int, new_class_name: str = "") -> None:
        """A person's answer (or skip: ``NO_CLASS``) on ``label_answer``, as the label app sends it."""
        Answer = self.bus.msg("LabelAnswer")
        self.answers.publish(Answer(request_id=request_id, class_id=class_id, new_class_name=new_class_name))

    def change(self, topic: str, request_id: str, class_id: int, new_class_name: str = "") -> None:
        """A person's change as the label app sends it: an answer changed or withdrawn (``label_correction``), a class
        renamed (``rename_class``)."""
        Answer = self.bus.msg("LabelAnswer")
        self.changes[topic].publish(Answer(request_id=request_id, class_id=class_id, new_class_name=new_class_name))

    def send(self, f: np.ndarray, label: int = -1) -> None:
        self.pub.publish(self.bus.msg("Features")(header=self.Header(stamp=self.Time(sec=1, nanosec=next(self.stamp))),
                                                  data=as_sequence(f, "f"), extractor_hash=self.lab.hash,
                                                  labelled=label >= 0, true_label=label))


def test_the_rce_labeler_checkpoints_what_it_learns_not_what_it_asks_or_passes_on(tmp_path, data_dir):
    X, y = load_mnist("test", data_dir)
    zeros, others = X[y == 0][:20], X[y == 7][:1]
    feats = FrozenExtractor(model_path("mnist_0to5_fp32")).extract(np.concatenate([zeros, others]))
    cam = CameraLabeler(tmp_path, save_every=10, save_period_s=3600.0, min_group=1)
    lab, send, labeled, params = cam.lab, cam.send, cam.labeled, cam.params

    for f in feats[:20]:                              # 20 zeros with their label: learned, 2 checkpoints
        send(f, 0)
    assert lab.state.ticket == 2
    for _ in range(15):                               # 300 zeros it covers: passed on as zeros, nothing learned
        for f in feats[:20]:
            send(f)
    covered = [m for m in labeled if m.source == m.PSEUDO]
    assert len(covered) == 300 and all(m.label == 0 for m in covered), len(covered)
    assert lab.state.ticket == 2                      # was 2 + 30: a checkpoint every 10 samples passed on
    lab._tick()                                       # the labeler's 1 s timer: nothing to save
    assert lab.state.ticket == 2
    send(feats[-1])                                   # a 7: nothing like it is known, a question is asked
    (asked,) = lab.requests.pending.values()
    assert lab.state.ticket == 2                      # was 3: the whole state, at once, for each question asked
    weight = lab.state.journaled_bytes
    for f in feats[-1:] * 1.01 ** np.arange(1, 6)[:, None]:   # alike 7s: they join its group, nothing is learned
        send(f)
    lab._tick()
    assert lab.requests.group_size(asked) == 6
    lab.state.saved_at -= params["save_period_s"]
    assert not lab.state.tick() and lab.state.ticket == 2     # was 4: the store's timer saved them, every save_period_s
    lab.state.flush()
    records = list(lab.state.journal.records(3))
    assert [unpack(r)[0] for r in records] == [b"sample", b"ask"] + [b"sample"] * 5   # the question: one record
    assert lab.state.journaled_bytes == sum(map(len, records))                        # all by weight
    assert lab.state.journaled_bytes - weight == sum(map(len, records[2:]))
    again = cam.again()                               # after a kill -9: the same question, asked when it was
    (kept,) = again.requests.pending.values()
    assert (kept.request_id, kept.created, again.requests.asked_at) == \
        (asked.request_id, asked.created, lab.requests.asked_at)
    assert again.requests.group_size(kept) == 6
    again.close()
    lab.close()


def asked_about_a_seven(tmp_path: Path, data_dir: Any) -> tuple[CameraLabeler, Any]:
    """A camera labeler that learned 10 zeros from their labels (one checkpoint) and then asked about a 7."""
    X, y = load_mnist("test", data_dir)
    feats = FrozenExtractor(model_path("mnist_0to5_fp32")).extract(np.concatenate([X[y == 0][:10], X[y == 7][:1]]))
    cam = CameraLabeler(tmp_path, save_every=10, save_period_s=3600.0, min_group=1)
    for f in feats[:10]:
        cam.send(f, 0)
    cam.send(feats[-1])
    (asked,) = cam.lab.requests.pending.values()
    return cam, asked


def test_a_question_skipped_is_journaled_not_checkpointed_and_stays_skipped_after_a_kill(tmp_path, data_dir):
    """'Skip' learns nothing: one journal record, not the whole state at once (the 34 questions a
    soak's script skipped were 34 checkpoints of up to 2.2 MB each, docs/results.md)."""
    cam, asked = asked_about_a_seven(tmp_path, data_dir)
    lab = cam.lab
    assert lab.state.ticket == 1
    cam.answer(asked.request_id, NO_CLASS)
    assert not lab.requests.pending and lab.requests.closed[asked.request_id] == "skipped"
    lab.state.flush()
    assert lab.state.ticket == 1                      # was 2
    assert [unpack(r)[0] for r in lab.state.journal.records(2)] == [b"sample", b"ask", b"skip"]
    again = cam.again()
    assert not again.requests.pending and again.requests.closed[asked.request_id] == "skipped"
    assert again.requests.counters["skipped"] == 1
    again.close()
    lab.close()


def test_an_answer_is_an_fsynced_journal_record_and_is_learned_again_after_a_kill(tmp_path, data_dir, monkeypatch):
    """A person's answer: one journal record, fsynced with its segment (a power cut keeps it, as it kept the whole
    state that each answer wrote before, up to 2.2 MB), learned again after a kill -9 as it was: its class, its
    samples, the question closed, the answer still changeable. The fsyncs are the real ones, listed as they happen."""
    cam, asked = asked_about_a_seven(tmp_path, data_dir)
    lab = cam.lab
    synced: list[str] = []
    fsync = os.fsync
    lab.state.flush()                                 # the checkpoint's write (its fsyncs) done
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), fsync(fd))[1])
    cam.answer(asked.request_id, NEW_CLASS, "seven")
    assert lab.requests.closed[asked.request_id] == "answered" and 1 in lab.rce.classes
    assert lab.state.ticket == 1                      # was 2: the whole state, at once
    records = [unpack(r) for r in lab.state.journal.records(2)]
    assert [r[0] for r in records] == [b"sample", b"ask", b"answer"]
    assert synced == [str(lab.state.journal.path(2)), str(tmp_path)], synced   # the segment, then its name
    again = cam.again()
    assert again.requests.closed[asked.request_id] == "answered" and again.requests.names[1] == "seven"
    assert again.rce.state_dict()["arrays"].keys() == lab.rce.state_dict()["arrays"].keys()
    for k, v in lab.rce.state_dict()["arrays"].items():
        assert np.array_equal(again.rce.state_dict()["arrays"][k], v), k
    assert list(again._answers) == [asked.request_id]  # still changeable
    again.close()
    lab.close()


CHANGES = {   # a person's change after answering "seven": (topic, class id, name) → its record, the verdict said
    "changed to a new class": (("label_correction", NEW_CLASS, "bike"), b"correct", "learned"),
    "changed to a known class": (("label_correction", 0, ""), b"correct", "learned"),
    "withdrawn": (("label_correction", NO_CLASS, ""), b"correct", "withdrawn"),
    "class renamed": (("rename_class", 1, "digit seven"), b"rename", "renamed"),
}


@pytest.mark.parametrize("checkpointed", [False, True], ids=["answer-journaled", "answer-checkpointed"])
@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
def test_a_persons_change_is_an_fsynced_journal_record_and_holds_after_a_kill(tmp_path, data_dir, monkeypatch, change,
                                                                               checkpointed):
    """A person changes an answer, withdraws it or renames a class: one journal record, fsynced with its segment, not
    the whole state at once (was: a checkpoint, up to 2.2 MB, which the node's thread waited for). A labeler started on
    what is left (as after kill -9) holds what the change made: the RCE, the undo log, the changeable answers and the
    class names equal the first labeler's; ``checkpointed``: the answer is in the last checkpoint, not in the journal
    with the change."""
    (topic, class_id, name), op, verdict = CHANGES[change]
    cam, asked = asked_about_a_seven(tmp_path, data_dir)
    lab = cam.lab
    rid = asked.request_id
    cam.answer(rid, NEW_CLASS, "seven")
    if checkpointed:
        lab.state.save()
    lab.state.flush()
    ticket = lab.state.ticket
    synced: list[str] = []
    fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), fsync(fd))[1])
    cam.change(topic, "rename-1" if topic == "rename_class" else rid, class_id, name)
    assert cam.status[-1]["status"] == verdict, cam.status[-1]
    assert lab.state.ticket == ticket                 # was ticket + 1: the whole state, at once
    segment = 3 if checkpointed else 2
    records = [unpack(r) for r in lab.state.journal.records(segment)]
    assert [r[0] for r in records] == ([op] if checkpointed else [b"sample", b"ask", b"answer", op])
    # the segment; and its name in the folder, but for a segment whose name was synced with the answer
    assert synced == [str(lab.state.journal.path(segment))] + [str(tmp_path)] * checkpointed, synced
    again = cam.again()
    for part in ("rce", "undo"):
        before, after = getattr(lab, part).state_dict()["arrays"], getattr(again, part).state_dict()["arrays"]
        assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before), part
    assert {r: (a["class_id"], a["class_name"]) for r, a in again._answers.items()} == \
        {r: (a["class_id"], a["class_name"]) for r, a in lab._answers.items()}
    assert again.requests.names == lab.requests.names
    expected = {"changed to a new class": ({2: "bike"}, 2), "changed to a known class": ({}, 0),
                "withdrawn": ({}, None), "class renamed": ({1: "digit seven"}, 1)}[change]
    assert {k: v for k, v in again.requests.names.items() if k > 0} == \
        ({1: "seven", **expected[0]} if change != "class renamed" else expected[0])
    assert [a["class_id"] for a in again._answers.values()] == ([] if expected[1] is None else [expected[1]])
    again.close()
    lab.close()


def test_the_journal_keeps_a_new_class_name_as_taken_and_no_name_for_a_known_class(tmp_path, data_dir):
    """An answer or a change carries a name whether it uses one or not, unchecked when the class is a known one, and a
    new class's name is taken with its white space collapsed. The fsynced record keeps the name as taken: for an
    answer "0" with a megabyte of name, none; for a change to a new class "bike" followed by a megabyte of spaces,
    "bike". Was: the name as the message carried it, a megabyte fsynced each."""
    cam, asked = asked_about_a_seven(tmp_path, data_dir)
    lab = cam.lab
    cam.answer(asked.request_id, 0, "x" * 1_000_000)          # a zero after all: the name is not used
    assert lab.requests.closed[asked.request_id] == "answered"
    cam.change("label_correction", asked.request_id, NEW_CLASS, "bike" + " " * 1_000_000)
    assert cam.status[-1]["status"] == "learned" and cam.status[-1]["class_name"] == "bike", cam.status[-1]
    lab.state.flush()
    records = {unpack(r)[0]: r for r in lab.state.journal.records(2)}
    assert unpack(records[b"answer"])[3] == b"" and len(records[b"answer"]) < 200
    assert unpack(records[b"correct"])[3] == b"bike" and len(records[b"correct"]) < 200
    again = cam.again()
    assert {r: (a["class_id"], a["class_name"]) for r, a in again._answers.items()} == {asked.request_id: (1, "bike")}
    again.close()
    lab.close()


def test_a_checkpoint_by_weight_comes_from_the_timer_and_holds_the_answer_its_record_is_about(tmp_path, data_dir):
    """An answer's record that brings the journal to the last checkpoint's weight: the checkpoint comes from the
    store's timer, after the answer is learned, and holds it. Was: it came from inside the record, before the answer
    was learned, so it lacked it, and it dropped the journal segment that held the record once on disk: a kill -9
    then lost the answer (the question asked again, the new class gone)."""
    cam, asked = asked_about_a_seven(tmp_path, data_dir)
    lab = cam.lab
    lab.state.flush()
    lab.state.checkpoint_bytes = 1                    # the next record by weight is as heavy as the last checkpoint
    lab.state.saved_at -= 2 * cam.params["save_period_s"]
    cam.answer(asked.request_id, NEW_CLASS, "seven")
    assert lab.state.ticket == 1                      # none inside the answer's callback
    assert lab.state.tick() and lab.state.ticket == 2
    lab.state.flush()
    assert asked.request_id in dict(load_states(tmp_path / "labeler.state")["requests"]["meta"]["closed"])
    again = cam.again()
    assert again.requests.closed[asked.request_id] == "answered" and 1 in again.rce.classes
    again.close()
    lab.close()


def test_the_rce_labeler_journals_the_views_a_camera_holds_and_checkpoints_none_by_time(tmp_path, data_dir):
    """A camera moving over views the labeler covers: a view it holds (a repeat came) is one journal record, a view
    it only passes by none, and no checkpoint follows by time. Was: every new view asked for a checkpoint of the
    whole state within ``save_period_s`` (1.4 MB a minute in a soak of camera.launch.py under ROS 2, docs/results.md).
    Once the views journaled weigh as much as the last checkpoint one comes: the journal a restart learns again stays
    short, and the views cost at most twice their records' bytes."""
    X, y = load_mnist("test", data_dir)
    feats = FrozenExtractor(model_path("mnist_0to5_fp32")).extract(X[y == 0][:80])
    cam = CameraLabeler(tmp_path, save_every=10, save_period_s=1.0)
    lab, send, labeled, params = cam.lab, cam.send, cam.labeled, cam.params

    def view_records() -> list[bytes]:
        lab.state.flush()          # a checkpoint in flight removes the segments it holds: landed first
        return [r for r in lab.state.journal.records(1) if unpack(r)[0] == b"view"]

    for f in feats[:20]:                              # 20 zeros with their label: learned, 2 checkpoints
        send(f, 0)
    assert lab.state.ticket == 2
    views = [f for f in feats[20:] if not lab.rce.decide(f).wants_label][:17]   # zeros it covers, not taught
    assert len(views) == 17
    for f in views[:9]:                               # 9 views held 3 frames each: passed on once, then repeats
        for k in range(3):
            send(f + np.float32(1e-3 * k))
    assert [m.label >= 0 for m in labeled[20:]] == [True, False, False] * 9
    for f in views[9:16]:                             # 7 views passed by: not held
        send(f)
    lab.state.saved_at -= 2 * params["save_period_s"]  # the store's timer finds the changes old: none to save
    assert not lab.state.tick() and lab.state.ticket == 2     # was 3: a checkpoint for the new views
    assert len(view_records()) == 9                   # each held view once, as passed on; none passed by
    assert np.array_equal(np.frombuffer(unpack(view_records()[0])[1], "<f4"), views[0])
    lab.state.flush()                                 # the last checkpoint on disk: its size
    size, record = (tmp_path / "labeler.state").stat().st_size, len(view_records()[0])
    need = -(-size // record)                         # held views whose records weigh as much as that checkpoint
    assert need > 20                                  # (not every save_every = 10: 1.4 MB every 5.5 minutes, was)
    rng = np.random.default_rng(0)

    def hold_a_new_view(held: int) -> int:
        """A new covered view (about 1.0 from the others), held for a second frame; the count of views held."""
        v = views[held % 17] + rng.normal(0, 1 / 8, 64).astype(np.float32)
        if lab.rce.decide(v).wants_label:             # one it would ask about (and checkpoint the question)
            return held
        first = len(labeled)
        send(v)
        send(v + np.float32(1e-3))
        lab.state.tick()                              # the store's timer, between the node's callbacks
        return held + ([m.label >= 0 for m in labeled[first:]] == [True, False])

    held = 9
    while lab.state.ticket == 2 and held <= need:
        held = hold_a_new_view(held)
    assert held == need and lab.state.ticket == 3, (held, need, lab.state.ticket)
    # as many again within save_period_s of that checkpoint: none comes sooner than a change's would (a small state's
    # checkpoints, 19 kB here, would come more often than the old one a minute)
    lab.state.every_s = 3600.0
    while held < 2 * need + 5:
        held = hold_a_new_view(held)
    assert lab.state.ticket == 3
    lab.close()


def test_the_tinyndc_labeler_writes_nothing_for_the_frames_its_gate_holds_back(tmp_path, data_dir):
    """A robot parked in front of a 7 (tinyndc.launch.py's labeler, tinycl's gate): the first frame is learned, the
    299 repeats the gate holds back change nothing and write nothing, neither journal records nor
    checkpoints. Was: each was journaled (0.66 MB a minute at 30 frames/s) and counted toward ``save_every`` (a
    checkpoint every 33 s). A labeler started on what the first left (as after kill -9) holds the same clusters and
    head."""
    Xtr, ytr = load_mnist("train", data_dir)
    Xte, _ = load_mnist("test", data_dir)
    extractor = FrozenExtractor(model_path("mnist_0to5_fp32"))
    init = np.concatenate([np.flatnonzero(ytr == c)[:10] for c in range(10)])
    rng = np.random.default_rng(0)               # sensor noise σ 6, as tests/test_parked_camera.py
    frames = extractor.extract(np.clip(Xte[0] + rng.normal(0, 6, (300, 28, 28)), 0, 255).astype(np.uint8))
    alone = {"follow_head": "", "recover_topic": "", "global_topic": ""}
    cam = CameraLabeler(tmp_path, "tinyndc", save_every=100, save_period_s=3600.0, **alone)
    lab = cam.lab
    for f, c in zip(extractor.extract(Xtr[init]), ytr[init]):
        cam.send(f, int(c))
    cam.send(frames[0])           # the clusters start (a checkpoint), and learn the view
    lab.state.flush()             # (a checkpoint in flight removes the journal segments it holds: landed first)
    ticket, records = lab.state.ticket, len(list(lab.state.journal.records(0)))
    for f in frames[1:]:
        cam.send(f)
    passed = [m.label for m in cam.labeled[len(init):]]
    assert len(passed) == 300 and passed[0] >= 0 and passed[1:] == [-1] * 299, passed[:5]
    lab.state.flush()
    assert lab.state.ticket == ticket, (ticket, lab.state.ticket)                   # was 3 more: every 100 frames
    assert len(list(lab.state.journal.records(0))) == records                        # was + 299
    again = cam.again()
    for name in ("clusterer", "head"):
        saved, restored = getattr(lab.system, name).state_dict(), getattr(again.system, name).state_dict()
        assert saved["arrays"].keys() == restored["arrays"].keys()
        assert all(np.array_equal(saved["arrays"][k], restored["arrays"][k]) for k in saved["arrays"]), name
    assert again.system.gate.views.seen(frames[-1], again.system.clusterer.mahalanobis(frames[-1])[0])
    again.close()
    lab.close()
