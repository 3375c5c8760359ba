"""The C latent replay head (core/src/tinycl_latent.c) against the numpy LatentUpperHead it is generated from.

On the board's own network (tinycl_features_cut_q, the int8 CNN's last conv block output from the same pass
as the features) against onnxruntime's int8 model cut (graph optimisations off, the QDQ definition, as the
features are checked in test_core_c.py): the int8 codes agree to ≥ 99.9% (as the features) and never by more than one step
(onnxruntime sums the convolution in float; a sum that lands on a rounding boundary can round the other
way); bit for bit, the C cut equals the int8 model's integer semantics (QLinearConv: exact int32 sums, the
float32 requantisation, round half to even) computed in numpy from the model's quantised parameters; the head
learning from the C codes makes every prediction the numpy head makes from onnxruntime's.

Real MNIST latents (the shipped fp32 model cut at presets.LATENT's layer, 128×3×3), the preset's
upper layers (flatten + the 1,152→64 embedding with BatchNorm folded) + classifier, PCG32 draws on
both sides. Stated tolerances: logits within 1e-5 relative to their largest magnitude (C sums in
index order, numpy's BLAS in blocks); after the same learning sequence every weight within 1e-6,
the int8 replay memory (codes, rows, grids) identical, every prediction identical.
"""

from __future__ import annotations

import ctypes as C

import numpy as np
import pytest

from tinycl_nodes.core.draws import Pcg32
from tinycl_nodes.core.errors import DivergedError, InputError
from tinycl_nodes.core.latent import LatentUpperHead
from tinycl_nodes.core.layers import Conv2d, Flatten, Linear, MaxPool2d
from tinycl_nodes.export.c_latent import ExportError, c_params, generate
from tinycl_nodes.firmware import FirmwareError, Library
from tinycl_nodes.firmware_latent import LatentUpperHeadC, board_head, cut_grid
from tinycl_nodes.presets import latent_upper

from .conftest import SAN_ENV, run

SMALL = {"memory_size": 60, "batch_size": 16, "epochs": 2, "replay": 24, "minibatch": 8}


@pytest.fixture(scope="module")
def lib(host_build):
    return Library(host_build / "libtinycl.so")


@pytest.fixture(scope="module")
def latents(data_dir, tmp_path_factory):
    from tinycl_nodes.datasets import load_mnist
    from tinycl_nodes.export.latent_onnx import split_model
    from tinycl_nodes.extractor import FrozenExtractor, model_path
    from tinycl_nodes.presets import LATENT

    X, y = load_mnist("test", str(data_dir))
    idx = np.random.default_rng(0).permutation(len(y))[:300]
    split = split_model(model_path("mnist_0to5_fp32"), LATENT["cut"], tmp_path_factory.mktemp("split"))
    return FrozenExtractor(split.lower_path).extract(X[idx]).astype(np.float32), y[idx].astype(np.int64)


@pytest.fixture(scope="module")
def board_cut(lib, data_dir):
    """300 real MNIST test images: the C CNN's features and cut codes, onnxruntime's features and cut."""
    from tinycl_nodes.datasets import load_mnist
    from tinycl_nodes.export.c_vectors import reference_features, reference_session
    from tinycl_nodes.presets import LATENT

    X, y = load_mnist("test", str(data_dir))
    idx = np.random.default_rng(1).permutation(len(y))[:300]
    pairs = [lib.features_cut_q(img) for img in X[idx]]
    session = reference_session(LATENT["cut"])
    return (np.stack([f for f, _ in pairs]), np.stack([c for _, c in pairs]), reference_features(session, X[idx]),
            reference_features(session, X[idx], output=1), y[idx].astype(np.int64), X[idx])


def integer_cut(model, images: np.ndarray) -> np.ndarray:
    """The int8 model's last conv block output in its integer semantics, from ``c_model.parse``'s quantised
    parameters (int8 weights, int32 biases, float32 multipliers, zero points): an oracle for the C kernels."""
    q = model.in_lut[images.reshape(len(images), 1, *images.shape[1:]).astype(np.intp)].astype(np.int64)
    for blk in model.blocks:
        n, C, H, W = q.shape
        pad = np.zeros((n, C, H + 2, W + 2), np.int64)
        pad[:, :, 1:-1, 1:-1] = q - blk.in_zp
        acc = np.zeros((n, blk.w.shape[0], H, W), np.int64) + blk.bias[None, :, None, None]
        for ky in range(3):
            for kx in range(3):
                acc += np.einsum("oc,nchw->nohw", blk.w[:, :, ky, kx].astype(np.int64), pad[:, :, ky:ky + H, kx:kx + W])
        h2, w2 = H // 2, W // 2   # 2×2 max-pool of the accumulators (the requantisation is monotone)
        pooled = acc[:, :, :2 * h2, :2 * w2].reshape(n, -1, h2, 2, w2, 2).max(axis=(3, 5))
        v = np.clip(pooled.astype(np.float32) * blk.mult[None, :, None, None], -128 - blk.out_zp, 127 - blk.out_zp)
        q = np.rint(v).astype(np.int64) + blk.out_zp
    return q.reshape(len(images), -1).astype(np.int8)


