"""Split a frozen ONNX model at a named layer, and export trained upper layers back to ONNX.

``split_model(path, cut)`` writes the part *below* the cut as its own ONNX model (the frozen
extractor that produces latent activations; onnx's own ``extract_model``) and reads the layers
*above* it into numpy layers (:mod:`tinycl_nodes.core.layers`), folding any inference
BatchNormalization into the Conv/Gemm before it. ``upper_to_onnx(head)`` writes the trained
upper layers plus the classifier as one ONNX model: input ``latent`` (n, F) flattened, output
``scores`` (n, classes) logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.latent import LatentUpperHead, fold_batchnorm
from ..core.layers import Conv2d, Flatten, Layer, Linear, MaxPool2d, ReLU


@dataclass
class Split:
    """The frozen part (an ONNX file), the latent shape at the cut, and the upper layers (numpy)."""

    lower_path: Path
    cut: str
    latent_shape: tuple[int, ...]
    upper: list[Layer]


def node_name(node) -> str:
    """A node as a cut names it: its name, or its first output tensor's for a node without one (exporters leave them
    unnamed: the shipped ELMs); :func:`split_model` takes either."""
    return node.name or node.output[0]


def cut_names(path: str | Path) -> list[str]:
    """Node names a model can be cut at (each node's output is a possible latent layer)."""
    import onnx

    return [node_name(n) for n in onnx.load(str(path)).graph.node]


def split_model(path: str | Path, cut: str, out_dir: str | Path) -> Split:
    """Cut ``path`` after node ``cut`` (a node name or its output tensor name)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(path))
    nodes = list(model.graph.node)
    at = next((i for i, n in enumerate(nodes) if n.name == cut or cut in n.output), None)
    if at is None:
        raise InputError(f"cut {cut!r}: no such layer in {Path(path).name}; layers: {', '.join(n.name for n in nodes)}")
    if at == len(nodes) - 1:
        raise InputError(f"cut {cut!r} is the last layer: nothing above it to train")
    latent = nodes[at].output[0]
    inferred = shape_inference.infer_shapes(model)
    dims = next((v.type.tensor_type.shape.dim for v in inferred.graph.value_info if v.name == latent), None)
    if dims is None:
        raise InputError(f"cut {cut!r}: the shape of {latent} is unknown")
    latent_shape = tuple(int(d.dim_value) for d in list(dims)[1:])
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    upper = _upper_layers(nodes[at + 1:], latent, inits)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lower = out_dir / f"{Path(path).stem}.below_{_safe(cut)}.onnx"
    onnx.utils.extract_model(str(path), str(lower), [model.graph.input[0].name], [latent])
    return Split(lower, cut, latent_shape, upper)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")


def _attr(node, name: str, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _upper_layers(nodes, latent: str, inits: dict[str, np.ndarray]) -> list[Layer]:
    layers: list[Layer] = []
    current = latent
    for n in nodes:
        if n.input[0] != current:
            raise InputError(f"layer {n.name}: the upper part must be a chain (input {n.input[0]}, expected {current})")
        op = n.op_type
        if op == "Conv":
            k = _attr(n, "kernel_shape")
            pads, strides = _attr(n, "pads", [0, 0, 0, 0]), _attr(n, "strides", [1, 1])
            if _attr(n, "group", 1) != 1 or len(set(pads)) != 1 or len(set(strides)) != 1 or k[0] != k[1]:
                raise InputError(f"layer {n.name}: only square, ungrouped, evenly padded convolutions train here")
            W = inits[n.input[1]]
            b = inits[n.input[2]] if len(n.input) > 2 else np.zeros(W.shape[0], np.float32)
            layers.append(Conv2d(W, b, strides[0], pads[0]))
        elif op == "Gemm":
            W = inits[n.input[1]]
            W = W if _attr(n, "transB", 0) else W.T
            if _attr(n, "transA", 0) or _attr(n, "alpha", 1.0) != 1.0 or _attr(n, "beta", 1.0) != 1.0:
                raise InputError(f"layer {n.name}: Gemm with transA/alpha/beta is not supported")
            b = inits[n.input[2]] if len(n.input) > 2 else np.zeros(W.shape[0], np.float32)
            layers.append(Linear(W, b))
        elif op == "BatchNormalization":
            if not layers or not isinstance(layers[-1], (Conv2d, Linear)):
                raise InputError(f"layer {n.name}: BatchNormalization must follow a Conv or Gemm to be folded")
            s, bb, m, v = (inits[i] for i in n.input[1:5])
            fold_batchnorm(layers[-1], s, bb, m, v, float(_attr(n, "epsilon", 1e-5)))
        elif op == "Relu":
            layers.append(ReLU())
        elif op == "MaxPool":
            k, strides = _attr(n, "kernel_shape"), _attr(n, "strides", None)
            if k[0] != k[1] or (strides and list(strides) != list(k)) or any(_attr(n, "pads", [0]) or [0]):
                raise InputError(f"layer {n.name}: only MaxPool with kernel = stride, no padding")
            layers.append(MaxPool2d(k[0]))
        elif op == "Flatten":
            layers.append(Flatten())
        else:
            raise InputError(f"layer {n.name}: {op} above the cut is not supported (Conv, Gemm, "
                             "BatchNormalization, Relu, MaxPool, Flatten)")
        current = n.output[0]
    return layers


def upper_to_onnx(head: LatentUpperHead):
    """The trained upper layers + classifier as an ONNX model (opset 17)."""
    from onnx import TensorProto, helper, numpy_helper

    head.flush()
    nodes, inits = [], []
    shape = head.latent_shape
    cur = "latent"
    if len(shape) > 1:
        inits.append(numpy_helper.from_array(np.array([-1, *shape], np.int64), "latent_shape"))
        nodes.append(helper.make_node("Reshape", ["latent", "latent_shape"], ["x0"]))
        cur = "x0"
    for i, layer in enumerate([*head.upper, head.classifier]):
        out = "scores" if layer is head.classifier else f"x{i + 1}"
        if isinstance(layer, (Conv2d, Linear)):
            inits += [numpy_helper.from_array(layer.W, f"W{i}"), numpy_helper.from_array(layer.b, f"b{i}")]
        if isinstance(layer, Conv2d):
            k = layer.W.shape[2]
            nodes.append(helper.make_node("Conv", [cur, f"W{i}", f"b{i}"], [out], kernel_shape=[k, k],
                                          pads=[layer.pad] * 4, strides=[layer.stride] * 2))
        elif isinstance(layer, Linear):
            nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"b{i}"], [out], transB=1))
        elif isinstance(layer, ReLU):
            nodes.append(helper.make_node("Relu", [cur], [out]))
        elif isinstance(layer, MaxPool2d):
            nodes.append(helper.make_node("MaxPool", [cur], [out], kernel_shape=[layer.k] * 2, strides=[layer.k] * 2))
        elif isinstance(layer, Flatten):
            nodes.append(helper.make_node("Flatten", [cur], [out], axis=1))
        cur = out
    graph = helper.make_graph(
        nodes, "tinycl_latent_upper",
        [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["n", head.n_features])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", len(head.classes)])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="tinycl")
    model.ir_version = 8
    model.metadata_props.add(key="classes", value=",".join(str(c) for c in head.classes))
    model.metadata_props.add(key="extractor_hash", value=head.extractor_hash)
    return model
