"""The frozen feature extractor: an ONNX model run by onnxruntime, with a content hash.

Every head records the hash of the extractor its features came from, so a head can never be
applied to (or merged with one trained on) another extractor's features.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .core.errors import InputError, TinyclError

MODELS_DIR = Path(__file__).resolve().parent / "models"


class ExtractorError(TinyclError):
    """The ONNX model is missing, corrupt, or not a feature extractor tinycl can run."""


def model_path(name: str) -> Path:
    """Path of a model shipped with the package (``tinycl_nodes/models/<name>``), or ``name`` itself."""
    p = Path(name)
    return p if p.suffix == ".onnx" and p.exists() else MODELS_DIR / (name if name.endswith(".onnx") else f"{name}.onnx")


class FrozenExtractor:
    """Runs a frozen ONNX extractor on one sample or a batch; single-threaded by default.

    One intra-op thread is the right default for per-sample streaming (thread hand-off costs
    more than a small CNN's forward pass); give ``threads`` > 1 for large offline batches.

    A quantized (QDQ) model runs as its graph defines it — quantize, dequantize, float ops — so
    its features are the same on every CPU and equal to the C core's on a board. With
    ``int8_fast=True`` onnxruntime fuses real int8 kernels instead: about 2× faster here, but on
    CPUs without VNNI those kernels saturate intermediate sums, so the features depend on the
    machine (measured here: cosine 0.988 to the fp32 model's features, against 0.9997 exact).
    """

    def __init__(self, path: str | os.PathLike[str], threads: int = 1, int8_fast: bool = False) -> None:
        import onnxruntime as ort  # heavy import, only where a model is actually run

        self.path = Path(path)
        if not self.path.is_file():
            raise ExtractorError(f"extractor model not found: {self.path}")
        payload = self.path.read_bytes()
        self.hash = hashlib.sha256(payload).hexdigest()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.quantized = b"QuantizeLinear" in payload
        if self.quantized and not int8_fast:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        try:
            self._session = ort.InferenceSession(payload, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
            raise ExtractorError(f"cannot load ONNX model {self.path}: {str(exc).splitlines()[0][:200]}") from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ExtractorError(f"{self.path}: expected 1 input and at least 1 output")
        self._input = inputs[0].name
        self._output = outputs[0].name
        shape = inputs[0].shape
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in shape[1:])
        if not all(d > 0 for d in self.input_shape):
            raise ExtractorError(f"{self.path}: input shape {shape} must be fixed but for the batch axis")
        out_dims = outputs[0].shape[1:]  # a latent (C, H, W) output is flattened: features are vectors
        self.n_features = int(np.prod(out_dims)) if out_dims and all(isinstance(d, int) for d in out_dims) \
            else int(self.extract_one(np.zeros(self.input_shape, np.float32)).shape[0])

    def _prepare(self, x: np.ndarray, batched: bool) -> np.ndarray:
        arr = np.asarray(x)
        if arr.dtype == np.uint8:  # raw pixels / counts: the models take [0, 1] floats
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
        """Features of one sample (any shape with the model's number of values)."""
        return self._session.run([self._output], {self._input: self._prepare(x, False)})[0][0].reshape(-1)

    def extract(self, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Features of a batch ``(n, ...)``, run ``batch_size`` at a time."""
        arr = self._prepare(x, True)
        if arr.shape[0] == 0:
            return np.zeros((0, self.n_features), np.float32)
        return np.concatenate([self._session.run([self._output], {self._input: arr[i:i + batch_size]})[0]
                               .reshape(-1, self.n_features) for i in range(0, arr.shape[0], batch_size)])