def test_board_cut_is_the_int8_models_cut(lib, board_cut):
    feats, cuts, ort_feats, ort_cut, _, images = board_cut
    grid = cut_grid()
    assert lib.cut_size == cuts.shape[1] == ort_cut.shape[1] == 128 * 3 * 3
    assert lib.cut_scale == np.float32(grid.scale) and lib.cut_zero_point == grid.zero_point == -128   # after a ReLU
    assert np.array_equal(grid.dequantize(grid.quantize(ort_cut)), ort_cut)   # onnxruntime's cut is on the int8 grid
    ort_codes = grid.quantize(ort_cut)
    diff = np.abs(ort_codes.astype(np.int32) - cuts)
    print(f"cut codes: {np.mean(diff == 0):.5%} identical ({int((diff > 0).sum())} of {diff.size}, in "
          f"{int((diff.max(1) > 0).sum())} of {len(diff)} images), max {diff.max()} step")
    assert np.mean(diff == 0) >= 0.999 and diff.max() <= 1
    assert np.array_equal(grid.dequantize(cuts)[diff.max(1) == 0], ort_cut[diff.max(1) == 0])   # bit for bit there
    assert np.array_equal(feats, np.stack([lib.features_q(img) for img in images]))   # the same pass's features
    from tinycl_nodes.export.c_model import parse
    from tinycl_nodes.extractor import model_path

    assert np.array_equal(cuts[:100], integer_cut(parse(model_path("mnist_0to5_int8")), images[:100]))   # bit for bit
    assert cuts.min() == -128 and cuts.max() > 0 and len(np.unique(cuts)) > 100


def test_board_head_learns_from_the_cnn_codes(lib, board_cut):
    """The C head on the C CNN's codes, its replay grid the cut's: every prediction equal to the numpy head's on
    onnxruntime's cut; the memory holds the CNN's own codes (the same as a numpy head fed the same codes)."""
    _, cuts, _, ort_cut, y, _ = board_cut
    grid = cut_grid()
    head, twin = board_head(**SMALL), board_head(**SMALL)   # twin: fed the C codes, dequantised
    ch = LatentUpperHeadC(lib, **c_params(head))
    with pytest.raises(InputError):
        ch.learn_q(cuts[0], 1)   # no grid yet
    ch.use_grid(lib.cut_scale, lib.cut_zero_point)
    n = 160
    for i in range(n):
        if head.classes:
            assert ch.predict_q(cuts[i]) == head.predict_one(ort_cut[i]), f"sample {i}"
        head.learn_one(ort_cut[i], int(y[i]))
        twin.learn_one(grid.dequantize(cuts[i]), int(y[i]))
        ch.learn_q(cuts[i], int(y[i]))
    st = ch.state()
    assert st["scales"].tolist() == [np.float32(grid.scale)] and st["zero_points"].tolist() == [-128]
    assert np.array_equal(st["replay_x"], twin.buffer._x[:twin.buffer.size])
    assert {r.tobytes() for r in st["replay_x"]} <= {c.tobytes() for c in cuts[:n]}   # the CNN's codes, kept as they are
    held = np.array([ch.predict_q(c) for c in cuts[n:]])
    assert np.array_equal(held, head.predict_batch(ort_cut[n:]))
    assert np.mean(held == y[n:]) > 0.8
    with pytest.raises(InputError):
        ch.use_grid(0.5, 0)   # the grid is fixed before learning, never after
    channel = LatentUpperHeadC(lib, **{**c_params(head), "quantization": 2})
    with pytest.raises(InputError):
        channel.use_grid(lib.cut_scale, lib.cut_zero_point)


