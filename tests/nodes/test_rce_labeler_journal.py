"""kill -9 of the TinyRCE labeler between two checkpoints loses nothing: the samples it learned from their labels and
a question's group that was forming are in its journal (journal.py), learned again at the restart with the clock and
the request id they had, the questions it asked and a person's answers, publishing nothing twice. Before, it
checkpointed every 10 s and lost what came since (a process on the dds backend, the synthetic features of
test_rce_graph); later it wrote its whole state for each question and answer. A question's picture is journaled once
the question is asked, not while its group forms (most groups expire unasked): a forming group whose picture a kill
lost shows the next sample that joins it."""

from __future__ import annotations

import time

import numpy as np

from tests.nodes.test_rce_graph import MODEL, Probe

from .conftest import matches_made, node, spin_until, wait_for_new_matches


def labeler_params(state_dir, *policy: str) -> tuple[str, ...]:
    """The labeler's parameters: no checkpoint by count or time within a test, so only what it saves at once is."""
    return (f"model:={MODEL}", "preset:=rce", f"state_dir:={state_dir}", "class_names:={0: walking, 1: seated}",
            *policy, "dedupe_distance:=3.0", "wait_for_subscribers:=0", "save_every:=100000", "save_period_s:=3600")


def kill_after(t: Probe, labeler, state_dir, checkpoint: int | None) -> tuple[int, ...]:
    """kill -9 of the labeler, once it has written no checkpoint since ``checkpoint`` (the state file's mtime; None:
    it has written none); the probe's matches before it (``matches_made``)."""
    t.bus.spin_once(0.3)
    path = state_dir / "labeler.state"
    assert (path.stat().st_mtime_ns if path.exists() else None) == checkpoint, "a checkpoint came after the last one"
    seen = matches_made(*t.labeler_ends())
    labeler.proc.kill()
    labeler.proc.wait(10)
    return seen


def teach_two_classes(t: Probe, labeler) -> None:
    """Once the labeler reads the probe: classes 0 and 1 from two labelled samples each."""
    assert t.ready(t.features, t.answers, t.imu), labeler.lines[-10:]
    time.sleep(1.0)
    for i in range(4):
        t.send(i % 2, label=i % 2)


def test_a_rce_labeler_killed_between_checkpoints_loses_nothing_it_learned_or_grouped(domain, tmp_path):
    t = Probe(domain)
    params = labeler_params(tmp_path, "ask_policy:=grouped", "min_group:=2")
    human = lambda: [m for m in t.labeled if m.source == m.HUMAN]  # noqa: E731
    try:
        with node("labeler", domain, *params) as labeler:
            teach_two_classes(t, labeler)
            t.send(2, with_window=True)
            t.send(2)                                    # a group of two: asked (journaled)
            assert spin_until(t.bus, lambda: len(t.requests) == 1, 15), labeler.lines[-10:]
            t.answer(t.requests[0].request_id, -1, "jumping")      # learned, journaled (fsynced)
            assert spin_until(t.bus, lambda: len(human()) == 2, 10), labeler.lines[-10:]
            # then: a class from two labelled samples, and a novel sample whose group waits for a second one
            # (min_group 2), with the picture drawn from its IMU window (kept in memory, not journaled)
            t.send(3, label=3)
            t.send(3, label=3)
            far = t.send(4, with_window=True)
            assert spin_until(t.bus, lambda: len(t.labeled) == 11, 10), labeler.lines[-10:]
            seen = kill_after(t, labeler, tmp_path, None)       # no checkpoint: all of it is in the journal
        with node("labeler", domain, *params) as labeler:
            line = labeler.wait_for_line("TinyRCE labeler:", 30)
            # 4 + 2 labelled samples, the group's 2 samples, its question, picture and answer, and the novel sample
            assert "4 classes" in line and "and its journal (12 messages learned again)" in line, line
            assert "1 answer(s) from before the restart can still be changed (8 samples in the undo log)" in \
                "\n".join(labeler.lines)
            assert len(t.labeled) == 11
            wait_for_new_matches(t.bus, t.labeler_ends(), seen, labeler)
            known = t.send(3)                          # class 3 came from the journal: covered, passed on as 3
            assert spin_until(t.bus, lambda: len(t.labeled) == 12, 10), labeler.lines[-10:]
            assert (t.key(t.labeled[-1].header), t.labeled[-1].label, t.labeled[-1].source) == \
                (known, 3, t.labeled[-1].PSEUDO)
            t.send(4, with_window=True)                # joins the group that was forming: it is asked now
            assert spin_until(t.bus, lambda: len(t.requests) == 2, 15), labeler.lines[-10:]
            req = t.requests[1]
            assert "2 alike samples" in req.reason and t.key(req.features.header) == far, req.reason
            pic = req.picture
            assert (pic.width, pic.height, pic.encoding) == (320, 200, "rgb8")    # the joining sample's plot
            px = np.frombuffer(bytes(pic.data), np.uint8)
            assert px.min() < 128 < px.max()
            t.answer(req.request_id, -1, "running")
            assert spin_until(t.bus, lambda: len(human()) == 4, 10), labeler.lines[-10:]
            assert {(m.label, m.label_name) for m in human()[2:]} == {(4, "running")}
            assert len(t.labeled) == 15, "the replay published again"
        assert labeler.proc.returncode == 0 and "Traceback" not in "\n".join(labeler.lines)
        assert not list(tmp_path.glob("labeler.journal-*")), "the clean stop's checkpoint holds all: no segment is left"
    finally:
        t.bus.shutdown()


