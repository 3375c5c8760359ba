"""Train the frozen MNIST extractor on digits 0–5 only and export it to ONNX (fp32 and int8).

Why this recipe (see docs/frozen_model.md for the measurements): the embedding must serve digits
it never saw (6–9). A plain cross-entropy model squeezes away everything not needed to tell 0–5
apart (and a ReLU bottleneck leaves dead units). Here the 64-d embedding is linear + BatchNorm (no
ReLU, so no unit can die), and the loss adds to cross-entropy two contrastive terms on two
randomly augmented views of each image: supervised contrastive (same digit → close) and
instance contrastive (SimCLR: each image closest to its own other view). The instance term keeps
the within-class variety that a new class needs to be told apart, and the small random affine
augmentations make features stable under the variations every handwritten digit has.

Any dataset: ``--dataset mnist`` (default), ``fashion_mnist`` (idx files under the data root) or
an image folder (``root/<class name>/*.png|jpg``, brought to 28x28 grey by the one preprocessing
function: shorter side + centre crop); ``--classes`` are the classes it is trained on (ids or
names). It writes ``<name>_fp32.onnx``, ``<name>_int8.onnx`` and their card ``<name>.json`` with
the dataset, the class list and the preprocessing — to a new name: a model that exists (the
shipped ``mnist_0to5`` above all) is only replaced with ``--overwrite``.

With ``--split train`` (MNIST or Fashion-MNIST) it trains on the ``backbone`` part of the training split
only (``experiments/protocol.py``): the images the validation protocol labels and streams are never
seen, so constants can be selected on that protocol without the backbone having memorised it.

Usage: python -m tinycl_nodes.training.train_frozen [--name NAME] [--dataset D] [--split all|train]
       [--classes 0,1,2] [--epochs N] [--data DIR] [--out DIR] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import model_range
from ..core.errors import TinyclError
from ..datasets import load_mnist
from ..experiments.protocol import train_parts
from ..extractor import MODELS_DIR

TRAIN_CLASSES = (0, 1, 2, 3, 4, 5)
EMBED_DIM = 64


def model_stem(dataset: str = "mnist", split: str = "all") -> str:
    """File stem of the frozen model trained on ``dataset`` (``split`` all or train): one naming rule."""
    return f"{dataset}_0to5" + ("_trainsplit" if split == "train" else "")


def build_model(width: int = 32, embed_dim: int = EMBED_DIM, n_classes: int = len(TRAIN_CLASSES), projection: int = 0):
    """The CNN: three conv-BN-ReLU-maxpool blocks → linear 64-d embedding (BN, no ReLU) → linear head; and the
    projection the contrastive terms see: with ``projection`` > 0 an MLP (that many hidden units, ReLU) on the
    embedding, used in training only, else the embedding itself."""
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

    project = (nn.Sequential(nn.Linear(embed_dim, projection), nn.ReLU(), nn.Linear(projection, embed_dim))
               if projection else nn.Identity())
    return Embedding(), nn.Linear(embed_dim, n_classes), project


def random_affine(x, max_rot: float = 0.2, max_scale: float = 0.1, max_shift: float = 0.1, strength: float = 1.0):
    """Small random rotation (rad), scale and shift (fraction of the image) per image, each
    range multiplied by ``strength`` (the recipe's augmentation strength)."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    max_rot, max_scale, max_shift = strength * max_rot, strength * max_scale, strength * max_shift
    u = lambda m: (torch.rand(n) * 2 - 1) * m  # noqa: E731
    ang, sc, tx, ty = u(max_rot), 1 + u(max_scale), u(max_shift), u(max_shift)
    theta = torch.stack([torch.stack([sc * torch.cos(ang), -sc * torch.sin(ang), tx], 1),
                         torch.stack([sc * torch.sin(ang), sc * torch.cos(ang), ty], 1)], 1)
    return F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=False), align_corners=False)