def test_board_head_queues_codes_and_its_blob_holds_them(lib, board_cut):
    """A head with a fixed grid (use_grid: the board) queues its new samples as int8 codes, and its blob (version 2)
    holds them as codes: the same from C and numpy (queue, memory, counts and draws byte for byte; weights within
    1e-6, as test_same_learning_as_numpy); each side loads the other's blob byte for byte and continues as it
    would have. A version-1 blob (a float queue) is refused by both, the version named."""
    import zlib

    from tinycl_nodes.core.errors import StateError
    from tinycl_nodes.export.c_state import latent_from_bytes, latent_to_bytes

    _, cuts, _, _, y, _ = board_cut
    grid, F = cut_grid(), cuts.shape[1]
    head = board_head(**SMALL)
    ch = LatentUpperHeadC(lib, **c_params(head))
    ch.use_grid(lib.cut_scale, lib.cut_zero_point)

    def tail(blob: bytes, M: int) -> bytes:   # queue codes [8][F] | queue rows [8] | memory [M][F] | rows [M]
        return blob[len(blob) - 4 - M * (F + 1) - 8 * (F + 1):-4]

    for i in range(40):   # two rounds + 8 queued
        head.learn_one(grid.dequantize(cuts[i]), int(y[i]))
        ch.learn_q(cuts[i], int(y[i]))
    blob, py = ch.to_bytes(), latent_to_bytes(head)
    M = head.buffer.size
    assert head.pending_codes and blob[5] == 2 and len(blob) == len(py) and blob[:132] == py[:132]
    assert tail(blob, M) == tail(py, M) and tail(blob, M)[:8 * F] == cuts[32:40].tobytes()   # the CNN's own codes
    back = latent_from_bytes(blob, like=board_head(**SMALL))
    assert back.pending_codes and back.n_pending == 8 and latent_to_bytes(back) == blob
    assert np.abs(back.classifier.W - head.classifier.W).max() < 1e-6
    again = board_head(**SMALL)
    again.load_state_dict(back.state_dict())   # numpy's own state keeps the queue's form too
    assert again.pending_codes and latent_to_bytes(again) == blob
    ch2 = LatentUpperHeadC(lib, **c_params(head))
    ch2.load_bytes(py)
    assert ch2.to_bytes() == py
    for i in range(40, 72):   # the numpy head from C's blob and the C head go on alike
        back.learn_one(grid.dequantize(cuts[i]), int(y[i]))
        ch.learn_q(cuts[i], int(y[i]))
    assert tail(ch.to_bytes(), back.buffer.size) == tail(latent_to_bytes(back), back.buffer.size)
    assert [ch.predict_q(c) for c in cuts[200:]] == back.predict_batch(grid.dequantize(cuts[200:])).tolist()
    v1 = bytearray(blob[:-4])
    v1[5] = 1
    v1 = bytes(v1) + (zlib.crc32(bytes(v1)) & 0xFFFFFFFF).to_bytes(4, "little")
    with pytest.raises(StateError, match="version 1 is not supported"):
        latent_from_bytes(v1, like=back)
    with pytest.raises(StateError):
        ch2.load_bytes(v1)
    with pytest.raises(InputError, match="fixed before"):
        back.use_grid(grid)


def test_c_unit_test_under_asan_and_ubsan(host_build):
    p = run([host_build / "tinycl_latent_test"], env=SAN_ENV)
    assert "all checks passed" in p.stdout


def test_pcg32_draws_are_the_c_cores(lib):
    f = lib.lib
    f.tinycl_pcg32_seed.argtypes = [C.c_void_p, C.c_uint64, C.c_uint64]
    f.tinycl_pcg32_choice.argtypes = [C.c_void_p, C.c_uint32, C.c_uint32, C.c_void_p]
    f.tinycl_pcg32_permutation.argtypes = [C.c_void_p, C.c_uint32, C.c_void_p]
    state = (C.c_uint64 * 2)()
    f.tinycl_pcg32_seed(state, 7, 2)
    py = Pcg32(7, 2)
    for n, k in ((1500, 96), (40, 40), (10, 0), (33, 5)):
        out = (C.c_uint16 * max(k, 1))()
        f.tinycl_pcg32_choice(state, n, k, out)
        want = py.choice(n, k)
        assert list(out)[:k] == want.tolist() and np.all(np.diff(want) > 0)
        perm = (C.c_uint16 * n)()
        f.tinycl_pcg32_permutation(state, n, perm)
        assert list(perm) == py.permutation(n).tolist()
    assert sorted(py.permutation(50).tolist()) == list(range(50))


