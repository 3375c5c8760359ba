"""Latent replay with trainable upper layers: gradients, memory, state, export (small and seeded)."""

from __future__ import annotations

import numpy as np
import pytest

from tinycl_nodes.core.errors import DivergedError, InputError, StateError
from tinycl_nodes.core.latent import LatentUpperHead
from tinycl_nodes.core.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU
from tinycl_nodes.core.quantize import ChannelInt8Quantizer
from tinycl_nodes.core.replay import ReplayBuffer


def _upper(seed: int = 0):
    rng = np.random.default_rng(seed)
    conv = Conv2d(rng.normal(0, 0.4, (4, 3, 3, 3)), rng.normal(0, 0.1, 4), stride=1, pad=1)
    fc = Linear(rng.normal(0, 0.3, (5, 4 * 2 * 2)), rng.normal(0, 0.1, 5))
    return [conv, ReLU(), MaxPool2d(2), Flatten(), fc]


def _head(**kw):
    return LatentUpperHead((3, 5, 5), _upper(), **{"memory_size": 40, "batch_size": 8, "seed": 1, **kw})


def test_gradients_match_finite_differences():
    head = _head(upper_lr_scale=1.0)
    rng = np.random.default_rng(2)
    for c in range(3):
        head._new_class(c)
    head.classifier.W[:] = rng.normal(0, 0.5, head.classifier.W.shape)
    X = rng.normal(0, 1, (6, 75)).astype(np.float32)
    rows = np.array([0, 1, 2, 0, 1, 2])
    head.loss_and_grads(X, rows)
    targets = [(head.classifier, "W", (1, 3)), (head.upper[4], "W", (2, 7)), (head.upper[4], "b", (4,)),
               (head.upper[0], "W", (1, 2, 0, 1)), (head.upper[0], "W", (3, 0, 2, 2)), (head.upper[0], "b", (2,))]
    analytic = [float(getattr(layer, "d" + name)[idx]) for layer, name, idx in targets]
    for (layer, name, idx), g in zip(targets, analytic):
        arr = getattr(layer, name).astype(np.float64)
        eps = 1e-3
        arr_p, arr_m = arr.copy(), arr.copy()
        arr_p[idx] += eps
        arr_m[idx] -= eps
        setattr(layer, name, arr_p)
        lp = head.loss_and_grads(X, rows)
        setattr(layer, name, arr_m)
        lm = head.loss_and_grads(X, rows)
        setattr(layer, name, arr.astype(np.float32))
        numeric = (lp - lm) / (2 * eps)
        assert abs(numeric - g) <= 2e-3 + 2e-2 * abs(numeric), (layer.op, name, idx, numeric, g)


def test_conv_input_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    conv = Conv2d(rng.normal(0, 0.5, (2, 3, 3, 3)), np.zeros(2), stride=2, pad=1)
    X = rng.normal(0, 1, (2, 3, 6, 6)).astype(np.float64)
    G = rng.normal(0, 1, conv.out_shape((3, 6, 6)))[None].repeat(2, 0)
    conv.forward(X.astype(np.float32))
    dX = conv.backward(G.astype(np.float32))
    for idx in [(0, 1, 2, 3), (1, 2, 0, 5), (0, 0, 5, 0)]:
        Xp, Xm = X.copy(), X.copy()
        Xp[idx] += 1e-3
        Xm[idx] -= 1e-3
        num = ((conv.forward(Xp.astype(np.float32)) * G).sum() - (conv.forward(Xm.astype(np.float32)) * G).sum()) / 2e-3
        assert abs(num - dX[idx]) < 1e-2


def test_learns_new_classes_and_keeps_old_with_replay():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1.5, (4, 75)).astype(np.float32)
    head = _head(lr=0.1, epochs=3, replay=16)
    for phase in ((0, 1), (2, 3)):
        for _ in range(80):
            c = int(rng.choice(phase))
            head.learn_one(centers[c] + rng.normal(0, 0.5, 75).astype(np.float32), c)
    head.flush()
    test_y = np.repeat(np.arange(4), 25)
    test_X = centers[test_y] + rng.normal(0, 0.5, (100, 75)).astype(np.float32)
    acc = (head.predict_batch(test_X) == test_y).reshape(4, 25).mean(1)
    assert acc[2:].min() >= 0.9 and acc[:2].min() >= 0.8, acc  # old classes kept by replay