def contrastive_loss(embed, head, x, y, temperature: float = 0.1, instance_weight: float = 0.5,
                     augment: float = 1.0, project=None, project_supcon: bool = True):
    """Cross-entropy (on the embedding) + supervised contrastive + instance contrastive of two augmented views; the
    instance term (and, with ``project_supcon``, the supervised one) on ``project``'s output when given."""
    import torch
    import torch.nn.functional as F

    z1, z2 = embed(random_affine(x, strength=augment)), embed(random_affine(x, strength=augment))
    n = y.shape[0]
    z = torch.cat([z1, z2])
    eye = torch.eye(2 * n)

    def log_softmax_similarity(v):
        a = F.normalize(v, dim=1)
        sim = a @ a.t() / temperature - eye * 1e9   # never compare a view with itself
        return sim, sim - torch.logsumexp(sim, 1, keepdim=True)

    projected = project(z) if project is not None else z
    sim, log_p = log_softmax_similarity(projected)
    labels = torch.cat([y, y])
    positives = (labels[:, None] == labels[None]).float() - eye
    sup_log_p = log_p if project_supcon or project is None else log_softmax_similarity(z)[1]
    supcon = -((sup_log_p * positives).sum(1) / positives.sum(1)).mean()
    other_view = (torch.arange(2 * n) + n) % (2 * n)
    instance = F.cross_entropy(sim, other_view)
    return F.cross_entropy(head(z1), y) + supcon + instance_weight * instance


#: how training images become the CNN's input (recorded in the card)
PREPROCESSING = {"layout": "NCHW", "size": [28, 28], "color": "gray", "resize": "shorter_side_crop",
                 "scale": 1 / 255, "mean": [0.0], "std": [1.0]}


def load_training_set(dataset: str, data: str | None, split: str = "all") -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """(images float32 (n, 1, 28, 28) in [0, 1], class ids, class names, dataset: its name, or an image folder's
    absolute path, which the card keeps so that its images are found from anywhere); ``split="train"``: the
    backbone part of the training split only."""
    from ..datasets import data_root, load_image_folder, read_images
    from ..model_card import Preprocessing
    from ..preprocess import preprocess_batch

    if dataset in ("mnist", "fashion_mnist"):
        X, y = load_mnist("train", data_root(data) / dataset)
        X, names = X[:, None].astype(np.float32) / 255.0, [str(c) for c in range(10)]
    else:
        folder = load_image_folder(dataset)
        pre = Preprocessing(**PREPROCESSING)
        images, kept = read_images(folder, None, tuple(pre.size))
        X, y, names, dataset = preprocess_batch(images, pre), folder.y[kept], list(folder.classes), \
            str(folder.root.resolve())
    if split == "train":
        keep = np.sort(train_parts(y)["backbone"])
        X, y = X[keep], y[keep]
    return X, y.astype(np.int64), names, dataset


def as_pixels(X: np.ndarray) -> np.ndarray:
    """The (n, 28, 28) uint8 images ``load_training_set`` gave as (n, 1, 28, 28) floats: what its card's scale
    (1/255) makes of them again, as a camera's images are fed (exact: the floats are bytes / 255)."""
    return np.rint(X[:, 0] * 255.0).astype(np.uint8)


def parse_classes(given: str, names: list[str]) -> tuple[int, ...]:
    """``0,1,2`` or ``cat,dog`` → class ids; an unknown one is an error naming it."""
    from ..datasets import class_ids

    out = class_ids(given, names, "--classes")
    if len(out) < 2:
        raise TinyclError(f"--classes: at least 2 classes are needed, got {given!r}")
    return out


@dataclass(frozen=True)
class Recipe:
    """The frozen model's training recipe: tuned constants like any other, chosen on the
    validation protocol (``experiments/recipe.py``, grid in docs/selection.md)."""

    epochs: int = 6
    instance_weight: float = 0.5   # weight of the instance-contrastive (SimCLR) term
    embed_dim: int = EMBED_DIM     # width of the linear embedding (the features)
    augment: float = 1.0           # augmentation strength: multiplies the affine ranges
    projection: int = 0            # hidden units of the contrastive terms' projection MLP (SimCLR's); 0: none
    project_supcon: bool = True    # the supervised term on the projection too (False: on the features, as without)