def test_forward_equals_numpy(lib, latents):
    X, y = latents
    head = latent_upper(**SMALL)
    ch = LatentUpperHeadC(lib, **c_params(head))
    assert np.array_equal(ch.state()["fc_W"], head.upper[1].W.ravel())   # generated = the head's weights
    for i in range(SMALL["batch_size"]):   # one training round: a classifier with non-zero rows
        head.learn_one(X[i], int(y[i]))
        ch.learn_one(X[i], int(y[i]))
    got = np.array([ch.scores(x) for x in X[100:200]])
    want = head._forward(X[100:200])
    assert np.abs(want).max() > 0.1 and len(head.classes) >= 5
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


@pytest.mark.parametrize("quantization", ["tensor", "channel"])
def test_same_learning_as_numpy(lib, latents, quantization):
    X, y = latents
    head = latent_upper(quantization=quantization, **SMALL)
    ch = LatentUpperHeadC(lib, **c_params(head))
    n = 128
    for i in range(n):
        if head.classes:
            assert ch.predict_one(X[i]) == head.predict_one(X[i]), f"sample {i}"
        head.learn_one(X[i], int(y[i]))
        ch.learn_one(X[i], int(y[i]))
    st = ch.state()
    assert st["counts"].tolist() == [n, head.n_pending, head.buffer.size, head.buffer.n_batches]
    assert head.buffer.n_batches == n // SMALL["batch_size"] and head.buffer.size == SMALL["memory_size"]
    assert st["classes"].tolist() == head.classes and st["class_seen"].tolist() == head.class_seen.tolist()
    fc = head.upper[1]
    assert np.abs(st["fc_W"].reshape(fc.W.shape) - fc.W).max() < 1e-6
    assert np.abs(st["fc_b"] - fc.b).max() < 1e-6
    assert np.abs(st["head_W"] - head.classifier.W).max() < 1e-6
    assert np.abs(st["head_b"] - head.classifier.b).max() < 1e-6
    assert np.abs(fc.W - latent_upper(**SMALL).upper[1].W).max() > 1e-4   # the upper layer did learn
    assert np.array_equal(st["replay_x"], head.buffer._x[:head.buffer.size])
    assert np.array_equal(st["replay_rows"], head.buffer.rows())
    q = head.buffer.quantizer.to_dict()
    assert st["scales"].tolist() == np.float32(q.get("scales", [q.get("scale")])).tolist()
    assert st["zero_points"].tolist() == list(q.get("zero_points", [q.get("zero_point")]))
    held = X[n:]
    c_pred = np.array([ch.predict_one(x) for x in held])
    assert np.array_equal(c_pred, head.predict_batch(held))
    assert np.mean(c_pred == y[n:]) > 0.8   # it learned ten digits from 128 samples


def test_bad_input_and_what_c_cannot_hold(lib, latents):
    X, _ = latents
    ch = LatentUpperHeadC(lib, **SMALL)
    bad = X[0].copy()
    bad[5] = np.nan
    with pytest.raises(InputError):
        ch.learn_one(bad, 1)
    with pytest.raises(InputError):
        ch.learn_one(X[0], -3)
    for c in range(lib.max_classes):
        ch.learn_one(X[c], c)
    with pytest.raises(InputError, match="no room for another class"):
        ch.learn_one(X[0], 99)
    assert ch.state()["counts"][0] == lib.max_classes   # refusals learned nothing
    with pytest.raises(FirmwareError, match="refused"):
        LatentUpperHeadC(lib, memory_size=ch.capacity + 1)
    with pytest.raises(InputError, match="unknown parameters"):
        LatentUpperHeadC(lib, momentum=0.9)
    conv = LatentUpperHead((2, 4, 4), [Conv2d(np.zeros((2, 2, 3, 3)), np.zeros(2), pad=1), MaxPool2d(2), Flatten(),
                                       Linear(np.zeros((3, 8)), np.zeros(3))], quantization="tensor")
    with pytest.raises(ExportError, match="fully connected layers"):
        generate(conv)
    with pytest.raises(ExportError, match="int8"):
        generate(latent_upper(quantization="none"))


