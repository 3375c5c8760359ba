"""Latent replay with trainable upper layers (Pellegrini et al. 2020; Ravaglia et al. 2021).

The frozen model is cut at a named layer. Below the cut nothing changes (the extractor runs it);
the head sees that layer's activations, flattened, as its feature vector. Above the cut, the
model's own upper layers (e.g. the last convolution block and the embedding) plus a softmax
classifier that grows with the classes are trained online by backpropagation (numpy, this
package's :mod:`.layers`). The replay memory holds activations at the cut, in fp32 or int8 with
one grid per tensor or per channel, and follows the latent-replay memory rule of
:class:`~.replay.ReplayBuffer`.

Training: every ``batch_size`` new (pseudo-)labelled samples, ``epochs`` passes of mini-batch
SGD over the new batch mixed with ``replay`` patterns drawn from the memory (all of it when
``replay`` is None); the upper layers learn at ``lr · upper_lr_scale`` (slower than the fresh
classifier: they start from the frozen model's weights), the classifier at ``lr``. The replays,
their order and the memory rule draw from numpy's Generator, or with ``draws="pcg32"`` from
:class:`~.draws.Pcg32` as the C core does (same draws, same training:
``micro_ros_firmware/core/src/tinycl_latent.c``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._linear import softmax_rows_
from ._util import (add_zero_row, check_int, expect_array, meta_of,
                    rng_from_state, rng_state)
from .draws import Pcg32
from .errors import DivergedError, InputError, StateError
from .head import Head
from .layers import Conv2d, Layer, Linear, check_chain, layer_from_spec
from .quantize import Int8Quantizer
from .replay import PendingBatch, ReplayBuffer
from .validation import check_positive

QUANTIZATION = ("none", "tensor", "channel")
DRAWS = ("numpy", "pcg32")


class LatentUpperHead(PendingBatch, Head):
    """Upper layers + growing softmax classifier, trained on new samples mixed with latent replays."""

    kind = "LatentUpperHead"
    version = 1

    def __init__(self, latent_shape: Sequence[int], upper: Sequence[Layer], memory_size: int = 1500,
                 batch_size: int = 32, epochs: int = 2, lr: float = 0.02, upper_lr_scale: float = 0.1,
                 replay: int | None = None, minibatch: int = 32, quantization: str = "none",
                 calibration_margin: float = 0.1, seed: int = 0, draws: str = "numpy",
                 extractor_hash: str = "") -> None:
        self.latent_shape = tuple(check_int(d, "latent_shape") for d in latent_shape)
        super().__init__(int(np.prod(self.latent_shape)), extractor_hash)
        self.upper = list(upper)
        self.embed_dim = check_chain(self.upper, self.latent_shape)[0] if self.upper else self.n_features
        if self.upper and len(check_chain(self.upper, self.latent_shape)) != 1:
            raise InputError("upper layers must end in a flat vector (add a flatten)")
        self.batch_size = check_int(batch_size, "batch_size")
        self.epochs = check_int(epochs, "epochs")
        self.lr = check_positive(lr, "lr")
        self.upper_lr_scale = check_positive(upper_lr_scale, "upper_lr_scale", allow_zero=True)
        self.replay = None if replay is None else check_int(replay, "replay", minimum=0)
        self.minibatch = check_int(minibatch, "minibatch")
        if quantization not in QUANTIZATION:
            raise InputError(f"quantization: must be one of {QUANTIZATION}, got {quantization!r}")
        self.quantization = quantization
        self.seed = check_int(seed, "seed", minimum=0)
        buf_seq, sgd_seq = np.random.SeedSequence(self.seed).spawn(2)
        channels = self.latent_shape[0] if quantization == "channel" and len(self.latent_shape) == 3 else 1
        self.buffer = ReplayBuffer(memory_size, self.n_features, quantized=quantization != "none",
                                   margin=calibration_margin, channels=channels,
                                   seed=int(buf_seq.generate_state(1)[0]))
        if draws not in DRAWS:
            raise InputError(f"draws: must be one of {DRAWS}, got {draws!r}")
        self.draws = draws
        if draws == "pcg32":   # the C core's generator: replay memory on stream 1, SGD on stream 2
            self.buffer.rng, self._rng = Pcg32(self.seed, 1), Pcg32(self.seed, 2)
        else:
            self._rng = np.random.default_rng(sgd_seq)
        self.classifier = Linear(np.zeros((0, self.embed_dim), np.float32), np.zeros(0, np.float32))
        self._init_pending()
        self.pending_codes = False   # use_grid: new samples are queued on the replay grid

    def use_grid(self, quantizer: Int8Quantizer) -> None:
        """Fix the replay grid before learning (a per-tensor head), as ``tinycl_latent_use_grid`` on a board whose
        CNN gives int8 codes on that grid: the first batch calibrates nothing, and new samples are queued on the
        grid (each rounded to it: the C head queues their int8 codes, a quarter of the floats' RAM). On-grid input
        (the codes dequantised) passes unchanged, so the training is the float training."""
        if self.quantization != "tensor" or not isinstance(quantizer, Int8Quantizer):
            raise InputError(f"use_grid: an Int8Quantizer for a per-tensor head, not {type(quantizer).__name__} "
                             f"for quantization {self.quantization!r}")
        if self.n_seen or self.n_pending or self.buffer.size:
            raise InputError("use_grid: the grid is fixed before the head learns anything")
        self.buffer.quantizer = quantizer
        self.pending_codes = True

    def _learn(self, x: np.ndarray, idx: int) -> None:
        if self.pending_codes:
            q = self.buffer.quantizer
            x = q.dequantize(q.quantize(x))
        super()._learn(x, idx)

    # --- forward / backward ----------------------------------------------------------------
    def _forward(self, X: np.ndarray) -> np.ndarray:
        """Logits of a batch of flattened latents (caches what backward needs)."""
        A = X.reshape(X.shape[0], *self.latent_shape)
        for layer in self.upper:
            A = layer.forward(A)
        return self.classifier.forward(A)

    def loss_and_grads(self, X: np.ndarray, rows: np.ndarray) -> float:
        """Mean softmax cross-entropy of ``X`` labelled ``rows``; leaves gradients in each layer."""
        P = softmax_rows_(self._forward(X).astype(np.float32))
        k = X.shape[0]
        loss = -float(np.log(np.maximum(P[np.arange(k), rows], 1e-30)).mean())
        P[np.arange(k), rows] -= 1.0
        P /= np.float32(k)
        G = self.classifier.backward(P, need_dx=bool(self.upper) and self.upper_lr_scale > 0)
        if G is None:
            return loss
        first = next((i for i, layer in enumerate(self.upper) if layer.trainable), len(self.upper))
        for i in range(len(self.upper) - 1, first - 1, -1):
            layer = self.upper[i]
            G = layer.backward(G, need_dx=i > first) if layer.trainable else layer.backward(G)
        return loss

    def _sgd_layers(self) -> list[tuple[Any, np.float32]]:
        """The layers SGD changes, each with its rate: the classifier at ``lr``, then the trainable upper layers at
        ``lr · upper_lr_scale`` (none when that is 0)."""
        out = [(self.classifier, np.float32(self.lr))]
        if self.upper_lr_scale > 0:
            ulr = np.float32(self.lr * self.upper_lr_scale)
            out += [(layer, ulr) for layer in self.upper if layer.trainable]
        return out

    def _sgd_step(self, X: np.ndarray, rows: np.ndarray) -> None:
        self.loss_and_grads(X, rows)
        for layer, lr in self._sgd_layers():
            layer.W -= lr * layer.dW
            layer.b -= lr * layer.db

    def _trainables(self) -> list[np.ndarray]:
        """Every array SGD changes (``_sgd_layers``' weights and biases)."""
        return [arr for layer, _ in self._sgd_layers() for arr in (layer.W, layer.b)]

    def _train_batch(self) -> None:
        """Train on the queued batch mixed with replays, then let the memory rule keep some of it. A batch that
        leaves any weight NaN or inf (a learning rate too high for these features) is undone and dropped with a
        DivergedError (an InputError: a node logs it in one line): the weights stay those before it, so nothing
        learned is lost."""
        n = self.n_pending
        Xn, rn = self._px[:n].copy(), self._prow[:n].copy()
        before = [arr.copy() for arr in self._trainables()]
        self._train_epochs(Xn, rn)
        self.n_pending = 0
        if not all(np.isfinite(arr).all() for arr in self._trainables()):
            for arr, old in zip(self._trainables(), before):
                arr[...] = old
            raise DivergedError(f"latent head: training diverged (NaN/inf weights) at lr {self.lr:g} × upper "
                             f"{self.upper_lr_scale:g}; the batch of {n} samples is dropped, the weights before it "
                             f"kept: lower lr")
        self.buffer._add(Xn, rn)

    def _train_epochs(self, Xn: np.ndarray, rn: np.ndarray) -> None:
        for _ in range(self.epochs):
            X, rows = Xn, rn
            if self.buffer.size and self.replay != 0:
                k = self.buffer.size if self.replay is None else min(self.replay, self.buffer.size)
                pick = np.sort(self._rng.choice(self.buffer.size, k, replace=False))
                X = np.concatenate([Xn, self.buffer.features(pick)])
                rows = np.concatenate([rn, self.buffer._rows[pick].astype(np.int64)])
            order = self._rng.permutation(X.shape[0])
            for s in range(0, order.size, self.minibatch):
                sel = order[s:s + self.minibatch]
                self._sgd_step(X[sel], rows[sel])

    # --- Head -------------------------------------------------------------------------------
    def _add_class_rows(self) -> None:
        self.classifier.W = add_zero_row(self.classifier.W)
        self.classifier.b = add_zero_row(self.classifier.b)
        self.buffer.ensure_classes(len(self.classifier.b))

    def _scores(self, x: np.ndarray) -> np.ndarray:
        return self._forward(x[None])[0]

    def linear(self) -> tuple[np.ndarray, np.ndarray]:
        """The classifier's rows over this head's own embedding (``embed_dim`` wide: the output of its
        *trained* upper layers), not over its input. What the ``Head`` message carries (``n_features`` =
        ``embed_dim``; the upper layers travel in its state blob); a reader checks the kind."""
        return self.classifier.W, self.classifier.b

    def predict_batch(self, X: np.ndarray) -> np.ndarray:
        """Class ids of a batch of latents (argmax), for evaluation."""
        out = [self._forward(np.asarray(X[i:i + 256], np.float32)).argmax(1) for i in range(0, len(X), 256)]
        return np.asarray(self.classes, np.int64)[np.concatenate(out)]

    # --- costs ------------------------------------------------------------------------------
    @property
    def replay_nbytes(self) -> int:
        """Bytes reserved for replayed activations, the int8 grid(s) included."""
        return self.buffer.nbytes + self.buffer.quantizer_nbytes

    @property
    def label_nbytes(self) -> int:
        return self.buffer.label_nbytes

    def forward_macs(self, n_classes: int | None = None) -> tuple[int, int]:
        """MACs of one forward pass: (upper layers, classifier)."""
        shape, upper = self.latent_shape, 0
        for layer in self.upper:
            upper += layer.macs(shape)
            shape = layer.out_shape(shape)
        C = len(self.classes) if n_classes is None else n_classes
        return upper, C * self.embed_dim

    def train_macs_per_pattern(self, n_classes: int | None = None) -> int:
        """MACs to train on one pattern: forward + weight gradients + input gradients above the first trainable layer."""
        fwd_upper, fwd_cls = self.forward_macs(n_classes)
        if self.upper_lr_scale == 0 or not self.upper:
            return fwd_upper + 2 * fwd_cls   # replays still pass through the (frozen) upper layers
        shape, first_done, total = self.latent_shape, False, 3 * fwd_cls
        for layer in self.upper:
            m = layer.macs(shape)
            total += m * (2 if not first_done and layer.trainable else 3)  # fwd + dW (+ dX)
            first_done = first_done or layer.trainable
            shape = layer.out_shape(shape)
        return total

    def learning_macs_per_sample(self, n_classes: int | None = None) -> float:
        """Learning MACs per stream sample: every batch trains ``epochs`` × (new + replayed) patterns."""
        replayed = self.buffer.capacity if self.replay is None else min(self.replay, self.buffer.capacity)
        return self.epochs * (self.batch_size + replayed) * self.train_macs_per_pattern(n_classes) / self.batch_size

    # --- state ------------------------------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        return {"latent_shape": list(self.latent_shape), "layers": [layer.spec() for layer in self.upper],
                "memory_size": self.buffer.capacity, "batch_size": self.batch_size,
                "epochs": self.epochs, "lr": self.lr, "upper_lr_scale": self.upper_lr_scale,
                "replay": self.replay, "minibatch": self.minibatch, "quantization": self.quantization,
                "calibration_margin": self.buffer.margin, "seed": self.seed, "draws": self.draws}

    def _meta(self) -> dict[str, Any]:
        return {"rng_state": rng_state(self._rng), "replay": self.buffer._meta(), "pending_codes": self.pending_codes}

    def _arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {"head_W": self.classifier.W, "head_b": self.classifier.b,
                                      **self._pending_arrays(), **self.buffer._state_arrays("replay_")}
        for i, layer in enumerate(self.upper):
            out.update({f"upper{i}_{k}": v for k, v in layer.arrays().items()})
        return out

    def _load_arrays(self, state: dict[str, Any], n_classes: int) -> dict[str, Any]:
        specs = state.get("params", {}).get("layers")
        if specs != [layer.spec() for layer in self.upper]:
            raise StateError("state: upper layers differ from this head's (another cut or model)")
        upper = []
        for i, layer in enumerate(self.upper):
            arrays = {k: expect_array(state, f"upper{i}_{k}", v.shape, np.float32, nonneg=False)
                      for k, v in layer.arrays().items()}
            upper.append(layer_from_spec(layer.spec(), arrays))
        W = expect_array(state, "head_W", (n_classes, self.embed_dim), np.float32, nonneg=False)
        b = expect_array(state, "head_b", (n_classes,), np.float32, nonneg=False)
        rng = rng_from_state(meta_of(state, "rng_state"))
        buffer = self.buffer._restored(state, meta_of(state, "replay"), n_classes, "replay_")
        coded = state["meta"].get("pending_codes", False)   # absent before the queue could hold codes
        if not isinstance(coded, bool) or (coded and not isinstance(buffer.quantizer, Int8Quantizer)):
            raise StateError(f"state: 'pending_codes' must be a bool, true only with a per-tensor grid, got {coded!r}")
        return {"upper": upper, "classifier": Linear(W, b), **self._load_pending(state, n_classes),
                "_rng": rng, "buffer": buffer, "pending_codes": coded}


def fold_batchnorm(layer: Conv2d | Linear, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray,
                   var: np.ndarray, eps: float) -> None:
    """Fold an inference BatchNorm that follows ``layer`` into its weights, in place."""
    g = (np.asarray(scale, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps))
    shape = (-1,) + (1,) * (layer.W.ndim - 1)
    layer.W = (layer.W * g.reshape(shape)).astype(np.float32)
    layer.b = ((layer.b - mean) * g + bias).astype(np.float32)
