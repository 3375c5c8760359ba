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
    return _read(model, model_hash, cut)[0]


def missing_words(model: Path, model_hash: str, cut: str | None = None) -> str:
    """Why :func:`bound` is None, for the line that says so: no sidecar, one for another model or card, or one that
    cannot be used (corrupt, or a peak that is not a number above 0: a peak of 0 refused every feature)."""
    return _read(model, model_hash, cut)[1]


def _read(model: Path, model_hash: str, cut: str | None) -> tuple[float | None, str]:
    path = range_path(model)
    if not path.exists():
        return None, f"no {path.name}"
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:     # RecursionError: JSON nested 100,000 deep
        return None, f"{path.name} cannot be read ({type(exc).__name__}: {str(exc)[:100]})"
    if not isinstance(entry, dict):
        return None, f"{path.name} is not a JSON object"
    if entry.get("extractor_hash") != model_hash:
        return None, f"{path.name} was measured for another model or card"
    if cut is not None:
        entry = entry.get("latent")
        if not isinstance(entry, dict) or entry.get("cut") != cut:
            return None, f"{path.name} has no range at layer {cut}"
    peak = entry.get("abs_max")
    if isinstance(peak, bool) or not isinstance(peak, (int, float)) or not 0 < peak < float("inf"):
        return None, f"{path.name}: abs_max must be a number above 0, got {peak!r}"
    return MARGIN * float(peak), ""


def measure(model: Path, inputs: np.ndarray | Sequence[np.ndarray], latent_cut: str | None = None,
            source: str = "") -> dict[str, Any]:
    """The range of ``model`` over ``inputs`` (images or windows, as the extractor takes them); with
    ``latent_cut``, also of the activations there when the model can be split at it (fp32 models)."""
    from .core.errors import InputError
    from .export.latent_onnx import split_model
    from .extractor import FrozenExtractor

    ex = FrozenExtractor(model, threads=2)
    peak = float(np.abs(ex.extract(inputs)).max())
    if not 0 < peak < float("inf"):     # inputs of 1e38 wrote "abs_max": Infinity, which bounds nothing
        raise InputError(f"{Path(model).name}: its features over these inputs peak at {peak}: a range is a "
                         f"number above 0 (are the inputs what the model takes?)")
    entry: dict[str, Any] = {"extractor_hash": ex.hash, "abs_max": peak, "samples": len(inputs), "source": source}
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