def test_a_diverging_batch_is_refused_and_no_weight_goes_nan(lib, latents):
    """A learning rate far too high (lr 10 × 10, as the Python head's divergence test): C has no RAM to undo the
    batch as latent.py does, so it never writes a non-finite weight and drops the rest of the batch — the error
    comes out as Python's DivergedError, and the head's weights stay finite (far off: the board app then restores
    its last saved state, test_board_offline.py), so it saves and loads."""
    X, y = latents
    ch = LatentUpperHeadC(lib, **SMALL, lr=10.0, upper_lr_scale=10.0)
    refused, learned = 0, 0
    for x, c in zip(X * 30.0, y):
        _, _, mem_before, batches_before = ch.state()["counts"]
        try:
            ch.learn_one(x, int(c))
            learned += 1
        except DivergedError as exc:   # an InputError: one line in a node's log
            assert isinstance(exc, InputError) and "diverged" in str(exc)
            refused += 1
            n_seen, n_pending, mem_size, n_batches = ch.state()["counts"]   # the batch is not kept in memory
            assert (n_seen, n_pending, mem_size, n_batches) == (learned, 0, mem_before, batches_before)
    assert refused, "no batch diverged at lr 10 × 10"
    st = ch.state()
    assert all(np.isfinite(st[k]).all() for k in ("fc_W", "fc_b", "head_W", "head_b"))
    assert ch.predict_one(X[0]) is not None
    again = LatentUpperHeadC(lib, **SMALL, lr=10.0, upper_lr_scale=10.0)
    again.load_bytes(ch.to_bytes())                      # a blob with NaN would be refused (TINYCL_ESTATE)
    assert np.array_equal(again.state()["head_W"], st["head_W"])


def test_state_blob_both_ways(lib, latents):
    """Python head → C blob → C head (and back): both continue exactly as the head they came from."""
    from tinycl_nodes.core.errors import StateError
    from tinycl_nodes.export.c_state import latent_from_bytes, latent_to_bytes

    X, y = latents
    head = latent_upper(quantization="channel", **SMALL)
    for i in range(40):   # two rounds + 8 pending
        head.learn_one(X[i], int(y[i]))
    ch = LatentUpperHeadC(lib, **SMALL)
    ch.load_bytes(latent_to_bytes(head))
    assert ch.to_bytes() == latent_to_bytes(head)   # byte for byte
    for i in range(40, 72):
        head.learn_one(X[i], int(y[i]))
        ch.learn_one(X[i], int(y[i]))
    back = latent_from_bytes(ch.to_bytes(), like=latent_upper(**SMALL))
    assert back.n_seen == head.n_seen == 72 and back.n_pending == head.n_pending == 8
    assert np.abs(back.classifier.W - head.classifier.W).max() < 1e-6
    assert np.array_equal(back.buffer._x[:back.buffer.size], head.buffer._x[:head.buffer.size])
    for i in range(72, 104):   # the restored Python head continues like the C one
        back.learn_one(X[i], int(y[i]))
        ch.learn_one(X[i], int(y[i]))
    assert np.array_equal(np.array([ch.predict_one(x) for x in X[200:]]), back.predict_batch(X[200:]))
    blob = bytearray(ch.to_bytes())
    before = ch.to_bytes()
    for bad in (bytes(blob[:-9]), bytes(blob[:40]) + b"\x00" + bytes(blob[41:]), b"TCLS"):
        with pytest.raises(StateError):
            ch.load_bytes(bad)
        with pytest.raises(StateError):
            latent_from_bytes(bad, like=back)
    assert ch.to_bytes() == before   # refusals changed nothing
    with pytest.raises(StateError, match="pcg32"):
        latent_to_bytes(LatentUpperHead(back.latent_shape, back.upper, quantization="tensor"))


def test_a_blob_past_four_billion_batches_trains_on(lib, latents):
    """A latent blob whose batch count is 2^32 − 1 (any u32 loads): the memory rule's cap / (n_batches + 1) divided by
    zero in uint32 (SIGFPE on the host, the board's UDIV gives 0) and the count wrapped to 0, which made the board ask
    as if untrained. Now the count stops there and the batch trains as numpy's does: nothing more is kept in memory
    (cap / 2^32 is 0 in both)."""
    from tinycl_nodes.export.c_state import latent_from_bytes, latent_to_bytes

    X, y = latents
    head = latent_upper(**SMALL)
    for i in range(40):
        head.learn_one(X[i], int(y[i]))
    head.buffer.n_batches = 2**32 - 1
    ch = LatentUpperHeadC(lib, **SMALL)
    ch.load_bytes(latent_to_bytes(head))
    for i in range(40, 56):                            # one batch of 16
        head.learn_one(X[i], int(y[i]))
        ch.learn_one(X[i], int(y[i]))
    back = latent_from_bytes(ch.to_bytes(), like=latent_upper(**SMALL))
    assert back.buffer.n_batches == 2**32 - 1 and head.buffer.n_batches == 2**32
    assert np.array_equal(back.buffer._x[:back.buffer.size], head.buffer._x[:head.buffer.size])
    assert np.abs(back.classifier.W - head.classifier.W).max() < 1e-6
