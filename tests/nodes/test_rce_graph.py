"""TinyRCE labeler + learner as processes over DDS: a novel sample becomes a label request with a
picture, a person's answer names a new class, and the learner then predicts that class by name.
Bad answers are one error line and change nothing; pending requests survive a restart and expire."""

import importlib
import json
import time
from contextlib import ExitStack, contextmanager
from typing import Iterator

import numpy as np
import pytest

from tests.nodes.conftest import matches_made, node, spin_until, wait_for_new_matches
from tinycl_nodes.bus import create_bus
from tinycl_nodes.extractor import FrozenExtractor, model_path
from tinycl_nodes.interfaces import as_sequence

MODEL = "har_elm"
RNG = np.random.default_rng(1)
CENTERS = RNG.normal(0, 3, (3, 64))      # classes 0, 1 known from labels; 2 is novel
OTHER = np.random.default_rng(7).normal(0, 3, 64)   # send(3): novel too, far from 2
FAR = np.random.default_rng(11).normal(0, 3, 64)    # send(4): novel too, far from all


class Probe:
    """The test's side of the bus: publishes features / IMU windows / answers, collects the rest."""

    def __init__(self, domain: int) -> None:
        self.bus = b = create_bus("tester", backend="dds", dds_config="loopback", domain=domain)
        self.hash = FrozenExtractor(model_path(MODEL)).hash
        self.requests, self.preds, self.labeled, self.status = [], {}, [], []
        self.request_reader = b.create_subscription("label_request", "LabelRequest", self.requests.append, "reliable")
        b.create_subscription("predictions", "Prediction", lambda m: self.preds.__setitem__(self.key(m.header), m),
                              "reliable")
        self.labeled_reader = b.create_subscription("labeled", "LabeledFeatures", self.labeled.append, "reliable")
        self.status_reader = b.create_subscription("label_status", "std_msgs/msg/String",
                                                   lambda m: self.status.append(json.loads(m.data)), "reliable")
        self.features = b.create_publisher("features", "Features", "reliable")
        self.imu = b.create_publisher("imu", "ImuWindow", "reliable")
        self.answers = b.create_publisher("label_answer", "LabelAnswer", "reliable")
        self.stamp = time.time_ns()

    @staticmethod
    def key(header) -> int:
        return header.stamp.sec * 10**9 + header.stamp.nanosec

    def header(self, ns: int):
        Header, Time = self.bus.msg("std_msgs/msg/Header"), self.bus.msg("builtin_interfaces/msg/Time")
        return Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9))

    def ready(self, *pubs) -> bool:
        return spin_until(self.bus, lambda: all(p.get_subscription_count() > 0 for p in pubs), 20)

    def send(self, cls: int, label: int = -1, with_window: bool = False) -> int:
        self.stamp += 1000
        ns = self.stamp
        if with_window:
            self.window(ns)
            self.bus.spin_once(0.2)
        x = ([*CENTERS, OTHER, FAR][cls] + RNG.normal(0, 0.1, 64)).astype(np.float32)
        self.features.publish(self.bus.msg("Features")(header=self.header(ns), data=x, extractor_hash=self.hash,
                                                       sample_id=ns % 10**6, true_label=label, labelled=label >= 0))
        return ns

    def window(self, ns: int) -> None:
        """The IMU window of the sample stamped ``ns`` (what its picture is drawn from)."""
        t = np.linspace(0, 6.28, 50, dtype=np.float32)
        window = np.stack([np.sin(t * (k + 1)) for k in range(6)], 1)   # samples x channels
        self.imu.publish(self.bus.msg("ImuWindow")(header=self.header(ns), data=window.ravel(), n_channels=6,
                                                   rate_hz=51.0, channel_names=["ax", "ay", "az", "gx", "gy", "gz"]))

    def labeler_ends(self) -> tuple:
        """Every topic between the probe and the labeler, both ways (``matches_made``: a labeler started again after
        kill -9 has matched all of them once their counts have grown)."""
        return (self.features, self.imu, self.answers, self.request_reader, self.labeled_reader, self.status_reader)

    def answer(self, request_id: str, class_id: int = -1, name: str = "") -> None:
        self.answers.publish(self.bus.msg("LabelAnswer")(header=self.header(time.time_ns()), request_id=request_id,
                                                         class_id=class_id, new_class_name=name, answered_by="test"))