def test_int8_memory_ratio_per_channel():
    buf32 = ReplayBuffer(100, 128 * 9, seed=0)
    buf8 = ReplayBuffer(100, 128 * 9, quantized=True, channels=128, seed=0)
    X = np.abs(np.random.default_rng(0).normal(0, 1, (50, 128 * 9))).astype(np.float32)
    X[:, :9] *= 20  # one channel with a much larger range: per-channel grids keep the others fine
    buf8.add_batch(X, np.zeros(50, np.int64))
    assert buf32.nbytes / buf8.nbytes == 4.0
    assert buf8.quantizer_nbytes == 8 * 128
    ratio = (buf32.nbytes + buf32.label_nbytes) / (buf8.nbytes + buf8.quantizer_nbytes + buf8.label_nbytes)
    assert 3.9 < ratio < 4.0
    q8 = buf8.quantizer
    err = np.abs(q8.dequantize(q8.quantize(X)) - X).max(axis=0)
    step = np.array([g.scale for g in q8.grids]).repeat(9)
    assert (err <= step / 2 + 1e-5).all()
    stored = buf8.features()  # the kept patterns, dequantised: each within half a step of an input row
    nearest = np.abs(stored[:, None, :] - X[None]).max(axis=2).min(axis=1)
    assert (nearest <= step.max() / 2 + 1e-5).all()
    per_tensor = ReplayBuffer(100, 128 * 9, quantized=True, seed=0)
    per_tensor.add_batch(X, np.zeros(50, np.int64))
    qt = per_tensor.quantizer
    assert np.abs(qt.dequantize(qt.quantize(X)) - X)[:, 9:].mean() > 5 * np.abs(q8.dequantize(q8.quantize(X)) - X)[:, 9:].mean()


def test_state_round_trip_and_refusals():
    rng = np.random.default_rng(4)
    head = _head(quantization="channel")
    for i in range(21):
        head.learn_one(rng.normal(0, 1, 75).astype(np.float32), i % 3)
    state = head.state_dict()
    other = _head(quantization="channel")
    other.load_state_dict(state)
    X = rng.normal(0, 1, (5, 75)).astype(np.float32)
    assert np.array_equal(other.predict_batch(X), head.predict_batch(X))
    assert other.n_pending == head.n_pending == 5
    assert isinstance(other.buffer.quantizer, ChannelInt8Quantizer)
    bad = head.state_dict()
    bad["arrays"]["upper0_W"] = bad["arrays"]["upper0_W"][:2]
    with pytest.raises(StateError):
        _head(quantization="channel").load_state_dict(bad)
    wrong_arch = LatentUpperHead((3, 5, 5), [Flatten(), Linear(np.zeros((5, 75)), np.zeros(5))])
    with pytest.raises(StateError, match="upper layers differ"):
        wrong_arch.load_state_dict(state)


def test_pcg32_draws_survive_a_state_round_trip():
    """With the C core's draws a restored head continues exactly as the original (state carries PCG32)."""
    rng = np.random.default_rng(5)
    X = np.abs(rng.normal(0, 1, (40, 75))).astype(np.float32)
    head = _head(quantization="tensor", draws="pcg32", replay=6)
    for i in range(20):
        head.learn_one(X[i], i % 3)
    other = _head(quantization="tensor", draws="pcg32", replay=6)
    other.load_state_dict(head.state_dict())
    assert head.state_dict()["meta"]["rng_state"]["bit_generator"] == "pcg32"
    for i in range(20, 40):
        head.learn_one(X[i], i % 3)
        other.learn_one(X[i], i % 3)
    assert np.array_equal(head.classifier.W, other.classifier.W)
    assert np.array_equal(head.buffer._x, other.buffer._x)
    numpy_head = _head(quantization="tensor", replay=6)
    for i in range(40):
        numpy_head.learn_one(X[i], i % 3)
    assert not np.array_equal(numpy_head.classifier.W, head.classifier.W)   # other draws, other training
    bad = head.state_dict()
    bad["meta"]["rng_state"] = {"bit_generator": "pcg32", "state": 1, "inc": 2}
    with pytest.raises(StateError, match="odd"):
        _head(draws="pcg32").load_state_dict(bad)
    with pytest.raises(InputError, match="draws"):
        _head(draws="mt19937")


