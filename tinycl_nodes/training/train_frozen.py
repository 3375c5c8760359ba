"""Train the frozen MNIST extractor on digits 0–5 only and export it to ONNX (fp32 and int8).

Why this recipe (see docs/frozen_model.md for the measurements): the embedding must serve digits
it never saw (6–9). A plain cross-entropy model squeezes away everything not needed to tell 0–5
apart (and a ReLU bottleneck leaves dead units). Here the 64-d embedding is linear + BatchNorm (no
ReLU, so no unit can die), and the loss adds to cross-entropy two contrastive terms on two
randomly augmented views of each image: supervised contrastive (same digit → close) and
instance contrastive (SimCLR: each image closest to its own other view). The instance term keeps
the within-class variety that a new class needs to be told apart, and the small random affine
augmentations make features stable under the variations every handwritten digit has.

With ``--split train`` the model is trained on the ``backbone`` part of the training split only
(``experiments/protocol.py``): the images the validation protocol labels and streams are never
seen, so constants can be selected on that protocol without the backbone having memorised it.

Usage: python -m tinycl_nodes.training.train_frozen [--dataset mnist|fashion_mnist] [--split all|train]
       [--data DIR] [--epochs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..experiments.protocol import DATASETS, load_images, train_parts
from ..extractor import MODELS_DIR

TRAIN_CLASSES = (0, 1, 2, 3, 4, 5)
EMBED_DIM = 64


def model_stem(dataset: str = "mnist", split: str = "all") -> str:
    """File stem of the frozen model trained on ``dataset`` (``split`` all or train): one naming rule."""
    return f"{dataset}_0to5" + ("_trainsplit" if split == "train" else "")


def build_model(width: int = 32, embed_dim: int = EMBED_DIM, n_classes: int = len(TRAIN_CLASSES)):
    """The CNN: three conv-BN-ReLU-maxpool blocks → linear 64-d embedding (BN, no ReLU) → linear head."""
    import torch.nn as nn

    class Embedding(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = width
            self.features = nn.Sequential(
                nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),            # 14×14
                nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),    # 7×7
                nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(), nn.MaxPool2d(2),  # 3×3
                nn.Flatten(), nn.Linear(4 * w * 9, embed_dim), nn.BatchNorm1d(embed_dim))

        def forward(self, x):
            return self.features(x)

    return Embedding(), nn.Linear(embed_dim, n_classes)


def random_affine(x, max_rot: float = 0.2, max_scale: float = 0.1, max_shift: float = 0.1):
    """Small random rotation (rad), scale and shift (fraction of the image) per image."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    u = lambda m: (torch.rand(n) * 2 - 1) * m  # noqa: E731
    ang, sc, tx, ty = u(max_rot), 1 + u(max_scale), u(max_shift), u(max_shift)
    theta = torch.stack([torch.stack([sc * torch.cos(ang), -sc * torch.sin(ang), tx], 1),
                         torch.stack([sc * torch.sin(ang), sc * torch.cos(ang), ty], 1)], 1)
    return F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=False), align_corners=False)


def contrastive_loss(embed, head, x, y, temperature: float = 0.1, instance_weight: float = 0.5):
    """Cross-entropy + supervised contrastive + instance contrastive on two augmented views."""
    import torch
    import torch.nn.functional as F

    z1, z2 = embed(random_affine(x)), embed(random_affine(x))
    n = y.shape[0]
    a = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = a @ a.t() / temperature
    sim = sim - torch.eye(2 * n) * 1e9  # never compare a view with itself
    labels = torch.cat([y, y])
    positives = (labels[:, None] == labels[None]).float() - torch.eye(2 * n)
    log_p = sim - torch.logsumexp(sim, 1, keepdim=True)
    supcon = -((log_p * positives).sum(1) / positives.sum(1)).mean()
    other_view = (torch.arange(2 * n) + n) % (2 * n)
    instance = F.cross_entropy(sim, other_view)
    return F.cross_entropy(head(z1), y) + supcon + instance_weight * instance


def train(data: str | None, epochs: int, seed: int, log=print, dataset: str = "mnist", split: str = "all"):
    """Train on training classes 0–5 (all of them, or the backbone part); return the embedding in eval mode."""
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    X, y = load_images(dataset, "train", data)
    keep = np.isin(y, TRAIN_CLASSES)
    if split == "train":
        part = np.zeros(y.size, bool)
        part[train_parts(y)["backbone"]] = True
        keep &= part
    Xt = torch.tensor(X[keep], dtype=torch.float32).unsqueeze(1) / 255.0
    yt = torch.tensor(y[keep].astype(np.int64))
    log(f"training on {len(yt)} {dataset} images of classes {TRAIN_CLASSES} (split {split})")
    embed, head = build_model()
    params = list(embed.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, 2e-3, weight_decay=5e-4)
    batch = 128
    steps = epochs * (len(yt) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    t0 = time.time()
    for epoch in range(epochs):
        embed.train()
        perm = torch.randperm(len(yt))
        total, n = 0.0, 0
        for i in range(0, len(yt) - batch + 1, batch):
            idx = perm[i:i + batch]
            loss = contrastive_loss(embed, head, Xt[idx], yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + loss.item(), n + 1
        log(f"epoch {epoch + 1}/{epochs}: loss {total / n:.4f} ({time.time() - t0:.0f} s)")
    embed.eval()
    return embed, Xt


def export_fp32(embed, path: Path) -> None:
    """ONNX opset 17, input ``image`` float32 (n, 1, 28, 28) in [0, 1], output ``features`` (n, 64)."""
    import torch

    torch.onnx.export(embed, torch.zeros(1, 1, 28, 28), str(path), dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["features"],
                      dynamic_axes={"image": {0: "n"}, "features": {0: "n"}})


def export_int8(fp32_path: Path, int8_path: Path, calibration: np.ndarray) -> None:
    """Static int8 quantisation (QDQ, per-channel weights) calibrated on training images of 0–5."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"image": calibration[i:i + 32]} for i in range(0, len(calibration), 32)])

        def get_next(self):
            return next(self._it, None)

    pre = int8_path.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32_path), str(pre))
    try:
        quantize_static(str(pre), str(int8_path), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    finally:
        pre.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        print("error: training needs PyTorch: pip install 'tinycl_nodes[train]' (torch==2.13.0, CPU)",
              file=sys.stderr)
        return 2
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data root holding mnist/ (default: $TINYCL_DATA or ../shared/data)")
    ap.add_argument("--dataset", default="mnist", choices=DATASETS)
    ap.add_argument("--split", default="all", choices=["all", "train"],
                    help="all: every training image of 0–5; train: the backbone part only (validation protocol)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=MODELS_DIR)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    embed, Xt = train(args.data, args.epochs, args.seed, dataset=args.dataset, split=args.split)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = model_stem(args.dataset, args.split)
    fp32, int8 = args.out / f"{stem}_fp32.onnx", args.out / f"{stem}_int8.onnx"
    export_fp32(embed, fp32)
    rng = np.random.default_rng(args.seed)
    calib = Xt.numpy()[rng.choice(len(Xt), 512, replace=False)]
    export_int8(fp32, int8, calib)
    meta = {"dataset": args.dataset, "split": args.split, "images": int(len(Xt)),
            "train_classes": list(TRAIN_CLASSES), "embed_dim": EMBED_DIM, "epochs": args.epochs,
            "seed": args.seed, "torch": torch.__version__, "files": [fp32.name, int8.name]}
    (args.out / f"{stem}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {fp32} ({fp32.stat().st_size} B) and {int8} ({int8.stat().st_size} B)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
