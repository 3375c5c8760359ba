"""The model card: the JSON beside an ONNX extractor that says how to feed it and what it knows.

A card is the sidecar JSON tinycl has always written next to its models (``mnist_0to5.json``
beside ``mnist_0to5_fp32.onnx`` and ``_int8.onnx``, ``har_elm.json`` beside ``har_elm.onnx``),
extended with:

- ``preprocessing`` (image models): input size and layout, colour order, resize policy, scale,
  mean and std — everything :func:`tinycl_nodes.preprocess.preprocess` needs, so that the same
  image gives the same features in the extractor node, the experiments and the C exporter;
- ``feature_output``: which ONNX output is the feature vector (default: the first);
- ``dataset`` and ``class_names``/``train_classes``: what the backbone was made on (a warning
  when it is run on a dataset it was not made for).

A card is found as ``<model stem>.json``, else as a ``*.json`` in the same folder whose
``files`` lists the model. A model without a card is an image model fed as its input shape says
(stretch, [0, 1] pixels), or a window model when its input is 2-D.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .core.errors import TinyclError
from .validation_words import error_words

#: the largest float32: a model's input beyond it is inf
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: channels of each colour order the preprocessing can produce
CHANNELS = {"gray": 1, "rgb": 3, "bgr": 3}


class CardError(TinyclError):
    """A model card that is missing, not valid JSON, or does not match its ONNX model."""


class Preprocessing(BaseModel):
    """How an image becomes the model's input tensor (one sample, no batch axis)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    layout: Literal["NCHW", "NHWC"] = Field("NCHW", description="axis order of the ONNX input")
    size: tuple[int, int] = Field(..., description="(height, width) of the model's input")
    color: Literal["gray", "rgb", "bgr"] = Field("gray", description="channel order the model expects")
    resize: Literal["stretch", "shorter_side_crop"] = Field(
        "stretch", description="stretch to size, or scale the shorter side to size and crop the centre")
    scale: float = Field(1.0 / 255.0, gt=0, description="pixel value (0–255) × scale, before mean/std")
    mean: tuple[float, ...] = Field((0.0,), description="subtracted per channel after scaling")
    std: tuple[float, ...] = Field((1.0,), description="divided per channel after the mean")

    @field_validator("size")
    @classmethod
    def _size(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not all(1 <= d <= 8192 for d in v):
            raise ValueError(f"size {v} must be two sides of 1–8192 pixels")
        return v

    @model_validator(mode="after")
    def _per_channel(self) -> "Preprocessing":
        c = self.channels
        for name in ("mean", "std"):
            vals = getattr(self, name)
            if len(vals) not in (1, c):
                raise ValueError(f"{name} has {len(vals)} values; {self.color} has {c} channel(s)")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std {self.std} must be positive")
        ends = [abs(p * self.scale - m) / s for p in (0, 255) for m in self.mean for s in self.std]
        if max(ends) > FLOAT32_MAX:
            raise ValueError(f"(pixel × scale − mean) / std reaches {max(ends):.3g}, beyond what float32 holds "
                             f"({FLOAT32_MAX:.3g}): scale {self.scale:g}, mean {self.mean}, std {self.std}")
        return self

    @property
    def channels(self) -> int:
        return CHANNELS[self.color]

    def input_shape(self) -> tuple[int, int, int]:
        """The ONNX input shape this preprocessing produces (without the batch axis)."""
        h, w = self.size
        return (self.channels, h, w) if self.layout == "NCHW" else (h, w, self.channels)


class ModelCard(BaseModel):
    """The parts of a card tinycl reads; anything else in the JSON (training notes) is kept as is."""

    model_config = ConfigDict(extra="allow", frozen=True)
    preprocessing: Preprocessing | None = Field(None, description="image models: how to feed an image")
    feature_output: str | None = Field(None, description="name of the ONNX output with the features")
    dataset: str | None = Field(None, description="the dataset the backbone was made on")
    class_names: list[str] | None = Field(None, description="the classes the backbone was made on, by name: a list "
                                                            "in class-id order, e.g. [cup, ball]")


def card_path(model: Path) -> Path | None:
    """The card of ``model``: ``<stem>.json``, else a JSON in its folder whose ``files`` lists it. When neither is
    found and a JSON there cannot be read (it may be the card: ``mnist_0to5.json`` serves two models), a CardError
    says so: the model ran on the default card without a word, with another hash and another preprocessing."""
    own = model.with_suffix(".json")
    if own.is_file():
        return own
    unreadable = []
    for cand in sorted(model.parent.glob("*.json")):
        try:
            doc = json.loads(cand.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            if not cand.name.endswith(".range.json"):       # a feature range (model_range), never a card
                unreadable.append(cand.name)
            continue
        if isinstance(doc, dict) and model.name in (doc.get("files") or []):
            return cand
    if unreadable:
        raise CardError(f"{model.name} has no card of its own ({own.name}) and {', '.join(unreadable)} in its folder "
                        f"cannot be read as JSON: if it is the card that lists it, mend it; if not, move it away")
    return None


def read_card(path: Path) -> tuple[ModelCard, dict[str, Any]]:
    """The validated card and its raw JSON; CardError (one line) when it is not a valid card."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise CardError(f"model card {path}: cannot read it as JSON: {str(exc).splitlines()[0][:160]}") from None
    if not isinstance(doc, dict):
        raise CardError(f"model card {path}: expected a JSON object")
    try:
        return ModelCard(**doc), doc
    except ValidationError as exc:
        raise CardError(f"model card {path}: {_card_error(exc)}") from None


def _card_error(exc: ValidationError) -> str:
    """The first error of a card, with what a top-level field holds (``class_names: Input should be a valid list``
    left a user who wrote ``{0: cup}``, as the nodes' ``class_names`` parameter takes it, to guess the form)."""
    err = exc.errors()[0]
    loc, msg = error_words(err)
    field = ModelCard.model_fields.get(str(err["loc"][0])) if len(err["loc"]) == 1 else None
    return f"{loc}: {msg}" + (f" ({loc}: {field.description})" if field and field.description else "")


def load_card_file(path: str | Path) -> dict[str, Any]:
    """A card given by the user as JSON or YAML (``tinycl model import --card``), validated."""
    import yaml

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:   # binary: not UTF-8
        raise CardError(f"model card {p}: cannot read it: {str(exc).splitlines()[0][:160]}") from None
    if not isinstance(doc, dict):
        raise CardError(f"model card {p}: expected a mapping")
    try:
        ModelCard(**doc)
    except ValidationError as exc:
        raise CardError(f"model card {p}: {_card_error(exc)}") from None
    return doc


def default_card(input_shape: tuple[int, ...]) -> ModelCard:
    """The card of a model that has none: a (C, H, W) input with 1 or 3 channels is an image
    stretched to size with [0, 1] pixels (gray or RGB); anything else is fed as it is."""
    if len(input_shape) == 3 and input_shape[0] in (1, 3):
        c, h, w = input_shape
        return ModelCard(preprocessing=Preprocessing(size=(h, w), color="gray" if c == 1 else "rgb"))
    return ModelCard()


def check_card(card: ModelCard, input_shape: tuple[int, ...], outputs: list[str] | None, where: str) -> None:
    """CardError when the card does not describe this ONNX model's input or outputs (None: the input alone)."""
    pre = card.preprocessing
    if pre is not None and tuple(input_shape) != pre.input_shape():
        raise CardError(f"{where}: the model card says input {pre.input_shape()} ({pre.color}, {pre.layout}, "
                        f"{pre.size[0]}x{pre.size[1]}), the ONNX model takes {tuple(input_shape)}")
    if outputs is not None and card.feature_output is not None and card.feature_output not in outputs:
        raise CardError(f"{where}: the model card's feature_output {card.feature_output!r} is not an output of "
                        f"the model (outputs: {', '.join(outputs)})")


def canonical(doc: dict[str, Any]) -> bytes:
    """The card as the extractor hash sees it: key order and whitespace do not matter."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def trained_on_note(card: ModelCard | None, model: str, dataset: str) -> str | None:
    """One line when ``model`` was trained on the whole training split of ``dataset`` (its card: that dataset, split
    ``all``; an image folder by its path): a protocol drawn from those images streams the model's own training
    images, so every accuracy is optimistic (a ``*_trainsplit`` model was trained on the backbone part only)."""
    made = card.dataset if card is not None else None
    if not made or (card.model_extra or {}).get("split", "all") == "train":
        return None
    same = made == dataset or (Path(made).is_absolute() and Path(dataset).expanduser().resolve() == Path(made))
    if not same:
        return None
    return (f"{model} was trained on the whole {Path(made).name} training split: the validation stream holds its "
            f"training images, so the accuracies are optimistic (a *_trainsplit model was trained on the protocol's "
            f"backbone part only)")


def foreign_dataset_warning(card: ModelCard, model: str, dataset: str, classes: list[str]) -> str | None:
    """One line when ``model`` was made on another dataset or classes than the ones it is run on."""
    made = [str(c) for c in (card.class_names or [])]
    if card.dataset and Path(card.dataset).name.lower() != Path(dataset).name.lower():   # a folder: by its name
        return (f"warning: {model} was made on {card.dataset} (classes {', '.join(made) or '?'}); this run uses "
                f"{dataset} (classes {', '.join(classes[:12])}{' …' if len(classes) > 12 else ''})")
    missing = [c for c in made if c not in classes]
    if missing:
        return f"warning: {model} was made on classes {', '.join(made)}; {dataset} has no {', '.join(missing)}"
    return None