def test_bad_input_is_refused():
    head = _head()
    with pytest.raises(InputError):
        head.learn_one(np.full(75, np.nan, np.float32), 0)
    with pytest.raises(InputError):
        head.learn_one(np.zeros(74, np.float32), 0)
    with pytest.raises(InputError, match="quantization"):
        _head(quantization="int4")
    with pytest.raises(InputError, match="conv"):
        LatentUpperHead((2, 5, 5), _upper())


def test_a_diverging_batch_is_undone_and_refused():
    """A learning rate far too high for the features makes the weights overflow: that batch raises, and the head
    keeps the weights it had before it (finite, savable), so what it learned is not lost."""
    head = _head(lr=10.0, upper_lr_scale=10.0, epochs=4)

    def weights():
        return [arr for layer in (head.classifier, head.upper[0], head.upper[4]) for arr in (layer.W, layer.b)]

    rng = np.random.default_rng(0)
    X = rng.normal(0, 30, (64, 75)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    before, stored = None, None
    with np.errstate(all="ignore"):
        for x, c in zip(X, y):
            if head.n_pending == head.batch_size - 1:
                before = [a.copy() for a in weights()]
                stored = head.buffer.size
            try:
                head.learn_one(x, int(c))
            except DivergedError as exc:   # an InputError: one line in a node's log
                assert isinstance(exc, InputError) and "diverged" in str(exc) and "lr 10" in str(exc)
                break
        else:
            finite = all(np.isfinite(a).all() for a in weights())
            pytest.fail(f"no batch was refused at lr 10 × 10 in 64 samples (weights finite: {finite})")
    assert before is not None and all(np.array_equal(a, b) for a, b in zip(weights(), before))
    assert head.n_pending == 0 and head.buffer.size == stored
    assert np.isfinite(head.predict_proba(X[0])).all()
    _head(lr=10.0, upper_lr_scale=10.0, epochs=4).load_state_dict(head.state_dict())  # NaN would be refused


def test_split_of_the_shipped_model_and_onnx_export(tmp_path):
    import onnxruntime as ort

    from tinycl_nodes.export.latent_onnx import split_model, upper_to_onnx
    from tinycl_nodes.extractor import FrozenExtractor, model_path

    path = model_path("mnist_0to5_fp32")
    split = split_model(path, "/features/features.7/MaxPool", tmp_path)
    assert split.latent_shape == (64, 7, 7) and [layer.op for layer in split.upper] == [
        "conv", "relu", "maxpool", "flatten", "linear"]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 28, 28), dtype=np.uint8)
    lat = FrozenExtractor(split.lower_path).extract(images)
    head = LatentUpperHead(split.latent_shape, split.upper, batch_size=4, replay=4)
    A = lat.reshape(8, *split.latent_shape)
    for layer in head.upper:
        A = layer.forward(A)
    assert np.abs(A - FrozenExtractor(path).extract(images)).max() < 1e-3  # upper layers = the model's own
    for i in range(8):
        head.learn_one(lat[i], i % 3)
    sess = ort.InferenceSession(upper_to_onnx(head).SerializeToString(), providers=["CPUExecutionProvider"])
    scores = sess.run(None, {"latent": lat})[0]
    assert np.abs(scores - head._forward(lat)).max() < 1e-4
    with pytest.raises(InputError, match="no such layer"):
        split_model(path, "nope", tmp_path)
