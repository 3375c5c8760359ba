import logging
import time

from tinycl_nodes.nodes.truth_join import TruthJoin

LOG = logging.getLogger("test")


def _join(wait=True, timeout_s=10.0, max_waiting=100):
    out = []
    return TruthJoin(lambda h, p, t: out.append((h, p, t)), timeout_s, wait, LOG, max_waiting), out


def test_samples_leave_in_arrival_order_with_their_truth():
    j, out = _join()
    j.add_sample(1, "h1", "p1")
    j.add_truth(2, "t2")          # truth of a later sample first
    j.add_sample(2, "h2", "p2")
    assert out == []              # sample 1 still waits for its truth, and holds 2 back
    j.add_truth(1, "t1")
    assert out == [("h1", "p1", "t1"), ("h2", "p2", "t2")]


def test_timeout_sends_without_truth(caplog):
    j, out = _join(timeout_s=0.05)
    j.add_sample(1, "h1", "p1")
    time.sleep(0.06)
    with caplog.at_level(logging.WARNING):
        j.flush()
    assert out == [("h1", "p1", None)] and "no ground truth" in caplog.text


def test_no_wait_uses_a_truth_already_known():
    j, out = _join(wait=False)
    j.add_truth(5, "t5")
    j.add_sample(5, "h5", "p5")
    j.add_sample(6, "h6", "p6")
    assert out == [("h5", "p5", "t5"), ("h6", "p6", None)]


def test_bounded_memory():
    j, out = _join(max_waiting=3)
    for k in range(5):
        j.add_sample(k, f"h{k}", k)
    assert [p for _, p, _ in out] == [0, 1] and len(j._waiting) == 3
    for k in range(10, 20):
        j.add_truth(k, k)
    assert len(j._truth) <= 3

