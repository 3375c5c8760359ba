import logging
import time

import numpy as np

from tinycl_nodes.nodes.truth_join import ENTRY_BYTES, Truth, TruthJoin

LOG = logging.getLogger("test")


def _join(wait=True, timeout_s=10.0, **bounds):
    out = []
    return TruthJoin(lambda h, p, t: out.append((h, p, t)), timeout_s, wait, LOG, **bounds), out


def T(k: int) -> Truth:
    return Truth(k, True)


def test_samples_leave_in_arrival_order_with_their_truth():
    j, out = _join()
    j.add_sample(1, "h1", "p1")
    j.add_truth(2, T(2))          # truth of a later sample first
    j.add_sample(2, "h2", "p2")
    assert out == []              # sample 1 still waits for its truth, and holds 2 back
    j.add_truth(1, T(1))
    assert out == [("h1", "p1", T(1)), ("h2", "p2", T(2))]


def test_timeout_sends_without_truth(caplog):
    j, out = _join(timeout_s=0.05)
    j.add_sample(1, "h1", "p1")
    time.sleep(0.06)
    with caplog.at_level(logging.WARNING):
        j.flush()
    assert out == [("h1", "p1", None)] and "no ground truth" in caplog.text


def test_no_wait_uses_a_truth_already_known():
    j, out = _join(wait=False)
    j.add_truth(5, T(5))
    j.add_sample(5, "h5", "p5")
    j.add_sample(6, "h6", "p6")
    assert out == [("h5", "p5", T(5)), ("h6", "p6", None)]


def test_memory_bounded_by_bytes(caplog):
    """2,000 unmatched truths with 64 KB names, 100 waiting images of 1 MB: the held bytes stay
    under the bounds (oldest dropped, one line), not under a message count."""
    class GT:
        def __init__(self, k):
            self.label, self.learnable, self.class_name = k, True, "x" * 65536

    j, out = _join(max_truth_bytes=100 * ENTRY_BYTES, max_waiting_bytes=4 << 20)
    with caplog.at_level(logging.WARNING):
        for k in range(2000):
            j.add_truth(10_000 + k, GT(k))
        for k in range(100):
            j.add_sample(k, f"h{k}", np.zeros(1 << 20, np.uint8))
    assert len(j._truth) == 100 and all(type(t) is Truth for t in j._truth.values())
    assert j._waiting_bytes <= 4 << 20 and len(j._waiting) == 3
    assert [p.nbytes for _, p, _ in out] == [1 << 20] * 97        # the oldest went on, without truth
    assert caplog.text.count("ground truth without a sample") == 1
    assert caplog.text.count("wait for ground truth") == 1


def test_samples_without_truth_are_said_once_not_once_each(caplog):
    """A sensor that sends no ground truth (a live camera in a replay's graph) used to give one warning per frame
    (900 lines for a 30 s video): now one line, the count within the minute after, and the recovery once."""
    j, out = _join(timeout_s=0.0)
    with caplog.at_level(logging.WARNING):
        for k in range(900):
            j.add_sample(k, f"h{k}", "p")
        assert [r.getMessage() for r in caplog.records if "ground truth" in r.getMessage()] == [
            "cannot pair the samples with their ground truth: no ground truth came within 0 s of a sample: sent "
            "unlabelled (a live camera has none: expect_ground_truth false); until one works again, repeats are "
            "said once every 60 s"]
        j._unpaired.said_at -= 60                   # a minute later: the count
        j.add_sample(900, "h900", "p")
        j.add_truth(901, T(1))
        j.add_sample(901, "h901", "p")              # paired again: said once
    lines = [r.getMessage() for r in caplog.records if "ground truth" in r.getMessage()]
    assert len(lines) == 3 and "(901 failed pairings in 0 s, 899 not said)" in lines[1], lines
    assert lines[2].startswith("could pair the samples with their ground truth again, after 901 failed pairings"), lines
    assert len(out) == 902 and out[-1] == ("h901", "p", T(1))