def test_novel_sample_asked_answered_and_learned_by_name(domain, tmp_path):
    t = Probe(domain)
    common = (f"model:={MODEL}", "preset:=rce")
    try:
        with node("learner", domain, *common, "publish_every:=1") as learner, \
                node("labeler", domain, *common, f"state_dir:={tmp_path}", "class_names:={0: walking, 1: seated}",
                     "ask_policy:=each", "dedupe_distance:=3.0") as labeler:
            assert t.ready(t.features, t.answers, t.imu), labeler.lines[-10:]
            time.sleep(1.0)   # the labeler's reader of labeled (learner) matched: it spins
            for i in range(6):
                t.send(i % 2, label=i % 2)
            assert spin_until(t.bus, lambda: len(t.preds) == 6, 20), (labeler.lines[-10:], learner.lines[-10:])
            known = t.send(0)
            assert spin_until(t.bus, lambda: known in t.preds, 10)
            assert t.preds[known].class_name == "walking" and not t.requests   # covered: no question

            novel = t.send(2, with_window=True)
            assert spin_until(t.bus, lambda: len(t.requests) == 1, 15), labeler.lines[-10:]
            req = t.requests[0]
            assert req.reason == "I haven't seen anything like this"
            assert [(c.id, c.name) for c in req.candidates] in ([(0, "walking"), (1, "seated")],
                                                                  [(1, "seated"), (0, "walking")])
            pic = req.picture
            assert (pic.width, pic.height, pic.encoding, pic.step) == (320, 200, "rgb8", 960)
            px = np.frombuffer(bytes(pic.data), np.uint8)
            assert px.size == 320 * 200 * 3 and px.min() < 128 < px.max()          # something is drawn
            assert t.key(req.features.header) == novel and len(req.features.data) == 64
            assert spin_until(t.bus, lambda: novel in t.preds, 10)               # predicted, not learned
            dup = t.send(2)                                  # the same thing again: joins the request
            assert spin_until(t.bus, lambda: dup in t.preds, 10)
            t.bus.spin_once(0.3)
            assert len(t.requests) == 1
            assert t.preds[dup].class_name in ("walking", "seated")            # the learner cannot know it yet

            # bad answers: one error line each, nothing learned, the request still open
            n_labeled = len(t.labeled)
            for args, text in [(("no-such-id", 0), "unknown label request id"),
                               ((req.request_id, 7), "unknown class id 7"),
                               ((req.request_id, -1, "  "), "class name is empty"),
                               ((req.request_id, -1, "x" * 65), "at most 64")]:
                t.answer(*args)
                line = labeler.wait_for_line(text, 10)
                assert "ERROR" in line
            assert spin_until(t.bus, lambda: sum(s["status"] == "refused" for s in t.status) == 4, 10), t.status
            assert len(t.labeled) == n_labeled and "Traceback" not in "\n".join(labeler.lines)

            t.answer(req.request_id, -1, "jumping")
            # both held samples (the one asked about and its duplicate) go to the learner as HUMAN
            human = lambda: [m for m in t.labeled if m.source == m.HUMAN]  # noqa: E731
            assert spin_until(t.bus, lambda: len(human()) == 2, 10), labeler.lines[-10:]
            assert {(m.label, m.label_name) for m in human()} == {(2, "jumping")}
            assert spin_until(t.bus, lambda: any(s["status"] == "learned" for s in t.status), 10)
            nxt = t.send(2)
            assert spin_until(t.bus, lambda: nxt in t.preds, 10), learner.lines[-10:]
            assert (t.preds[nxt].class_id, t.preds[nxt].class_name) == (2, "jumping")
            # the same name again later maps to the same class; answering twice is refused
            t.answer(req.request_id, -1, "jumping")
            assert "already answered" in labeler.wait_for_line("already answered", 10)
            t.answer(req.request_id, -2)                      # "skip" of a question no longer open
            assert spin_until(t.bus, lambda: sum(s["status"] == "refused" for s in t.status) == 6, 10), t.status
            # the phone shows the labeler's reason as is: words, never the raw request id (the log keeps it)
            refused = [s for s in t.status if s["status"] == "refused"]
            assert [s["message"] for s in refused if s["request_id"] in s["message"]] == []
            assert req.request_id in labeler.wait_for_line("already answered", 10)
            assert learner.proc.poll() is None and labeler.proc.poll() is None
        assert labeler.proc.returncode == 0 and learner.proc.returncode == 0
    finally:
        t.bus.shutdown()