def train(X: np.ndarray, y: np.ndarray, classes: tuple[int, ...], epochs: int, seed: int, log=print,
          recipe: Recipe | None = None):
    """Train on the images of ``classes``; return the embedding network in eval mode.

    ``recipe`` gives the loss weights, width and augmentation (its ``epochs`` is ignored:
    ``epochs`` rules)."""
    recipe = recipe or Recipe(epochs=epochs)
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    keep = np.isin(y, classes)
    Xt = torch.tensor(X[keep], dtype=torch.float32)
    yt = torch.tensor(np.searchsorted(classes, y[keep]).astype(np.int64))
    log(f"training on {len(yt)} images of classes {classes}")
    embed, head, project = build_model(embed_dim=recipe.embed_dim, n_classes=len(classes),
                                       projection=recipe.projection)
    params = list(embed.parameters()) + list(head.parameters()) + list(project.parameters())
    opt = torch.optim.AdamW(params, 2e-3, weight_decay=5e-4)
    batch = min(128, len(yt))     # a folder of fewer images: one batch of all of them per epoch (0 steps was an error)
    steps = epochs * (len(yt) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    t0 = time.time()
    for epoch in range(epochs):
        embed.train()
        perm = torch.randperm(len(yt))
        total, n = 0.0, 0
        for i in range(0, len(yt) - batch + 1, batch):
            idx = perm[i:i + batch]
            loss = contrastive_loss(embed, head, Xt[idx], yt[idx], instance_weight=recipe.instance_weight,
                                    augment=recipe.augment, project=project, project_supcon=recipe.project_supcon)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + loss.item(), n + 1
        log(f"epoch {epoch + 1}/{epochs}: loss {total / n:.4f} ({time.time() - t0:.0f} s)")
    embed.eval()
    return embed, Xt


def export_fp32(embed, path: Path) -> None:
    """ONNX opset 17, input ``image`` float32 (n, 1, 28, 28) in [0, 1], output ``features`` (n, 64).

    The TorchScript exporter, not PyTorch 2.13's default: its node names (``/features/features.11/MaxPool``) are
    the cut points the presets, the model cards and the C export name. Its deprecation warning is therefore not
    the user's to act on, and is not shown."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        torch.onnx.export(embed, torch.zeros(1, 1, 28, 28), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["features"],
                          dynamic_axes={"image": {0: "n"}, "features": {0: "n"}})


def export_int8(fp32_path: Path, int8_path: Path, calibration: np.ndarray) -> None:
    """Static int8 quantisation (QDQ, per-channel weights) calibrated on training images of 0–5 (``tinycl design``
    quantizes a user's models with it too: ``quantize_static_qdq`` takes their input names and fixed batches)."""
    from ..model_tools import quantize_static_qdq

    quantize_static_qdq(Path(fp32_path), Path(int8_path), calibration)


def main(argv: list[str] | None = None) -> int:

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default=None, help="model name: writes <name>_fp32.onnx, <name>_int8.onnx, <name>.json "
                                                 "(default: <dataset>_0to5, with _trainsplit for --split train)")
    ap.add_argument("--dataset", default="mnist", help="mnist | fashion_mnist | an image folder path")
    ap.add_argument("--classes", default="0,1,2,3,4,5", help="classes trained on: ids or names (default 0–5)")
    ap.add_argument("--data", default=None, help="data root holding mnist/ (default: $TINYCL_DATA or ../shared/data)")
    ap.add_argument("--split", default="all", choices=["all", "train"],
                    help="all: every training image of 0–5; train: the backbone part only (validation protocol)")
    ap.add_argument("--epochs", type=int, default=Recipe.epochs)
    ap.add_argument("--instance-weight", type=float, default=Recipe.instance_weight,
                    help="weight of the instance-contrastive term")
    ap.add_argument("--embed-dim", type=int, default=Recipe.embed_dim, help="embedding (feature) width")
    ap.add_argument("--augment", type=float, default=Recipe.augment, help="augmentation strength (× the affine ranges)")
    ap.add_argument("--projection", type=int, default=Recipe.projection,
                    help="hidden units of the projection MLP the contrastive terms see (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=MODELS_DIR)
    ap.add_argument("--overwrite", action="store_true", help="replace an existing model of that name")
    args = ap.parse_args(argv)
    args.name = args.name or model_stem(Path(args.dataset).name, args.split)
    fp32, int8, card = (args.out / f"{args.name}_fp32.onnx", args.out / f"{args.name}_int8.onnx",
                        args.out / f"{args.name}.json")
    try:
        if not args.name.replace("_", "").replace("-", "").isalnum():
            raise TinyclError(f"--name {args.name!r}: letters, digits, _ and - only")
        if args.epochs < 1:
            raise TinyclError(f"--epochs {args.epochs}: at least 1")
        if (args.embed_dim < 2 or not 0 <= args.instance_weight <= 10 or not 0 <= args.augment <= 3
                or not 0 <= args.projection <= 4096):
            raise TinyclError(f"recipe out of range: --embed-dim {args.embed_dim} (≥ 2), --instance-weight "
                              f"{args.instance_weight} (0–10), --augment {args.augment} (0–3), --projection "
                              f"{args.projection} (0–4096)")
        existing = [p for p in (fp32, int8, card) if p.exists()]
        if existing and not args.overwrite:
            raise TinyclError(f"{existing[0]} exists: choose another --name (or --overwrite to replace it)")
        X, y, names, dataset = load_training_set(args.dataset, args.data, args.split)
        classes = parse_classes(args.classes, names)
        n_images = int(np.isin(y, classes).sum())
        if n_images < 2:        # a batch's BatchNorm needs two
            raise TinyclError(f"--classes {args.classes}: {dataset} has {n_images} readable image(s) of them, "
                              f"training needs at least 2")
    except TinyclError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        import torch
    except ImportError:
        print("error: training needs PyTorch: pip install 'tinycl_nodes[train]' (torch==2.13.0, CPU)",
              file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    recipe = Recipe(args.epochs, args.instance_weight, args.embed_dim, args.augment, args.projection)
    write_model(X, y, names, dataset, classes, recipe, args.seed, args.split, fp32, int8, card)
    print(f"wrote {fp32} ({fp32.stat().st_size} B), {int8} ({int8.stat().st_size} B) and the card {card}")
    return 0


def write_class_statistics(model: Path, X: np.ndarray, y: np.ndarray, classes: tuple[int, ...]) -> Path:
    """The model's class statistics on the images it was trained on (model_prior.py), of its own features, beside
    it (the int8 model's features are not exactly the fp32 one's: each ships its own)."""
    from ..extractor import FrozenExtractor
    from ..model_prior import fit_prior, write_prior

    ext = FrozenExtractor(model)
    keep = np.isin(y, classes)
    Xk = X[keep].astype(np.float32)
    feats = np.concatenate([ext.run(Xk[i:i + 512]) for i in range(0, len(Xk), 512)])
    return write_prior(model, fit_prior(feats, y[keep], ext.hash))


def write_model(X: np.ndarray, y: np.ndarray, names: list[str], dataset: str, classes: tuple[int, ...],
                recipe: Recipe, seed: int, split: str, fp32: Path, int8: Path, card: Path, log=print) -> None:
    """Train with ``recipe`` and write the fp32 and int8 ONNX models and their card."""
    import torch

    from ..presets import LATENT

    embed, Xt = train(X, y, classes, recipe.epochs, seed, log=log, recipe=recipe)
    fp32.parent.mkdir(parents=True, exist_ok=True)
    export_fp32(embed, fp32)
    rng = np.random.default_rng(seed)
    calib = Xt.numpy()[rng.choice(len(Xt), min(512, len(Xt)), replace=False)]
    export_int8(fp32, int8, calib)
    meta = {"dataset": dataset, "class_names": [names[c] for c in classes], "train_classes": list(classes),
            "embed_dim": recipe.embed_dim, "split": split, "images": int(len(Xt)), "epochs": recipe.epochs,
            "seed": seed, "recipe": asdict(recipe), "torch": torch.__version__,
            "preprocessing": PREPROCESSING, "feature_output": "features", "files": [fp32.name, int8.name]}
    card.write_text(json.dumps(meta, indent=1) + "\n")
    images = as_pixels(X)
    for model in (fp32, int8):
        write_class_statistics(model, X, y, classes)
        # its feature range, as the shipped models have theirs (training/feature_range.py): without it every node
        # warned "no feature range" for the model just trained, and refused only |x| > 1e6
        model_range.write(model, model_range.measure(model, images, LATENT["cut"],
                                                     f"the {len(images)} images of {Path(dataset).name}"))

if __name__ == "__main__":
    raise SystemExit(main())
