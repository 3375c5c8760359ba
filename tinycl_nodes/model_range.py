"""A model's calibrated feature range: the ``<model>.range.json`` sidecar beside the ONNX.

A feature vector far outside what the frozen extractor can produce is a poisoned or broken
message (one ``LabeledFeatures`` of 1e20 made the streaming LDA singular for ever; 1e10 silently
dropped accuracy from 100 % to 9 %; one latent of 1e5 took an MNIST latent head from 98.9 % to
35 %). Nodes refuse features beyond ``MARGIN`` × the largest |feature| the model gave over the
images it was calibrated on, and latents beyond the same margin of the activations at the cut.

The sidecar holds the ``extractor_hash`` (model + card) it was measured for, so a changed model or
card is never checked against another's range: it then counts as not calibrated. Every shipped
model has one (``python -m tinycl_nodes.training.feature_range``); a user's model gets one from
``tinycl model range`` (or ``tinycl model quantize``, from its calibration images).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .storage import write_atomic

RANGE_SUFFIX = ".range.json"
#: features beyond MARGIN × the calibrated maximum are refused (poisoned or broken messages)
MARGIN = 4.0


def range_path(model: Path) -> Path:
    """The sidecar of ``model``: ``<stem>.range.json`` in its folder."""
    return model.with_name(model.stem + RANGE_SUFFIX)


def bound(model: Path, model_hash: str, cut: str | None = None) -> float | None:
    """MARGIN × the calibrated |feature| maximum of ``model`` whose ``extractor_hash`` is ``model_hash``
    — with ``cut``, of its activations at that layer (None: not calibrated for this model and card)."""
    try:
        entry = json.loads(range_path(model).read_text())
        if entry.get("extractor_hash") != model_hash:
            return None
        if cut is not None:
            entry = entry.get("latent") or {}
            if entry.get("cut") != cut:
                return None
        peak = entry.get("abs_max")
    except (OSError, ValueError, AttributeError):
        return None
    return MARGIN * float(peak) if isinstance(peak, (int, float)) and np.isfinite(peak) else None


def measure(model: Path, inputs: np.ndarray | Sequence[np.ndarray], latent_cut: str | None = None,
            source: str = "") -> dict[str, Any]:
    """The range of ``model`` over ``inputs`` (images or windows, as the extractor takes them); with
    ``latent_cut``, also of the activations there when the model can be split at it (fp32 models)."""
    from .core.errors import InputError
    from .export.latent_onnx import split_model
    from .extractor import FrozenExtractor

    ex = FrozenExtractor(model, threads=2)
    entry: dict[str, Any] = {"extractor_hash": ex.hash, "abs_max": float(np.abs(ex.extract(inputs)).max()),
                             "samples": len(inputs), "source": source}
    if latent_cut:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                lower = FrozenExtractor(split_model(model, latent_cut, tmp).lower_path, threads=2)
            except InputError:      # not splittable there (e.g. an int8 model): no latent head runs on it
                return entry
            entry["latent"] = {"cut": latent_cut, "abs_max": float(np.abs(lower.extract(inputs)).max())}
    return entry


def write(model: Path, entry: dict[str, Any]) -> Path:
    """Write ``entry`` (from :func:`measure`) as ``model``'s sidecar."""
    path = range_path(model)
    write_atomic(path, (json.dumps(entry, indent=1) + "\n").encode())
    return path