def test_a_question_offers_the_classes_known_when_it_is_asked(domain, tmp_path):
    """A question whose group began before a person taught a new class offers it as one tap (the buttons were those
    of the group's first sample, so the person had to type "jumping" again)."""
    t = Probe(domain)
    common = (f"model:={MODEL}", "preset:=rce")
    try:
        with node("learner", domain, *common, "publish_every:=1") as learner, \
                node("labeler", domain, *common, f"state_dir:={tmp_path}", "class_names:={0: walking, 1: seated}",
                     "ask_policy:=grouped", "min_group:=1", "max_open:=1", "dedupe_distance:=3.0") as labeler:
            assert t.ready(t.features, t.answers), labeler.lines[-10:]
            time.sleep(1.0)
            for i in range(6):
                t.send(i % 2, label=i % 2)
            assert spin_until(t.bus, lambda: len(t.preds) == 6, 20), (labeler.lines[-10:], learner.lines[-10:])
            t.send(2)
            assert spin_until(t.bus, lambda: len(t.requests) == 1, 15), labeler.lines[-10:]
            t.send(3)                                    # another novel thing: its question waits (max_open 1)
            t.bus.spin_once(1.0)
            assert len(t.requests) == 1
            t.answer(t.requests[0].request_id, -1, "jumping")
            assert spin_until(t.bus, lambda: len(t.requests) == 2, 15), labeler.lines[-10:]
            assert (2, "jumping") in [(c.id, c.name) for c in t.requests[1].candidates], t.requests[1].candidates
        assert labeler.proc.returncode == 0 and learner.proc.returncode == 0
    finally:
        t.bus.shutdown()


def test_a_rename_sends_the_open_questions_again_with_the_new_name(domain, tmp_path):
    """A question open when a class is renamed: its reason ("This looks like both 4 and 9") and its buttons carry the
    names of when it was sent. The phone trial renamed a class under an open question; the page renames the buttons
    from the class list, but the reason is the labeler's words: it sends the question again, in the new name."""
    t = Probe(domain)
    renames = t.bus.create_publisher("rename_class", "LabelAnswer", "reliable")
    common = (f"model:={MODEL}", "preset:=rce")
    try:
        with node("labeler", domain, *common, f"state_dir:={tmp_path}", "class_names:={0: walking, 1: seated}",
                  "ask_policy:=each", "wait_for_subscribers:=0") as labeler:
            assert t.ready(t.features, t.answers, renames), labeler.lines[-10:]
            time.sleep(1.0)
            for i in range(4):
                t.send(i % 2, label=i % 2)
            t.send(2)
            assert spin_until(t.bus, lambda: len(t.requests) >= 1, 15), labeler.lines[-10:]
            asked = t.requests[0]
            assert (1, "seated") in [(c.id, c.name) for c in asked.candidates], asked.candidates
            renames.publish(t.bus.msg("LabelAnswer")(request_id="rename-1", class_id=1, new_class_name="sitting",
                                                      answered_by="phone"))
            # not "the next request": the open questions go again to a reader matched late, in the old names (a
            # fresh clone's make test once had that second copy before the rename)
            def renamed() -> list:
                return [r for r in t.requests if (1, "sitting") in [(c.id, c.name) for c in r.candidates]]
            assert spin_until(t.bus, renamed, 10), ([r.candidates for r in t.requests], labeler.lines[-10:])
            assert {r.request_id for r in renamed()} == {asked.request_id}
        assert labeler.proc.returncode == 0
    finally:
        t.bus.shutdown()


@pytest.mark.parametrize("max_open", [1, 2])
def test_a_question_gives_the_reason_and_buttons_of_now(domain, tmp_path, max_open):
    """A robot that starts knowing nothing (the imu graph): a question whose group began then said "I haven't learned
    anything yet", without buttons, after a person had taught a class (the phone trial saw it 10 minutes after five
    classes were learned): asked once the class was taught (max_open 1: it waited), and asked before, still open
    (max_open 2: it is sent again with the new class's button)."""
    t = Probe(domain)
    common = (f"model:={MODEL}", "preset:=rce")
    try:
        with node("learner", domain, *common, "publish_every:=1") as learner, \
                node("labeler", domain, *common, f"state_dir:={tmp_path}", "ask_policy:=grouped", "min_group:=1",
                     f"max_open:={max_open}", "dedupe_distance:=3.0") as labeler:
            assert t.ready(t.features, t.answers), labeler.lines[-10:]
            time.sleep(1.0)
            t.send(2)
            assert spin_until(t.bus, lambda: len(t.requests) == 1, 15), labeler.lines[-10:]
            first = t.requests[0]
            assert first.reason.startswith("I haven't learned anything yet")    # (no picture: no window sent)
            t.send(3)                                    # its group begins now, before any class
            if max_open == 2:                            # asked at once, before any class: no buttons
                assert spin_until(t.bus, lambda: len(t.requests) == 2, 15), labeler.lines[-10:]
                assert not t.requests[1].candidates and t.requests[1].reason.startswith("I haven't learned")
            t.bus.spin_once(1.0)
            t.answer(first.request_id, -1, "jumping")
            latest = lambda: [r for r in t.requests if r.request_id != first.request_id][-1:]  # noqa: E731
            assert spin_until(t.bus, lambda: latest() and latest()[0].candidates, 15), labeler.lines[-10:]
            second = latest()[0]
            assert second.reason.startswith("I haven't seen anything like this"), second.reason
            assert [(c.id, c.name) for c in second.candidates] == [(0, "jumping")]
        assert labeler.proc.returncode == 0 and learner.proc.returncode == 0
        if max_open == 1:        # asked after the class: its log line gives the reason sent, not its group's first
            said = [line for line in labeler.lines if f"label request {second.request_id}:" in line]
            assert said and "I haven't seen anything like this (" in said[0], said
    finally:
        t.bus.shutdown()


