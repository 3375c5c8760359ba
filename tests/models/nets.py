"""ONNX models the project makes itself for the tests (nothing downloaded).

- ``mnist_classifier_rgb``: the shipped MNIST CNN re-exported for 64x64 RGB, with a random linear
  classifier on top (``logits``): a classifier to cut back at ``features``;
- ``mobilenet_like`` (tinycl_nodes/training/mobilenet.py): a small randomly initialised
  MobileNet-style network, 3x96x96, fixed batch of 1, built with onnx.helper (PyTorch is not in
  the test venv).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tinycl_nodes.extractor import model_path
from tinycl_nodes.training.mobilenet import mobilenet_like
from tinycl_nodes.training.reexport import reexport_rgb

__all__ = ["mnist_classifier_rgb", "mobilenet_like"]


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
