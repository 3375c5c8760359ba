"""Calibrate each shipped extractor's feature range: ``models/feature_ranges.json``.

A feature vector far outside what the frozen extractor can produce is a poisoned or broken
message (one ``LabeledFeatures`` of 1e20 made the streaming LDA singular for ever; 1e10 silently
dropped accuracy from 100 % to 9 %). The bound nodes enforce is ``MARGIN`` × the largest |feature|
the model gives over its whole training data (every MNIST training image; every HAR window of
both devices; every CWRU training window), keyed by the model's SHA-256 so a changed model is
never checked against another's range.

    python -m tinycl_nodes.training.feature_range [--data DIR]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ..extractor import MODELS_DIR, RANGES_FILE, FrozenExtractor, model_path


def calibrate(data: str | None = None) -> dict[str, dict]:
    from ..datasets import load_mnist
    from ..datasets.cwru import load_cwru
    from ..datasets.har import load_har

    inputs = {"mnist_0to5_fp32": lambda: load_mnist("train", data)[0],
              "mnist_0to5_int8": lambda: load_mnist("train", data)[0],
              "har_elm": lambda: np.concatenate([load_har(data, device=d).X for d in ("sp", "sw")]),
              "cwru_elm": lambda: load_cwru(data, split="train").X}
    out = {}
    for name, load in inputs.items():
        ex = FrozenExtractor(model_path(name), threads=2)
        X = load()
        feats = ex.extract(X)
        out[f"{name}.onnx"] = {"sha256": ex.hash, "abs_max": float(np.abs(feats).max()),
                               "samples": int(X.shape[0])}
        print(f"{name}: |feature| ≤ {out[f'{name}.onnx']['abs_max']:.4g} over {X.shape[0]} samples")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="dataset folder (default $TINYCL_DATA or ../shared/data)")
    args = ap.parse_args(argv)
    (MODELS_DIR / RANGES_FILE).write_text(json.dumps(calibrate(args.data), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