def test_group_asked_once_answer_labels_it_and_a_withdrawal_takes_it_back(domain, tmp_path):
    """The grouped policy: three alike novel samples are one question (no request before the group
    is big enough); one answer labels all three (HUMAN) and the learner predicts the new class; a
    person withdraws the answer — after the labeler was killed (-9) and restarted: the undo log is
    in its state — the labeler replays its RCE without it, the learner unlearns the samples (NCM
    subtracts exactly): its head loses the class and it predicts a known class again. A class
    renamed by a person (rename_class) is predicted under its new name."""
    t = Probe(domain)
    c = Corrector(t)
    common = (f"model:={MODEL}", "preset:=rce")
    labeler_params = (*common, f"state_dir:={tmp_path / 'r'}", "class_names:={0: walking, 1: seated}",
                      "min_group:=3", "dedupe_distance:=3.0")
    try:
        with node("learner", domain, *common, "publish_every:=1", f"state_dir:={tmp_path / 'l'}") as learner:
            with node("labeler", domain, *labeler_params) as labeler:
                req = _ask_and_answer_a_group(t, c, labeler, learner)
                seen = matches_made(*c.labeler_ends())
                labeler.proc.kill()                                   # kill -9 after the answer was learned
                labeler.proc.wait(10)
            with node("labeler", domain, *labeler_params) as labeler:
                assert "1 answer(s) from before the restart can still be changed" in \
                    labeler.wait_for_line("from before the restart", 20)
                wait_for_new_matches(t.bus, c.labeler_ends(), seen, labeler)
                time.sleep(1.0)   # and its unlearn writer the learner's reader (not seen from here)
                _withdraw_and_rename(t, c, labeler, learner, req)
        assert "Traceback" not in "\n".join(labeler.lines + learner.lines)
    finally:
        t.bus.shutdown()


@pytest.mark.parametrize("killed", [False, True], ids=["running", "after-kill-9"])
def test_a_withdrawn_answer_takes_back_the_pseudo_labels_its_prototypes_gave(domain, tmp_path, killed):
    """After a person's answer the RCE labels alike samples itself (covered: pseudo-labels, learned downstream). When
    the answer is withdrawn, those go too: the labeler re-decides what it passed on lately and tells the learner to
    take back each that is now unknown, so its head loses the class. (Until 2026-12-04 only the answered samples were
    taken back: the learner kept "jumping" from the four pseudo-labels and still predicted it.) ``killed``: the
    labeler is killed (-9) after passing them on, before any checkpoint holds them: its journal has them (before
    2026-12-04 it had not, and only the 3 answered samples were taken back)."""
    t = Probe(domain)
    c = Corrector(t)
    common = (f"model:={MODEL}", "preset:=rce")
    labeler_params = (*common, f"state_dir:={tmp_path / 'r'}", "min_group:=3", "class_names:={0: walking, 1: seated}",
                      "dedupe_distance:=3.0", "save_period_s:=3600")
    try:
        with node("learner", domain, *common, "publish_every:=1", f"state_dir:={tmp_path / 'l'}") as learner, \
                ExitStack() as labelers:
            labeler = labelers.enter_context(node("labeler", domain, *labeler_params))
            req = _ask_and_answer_a_group(t, c, labeler, learner)
            covered = [t.send(2) for _ in range(4)]            # labelled by the answer's prototypes
            assert spin_until(t.bus, lambda: all(k in t.preds for k in covered), 10), learner.lines[-10:]
            pseudo = [m for m in t.labeled if t.key(m.features.header) in covered]
            assert [(m.source, m.label) for m in pseudo] == [(0, 2)] * 4, pseudo       # PSEUDO
            assert spin_until(t.bus, lambda: t.preds[covered[-1]].class_name == "jumping", 5)
            if killed:
                assert not (tmp_path / "r" / "labeler.state").exists()   # the answer too is a journal record
                seen = matches_made(*c.labeler_ends())
                labeler.proc.kill()
                labeler.proc.wait(10)
                labeler = labelers.enter_context(node("labeler", domain, *labeler_params))
                line = labeler.wait_for_line("TinyRCE labeler:", 30)
                # all of it from the journal: 6 labelled samples, the group's 3 samples, its question, the answer and
                # the 4 pseudo-labels the answer's prototypes gave (before 2026-12-05, 4: the answer was a checkpoint)
                assert "journal (15 messages learned again)" in line, line
                wait_for_new_matches(t.bus, c.labeler_ends(), seen, labeler)
                time.sleep(1.0)   # and its unlearn writer the learner's reader (not seen from here)
            c.withdraw(req.request_id)
            assert spin_until(t.bus, lambda: len(c.unlearned) == 7, 10), (len(c.unlearned), labeler.lines[-5:])
            back = [m for m in c.unlearned if m.source == m.PSEUDO]
            assert sorted(t.key(m.features.header) for m in back) == covered and {m.label for m in back} == {2}
            assert "3 sample(s) taken back from class 2, and 4 pseudo-label(s) it had given" in \
                labeler.wait_for_line("taken back from class 2", 10)
            assert spin_until(t.bus, lambda: c.heads and 2 not in c.class_ids(), 10), c.names()
            again = t.send(2)
            assert spin_until(t.bus, lambda: again in t.preds, 10)
            assert t.preds[again].class_name in ("walking", "seated")
        assert "Traceback" not in "\n".join(labeler.lines + learner.lines)
    finally:
        t.bus.shutdown()


