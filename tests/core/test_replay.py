"""Latent replay memory rule, int8 quantised replay, and the quantiser itself."""

from __future__ import annotations

import numpy as np
import pytest
from tests.core._blobs import Blobs, accuracy, late_class_stream, learn_all

from tinycl_nodes.core.errors import InputError, StateError
from tinycl_nodes.core.quantize import Int8Quantizer
from tinycl_nodes.core.replay import LatentReplayHead, ReplayBuffer

F = 64


def _batch(b: int, n: int) -> np.ndarray:
    """Patterns tagged with their batch (column 0) and a unique id (column 1)."""
    X = np.zeros((n, 4), np.float32)
    X[:, 0] = b
    X[:, 1] = np.arange(n) + 1000 * b
    return X


def _ids(X: np.ndarray) -> set:
    return {tuple(r) for r in X[:, :2].tolist()}


def test_memory_rule_keeps_m_over_b_plus_one_new_patterns():
    M, n = 100, 60
    buf = ReplayBuffer(M, 4, seed=0)
    for b in range(12):
        old = _ids(buf.features())
        size_before = buf.size
        kept = buf.add_batch(_batch(b, n), np.zeros(n, np.int64))
        h = min(M // (b + 1), n)
        assert kept == h == buf.last_kept
        X = buf.features()
        assert len(_ids(X)) == buf.size == min(size_before + h, M)     # no duplicates
        assert int((X[:, 0] == b).sum()) == h                           # M // (b+1) new patterns
        survivors = _ids(X[X[:, 0] != b])
        assert survivors <= old                                         # the rest: old memory
        assert len(survivors) == buf.size - h                           # minus h replaced ones
    assert buf.n_batches == 12


def test_memory_rule_is_seeded():
    def contents(seed):
        buf = ReplayBuffer(50, 4, seed=seed)
        for b in range(5):
            buf.add_batch(_batch(b, 40), np.zeros(40, np.int64))
        return buf.features()
    assert np.array_equal(contents(1), contents(1))
    assert not np.array_equal(contents(1), contents(2))


def test_add_batch_validates_input():
    buf = ReplayBuffer(10, 4)
    for X, rows in ((np.ones((3, 5)), [0, 0, 0]), (np.ones((3, 4)), [0, 0]),
                    (np.ones((3, 4)), [0, -1, 0]), (np.ones((3, 4)), [0.5, 0, 0]),
                    (np.full((3, 4), np.nan), [0, 0, 0])):
        with pytest.raises(InputError):
            buf.add_batch(X, np.asarray(rows))
    assert buf.size == 0 and buf.n_batches == 0


def test_int8_replay_accuracy_and_memory():
    blobs = Blobs(noise=0.5, seed=5)
    X, y = late_class_stream(blobs, 600, 600, only_new=True)
    Xt, yt = blobs.sample(range(10), 1000)
    heads = {q: LatentReplayHead(F, memory_size=300, batch_size=32, seed=7, quantized=q)
             for q in (False, True)}
    acc = {}
    for q, head in heads.items():
        learn_all(head, X, y)
        head.flush()
        acc[q] = accuracy(head, Xt, yt)
    assert acc[False] >= 0.9
    assert abs(acc[True] - acc[False]) <= 0.02
    fp32, int8 = heads[False], heads[True]
    assert fp32.replay_nbytes == 300 * F * 4
    assert fp32.replay_nbytes == 4 * int8.replay_nbytes                # features: exactly 4x
    assert fp32.label_nbytes == int8.label_nbytes == 300               # uint8 labels for both
    total = (fp32.replay_nbytes + fp32.label_nbytes) / (int8.replay_nbytes + int8.label_nbytes)
    assert total == pytest.approx((4 * F + 1) / (F + 1))               # with labels: 3.95x
    assert int8.buffer._x.dtype == np.int8 and fp32.buffer._x.dtype == np.float32


def test_quantizer_is_calibrated_on_the_first_mini_batch():
    X, y = Blobs(seed=6).sample(range(3), 40)
    head = LatentReplayHead(F, batch_size=16, quantized=True, calibration_margin=0.2)
    learn_all(head, X[:15], y[:15])
    assert head.buffer.quantizer is None                               # batch not complete
    head.learn_one(X[15], int(y[15]))
    assert head.buffer.quantizer == Int8Quantizer.fit(X[:16], margin=0.2)
    learn_all(head, X[16:], y[16:])
    assert head.buffer.quantizer == Int8Quantizer.fit(X[:16], margin=0.2)   # fixed afterwards
    given = Int8Quantizer(0.01, 3)
    head2 = LatentReplayHead(F, batch_size=16, quantizer=given)
    assert head2.quantized
    learn_all(head2, X, y)
    assert head2.buffer.quantizer is given


@pytest.mark.parametrize("quantized", [False, True])
def test_labels_widen_past_256_classes(quantized):
    head = LatentReplayHead(4, memory_size=600, batch_size=50, quantized=quantized)
    assert head.buffer._rows.dtype == np.uint8
    for c in range(300):
        head.learn_one(np.full(4, c / 300.0), c)
    head.flush()
    assert head.buffer._rows.dtype == np.uint16
    assert head.label_nbytes == 2 * 600
    rows = head.buffer.rows()
    assert rows.max() >= 256 and rows.max() < 300
    other = LatentReplayHead(4, memory_size=600, batch_size=50, quantized=quantized)
    other.load_state_dict(head.state_dict())
    assert np.array_equal(other.buffer.rows(), rows) and other.buffer._rows.dtype == np.uint16


def test_int8_state_refused_by_fp32_head():
    X, y = Blobs(seed=8).sample(range(3), 40)
    q = LatentReplayHead(F, batch_size=16, quantized=True)
    learn_all(q, X, y)
    with pytest.raises(StateError):
        LatentReplayHead(F, batch_size=16).load_state_dict(q.state_dict())
    with pytest.raises(StateError):                                   # memory larger than ours
        LatentReplayHead(F, memory_size=10, batch_size=16, quantized=True).load_state_dict(
            q.state_dict())


def test_replay_buffer_state_round_trip():
    buf = ReplayBuffer(30, 4, quantized=True, seed=3)
    for b in range(4):
        buf.add_batch(_batch(b, 20) / 100.0, np.arange(20) % 3)
    other = ReplayBuffer(30, 4, quantized=True, seed=99)
    other.load_state_dict(buf.state_dict())
    assert np.array_equal(other.features(), buf.features())
    assert np.array_equal(other.rows(), buf.rows())
    for b in (buf, other):
        b.add_batch(_batch(9, 20) / 100.0, np.zeros(20, np.int64))
    assert np.array_equal(other.features(), buf.features())
    with pytest.raises(StateError):
        ReplayBuffer(30, 4).load_state_dict(buf.state_dict())          # fp32 vs int8
    with pytest.raises(StateError):
        ReplayBuffer(30, 5, quantized=True).load_state_dict(buf.state_dict())


# --- quantiser ---------------------------------------------------------------------------------
def test_quantizer_round_trip_error_and_saturation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16)).astype(np.float32)
    q = Int8Quantizer.fit(x, margin=0.0)
    codes = q.quantize(x)
    assert codes.dtype == np.int8 and codes.shape == x.shape
    assert np.abs(q.dequantize(codes) - x).max() <= q.scale / 2 * (1 + 1e-4)
    assert q.dequantize(q.quantize(0.0)) == 0.0                         # 0 is on the grid
    assert q.quantize(1e6) == 127 and q.quantize(-1e6) == -128
    assert q.dequantize(codes).dtype == np.float32


def test_quantizer_fit_variants():
    relu = np.random.default_rng(1).random((50, 8)) * 3.0              # one-sided
    q = Int8Quantizer.fit(relu, margin=0.1)
    assert q.zero_point == -128                                        # no code wasted below 0
    assert q.scale == pytest.approx(relu.max() * 1.1 / 255)
    s = Int8Quantizer.fit(relu - 1.5, symmetric=True)
    assert s.zero_point == 0
    assert Int8Quantizer.from_dict(q.to_dict()) == q


@pytest.mark.parametrize("args", [(0.0, 0), (-1.0, 0), (float("nan"), 0), (0.1, 128),
                                  (0.1, -129), (0.1, 1.5), (0.1, True)])
def test_quantizer_bad_parameters(args):
    with pytest.raises(InputError):
        Int8Quantizer(*args)


def test_quantizer_bad_calibration_data():
    for bad in ([], [1.0, np.nan], [np.inf]):
        with pytest.raises(InputError):
            Int8Quantizer.fit(bad)
    with pytest.raises(StateError):
        Int8Quantizer.from_dict({"scale": -1, "zero_point": 0})
