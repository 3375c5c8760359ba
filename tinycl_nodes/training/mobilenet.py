"""A MobileNet-style network (depthwise-separable convolutions, ReLU6, global average pooling, a
linear classifier), randomly initialised and built with onnx.helper — a classifier of the kind a
user brings, made by the project itself for the ``tinycl model import`` tests and the camera
bench (nothing downloaded, no PyTorch needed). Exported with a fixed batch of 1, as many are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


#: (in, out, stride) of each depthwise-separable block
SMALL = ((16, 32, 1), (32, 64, 2), (64, 64, 2))
#: MobileNet v1 (width 1.0): 569 M multiply-adds at 224x224
V1 = ((32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
      *((512, 512, 1),) * 5, (512, 1024, 2), (1024, 1024, 1))


def mobilenet_like(path: Path, seed: int = 0, size: int = 96, n_classes: int = 10,
                   blocks: tuple[tuple[int, int, int], ...] = SMALL) -> Path:
    """A random MobileNet-style classifier, input ``input`` (1, 3, size, size), output ``logits``;
    the global average pooling node is ``gap``."""
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

    x = conv("input", "stem", 3, blocks[0][0], 3, 2)
    for i, (cin, cout, stride) in enumerate(blocks):
        x = conv(x, f"dw{i}", cin, cin, 3, stride, group=cin)     # depthwise
        x = conv(x, f"pw{i}", cin, cout, 1, 1)                    # pointwise
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1))
    w = const("fc_w", rng.normal(0, 0.1, (blocks[-1][1], n_classes)))
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