def test_a_parked_cameras_one_view_is_passed_on_to_be_learned_once(domain, tmp_path):
    """A robot parked in front of something it knows: every frame is predicted, one is learned (its learner, a
    nearest class mean, lost 3.4 points of MNIST after 100 s of one view learned 3,000 times)."""
    t = Probe(domain)
    common = (f"model:={MODEL}", "preset:=rce")
    try:
        with node("learner", domain, *common, "publish_every:=1") as learner, \
                node("labeler", domain, *common, f"state_dir:={tmp_path}", "class_names:={0: walking, 1: seated}") \
                as labeler:
            assert t.ready(t.features), labeler.lines[-10:]
            time.sleep(1.0)
            for i in range(6):
                t.send(i % 2, label=i % 2)
            assert spin_until(t.bus, lambda: len(t.preds) == 6, 20), (labeler.lines[-10:], learner.lines[-10:])
            view = (CENTERS[0] + RNG.normal(0, 0.5, 64)).astype(np.float32)   # covered by class 0, not a labelled one
            sent = []
            for _ in range(40):                     # sensor noise: 0.04 apart, as a still camera's frames (< 0.12)
                t.stamp += 1000
                sent.append(t.stamp)
                x = (view + RNG.normal(0, 0.005, 64)).astype(np.float32)
                t.features.publish(t.bus.msg("Features")(header=t.header(t.stamp), data=x, extractor_hash=t.hash,
                                                         sample_id=t.stamp % 10**6, true_label=-1, labelled=False))
            assert spin_until(t.bus, lambda: all(k in t.preds for k in sent), 20), labeler.lines[-10:]
            assert {t.preds[k].class_name for k in sent} == {"walking"}            # every frame predicted
            passed = {t.key(m.features.header): m.label for m in t.labeled if t.key(m.features.header) in sent}
            assert len(passed) == 40 and [passed[k] for k in sent] == [0] + [-1] * 39, passed
            line = labeler.wait_for_line("pseudo-labels not learned", 10)
            assert "a repeat of a view just learned (the camera stays on one view)" in line
            elsewhere = t.send(1)                   # the camera looks elsewhere: passed on to be learned again
            assert spin_until(t.bus, lambda: any(t.key(m.features.header) == elsewhere and m.label == 1
                                                 for m in t.labeled), 10)
        assert "Traceback" not in "\n".join(labeler.lines + learner.lines)
    finally:
        t.bus.shutdown()


