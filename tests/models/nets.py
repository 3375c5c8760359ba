"""ONNX models the project makes itself for the tests (nothing downloaded).

- ``mnist_classifier_rgb``: the shipped MNIST CNN re-exported for 64x64 RGB, with a random linear
  classifier on top (``logits``): a classifier to cut back at ``features``;
- ``mobilenet_like``: a small randomly initialised MobileNet-style network (depthwise-separable
  convolutions, ReLU6, global average pooling, a linear classifier), 3x96x96, exported with a
  fixed batch of 1 as many exporters do. Built with onnx.helper (PyTorch is not in the test venv).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tinycl_nodes.extractor import model_path
from tinycl_nodes.training.reexport import reexport_rgb


def mnist_classifier_rgb(folder: Path, size: int = 64) -> tuple[Path, Path]:
    """(classifier.onnx with output ``logits``, the re-exported extractor it was built on)."""
    ext = reexport_rgb(model_path("mnist_0to5_fp32"), folder / f"mnist_rgb{size}.onnx", (size, size))
    m = onnx.load(str(ext))
    rng = np.random.default_rng(1)
    m.graph.initializer.extend([numpy_helper.from_array(rng.normal(0, 0.1, (64, 6)).astype(np.float32), "head_w"),
                                numpy_helper.from_array(np.zeros(6, np.float32), "head_b")])
    m.graph.node.append(helper.make_node("Gemm", ["features", "head_w", "head_b"], ["logits"], name="classifier"))
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 6]))
    onnx.checker.check_model(m)
    out = folder / "mnist_classifier_rgb.onnx"
    onnx.save(m, str(out))
    return out, ext


def mobilenet_like(path: Path, seed: int = 0, size: int = 96, n_classes: int = 10) -> Path:
    """A random MobileNet-style classifier, input ``input`` (1, 3, size, size), output ``logits``."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        return name

    const("relu6_min", np.array(0.0)), const("relu6_max", np.array(6.0))

    def conv(x: str, name: str, cin: int, cout: int, k: int, stride: int, group: int = 1) -> str:
        fan_in = cin // group * k * k
        w = const(f"{name}_w", rng.normal(0, np.sqrt(2.0 / fan_in), (cout, cin // group, k, k)))
        b = const(f"{name}_b", rng.normal(0, 0.05, cout))
        nodes.append(helper.make_node("Conv", [x, w, b], [f"{name}_out"], name=name, kernel_shape=[k, k],
                                      strides=[stride, stride], pads=[k // 2] * 4, group=group))
        nodes.append(helper.make_node("Clip", [f"{name}_out", "relu6_min", "relu6_max"], [f"{name}_act"],
                                      name=f"{name}_relu6"))
        return f"{name}_act"

    x = conv("input", "stem", 3, 16, 3, 2)                        # 48x48
    for i, (cin, cout, stride) in enumerate([(16, 32, 1), (32, 64, 2), (64, 64, 2)]):
        x = conv(x, f"dw{i}", cin, cin, 3, stride, group=cin)     # depthwise
        x = conv(x, f"pw{i}", cin, cout, 1, 1)                    # pointwise
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1))
    w = const("fc_w", rng.normal(0, 0.1, (64, n_classes)))
    b = const("fc_b", np.zeros(n_classes))
    nodes.append(helper.make_node("Gemm", ["flat", w, b], ["logits"], name="fc"))
    graph = helper.make_graph(nodes, "mobilenet_like",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, n_classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tinycl tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