def test_a_question_and_its_late_picture_are_journaled_and_shown_after_a_kill(domain, tmp_path):
    """A question asked before its sample's raw window came; the window then comes, is drawn and sent again. The
    question and its picture are journal records, not checkpoints (was: the whole state at once for each question):
    a kill -9 then loses neither, and the question is sent again, picture and all, under the same id."""
    t = Probe(domain)
    params = labeler_params(tmp_path, "ask_policy:=each")
    try:
        with node("labeler", domain, *params) as labeler:
            teach_two_classes(t, labeler)
            far = t.send(4)                              # asked at once, its window not there yet
            assert spin_until(t.bus, lambda: len(t.requests) == 1, 15), labeler.lines[-10:]
            assert t.requests[0].picture.width == 0
            # drawn now: the question is sent again with it (a copy without it may come first: the labeler sends the
            # open questions again to a reader it matched late, as a label app started later)
            drawn = lambda since: [r for r in t.requests[since:] if r.picture.width]  # noqa: E731
            t.window(far)
            assert spin_until(t.bus, lambda: drawn(1), 15), labeler.lines[-10:]
            shown = drawn(1)[0]
            assert shown.picture.width == 320 and shown.request_id == t.requests[0].request_id
            kill_after(t, labeler, tmp_path, None)       # no checkpoint yet: all of it is in the journal
        before = len(t.requests)
        with node("labeler", domain, *params) as labeler:
            line = labeler.wait_for_line("TinyRCE labeler:", 30)
            # the 4 labelled samples, the novel one, its question and its picture
            assert "2 classes" in line and "1 pending label requests and its journal (7 messages learned again)" \
                in line, line
            # the pending question goes to a reader again, with the picture from the journal
            assert spin_until(t.bus, lambda: len(t.requests) > before, 15), labeler.lines[-10:]
            req = t.requests[before]
            assert req.request_id == t.requests[0].request_id and t.key(req.features.header) == far
            assert (req.picture.width, req.picture.height) == (320, 200)
            assert bytes(req.picture.data) == bytes(shown.picture.data)
        assert labeler.proc.returncode == 0 and "Traceback" not in "\n".join(labeler.lines)
    finally:
        t.bus.shutdown()
