"""TyBox-style head: memory budget, FIFO buffer, drift handling."""

from __future__ import annotations

import numpy as np
import pytest
from tests.core._blobs import Blobs, accuracy, learn_all

from tinycl_nodes.core.drift import DRIFT, NONE, WARNING
from tinycl_nodes.core.errors import InputError, StateError
from tinycl_nodes.core.tybox import TyBoxHead

F = 64


def test_capacity_formula():
    head = TyBoxHead(F, memory_bytes=10_000)
    assert head.model_bytes == 4 * 10 * (F + 1) == 2600
    assert head.bytes_per_sample == 4 * F + 1
    assert head.capacity == (10_000 - 2600) // 257 == 28
    assert TyBoxHead(F, memory_bytes=10_000, model_bytes=0).capacity == 10_000 // 257
    big = TyBoxHead(F, memory_bytes=100_000, max_classes=300)      # labels need 2 bytes
    assert big.bytes_per_sample == 4 * F + 2
    assert big.capacity == (100_000 - 4 * 300 * (F + 1)) // (4 * F + 2)


def test_budget_that_holds_no_sample_is_refused():
    assert TyBoxHead(F, memory_bytes=2600 + 257).capacity == 1
    with pytest.raises(InputError, match="less than one buffered sample"):
        TyBoxHead(F, memory_bytes=2600 + 256)
    with pytest.raises(InputError, match="less than one buffered sample"):
        TyBoxHead(F, memory_bytes=1000, model_bytes=5000)


def test_fifo_order():
    head = TyBoxHead(F, memory_bytes=2600 + 5 * 257, drift_detection=False)
    assert head.capacity == 5
    for i in range(8):
        x = np.zeros(F)
        x[0] = i
        head.learn_one(x, i % 3)
    X, y = head.buffer()
    assert X[:, 0].tolist() == [3, 4, 5, 6, 7]
    assert y.tolist() == [0, 1, 2, 0, 1]


def test_more_classes_than_budgeted_is_refused():
    head = TyBoxHead(F, memory_bytes=10_000, max_classes=2)
    head.learn_one(np.ones(F), 0)
    head.learn_one(np.ones(F), 1)
    before = head.state_dict()
    with pytest.raises(InputError, match="max_classes=2"):
        head.learn_one(np.ones(F), 2)
    after = head.state_dict()
    assert after["arrays"]["classes"].tolist() == [0, 1]
    assert all(np.array_equal(after["arrays"][k], before["arrays"][k]) for k in before["arrays"])


class ScriptedDDM:
    """Stands in for the DDM to check exactly which samples a drift drops."""

    def __init__(self, script):
        self.script = list(script)
        self.n_drifts = 0

    def update(self, error):
        return self.script.pop(0)


def test_drift_drops_samples_buffered_before_the_warning():
    head = TyBoxHead(F, memory_bytes=2600 + 50 * 257, drift_grace=0)
    head.ddm = ScriptedDDM([NONE] * 10 + [WARNING, WARNING, NONE, WARNING, WARNING, DRIFT, DRIFT])
    for i in range(17):
        x = np.zeros(F)
        x[0] = i
        head.learn_one(x, i % 2)
        if i == 15:   # warning began at 13 (the one at 10 was called off at 12): keep 13, 14, 15
            assert head.buffer()[0][:, 0].tolist() == [13, 14, 15]
            assert head.n_dropped == 13
    # a drift with no warning before it keeps only the current sample
    assert head.buffer()[0][:, 0].tolist() == [16]
    assert head.n_dropped == 16


def test_new_classes_are_not_mistaken_for_drift():
    head = TyBoxHead(F, memory_bytes=10_000, drift_grace=3)
    for c in range(3):
        for _ in range(5):
            head.learn_one(np.eye(F)[c], c)
    assert head.ddm.n == 3 * (5 - 3)        # only samples of classes seen >= 3 times


def test_concept_drift_is_detected_and_old_concept_dropped():
    blobs = Blobs(n_classes=2, noise=0.3, seed=3)
    rng = np.random.default_rng(0)
    head = TyBoxHead(F, memory_bytes=2600 + 150 * 257, seed=1)
    X1, y1 = blobs.sample([0, 1], 400)
    y1 = np.where(rng.random(400) < 0.1, 1 - y1, y1)            # 10% label noise: p ≈ 0.1
    learn_all(head, X1, y1)
    drifts_before = head.n_drifts
    X2, y2 = blobs.sample([0, 1], 300)
    y2 = 1 - y2                                                 # the concept flips
    warn_start = None
    checked = False
    for i, (x, t) in enumerate(zip(X2, y2)):
        head.learn_one(x, int(t))
        status = head.last_status
        if status == WARNING and warn_start is None:
            warn_start = i
        elif status == NONE:
            warn_start = None
        elif status == DRIFT and not checked:
            kept = head.buffer()[0]
            expected = X2[(warn_start if warn_start is not None else i):i + 1]
            assert np.array_equal(kept, expected)               # nothing of the old concept
            checked = True
            assert i < 100
    assert checked and head.n_drifts > drifts_before
    Xt, yt = blobs.sample([0, 1], 300)
    assert accuracy(head, Xt, 1 - yt) >= 0.9                    # the new concept is learned


def test_drift_detection_off_and_state_mismatch():
    off = TyBoxHead(F, memory_bytes=10_000, drift_detection=False)
    on = TyBoxHead(F, memory_bytes=10_000)
    X, y = Blobs(n_classes=3, seed=4).sample(range(3), 40)
    learn_all(off, X, y)
    learn_all(on, X, y)
    assert off.ddm is None and off.n_drifts == 0
    with pytest.raises(StateError):
        off.load_state_dict(on.state_dict())
    with pytest.raises(StateError):
        on.load_state_dict(off.state_dict())
    other = TyBoxHead(F, memory_bytes=2600 + 10 * 257)              # smaller buffer
    with pytest.raises(StateError):
        other.load_state_dict(on.state_dict())
