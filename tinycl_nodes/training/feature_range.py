"""Calibrate each shipped extractor's feature range: ``models/<model>.range.json`` (``model_range``).

The range is measured over the model's whole training data (every MNIST or Fashion-MNIST
training image; every HAR window of both devices; every CWRU training window); fp32 image models
also get the range of their activations at ``presets.LATENT``'s cut, the ``latents`` a learner's
latent head trains on. Re-run after retraining a model or changing its card (a test checks
that every shipped model has a range for its current hash).

    python -m tinycl_nodes.training.feature_range [--data DIR]
"""

from __future__ import annotations

import argparse
from typing import Callable

import numpy as np

from .. import model_range
from ..extractor import model_path


def shipped_inputs(data: str | None) -> dict[str, tuple[Callable[[], np.ndarray], str]]:
    """Model name → (its training inputs, their name)."""
    from ..datasets import load_fashion_mnist, load_mnist
    from ..datasets.cwru import load_cwru
    from ..datasets.har import load_har

    def mnist() -> np.ndarray:
        return load_mnist("train", data)[0]

    def fashion() -> np.ndarray:
        return load_fashion_mnist("train", data)[0]

    images = {f"{stem}_{kind}": (load, f"{src} training split")
              for stem, load, src in (("mnist_0to5", mnist, "MNIST"), ("mnist_0to5_trainsplit", mnist, "MNIST"),
                                      ("fashion_mnist_0to5_trainsplit", fashion, "Fashion-MNIST"))
              for kind in ("fp32", "int8")}
    return {**images,
            "har_elm": (lambda: np.concatenate([load_har(data, device=d).X for d in ("sp", "sw")]),
                        "HAR windows of both devices"),
            "cwru_elm": (lambda: load_cwru(data, split="train").X, "CWRU training windows")}


def main(argv: list[str] | None = None) -> int:
    from ..presets import LATENT

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="dataset folder (default $TINYCL_DATA or ../shared/data)")
    args = ap.parse_args(argv)
    for name, (load, source) in shipped_inputs(args.data).items():
        path = model_path(name)
        entry = model_range.measure(path, load(), LATENT["cut"], source)
        model_range.write(path, entry)
        print(f"{name}: |feature| ≤ {entry['abs_max']:.4g} over {entry['samples']} samples"
              + (f", |latent| ≤ {entry['latent']['abs_max']:.4g}" if "latent" in entry else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
