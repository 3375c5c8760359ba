"""The MNIST CNN re-exported for colour camera images of another size (no re-training).

In front of the trained graph go two ONNX operators: a 1x1 convolution taking RGB to grey with
the BT.601 weights OpenCV uses (0.299, 0.587, 0.114), and a linear Resize (half-pixel centres,
no anti-aliasing: measured on 300 MNIST test digits enlarged to 64x64, anti-aliasing blurs them
to cosine 0.94 against the 28x28 features, plain linear keeps 0.9996) from the new size to the
CNN's 28x28. The result takes ``(n, 3, H, W)`` RGB in [0, 1]; its card says so.
It is what the 64x64 JPEG TinyNDC check runs, and a model the project makes itself for the
``tinycl model import`` tests.

Usage: python -m tinycl_nodes.training.reexport [--size 64] [--src mnist_0to5_fp32] --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..extractor import model_card_of, model_path
from ..model_prior import copy_prior
from ..storage import write_atomic


def reexport_rgb(src: Path, out: Path, size: tuple[int, int] = (64, 64)) -> Path:
    """Write ``out`` (.onnx) and its card: ``src`` (a (n, 1, 28, 28) model) for (n, 3, *size) RGB."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    old = g.input[0]
    dims = [d.dim_value for d in old.type.tensor_type.shape.dim[1:]]
    if len(dims) != 3 or dims[0] != 1:
        raise ValueError(f"{src}: expected a (n, 1, H, W) input, got {dims}")
    h, w = size
    new_in = helper.make_tensor_value_info("image_rgb", TensorProto.FLOAT, ["n", 3, h, w])
    g.initializer.extend([
        numpy_helper.from_array(np.array([0.299, 0.587, 0.114], np.float32).reshape(1, 3, 1, 1), "rgb_to_grey_w"),
        numpy_helper.from_array(np.array([dims[1], dims[2]], np.int64), "resize_hw"),
    ])
    pre_nodes = [
        helper.make_node("Conv", ["image_rgb", "rgb_to_grey_w"], ["grey_full"], name="rgb_to_grey"),
        helper.make_node("Shape", ["grey_full"], ["grey_shape"], start=0, end=2, name="batch_and_channel"),
        helper.make_node("Concat", ["grey_shape", "resize_hw"], ["resize_sizes"], axis=0, name="resize_to"),
        helper.make_node("Resize", ["grey_full", "", "", "resize_sizes"], [old.name], mode="linear",
                         name="resize_to_cnn"),
    ]
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(pre_nodes + nodes)
    del g.input[:]
    g.input.append(new_in)
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, model.SerializeToString())
    card, _ = model_card_of(src)
    doc = json.loads(card.model_dump_json(exclude_none=True)) if card is not None else {}
    doc |= {"preprocessing": {"layout": "NCHW", "size": [h, w], "color": "rgb", "resize": "stretch",
                              "scale": 1 / 255, "mean": [0.0], "std": [1.0]},
            "feature_output": g.output[0].name, "reexported_from": src.name, "files": [out.name]}
    write_atomic(out.with_suffix(".json"), (json.dumps(doc, indent=1) + "\n").encode())
    copy_prior(src, out)            # the same features of the same images: the same class statistics (model_prior)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="mnist_0to5_fp32")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--out", type=Path, required=True, help="the .onnx to write (its card goes beside it)")
    args = ap.parse_args(argv)
    out = reexport_rgb(model_path(args.src), args.out, (args.size, args.size))
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
