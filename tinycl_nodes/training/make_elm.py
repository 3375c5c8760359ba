"""Build the random-weight 1-D CNN feature extractors (TinyRCE's "CNN-FE ELM") as ONNX files.

Why random weights: TinyRCE learns forward-only, so nothing below the RCE layer is ever trained —
the paper's CNN feature extractor keeps its random initial weights (an extreme learning
machine). A random convolution followed by ReLU and global average/max pooling measures how
much energy the window has in a random set of filter bands and where its peaks are, which is
what activity and bearing-fault classes differ in.

What is *not* random is fixed scaling, kept inside the graph so the extractor node can feed raw
sensor values: a per-channel ``(x − mean) / std`` at the input and a per-feature standardisation
at the output (so RCE radii and SGD learning rates mean the same on both datasets). Both are
statistics of unlabelled windows — HAR subjects s01–s08 (both devices), CWRU's training split —
and are recorded in the JSON sidecar.

The graph is written with ``onnx.helper`` (no PyTorch needed): opset 17, input ``signal``
float32 ``(n, channels, length)``, output ``features`` float32 ``(n, 64)``. Deterministic: the
same seed and data give the same bytes.

Usage: python -m tinycl_nodes.training.make_elm [--data DIR] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..extractor import MODELS_DIR

OPSET = 17


@dataclass(frozen=True)
class ElmSpec:
    """Input shape and conv stack ``(out_channels, kernel, stride)``; features = 2 × last channels."""

    name: str
    channels: int
    length: int
    convs: tuple[tuple[int, int, int], ...]


SPECS = {
    # HAR: 6 axes × 50 samples (1 s at ~51 Hz)
    "har": ElmSpec("har_elm", 6, 50, ((24, 5, 1), (32, 5, 2))),
    # CWRU: 1 axis × 1024 samples (85 ms at 12 kHz)
    "cwru": ElmSpec("cwru_elm", 1, 1024, ((16, 9, 2), (32, 7, 2), (32, 5, 2))),
}


def random_weights(spec: ElmSpec, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """He-normal conv kernels and small normal biases (the biases set random ReLU thresholds)."""
    rng = np.random.default_rng(seed)
    out, c_in = [], spec.channels
    for c_out, k, _ in spec.convs:
        w = rng.normal(0.0, np.sqrt(2.0 / (c_in * k)), (c_out, c_in, k)).astype(np.float32)
        b = rng.normal(0.0, 0.1, c_out).astype(np.float32)
        out.append((w, b))
        c_in = c_out
    return out


def conv_macs(spec: ElmSpec) -> int:
    """Multiply-accumulates of one forward pass (convolutions; pooling and scaling not counted)."""
    macs, c_in, length = 0, spec.channels, spec.length
    for c_out, k, stride in spec.convs:
        length = (length + 2 * (k // 2) - k) // stride + 1
        macs += length * c_out * c_in * k
        c_in = c_out
    return macs


def build_graph(spec: ElmSpec, weights, in_mean, in_std, feat_mean, feat_std) -> bytes:
    """The ONNX model bytes: scale → [Conv → Relu]* → GlobalAvg ‖ GlobalMax → standardise."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [], []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, np.float32), name))
        return name

    nodes.append(helper.make_node("Sub", ["signal", const("in_mean", np.reshape(in_mean, (1, -1, 1)))], ["x_c"]))
    nodes.append(helper.make_node("Mul", ["x_c", const("in_scale", np.reshape(1.0 / in_std, (1, -1, 1)))], ["x0"]))
    prev = "x0"
    for i, ((w, b), (_, k, stride)) in enumerate(zip(weights, spec.convs)):
        nodes.append(helper.make_node("Conv", [prev, const(f"w{i}", w), const(f"b{i}", b)], [f"c{i}"],
                                      kernel_shape=[k], strides=[stride], pads=[k // 2, k // 2]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev = f"r{i}"
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["gap"]))
    nodes.append(helper.make_node("GlobalMaxPool", [prev], ["gmp"]))
    nodes.append(helper.make_node("Concat", ["gap", "gmp"], ["cat"], axis=1))
    nodes.append(helper.make_node("Flatten", ["cat"], ["flat"], axis=1))
    nodes.append(helper.make_node("Sub", ["flat", const("feat_mean", feat_mean[None])], ["f_c"]))
    nodes.append(helper.make_node("Mul", ["f_c", const("feat_scale", (1.0 / feat_std)[None])], ["features"]))
    n_feat = 2 * spec.convs[-1][0]
    graph = helper.make_graph(
        nodes, spec.name,
        [helper.make_tensor_value_info("signal", TensorProto.FLOAT, ["n", spec.channels, spec.length])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", n_feat])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tinycl.make_elm", ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _run(payload: bytes, X: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(payload, opts, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(["features"], {"signal": X[i:i + 512]})[0] for i in range(0, len(X), 512)])


def calibration_windows(dataset: str, data: str | None) -> np.ndarray:
    """Unlabelled windows the fixed scaling is computed from (see the module docstring)."""
    if dataset == "har":
        from ..datasets.har import load_har

        return np.concatenate([load_har(data, device=d, subjects=range(1, 9), step=25).X for d in ("sp", "sw")])
    from ..datasets.cwru import load_cwru

    return load_cwru(data, split="train", window=SPECS["cwru"].length).X


def make(dataset: str, data: str | None, seed: int, out: Path) -> dict:
    """Build, calibrate and write ``<out>/<name>.onnx`` and its JSON sidecar; return the sidecar."""
    spec = SPECS[dataset]
    X = calibration_windows(dataset, data)
    in_mean = X.mean(axis=(0, 2)).astype(np.float64)
    in_std = X.std(axis=(0, 2)).astype(np.float64) + 1e-6
    weights = random_weights(spec, seed)
    n_feat = 2 * spec.convs[-1][0]
    raw = _run(build_graph(spec, weights, in_mean, in_std, np.zeros(n_feat), np.ones(n_feat)), X)
    f_mean, f_std = raw.mean(0).astype(np.float64), raw.std(0).astype(np.float64) + 1e-6
    payload = build_graph(spec, weights, in_mean, in_std, f_mean, f_std)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{spec.name}.onnx"
    path.write_bytes(payload)
    meta = {"dataset": dataset, "input": ["n", spec.channels, spec.length], "n_features": n_feat,
            "convs": [list(c) for c in spec.convs], "weights": "random (He normal), never trained",
            "seed": seed, "opset": OPSET, "conv_macs": conv_macs(spec),
            "calibration_windows": int(len(X)),
            "input_mean": [round(float(v), 6) for v in in_mean],
            "input_std": [round(float(v), 6) for v in in_std]}
    (out / f"{spec.name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data root (default: $TINYCL_DATA or ../shared/data)")
    ap.add_argument("--dataset", choices=("har", "cwru", "all"), default="all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=MODELS_DIR)
    args = ap.parse_args(argv)
    for ds in (("har", "cwru") if args.dataset == "all" else (args.dataset,)):
        meta = make(ds, args.data, args.seed, args.out)
        print(f"wrote {args.out / SPECS[ds].name}.onnx: input {meta['input']}, {meta['n_features']} features, "
              f"{meta['conv_macs']} MACs per window")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
