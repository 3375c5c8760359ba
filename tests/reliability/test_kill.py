"""kill -9 of a learning node mid-stream: the learner, the labeler and the board node (the C core in the learner's
place) restart from their last checkpoint and learn their journal again (journal.py: at most the one message being
handled is lost); the labeler's head replica follows the learner's head again, and the graph ends within 0.5 points
(held-out accuracy) of an uninterrupted run."""

from __future__ import annotations

import re
from contextlib import ExitStack

import pytest

from .conftest import Graph, accuracy, held_out, reference_head, saved_head

pytestmark = pytest.mark.timed                # samples lost at a fixed stream rate: apart from the rest in `make test`

STREAM, RATE, KILL_AT = 2000, 300.0, 1000     # kill after ~1,000 samples (~3 s into a ~7 s stream)


@pytest.mark.parametrize("victim", ["learner", "labeler", "board"])
def test_kill9_mid_stream_loses_nothing_journaled(victim, domain, tmp_path,
                                                                           mnist_features):
    # the board (the C core in the learner's place) learns CWR* as the tinyndc preset does
    learner, preset = ("board", "tinyndc") if victim == "board" else ("learner", "tinycl")
    with ExitStack() as stack:
        g = Graph(stack, domain, tmp_path, STREAM, RATE, preset, learner)
        g.start_all()
        # what the victim has handled: the labeler one LabeledFeatures per sample, the learner / board one prediction
        # per sample (seen here a moment later); a board that builds libtinycl.so at its start handles none for a
        # while (its reader keeps them): the kill waits for what it handled, not for what was sent to it
        handled = (lambda: g.labeled) if victim == "labeler" else (lambda: g.learned)
        assert g.spin_until(lambda: handled() >= KILL_AT, 90), f"only {handled()} samples handled"
        at_kill = handled()
        version_at_kill = max(g.head_versions, default=0)
        again = g.kill9_and_restart(victim)
        # (the labeler's head replica and the learner's head are equal again once the journal is learned: the
        # replica takes the learner's head only if they are not)
        if victim == "labeler":
            line = again.wait_for_line("restored state (", 60)
            restored = int(re.search(r"\((\d+) samples", line).group(1))
        else:
            line = again.wait_for_line("restored head (" if victim == "learner" else "restored C head (", 60)
            restored = int(re.search(r"(\d+) samples", line).group(1))
            version = int(re.search(r"head version (\d+)", line).group(1))
            assert version >= version_at_kill, line       # head versions survive the kill: never reused
        lost = at_kill - restored
        print(f"kill -9 {victim} after {at_kill} samples learned: restored {restored}, lost {lost}")
        # journaled: a message is recorded once handled, after what it sent (seen here): that one may be lost
        assert lost <= 1 and "and its journal (" in line, line
        g.finish()
        after = g.head_versions[g.head_versions.index(version_at_kill) + 1:] if version_at_kill else g.head_versions
        assert after == sorted(set(after)) and all(v > version_at_kill for v in after), (version_at_kill, after)
        assert not any("Traceback" in ln for p in g.procs.values() for ln in p.lines)
        # a callback that raised is one "dropped" line: none here (the labeler's resume timer once did)
        assert not any("timer: dropped" in ln or "dropped: AttributeError" in ln
                       for p in g.procs.values() for ln in p.lines)
    X, y = held_out(mnist_features, STREAM)
    n, h = mnist_features.n_features, mnist_features.extractor_hash
    ref = accuracy(reference_head(mnist_features, preset, STREAM), X, y)
    got = accuracy(saved_head(tmp_path, preset, n, h, learner), X, y)
    print(f"held-out accuracy: uninterrupted {ref:.2f} %, killed {victim} {got:.2f} % ({got - ref:+.2f} pt)")
    assert abs(got - ref) <= 0.5


def test_labeler_that_lost_its_state_recovers_the_labelled_samples(domain, tmp_path, mnist_features):
    """kill -9 of the labeler and its state file deleted: the restarted labeler sets its journal aside (its base is
    gone, one line) and has no labelled sample of its own; it gets the learner's kept ones (latched ``labelled_init``), says so in one line,
    and labelling goes on — the graph still ends within 0.5 points of an uninterrupted run."""
    stream, rate, kill_at = 1600, 120.0, 400           # slow: most of the stream (~10 s) is left after the restart
    with ExitStack() as stack:
        g = Graph(stack, domain, tmp_path, stream, rate)
        g.start_all()
        assert g.spin_until(lambda: g.labels >= kill_at, 90), f"only {g.labels} labels"
        g.procs["labeler"].proc.kill()
        g.procs["labeler"].proc.wait()
        (tmp_path / "labeler.state").unlink()
        labels_at_kill = g.labels
        again = g.start("labeler")
        line = again.wait_for_line("recovered ", 60)
        # what it journaled after its last checkpoint has no base without that file: set aside, not learned
        assert any("without its state file (deleted?)" in ln for ln in again.lines), again.lines[:20]
        assert re.search(r"recovered 100 labelled samples \(10 classes\) from /labelled_init", line), line
        g.finish()
        after = g.labels - labels_at_kill
        print(f"labeler restarted without state: {line.split('] ')[-1]}; {after} labels sent after the restart "
              f"({labels_at_kill} before)")
        assert after >= 300, after                       # labelling went on (≥ 2 s of the stream)
        assert not any("dropping unlabelled samples" in ln for ln in again.lines), again.lines[-20:]
        assert not any("Traceback" in ln for p in g.procs.values() for ln in p.lines)
    X, y = held_out(mnist_features, stream)
    n, h = mnist_features.n_features, mnist_features.extractor_hash
    ref = accuracy(reference_head(mnist_features, "tinycl", stream), X, y)
    got = accuracy(saved_head(tmp_path, "tinycl", n, h), X, y)
    print(f"held-out accuracy: uninterrupted {ref:.2f} %, labeler recovered without state {got:.2f} % "
          f"({got - ref:+.2f} pt)")
    assert abs(got - ref) <= 0.5