class Corrector:
    """The phone's corrections on the probe's bus (changed or withdrawn answers, renames), with what the learner is
    then told to take back and the heads it publishes."""

    def __init__(self, t: Probe) -> None:
        self.t, b = t, t.bus
        self.corrections = b.create_publisher("label_correction", "LabelAnswer", "reliable")
        self.renames = b.create_publisher("rename_class", "LabelAnswer", "reliable")
        self.unlearned: list = []
        self.heads: list = []
        self.unlearn_reader = b.create_subscription("unlearn", "LabeledFeatures", self.unlearned.append, "reliable")
        b.create_subscription("head", "Head", self.heads.append, "latched")

    def labeler_ends(self) -> tuple:
        """The probe's ``labeler_ends`` and the corrector's."""
        return (*self.t.labeler_ends(), self.corrections, self.renames, self.unlearn_reader)

    def names(self) -> set[tuple[int, str]]:
        return {(c.id, c.name) for c in self.heads[-1].classes} if self.heads else set()

    def class_ids(self) -> set[int]:
        return {i for i, _ in self.names()}

    def withdraw(self, request_id: str) -> None:
        self.corrections.publish(self.t.bus.msg("LabelAnswer")(header=self.t.header(time.time_ns()),
                                                               request_id=request_id, class_id=-2, new_class_name="",
                                                               answered_by="test"))

    def rename(self, rid: str, class_id: int, name: str) -> None:
        self.renames.publish(self.t.bus.msg("LabelAnswer")(header=self.t.header(time.time_ns()), request_id=rid,
                                                           class_id=class_id, new_class_name=name, answered_by="test"))


def _ask_and_answer_a_group(t: Probe, c: Corrector, labeler, learner):
    """Known classes 0, 1 from labels; three alike novel samples asked once, answered "jumping"."""
    assert t.ready(t.features, t.answers, c.corrections, c.renames), labeler.lines[-10:]
    time.sleep(1.0)
    for i in range(6):
        t.send(i % 2, label=i % 2)
    assert spin_until(t.bus, lambda: len(t.preds) == 6, 20), (labeler.lines[-10:], learner.lines[-10:])
    first = t.send(2)
    t.bus.spin_once(0.5)
    assert not t.requests                                     # a group of one: not asked yet
    t.send(2)
    t.send(2)
    assert spin_until(t.bus, lambda: len(t.requests) == 1, 15), labeler.lines[-10:]
    req = t.requests[0]
    assert "3 alike samples so far" in req.reason and t.key(req.features.header) == first
    t.answer(req.request_id, -1, "jumping")
    human = lambda: [m for m in t.labeled if m.source == m.HUMAN]  # noqa: E731
    assert spin_until(t.bus, lambda: len(human()) == 3, 10), labeler.lines[-10:]
    assert {(m.label, m.label_name) for m in human()} == {(2, "jumping")}
    assert spin_until(t.bus, lambda: any(s["status"] == "learned" for s in t.status), 10)
    assert spin_until(t.bus, lambda: (2, "jumping") in c.names(), 10), c.names()
    return req


def _withdraw_and_rename(t: Probe, c: Corrector, labeler, learner, req):
    c.withdraw(req.request_id)
    assert spin_until(t.bus, lambda: any(s["status"] == "withdrawn" for s in t.status), 10), \
        labeler.lines[-10:]
    assert spin_until(t.bus, lambda: len(c.unlearned) == 3, 10), labeler.lines[-10:]
    assert {m.label for m in c.unlearned} == {2}
    assert spin_until(t.bus, lambda: c.heads and 2 not in c.class_ids(), 10), c.names()
    again = t.send(2)                     # novel again for the labeler: predicted, not learned
    assert spin_until(t.bus, lambda: again in t.preds, 10), learner.lines[-10:]
    assert t.preds[again].class_name in ("walking", "seated")          # "jumping" is gone
    assert len(t.requests) == 1
    # a person renames a class: the labeler checks the name (one rule), says its verdict, and the learner follows
    rename = c.rename
    verdict = lambda rid: next((s for s in t.status if s["request_id"] == rid), None)  # noqa: E731
    rename("rename-1", 0, "seated")                                     # taken by class 1: refused
    assert "ERROR" in labeler.wait_for_line("class 1 has that name", 10)
    assert spin_until(t.bus, lambda: verdict("rename-1"), 10)
    assert verdict("rename-1")["status"] == "refused" and "class 1 has that name" in verdict("rename-1")["message"]
    rename("rename-2", 0, "  strolling ")
    labeler.wait_for_line("class 0 renamed 'strolling'", 10)
    assert spin_until(t.bus, lambda: verdict("rename-2"), 10)
    assert (verdict("rename-2")["status"], verdict("rename-2")["class_name"]) == ("renamed", "strolling")
    time.sleep(0.5)
    walk = t.send(0)
    assert spin_until(t.bus, lambda: walk in t.preds, 10), learner.lines[-10:]
    assert t.preds[walk].class_name == "strolling"
    assert learner.proc.poll() is None and labeler.proc.poll() is None


