"""Calibrate each shipped extractor's feature range: ``models/feature_ranges.json``.

A feature vector far outside what the frozen extractor can produce is a poisoned or broken
message (one ``LabeledFeatures`` of 1e20 made the streaming LDA singular for ever; 1e10 silently
dropped accuracy from 100 % to 9 %). The bound nodes enforce is ``MARGIN`` × the largest |feature|
the model gives over its whole training data (every MNIST or Fashion-MNIST training image; every
HAR window of both devices; every CWRU training window), keyed by the model's SHA-256 so a changed
model is never checked against another's range. fp32 image models also get the range of
their activations at ``presets.LATENT``'s cut: the ``latents`` a learner's latent head trains on (one
latent of 1e5 took an MNIST latent head from 98.9 % to 35 %).

    python -m tinycl_nodes.training.feature_range [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np

from ..extractor import MODELS_DIR, RANGES_FILE, FrozenExtractor, model_path


def _latent_abs_max(model: str, X: np.ndarray) -> float:
    """The largest |activation| at ``presets.LATENT``'s cut over ``X`` (the part of the model below the cut)."""
    from ..export.latent_onnx import split_model
    from ..presets import LATENT

    with tempfile.TemporaryDirectory() as tmp:
        lower = FrozenExtractor(split_model(model_path(model), LATENT["cut"], tmp).lower_path, threads=2)
        return float(np.abs(lower.extract(X)).max())


def calibrate(data: str | None = None) -> dict[str, dict]:
    from ..datasets import load_fashion_mnist, load_mnist
    from ..datasets.cwru import load_cwru
    from ..datasets.har import load_har
    from ..presets import LATENT

    def mnist() -> np.ndarray:
        return load_mnist("train", data)[0]

    def fashion() -> np.ndarray:
        return load_fashion_mnist("train", data)[0]

    images = {f"{stem}_{kind}": load for stem, load in (("mnist_0to5", mnist), ("mnist_0to5_trainsplit", mnist),
                                                         ("fashion_mnist_0to5_trainsplit", fashion))
              for kind in ("fp32", "int8")}
    inputs = {**images, "har_elm": lambda: np.concatenate([load_har(data, device=d).X for d in ("sp", "sw")]),
              "cwru_elm": lambda: load_cwru(data, split="train").X}
    out = {}
    for name, load in inputs.items():
        ex = FrozenExtractor(model_path(name), threads=2)
        X = load()
        entry = out[f"{name}.onnx"] = {"sha256": ex.hash, "abs_max": float(np.abs(ex.extract(X)).max()),
                                       "samples": int(X.shape[0])}
        if name in images and name.endswith("_fp32"):   # the latent head splits fp32 models only
            entry["latent"] = {"cut": LATENT["cut"], "abs_max": _latent_abs_max(name, X)}
        print(f"{name}: |feature| ≤ {entry['abs_max']:.4g} over {X.shape[0]} samples"
              + (f", |latent| ≤ {entry['latent']['abs_max']:.4g}" if "latent" in entry else ""))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="dataset folder (default $TINYCL_DATA or ../shared/data)")
    args = ap.parse_args(argv)
    (MODELS_DIR / RANGES_FILE).write_text(json.dumps(calibrate(args.data), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
