"""Parity test vectors for the C core, made by the Python side from real MNIST.

``make_vectors(out_dir)`` writes what ``micro_ros_firmware/core/test/run_vectors.c`` reads
(``params.bin``, ``images.u8``, ``init_x.f32``, ``init_y.i32``, ``stream_x.f32``, and the Python
core's final states ``py_cwr.bin`` / ``py_ncm.bin`` in the C format) and returns the Python
references: int8 features from onnxruntime on the int8 ONNX model, and each TinyNDC step
(prediction, pseudo-label, confidence) of the paper's configuration (NearestCentroid + CWR* with
the experiment's ``lr=0.02, batch_size=32``) on the same stream, following the MNIST protocol
(``k`` labelled training images per digit initialise, the stream comes from the test set).

The reference features come from onnxruntime with graph optimisations *disabled*: that runs the
QDQ graph operator by operator (QuantizeLinear / Conv in float on dequantised int8 values /
QuantizeLinear ...), i.e. the model's definition, the same on every CPU. With optimisations on,
onnxruntime fuses the graph into QLinearConv / QGemm with uint8×int8 kernels; on x86 CPUs with
AVX2 but no VNNI those kernels (``vpmaddubsw``) saturate pairwise int16 sums, so the fused
features depend on the host CPU (see ``fused_features_q``, used only to report the difference).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.clustering import NearestCentroid
from ..core.cwr import CWRStar
from ..core.rce import TinyRCE
from ..core.tinyndc import TinyNDC
from ..datasets import load_mnist
from ..extractor import FrozenExtractor, model_path
from ..presets import CWR_PARAMS
from . import c_state

MODEL = "mnist_0to5_int8"


@dataclass
class Vectors:
    dir: Path
    images: np.ndarray        # uint8 (n_images, 28, 28): the first stream images
    features_q: np.ndarray    # int8 (n_images, F): onnxruntime's int8 features of them
    init_x: np.ndarray        # float32 (n_init, F)
    init_y: np.ndarray        # int32
    stream_x: np.ndarray      # float32 (n_stream, F): onnxruntime features (dequantised)
    stream_y: np.ndarray      # true labels of the stream (for reporting accuracy)
    steps: np.ndarray         # (n_stream, 3) float64: prediction, pseudo-label, confidence
    system: TinyNDC           # the Python system after the stream
    feat_scale: float
    feat_zp: int


def int8_qparams() -> tuple[float, int]:
    """(scale, zero point) of the int8 model's output QuantizeLinear."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(model_path(MODEL))).graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    q = next(n for n in g.node if n.op_type == "DequantizeLinear" and n.output[0] == g.output[0].name)
    return float(init[q.input[1]]), int(init[q.input[2]])


def reference_session(cut: str | None = None):
    """onnxruntime session of the int8 model with graph optimisations disabled (exact QDQ semantics); with
    ``cut`` the activations at that layer are a second output (``model_tools.with_output``: the same pass)."""
    import onnxruntime as ort

    from ..model_tools import with_output

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    payload = model_path(MODEL).read_bytes()
    if cut:
        payload, _ = with_output(payload, cut)
    return ort.InferenceSession(payload, so, providers=["CPUExecutionProvider"])


def reference_features(session, images: np.ndarray, batch: int = 256, output: int = 0) -> np.ndarray:
    """Float features (dequantised int8) of uint8 images (n, 28, 28), as FrozenExtractor prepares them; ``output=1``
    of a session with a cut: the activations there, flattened (float values on the int8 grid of the cut)."""
    x = images.astype(np.float32) * np.float32(1.0 / 255.0)
    x = x.reshape(x.shape[0], 1, *x.shape[1:])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + batch]})[output].reshape(len(x[i:i + batch]), -1)
                           for i in range(0, x.shape[0], batch)])


def fused_features_q(images: np.ndarray) -> np.ndarray:
    """int8 features from the default (optimised, fused) onnxruntime session FrozenExtractor uses."""
    scale, zp = int8_qparams()
    return quantize_features(FrozenExtractor(model_path(MODEL)).extract(images), scale, zp)


def quantize_features(f: np.ndarray, scale: float, zp: int) -> np.ndarray:
    """Recover the int8 codes from onnxruntime's dequantised output (exact: (q − zp)·scale)."""
    return np.clip(np.rint(f / np.float32(scale)) + zp, -128, 127).astype(np.int8)