@contextmanager
def _labeler_showing(t: Probe, domain: int, tmp_path, frames, transport: str = "raw") -> Iterator:
    """A TinyRCE labeler that asks about each novel sample and reads the camera's ``frames`` reliably (each counts)
    on ``transport``, with classes 0 and 1 learned from labels."""
    with node("labeler", domain, f"model:={MODEL}", "preset:=rce", f"state_dir:={tmp_path}",
              "ask_policy:=each", "image_qos:=reliable", f"image_transport:={transport}") as labeler:
        assert t.ready(t.features, frames), labeler.lines[-10:]
        time.sleep(1.0)
        for i in range(4):
            t.send(i % 2, label=i % 2)
        yield labeler


@pytest.mark.parametrize("transport", ["compressed", "raw"])
def test_a_1280x720_camera_frame_is_the_requests_picture(domain, tmp_path, transport):
    """A 1280x720 camera on ``image/compressed`` (sensor_msgs/CompressedImage, a real JPEG made by libjpeg) or on
    ``image`` (raw bgr8, 2.8 MB, as OpenCV and many drivers send it): the label request carries that frame as the
    picture (640 wide, the same pixels up to JPEG loss), and the label app's file of it (JPEG) decodes to the same
    picture up to JPEG loss. (A raw frame over 1 MB was not kept at all: its questions came without a picture.)"""
    import cv2

    from tinycl_nodes.images import picture_file, picture_type

    t = Probe(domain)
    yy, xx = np.mgrid[0:720, 0:1280]
    frame = np.stack([(xx * 255 // 1279), (yy * 255 // 719), np.full_like(xx, 64)], 2).astype(np.uint8)
    cv2.circle(frame, (640, 360), 200, (250, 250, 250), -1)
    if transport == "compressed":
        frames = t.bus.create_publisher("image/compressed", "sensor_msgs/msg/CompressedImage", "reliable")
        jpeg = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        frame_msg = lambda ns: t.bus.msg("sensor_msgs/msg/CompressedImage")(  # noqa: E731
            header=t.header(ns), format="jpeg", data=jpeg)
    else:
        frames = t.bus.create_publisher("image", "sensor_msgs/msg/Image", "reliable")
        frame_msg = lambda ns: t.bus.msg("sensor_msgs/msg/Image")(  # noqa: E731
            header=t.header(ns), height=720, width=1280, encoding="bgr8", is_bigendian=0, step=1280 * 3,
            data=as_sequence(np.ascontiguousarray(frame[:, :, ::-1]), "B"))
    try:
        with _labeler_showing(t, domain, tmp_path, frames, transport) as labeler:
            ns = t.stamp + 1000
            frames.publish(frame_msg(ns))
            t.bus.spin_once(0.2)
            assert t.send(2) == ns
            assert spin_until(t.bus, lambda: t.requests, 15), labeler.lines[-10:]
            pic = t.requests[-1].picture
            assert (pic.width, pic.height, pic.encoding) == (640, 360, "rgb8"), labeler.lines[-10:]
            got = np.frombuffer(bytes(pic.data), np.uint8).reshape(360, 640, 3).astype(int)
            want = cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA).astype(int)
            assert np.abs(got - want).mean() < 4, np.abs(got - want).mean()
            assert "no picture" not in t.requests[-1].reason
            shown = picture_file(pic)                     # a camera frame: JPEG, a tenth of its PNG
            assert picture_type(shown) == "image/jpeg"
            phone = np.asarray(cv2.imdecode(np.frombuffer(shown, np.uint8), cv2.IMREAD_COLOR))[:, :, ::-1]
            assert np.abs(phone.astype(int) - got).mean() < 2
        assert "Traceback" not in "\n".join(labeler.lines)
    finally:
        t.bus.shutdown()


def test_a_frame_whose_features_come_late_is_still_the_requests_picture(domain, tmp_path):
    """A slow backbone (a robot's CPU: 3 frames/s) sends a frame's features after 30 more 640x480 frames have come, past
    the raw frames the labeler holds (eight, 8 MB): the question still shows that frame (kept as its picture, JPEG).
    It used to come without one ("no picture could be kept"), measured with a 350 ms backbone under tinycl launch."""
    from tests.nodes.test_camera_extractor import camera_frame
    from tinycl_nodes.datasets import load_mnist

    t = Probe(domain)
    frames = t.bus.create_publisher("image", "sensor_msgs/msg/Image", "reliable")
    X, _ = load_mnist("test")
    shown = [camera_frame(X[k]) for k in range(31)]                       # 480x640 rgb8, 921,600 bytes each
    try:
        with _labeler_showing(t, domain, tmp_path, frames) as labeler:
            first = t.stamp + 1000
            for k, rgb in enumerate(shown):
                frames.publish(t.bus.msg("sensor_msgs/msg/Image")(
                    header=t.header(first + k), height=480, width=640, encoding="rgb8", is_bigendian=0, step=1920,
                    data=as_sequence(rgb, "B")))
            t.bus.spin_once(1.0)
            t.stamp = first - 1000
            assert t.send(2) == first                                        # the first frame's features, last
            assert spin_until(t.bus, lambda: t.requests, 15), labeler.lines[-10:]
            pic = t.requests[-1].picture
            assert (pic.width, pic.height) == (640, 480) and "no picture" not in t.requests[-1].reason, \
                (pic.width, pic.height, t.requests[-1].reason)
            got = np.frombuffer(bytes(pic.data), np.uint8).reshape(480, 640, 3).astype(int)
            assert np.abs(got - shown[0]).mean() < 4, np.abs(got - shown[0]).mean()      # that frame, up to JPEG loss
        assert "Traceback" not in "\n".join(labeler.lines)
    finally:
        t.bus.shutdown()


def test_pending_requests_survive_restart_then_expire(domain, tmp_path):
    t = Probe(domain)
    common = (f"model:={MODEL}", "preset:=rce", f"state_dir:={tmp_path}", "ask_policy:=each")
    try:
        with node("labeler", domain, *common) as labeler:
            assert t.ready(t.features, t.answers), labeler.lines[-10:]
            for i in range(4):
                t.send(i % 2, label=i % 2)
            t.send(2, with_window=True)
            assert spin_until(t.bus, lambda: len(t.requests) == 1, 15), labeler.lines[-10:]
            t.send(2)                                 # no raw window ever comes: the request says so
            other = lambda: [r for r in t.requests if r.request_id != t.requests[0].request_id]  # noqa: E731
            assert spin_until(t.bus, lambda: other(), 15), labeler.lines[-10:]
            assert other()[0].picture.width == 0 and "no picture could be kept" in other()[0].reason
        assert labeler.proc.returncode == 0
        rid = t.requests[0].request_id
        t.requests.clear()
        with node("labeler", domain, *common) as again:
            again.wait_for_line("2 pending label requests")
            # a new reader of label_request (here: after the restart) gets the pending ones again
            back = {}
            assert spin_until(t.bus, lambda: len(back.update({r.request_id: r for r in t.requests}) or back) == 2,
                              15), again.lines[-10:]
            assert back[rid].picture.encoding == "rgb8" and back[rid].picture.width == 320
        with node("labeler", domain, *common, "request_ttl_s:=1.0") as late:
            assert spin_until(t.bus, lambda: any(s["status"] == "expired" and s["request_id"] == rid
                                                 for s in t.status), 15), late.lines[-10:]
            assert t.ready(t.answers)
            t.answer(rid, 0)
            assert "ERROR" in late.wait_for_line("has expired", 10)
            assert not [m for m in t.labeled if m.source == m.HUMAN]
    finally:
        t.bus.shutdown()


def test_tinyrce_config_and_launch_name_every_node():
    """Every node of the tinyrce graph (the one list both `tinycl launch` and the ROS 2 launch file
    start) accepts config/tinyrce.yaml, and every one has a ROS 2 executable."""
    from tinycl_nodes.graphs import GRAPHS
    from tinycl_nodes.launcher import CONFIG_DIR
    from tinycl_nodes.nodes.runner import collect_parameters, parse_ros_args, validate

    classes = {"sensor": "Sensor", "extractor": "Extractor", "labeler": "Labeler", "learner": "Learner",
               "exporter": "Exporter", "label_app": "LabelApp", "metrics": "Metrics"}
    assert sorted(GRAPHS["tinyrce"]) == sorted(classes)
    for name in GRAPHS["tinyrce"]:
        cls = getattr(importlib.import_module(f"tinycl_nodes.nodes.{name}"), classes[name])
        ros = parse_ros_args(["--ros-args", "--params-file", str(CONFIG_DIR / "tinyrce.yaml")], name)
        params = validate(cls.Params, collect_parameters(cls.Params, ros), name)
        if name in ("labeler", "learner"):
            assert params.preset == "rce"
        assert (CONFIG_DIR.parent / "scripts" / name).is_file()
    assert 'launch_description("tinyrce"' in (CONFIG_DIR.parent / "launch" / "tinyrce.launch.py").read_text()