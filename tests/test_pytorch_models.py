"""The PyTorch parts, run for real (``make test`` installs the ``train`` extra: torch, CPU, and onnxscript).

- A backbone as a user brings it: a PyTorch module exported by ``torch.onnx.export`` as PyTorch 2.13 does by default
  (the torch.export-based exporter: opset 18+, node names such as ``node_mean``, weights in ``<model>.onnx.data``
  beside the model) and by the TorchScript exporter, both also with dynamic height and width. ``tinycl model
  import`` cuts it at its pooling layer and the extractor then gives what PyTorch computes there, on camera frames
  through the one preprocessing function; ``tinycl model quantize`` makes its int8 version. (Until 2026-12-04 an
  export with dynamic height and width was refused: "the ONNX model takes (3, 0, 0)".)
- ``make train-frozen`` on a user's image folder: PyTorch trains a backbone, exports it (fp32 and int8) with its
  card and class statistics, and the extractor runs both.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import yaml
from torch import nn

from tinycl_nodes.cli import main
from tinycl_nodes.datasets import load_mnist
from tinycl_nodes.extractor import FrozenExtractor
from tinycl_nodes.model_card import Preprocessing
from tinycl_nodes.model_tools import cosine, layers
from tinycl_nodes.preprocess import preprocess_batch

SIZE = (64, 80)                                   # height, width: not square, so a swapped axis would show
CARD = {"dataset": "robot", "class_names": [], "preprocessing": {
    "layout": "NCHW", "size": list(SIZE), "color": "rgb", "resize": "shorter_side_crop", "scale": 1 / 255,
    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}


class SqueezeExcite(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean((2, 3), keepdim=True)
        return x * nn.functional.hardsigmoid(self.expand(torch.relu(self.reduce(w))))


class Backbone(nn.Module):
    """The layers a MobileNetV3 or a ResNet is made of (batch norm, hard-swish, depthwise and pointwise convolution,
    squeeze-excite, a residual sum, global average pooling), small."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.Hardswish())
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, groups=16), nn.BatchNorm2d(16), nn.ReLU(),
                                   nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32), SqueezeExcite(32))
        self.skip = nn.Conv2d(16, 32, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(32, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return torch.flatten(self.pool(self.block(x) + self.skip(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def backbone() -> Backbone:
    torch.manual_seed(0)
    net = Backbone()
    for m in net.modules():                         # trained-looking batch-norm statistics, not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def export(net: nn.Module, path, exporter: str, dynamic: bool) -> None:
    x = torch.zeros(1, 3, *SIZE)
    if exporter == "dynamo":                       # PyTorch 2.13's default
        from torch.export import Dim

        shapes = {"x": {0: Dim("batch"), 2: Dim("height", min=32, max=1024),
                        3: Dim("width", min=32, max=1024)}} if dynamic else None
        torch.onnx.export(net, (x,), str(path), input_names=["image"], output_names=["logits"], dynamic_shapes=shapes)
    else:
        axes = {"image": {0: "batch", 2: "height", 3: "width"}} if dynamic else {"image": {0: "batch"}}
        torch.onnx.export(net, (x,), str(path), input_names=["image"], output_names=["logits"], dynamo=False,
                          opset_version=17, dynamic_axes=axes)


def pooling_node(path) -> str:
    """The node a user picks in Netron: the global average pooling before the classifier (the last one: the
    squeeze-excite's pooling comes first)."""
    import onnx

    nodes = onnx.load(str(path), load_external_data=False).graph.node
    return [n.name for n in nodes if n.op_type in ("GlobalAveragePool", "ReduceMean")][-1]


@pytest.fixture(scope="module")
def frames(data_dir) -> list[np.ndarray]:
    """Camera-sized RGB frames (480x640, MNIST digits on a coloured background)."""
    X, _ = load_mnist("test", data_dir)
    out = []
    for i in range(24):
        frame = np.full((480, 640, 3), (40 + 5 * i, 90, 160), np.uint8)
        frame[80:400, 160:480] = cv2.resize(X[i], (320, 320))[:, :, None]
        out.append(frame)
    return out


@pytest.mark.parametrize("exporter,dynamic", [("dynamo", False), ("dynamo", True), ("torchscript", True)])
def test_a_pytorch_export_imports_and_gives_what_pytorch_computes(tmp_path, frames, capsys, exporter, dynamic):
    net = backbone()
    src = tmp_path / "classifier.onnx"
    export(net, src, exporter, dynamic)
    if exporter == "dynamo":
        assert (tmp_path / "classifier.onnx.data").is_file()   # the weights beside the model
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(CARD))
    out = tmp_path / "backbone.onnx"
    cut = pooling_node(src)
    assert main(["model", "import", str(src), "--cut", cut, "--card", str(tmp_path / "card.yaml"),
                 "--out", str(out)]) == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert "(3, 64, 80), 32 features, runs in onnxruntime" in said, said
    assert ("dynamic axes height, width fixed to the card's size" in said) == dynamic, said
    extractor = FrozenExtractor(out)
    got = extractor.extract(frames)
    pre = Preprocessing(**CARD["preprocessing"])
    with torch.no_grad():
        want = net.features(torch.from_numpy(preprocess_batch(frames, pre))).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert np.ptp(want, axis=0).max() > 0.05            # the frames give different features: a real check
    assert json.loads(out.with_suffix(".json").read_text())["cut"] == cut

    calib = tmp_path / "calib"
    calib.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(calib / f"{i}.jpg"), f[:, :, ::-1])
    int8 = tmp_path / "backbone_int8.onnx"
    assert main(["model", "quantize", str(out), "--calib", str(calib), "--out", str(int8)]) == 0
    assert cosine(FrozenExtractor(int8).extract(frames), got).mean() > 0.98


def test_layers_shows_where_to_cut_a_pytorch_export(tmp_path, capsys):
    """``tinycl model layers``: the default exporter's names say little (``node_mean_1``); the table gives each
    node's output shape at the card's size and marks the vectors per image, the pooling layer first."""
    src = tmp_path / "classifier.onnx"
    export(backbone(), src, "dynamo", True)
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(CARD))
    rows = layers(src, tmp_path / "card.yaml")
    pool = next(r for r in rows if r["node"] == pooling_node(src))
    assert pool["vector"] and pool["shape"][1:] == (32, 1, 1), pool
    convs = [r for r in rows if r["op"] == "Conv"]
    assert convs[0]["shape"][1:] == (16, 32, 40) and not convs[0]["vector"]   # stride 2 at the card's 64x80
    # the vectors per image: the squeeze-excite's pooling, the backbone's, and the classifier's
    assert [r["shape"][1] for r in rows if r["vector"] and r["op"] in ("ReduceMean", "Gemm")] == [32, 32, 10]
    assert main(["model", "layers", str(src), "--card", str(tmp_path / "card.yaml"), "--last", "0"]) == 0
    table = capsys.readouterr().out
    assert any(pool["node"] in line and "32×1×1" in line and "one vector per image" in line
               for line in table.splitlines()), table
    assert main(["model", "import", str(src), "--cut", "/pool/GlobalAveragePool", "--card",
                 str(tmp_path / "card.yaml"), "--out", str(tmp_path / "b.onnx")]) == 2
    assert "`tinycl model layers` lists them" in capsys.readouterr().err
    grey = dict(CARD, preprocessing=dict(CARD["preprocessing"], color="gray", mean=[0.5], std=[0.25]))
    (tmp_path / "grey.yaml").write_text(yaml.safe_dump(grey))         # shapes were listed for an input it cannot take
    assert main(["model", "layers", str(src), "--card", str(tmp_path / "grey.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "the model card says input (1, 64, 80)" in err and len(err.splitlines()) == 1, err


def test_an_export_whose_weights_file_was_left_behind_is_one_line(tmp_path, capsys):
    src = tmp_path / "classifier.onnx"
    export(backbone(), src, "dynamo", False)
    moved = tmp_path / "copied"
    moved.mkdir()
    (moved / src.name).write_bytes(src.read_bytes())      # the model without classifier.onnx.data
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(CARD))
    assert main(["model", "import", str(moved / src.name), "--cut", pooling_node(src), "--card",
                 str(tmp_path / "card.yaml"), "--out", str(tmp_path / "b.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "its weights are in classifier.onnx.data, which is not beside it" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b.onnx").exists()


def test_train_frozen_trains_a_backbone_on_an_image_folder(tmp_path, data_dir, recwarn):
    """``make train-frozen DATASET=<folder>``: three classes of a user's images (MNIST digits 0-2 at 40x32, as a
    camera's crops), trained by PyTorch; the exported backbone separates them on images it was not trained on."""
    from tinycl_nodes.training.train_frozen import main as train

    X, y = load_mnist("train", data_dir)
    names = ["cup", "ball", "box"]
    for c, name in enumerate(names):
        (tmp_path / "objects" / name).mkdir(parents=True)
        for i in np.flatnonzero(y == c)[:120]:
            cv2.imwrite(str(tmp_path / "objects" / name / f"{i}.png"), cv2.resize(X[i], (40, 32)))
    assert train(["--name", "objects", "--dataset", str(tmp_path / "objects"), "--classes", ",".join(names),
                  "--epochs", "3", "--out", str(tmp_path / "models"), "--data", str(data_dir)]) == 0
    assert not [w for w in recwarn if "TorchScript" in str(w.message)]     # not the user's to act on
    card = json.loads((tmp_path / "models" / "objects.json").read_text())
    assert sorted(card["class_names"]) == sorted(names), card
    fp32 = FrozenExtractor(tmp_path / "models" / "objects_fp32.onnx")
    int8 = FrozenExtractor(tmp_path / "models" / "objects_int8.onnx")
    assert int8.quantized and fp32.hash != int8.hash
    assert (tmp_path / "models" / "objects_fp32.classes").is_file()

    Xt, yt = load_mnist("test", data_dir)
    keep = np.flatnonzero(yt < 3)[:300]
    held_out = [cv2.resize(Xt[i], (40, 32)) for i in keep]
    feats = fp32.extract(held_out)
    train_feats = fp32.extract([cv2.resize(X[i], (40, 32)) for c in range(3) for i in np.flatnonzero(y == c)[:120]])
    means = train_feats.reshape(3, 120, -1).mean(1)
    nearest = np.argmin(((feats[:, None] - means[None]) ** 2).sum(-1), 1)
    assert (nearest == yt[keep]).mean() > 0.9
    assert cosine(int8.extract(held_out), feats).mean() > 0.95