def make_vectors(out_dir: str | Path, data: str | None = None, n_images: int = 256, n_stream: int = 1000,
                 labels_per_class: int = 10, seed: int = 0, lr: float = CWR_PARAMS["lr"],
                 batch_size: int = CWR_PARAMS["batch_size"]) -> Vectors:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ext = FrozenExtractor(model_path(MODEL))  # for the hash and n_features
    sess = reference_session()
    scale, zp = int8_qparams()
    Xtr, ytr = load_mnist("train", data)
    Xte, yte = load_mnist("test", data)
    rng = np.random.default_rng(seed)
    init = np.concatenate([rng.choice(np.flatnonzero(ytr == c), labels_per_class, replace=False) for c in range(10)])
    stream = rng.permutation(yte.size)[:max(n_stream, n_images)]
    images = np.ascontiguousarray(Xte[stream[:n_images]])
    init_x = reference_features(sess, Xtr[init]).astype(np.float32)
    init_y = ytr[init].astype(np.int32)
    stream_x = reference_features(sess, Xte[stream[:n_stream]]).astype(np.float32)
    feats_q = quantize_features(reference_features(sess, images), scale, zp)

    system = TinyNDC(NearestCentroid(ext.n_features),
                     CWRStar(ext.n_features, lr=lr, batch_size=batch_size, extractor_hash=ext.hash),
                     min_confidence=0.0, cluster_update="head")
    system.init_from_labelled(init_x, init_y)
    steps = np.zeros((n_stream, 3), np.float64)
    for i, x in enumerate(stream_x):
        s = system.step(x)
        steps[i] = (-1 if s.prediction is None else s.prediction, s.pseudo_label, s.confidence)

    (out / "params.bin").write_bytes(struct.pack("<IIIfI", n_images, init.size, n_stream, lr, batch_size))
    images.tofile(out / "images.u8")
    init_x.tofile(out / "init_x.f32")
    init_y.tofile(out / "init_y.i32")
    stream_x.tofile(out / "stream_x.f32")
    (out / "py_cwr.bin").write_bytes(c_state.cwr_to_bytes(system.head))
    (out / "py_ncm.bin").write_bytes(c_state.ncm_to_bytes(system.clusterer))
    return Vectors(out, images, feats_q, init_x, init_y, stream_x, yte[stream[:n_stream]].astype(np.int64),
                   steps, system, scale, zp)


# --- TinyRCE ------------------------------------------------------------------------------------
REASON_CODES = {"empty": 0, "unknown": 1, "ambiguous": 2, "covered": 3}


@dataclass
class RceVectors:
    dir: Path
    x: np.ndarray             # float32 (n, F): the labelled stream (real features)
    y: np.ndarray             # int32 labels
    decisions: np.ndarray     # (n, 5) float64: label, nearest, reason code, novelty, distance (-1 for None)
    rce: TinyRCE            # the Python TinyRCE after the stream


def har_features(data: str | None = None, subjects: tuple[int, ...] = (1, 2), step: int = 10,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """A shuffled labelled stream of real HAR windows through ``har_elm.onnx`` (features, labels, hash)."""
    from ..datasets.har import load_har

    h = load_har(data, subjects=list(subjects), step=step)
    ext = FrozenExtractor(model_path("har_elm"))
    order = np.random.default_rng(seed).permutation(len(h.y))
    return ext.extract(h.X).astype(np.float32)[order], h.y[order].astype(np.int32), ext.hash


def cwru_features(data: str | None = None, n: int = 700, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """A shuffled labelled stream of ``n`` real CWRU training windows through ``cwru_elm.onnx`` (features, labels, hash)."""
    from ..datasets.cwru import load_cwru

    c = load_cwru(data, split="train")
    ext = FrozenExtractor(model_path("cwru_elm"))
    order = np.random.default_rng(seed).permutation(len(c.y))[:n]
    return ext.extract(c.X[order]).astype(np.float32), c.y[order].astype(np.int32), ext.hash


def make_rce_vectors(out_dir: str | Path, x: np.ndarray, y: np.ndarray, extractor_hash: str = "", *,
                     memory_bytes: int, r_max: float, r_min: float = 0.0, grow_margin: float = 0.25,
                     metric: str = "l2", int8_range: float = 0.0, max_visit: int = 0,
                     prefix_features: int = 8) -> RceVectors:
    """What ``tinycl_run --rce`` reads, and the Python TinyRCE's decision on each sample before learning it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x = np.ascontiguousarray(x, np.float32)
    y = np.ascontiguousarray(y, np.int32)
    rce = TinyRCE(x.shape[1], memory_bytes=memory_bytes, r_max=r_max, r_min=r_min, grow_margin=grow_margin,
                  metric=metric, int8_range=int8_range, max_visit=max_visit, prefix_features=prefix_features,
                  extractor_hash=extractor_hash)
    dec = np.zeros((len(y), 5), np.float64)
    for i, (xi, yi) in enumerate(zip(x, y)):
        d = rce.decide_valid(xi)
        dec[i] = (-1 if d.label is None else d.label, -1 if d.nearest is None else d.nearest,
                  REASON_CODES[d.reason], d.novelty, d.distance)
        rce.learn_valid(xi, int(yi))
    sha = bytes.fromhex(extractor_hash) if extractor_hash else bytes(32)
    (out / "rce_params.bin").write_bytes(struct.pack("<IIdddI32sdII", len(y), memory_bytes, r_max, r_min, grow_margin,
                                                     1 if metric == "l1" else 0, sha, int8_range, max_visit,
                                                     prefix_features))
    x.tofile(out / "rce_x.f32")
    y.tofile(out / "rce_y.i32")
    (out / "py_rce.bin").write_bytes(c_state.rce_to_bytes(rce))
    return RceVectors(out, x, y, dec, rce)
