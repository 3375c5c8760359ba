"""The frozen feature extractor: an ONNX model run by onnxruntime, with a content hash.

Every head records the hash of the extractor its features came from, so a head can never be
applied to (or merged with one trained on) another extractor's features. The hash covers the
model and its model card (``model_card``): the same ONNX fed another way gives other features.
Images are fed through the one preprocessing function (``preprocess``) the card parameterises.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from . import model_range
from .core.errors import InputError, TinyclError
from .preprocess import preprocess, preprocess_batch
from .model_card import ModelCard, canonical, card_path, check_card, default_card, read_card

MODELS_DIR = Path(__file__).resolve().parent / "models"
class ExtractorError(TinyclError):
    """The ONNX model is missing, corrupt, or not a feature extractor tinycl can run."""


def model_path(name: str) -> Path:
    """``name`` itself (``.onnx`` added when it has no suffix: ``model:=my_backbone_int8`` after ``tinycl model
    quantize … --out my_backbone_int8.onnx``) when that file exists, else the package's model of that name
    (``tinycl_nodes/models/<name>.onnx``)."""
    file = name if name.endswith(".onnx") else f"{name}.onnx"
    p = Path(file).expanduser()
    if p.exists() or p.is_symlink() or p.parent != Path("."):   # a path: where it says, there or not (an error
        return p                                                 # names it)
    return MODELS_DIR / file


def model_not_found(path: Path) -> ExtractorError:
    """The error for a model that is not there, naming the closest shipped model when the name is near one. A bare
    name (``model:=my_backbone_int8``) was looked for in the working directory, then among the shipped models: the
    error says both, and which models ship (it named only the package's path, ``…/models/my_backbone_int8.onnx``, as
    if the working directory had not been looked in)."""
    from difflib import get_close_matches

    shipped = sorted(m.stem for m in MODELS_DIR.glob("*.onnx"))
    close = get_close_matches(path.stem, shipped, n=1, cutoff=0.8)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if path.exists() or path.is_symlink():       # a folder of that name, a symlink loop: "not found" misled
        return ExtractorError(f"extractor model {path} is not a file")
    if path.parent == MODELS_DIR and path.stem not in shipped:
        return ExtractorError(f"extractor model not found: {path.name} is neither in the working directory "
                              f"({Path.cwd()}) nor a shipped model{hint or ' (' + ', '.join(shipped) + ')'}: give "
                              "the .onnx file's path")
    return ExtractorError(f"extractor model not found: {path}{hint}")


def model_card_of(path: Path) -> tuple[ModelCard | None, bytes]:
    """The card of the model at ``path`` (None when it has none) and its canonical bytes."""
    cp = card_path(path)
    if cp is None:
        return None, b""
    card, doc = read_card(cp)
    return card, canonical(doc)


def extractor_hash(path: str | os.PathLike[str]) -> str:
    """sha256 of the model file and its card (the model alone when it has no card)."""
    p = Path(path)
    if not p.is_file():
        raise model_not_found(p)
    digest = hashlib.sha256(p.read_bytes())
    _, card = model_card_of(p)
    if card:
        digest.update(b"\0tinycl-model-card\0" + card)
    return digest.hexdigest()


class FrozenExtractor:
    """Runs a frozen ONNX extractor on one sample or a batch; single-threaded by default.

    One intra-op thread is the right default for per-sample streaming (thread hand-off costs
    more than a small CNN's forward pass); give ``threads`` > 1 for large offline batches.

    A quantized (QDQ) model runs as its graph defines it — quantize, dequantize, float ops — so
    its features are the same on every CPU and equal to the C core's on a board but for rare
    rounding ties (onnxruntime sums a convolution in float, the C core in int32: measured, 4 of
    the features of 300 MNIST images differ by one code step; tests/firmware states the bound). With
    ``int8_fast=True`` onnxruntime fuses real int8 kernels instead: about 2× faster here, but on
    CPUs without VNNI those kernels saturate intermediate sums, so the features depend on the
    machine (measured here: cosine 0.988 to the fp32 model's features, against 0.9997 exact).
    """

    def __init__(self, path: str | os.PathLike[str], threads: int = 1, int8_fast: bool = False,
                 latent_cut: str | None = None) -> None:
        import onnxruntime as ort  # heavy import, only where a model is actually run

        self.path = Path(path)
        if not self.path.is_file():
            raise model_not_found(self.path)
        payload = self.path.read_bytes()
        if not payload:                   # onnxruntime said "does not have an ir_version set properly"
            raise ExtractorError(f"{self.path} is empty (0 bytes)")
        card, _ = model_card_of(self.path)
        self.hash = extractor_hash(self.path)
        #: the largest |feature| accepted from a message claiming this extractor (None: unknown model)
        self.feature_bound = model_range.bound(self.path, self.hash)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.quantized = b"QuantizeLinear" in payload
        if self.quantized and not int8_fast:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        #: with ``latent_cut`` the same forward pass also gives that layer's activations (the latent head's input)
        self.latent_output: str | None = None
        if latent_cut:
            from .model_tools import with_output

            payload, self.latent_output = with_output(payload, latent_cut)
        try:
            self._session = ort.InferenceSession(payload, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
            if "external data" in str(exc).lower():   # its extractor hash would not cover the weights either
                raise ExtractorError(f"{self.path}: its weights are in a separate file (ONNX external data): "
                                     f"`tinycl model import {self.path.name} --card CARD.yaml --out NAME.onnx` "
                                     f"writes one self-contained model") from None
            raise ExtractorError(f"cannot load ONNX model {self.path}: {str(exc).splitlines()[0][:200]}") from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ExtractorError(f"{self.path}: expected 1 input and at least 1 output")
        if inputs[0].type != "tensor(float)":    # every frame then failed in onnxruntime, one error each
            raise ExtractorError(f"{self.path}: input {inputs[0].name!r} is {inputs[0].type}; tinycl feeds "
                                 f"tensor(float) (images as the card's preprocessing makes them): re-export the "
                                 f"model with a float32 input")
        self._input = inputs[0].name
        shape = inputs[0].shape
        if not all(isinstance(d, int) and d > 0 for d in shape[1:]):
            raise ExtractorError(f"{self.path}: input shape {shape} must be fixed but for the batch axis")
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in shape[1:])
        self.fixed_batch = isinstance(shape[0], int)   # a model exported with a fixed batch of 1
        self.card: ModelCard = card if card is not None else default_card(self.input_shape)
        check_card(self.card, self.input_shape, [o.name for o in outputs], str(self.path))
        self.preprocessing = self.card.preprocessing or default_card(self.input_shape).preprocessing
        self._output = self.card.feature_output or outputs[0].name
        feature = next(o for o in outputs if o.name == self._output)
        if feature.type != "tensor(float)":      # a class label (int64) was taken for one feature
            others = [o.name for o in outputs if o.type == "tensor(float)"]
            raise ExtractorError(f"{self.path}: output {feature.name!r} is {feature.type}, not float32 features"
                                 + (f": name a float output ({', '.join(others)}) as the card's feature_output, or "
                                    f"`tinycl model import --cut` the layer to use" if others else ""))
        # a latent (C, H, W) output is flattened: features are vectors
        out_dims = feature.shape[1:]
        self.n_features = int(np.prod(out_dims)) if out_dims and all(isinstance(d, int) for d in out_dims) \
            else int(self.extract_one(np.zeros(self.input_shape, np.float32)).shape[0])

    def _prepare(self, x: np.ndarray | list[np.ndarray], batched: bool) -> np.ndarray:
        pre = self.preprocessing
        if pre is not None and batched and isinstance(x, (list, tuple)):   # images of any sizes
            return preprocess_batch(x, pre)
        arr = np.asarray(x)
        if arr.dtype == np.uint8 and pre is not None:   # images: the one preprocessing function
            body = arr.shape[1:] if batched else arr.shape
            if len(body) not in (2, 3):   # flat pixels of the model's size
                if int(np.prod(body)) != pre.size[0] * pre.size[1] * pre.channels:
                    raise InputError(f"extractor input: expected an image (H, W) or (H, W, 3), got shape {arr.shape}")
                body = (*pre.size, 3) if pre.channels == 3 else tuple(pre.size)
                arr = arr.reshape((-1, *body) if batched else body)
            return preprocess_batch(arr, pre) if batched else preprocess(arr, pre)[None]
        if arr.dtype == np.uint8:  # raw counts: the models take [0, 1] floats
            arr = arr.astype(np.float32) * np.float32(1.0 / 255.0)
        else:
            arr = arr.astype(np.float32, copy=False)
        want = self.input_shape
        body = arr.shape[1:] if batched else arr.shape
        if int(np.prod(body)) != int(np.prod(want)):
            raise InputError(f"extractor input: expected {int(np.prod(want))} values {want} per sample, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise InputError("extractor input: contains NaN or inf")
        return arr.reshape((-1, *want) if batched else (1, *want))

    def extract_one(self, x: np.ndarray) -> np.ndarray:
        """Features of one sample: a uint8 image of any size (grey ``(H, W)`` or RGB ``(H, W, 3)``,
        preprocessed as the card says), or float input with the model's number of values."""
        return self.run(self._prepare(x, False))[0]

    def latent_bound(self, cut: str) -> float | None:
        """The largest |activation| at ``cut`` accepted from a ``latents`` message of this extractor (None: unknown)."""
        return model_range.bound(self.path, self.hash, cut)

    def extract_one_with_latent(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features and the flattened activations at ``latent_cut`` of one sample, from one forward pass."""
        if self.latent_output is None:
            raise ExtractorError(f"{self.path.name}: opened without a latent cut")
        feats, latent = self._session.run([self._output, self.latent_output], {self._input: self._prepare(x, False)})
        return feats.reshape(-1), latent.reshape(-1)

    def extract(self, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Features of a batch ``(n, ...)`` (or a list of images of any sizes), ``batch_size`` at a time."""
        n = len(x)
        if n == 0:
            return np.zeros((0, self.n_features), np.float32)
        return np.concatenate([self.run(self._prepare(x[i:i + batch_size], True)) for i in range(0, n, batch_size)])

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """The ONNX forward pass alone on prepared inputs ``(n, *input_shape)`` float32."""
        if self.fixed_batch and inputs.shape[0] != 1:
            return np.concatenate([self.run(inputs[i:i + 1]) for i in range(inputs.shape[0])])
        out = self._session.run([self._output], {self._input: inputs})[0]
        return out.reshape(out.shape[0], -1)
