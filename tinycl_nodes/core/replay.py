"""Latent replay (Pellegrini et al., 2020) and quantized latent replay (Ravaglia et al., 2021).

The frozen extractor plays the role of the layers below the latent replay layer, so the replay
memory holds *feature vectors* (activations), not raw inputs: 64 floats — or 64 bytes with int8
storage — per pattern instead of an image. The head above it is a softmax linear layer trained by
SGD on each mini-batch of new samples mixed with the whole replay memory.

Memory rule (the public code's, batch index ``b`` counted from 0): after training on batch ``b``
keep ``h = min(M // (b+1), n_new)`` random new patterns; they replace ``h`` random patterns of
the old memory. One addition for small streaming batches: while the memory is not full, the new
patterns go to free slots first (the public code fills the memory with its first, large batch;
with batches smaller than ``M`` it would otherwise overwrite its own few patterns).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import state as st
from ._linear import sgd_pass_
from ._util import (add_zero_row, check_int, check_rows, expect_array,
                    expect_rows, label_dtype, meta_of, rng_from_state, rng_state)
from .errors import InputError, StateError
from .head import Head, LinearLayer
from .quantize import ChannelInt8Quantizer, Int8Quantizer, quantizer_from_dict
from .validation import check_batch, check_positive


class ReplayBuffer:
    """Fixed-size replay memory of feature vectors + class-row labels, fp32 or int8 storage.

    - ``quantized=True`` stores int8 codes of ``quantizer``; with no quantizer given, the first
      :meth:`add_batch` calibrates one on its data (``Int8Quantizer.fit(X, margin)``) — later
      patterns outside that range saturate, which ``margin`` makes rare.
    - Labels are class-*row* indices (the head's row of the class), uint8 while there are at most
      256 classes, uint16 beyond (uint32 past 65,536); fp32 and int8 buffers follow the same rule,
      so they spend the same bytes on labels.
    - Storage is allocated once at full ``capacity``: :attr:`nbytes` / :attr:`label_nbytes` are
      the bytes a device reserves for it (the quantizer adds 8 bytes: scale and zero point).
    """

    kind = "ReplayBuffer"
    version = 1

    def __init__(self, capacity: int, n_features: int, *, quantized: bool = False,
                 quantizer: Int8Quantizer | ChannelInt8Quantizer | None = None, margin: float = 0.1,
                 seed: int = 0, channels: int = 1) -> None:
        self.capacity = check_int(capacity, "memory_size")
        self.n_features = check_int(n_features, "n_features")
        self.channels = check_int(channels, "channels")
        if self.n_features % self.channels:
            raise InputError(f"channels: {self.channels} does not divide {self.n_features} features")
        if quantizer is not None and not isinstance(quantizer, (Int8Quantizer, ChannelInt8Quantizer)):
            raise InputError(f"quantizer: must be an Int8Quantizer or None, got {type(quantizer).__name__}")
        self.quantized = bool(quantized) or quantizer is not None
        self.quantizer = quantizer
        self.margin = check_positive(margin, "margin", allow_zero=True)
        self.seed = check_int(seed, "seed", minimum=0)
        self.rng = np.random.default_rng(self.seed)
        self.size = 0
        self.n_batches = 0
        self.n_classes = 0
        self.last_kept = 0                    # new patterns kept by the last add_batch
        self._x = np.zeros((self.capacity, self.n_features),
                           np.int8 if self.quantized else np.float32)
        self._rows = np.zeros(self.capacity, np.uint8)

    # --- memory -----------------------------------------------------------------------------
    def ensure_classes(self, n_classes: int) -> None:
        """Widen the label dtype when the head has more classes than it can index."""
        self.n_classes = max(self.n_classes, int(n_classes))
        dt = label_dtype(self.n_classes)
        if dt != self._rows.dtype:
            self._rows = self._rows.astype(dt)

    def add_batch(self, X: Any, rows: Any) -> int:
        """Apply the memory rule to a batch of new patterns; return how many were kept."""
        X = check_batch(X, self.n_features)
        rows = np.asarray(rows)
        if rows.shape != (X.shape[0],) or (rows.size and rows.dtype.kind not in "iu"):
            raise InputError(f"rows: expected {X.shape[0]} integer class rows, got "
                             f"{rows.dtype} shape {rows.shape}")
        if rows.size and (rows.min() < 0 or rows.max() >= 2**32):
            raise InputError("rows: class rows must be in [0, 2**32)")
        return self._add(X, rows)

    def _add(self, X: np.ndarray, rows: np.ndarray) -> int:
        n = X.shape[0]
        if n == 0:
            return 0
        if self.quantized and self.quantizer is None:
            self.quantizer = (ChannelInt8Quantizer.fit(X, self.channels, self.margin) if self.channels > 1
                              else Int8Quantizer.fit(X, self.margin))
        self.ensure_classes(int(rows.max()) + 1)
        h = min(self.capacity // (self.n_batches + 1), n)
        if h:
            pick = self.rng.choice(n, h, replace=False)
            n_fill = min(h, self.capacity - self.size)
            slots = np.concatenate([np.arange(self.size, self.size + n_fill),
                                    self.rng.choice(self.size, h - n_fill, replace=False)])
            self._x[slots] = self.quantizer.quantize(X[pick]) if self.quantized else X[pick]
            self._rows[slots] = rows[pick]
            self.size += n_fill
        self.n_batches += 1
        self.last_kept = h
        return h

    def features(self, idx: np.ndarray | None = None) -> np.ndarray:
        """The stored patterns (or slots ``idx``) as float32, dequantised when int8."""
        x = self._x[:self.size] if idx is None else self._x[idx]
        if self.quantized:
            return self.quantizer.dequantize(x)
        return x.copy()

    def rows(self) -> np.ndarray:
        """The class rows of the stored patterns (a copy)."""
        return self._rows[:self.size].copy()

    @property
    def nbytes(self) -> int:
        """Bytes reserved for stored features (capacity × features × 1 or 4)."""
        return int(self._x.nbytes)

    @property
    def label_nbytes(self) -> int:
        """Bytes reserved for stored labels (capacity × 1 or 2)."""
        return int(self._rows.nbytes)

    @property
    def quantizer_nbytes(self) -> int:
        """Bytes of the int8 grid(s): 8 per tensor, 8 per channel (0 for fp32)."""
        if not self.quantized:
            return 0
        return self.quantizer.nbytes if isinstance(self.quantizer, ChannelInt8Quantizer) else 8

    # --- state ------------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {"n_batches": self.n_batches, "n_classes": self.n_classes,
                "rng_state": rng_state(self.rng),
                "quantizer": self.quantizer.to_dict() if self.quantizer else None}

    def _state_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {prefix + "x": self._x[:self.size], prefix + "rows": self._rows[:self.size]}

    def _restored(self, state: dict[str, Any], meta: Any, n_classes: int | None,
                  prefix: str = "") -> "ReplayBuffer":
        """A new buffer like this one holding the contents of ``state``; StateError if they don't fit."""
        if not isinstance(meta, dict):
            raise StateError("state: replay buffer meta missing")
        size = expect_rows(state, prefix + "x", self.capacity)
        x = expect_array(state, prefix + "x", (size, self.n_features),
                         np.int8 if self.quantized else np.float32, nonneg=False)
        rows = expect_array(state, prefix + "rows", (size,), kinds="u")
        n_batches, n_cls = meta.get("n_batches"), meta.get("n_classes")
        for name, v in (("n_batches", n_batches), ("n_classes", n_cls)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise StateError(f"state: replay {name} must be a non-negative int, got {v!r}")
        if n_classes is not None and n_cls > n_classes:
            raise StateError(f"state: replay memory indexes {n_cls} classes, head has {n_classes}")
        check_rows(rows, n_cls, prefix + "rows")
        qd = meta.get("quantizer")
        quantizer = quantizer_from_dict(qd) if qd is not None else None
        if self.quantized and size and quantizer is None:
            raise StateError("state: int8 replay memory without its quantizer")
        if not self.quantized and quantizer is not None:
            raise StateError("state: holds an int8 replay memory, this buffer stores float32")
        rng = rng_from_state(meta.get("rng_state"), "replay rng_state")
        new = ReplayBuffer(self.capacity, self.n_features, quantized=self.quantized,
                           quantizer=quantizer, margin=self.margin, seed=self.seed, channels=self.channels)
        new.rng, new.n_batches, new.size = rng, n_batches, size
        new.ensure_classes(max(n_cls, n_classes or 0))
        new._x[:size] = x
        new._rows[:size] = rows
        return new

    def state_dict(self) -> dict[str, Any]:
        """Versioned snapshot (usable on its own; heads embed the same arrays and meta)."""
        params = {"capacity": self.capacity, "quantized": self.quantized, "margin": self.margin,
                  "seed": self.seed, "channels": self.channels}
        meta = {"n_features": self.n_features, **self._meta()}
        return st.make_state(self.kind, self.version, params, self._state_arrays(), meta)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the contents by ``state``; on any error nothing is changed."""
        st.check_state(state, self.kind, self.version, ("x", "rows"))
        meta = state.get("meta")
        if not isinstance(meta, dict) or meta.get("n_features") != self.n_features:
            raise StateError(f"state: replay buffer is not for {self.n_features} features")
        self.__dict__.update(self._restored(state, meta, None).__dict__)


class PendingBatch:
    """Samples queued until a batch is complete: the replay heads learn ``batch_size`` at a time.

    Subclasses set ``batch_size`` and ``n_features``, call :meth:`_init_pending` and implement
    ``_train_batch`` (which trains on ``_px[:n_pending]`` / ``_prow[:n_pending]`` and resets
    ``n_pending``). The queue is part of the state, so a restart loses no sample.
    """

    batch_size: int
    n_features: int

    def _init_pending(self) -> None:
        self.n_pending = 0
        self._px = np.zeros((self.batch_size, self.n_features), np.float32)
        self._prow = np.zeros(self.batch_size, np.int64)

    def _train_batch(self) -> None:
        raise NotImplementedError

    def _learn(self, x: np.ndarray, idx: int) -> None:
        self._px[self.n_pending] = x
        self._prow[self.n_pending] = idx
        self.n_pending += 1
        if self.n_pending >= self.batch_size:
            self._train_batch()

    def flush(self) -> None:
        """Train on the queued partial batch now (e.g. at the end of a stream or before export)."""
        if self.n_pending:
            self._train_batch()

    def _pending_arrays(self) -> dict[str, np.ndarray]:
        return {"pending_x": self._px[:self.n_pending], "pending_rows": self._prow[:self.n_pending]}

    def _load_pending(self, state: dict[str, Any], n_classes: int) -> dict[str, Any]:
        """Validated queue of ``state`` as attributes (``_px``, ``_prow``, ``n_pending``)."""
        F = self.n_features
        n_pending = expect_rows(state, "pending_x", self.batch_size - 1)
        px = expect_array(state, "pending_x", (n_pending, F), np.float32)
        prow = expect_array(state, "pending_rows", (n_pending,), np.int64)
        check_rows(prow, n_classes, "pending_rows")
        full_x = np.zeros((self.batch_size, F), np.float32)
        full_row = np.zeros(self.batch_size, np.int64)
        full_x[:n_pending], full_row[:n_pending] = px, prow
        return {"_px": full_x, "_prow": full_row, "n_pending": n_pending}


class LatentReplayHead(PendingBatch, LinearLayer, Head):
    """Softmax linear layer + (optionally int8) latent replay memory.

    ``learn_one`` queues the sample; every ``batch_size`` samples the layer runs ``epochs``
    shuffled passes of mini-batch SGD (``minibatch`` patterns, mean gradient) over the new batch
    together with the replay memory, then the memory rule stores some of the new batch. Until a
    batch is complete its samples are not learned (call :meth:`flush` to train on a partial batch).

    Defaults (64-d L2-normalised-ish features): ``memory_size=500`` (125 KiB fp32, 31 KiB int8
    at 64 features), ``batch_size=32``, ``epochs=2``, ``lr=1.0``, ``minibatch=32``: with unit-norm
    inputs and a mean gradient, a new class is a small share of each mini-batch next to the
    replayed ones, and smaller rates need many more epochs for it to catch up (synthetic 64-d
    blobs: lr 0.1 left late classes far behind after 4 epochs). With ``quantized=True`` and no ``quantizer``, the int8 grid is calibrated
    on the first mini-batch (range widened by ``calibration_margin``).

    :attr:`replay_nbytes` (features) and :attr:`label_nbytes` are reported separately: int8 cuts
    the first exactly 4×; with labels (1 byte each up to 256 classes) the saving is
    ``(4F + 1) / (F + 1)``, i.e. 3.95× at F = 64.
    """

    kind = "LatentReplayHead"
    version = 1

    def __init__(self, n_features: int, memory_size: int = 500, batch_size: int = 32,
                 epochs: int = 2, lr: float = 1.0, quantized: bool = False,
                 quantizer: Int8Quantizer | None = None, seed: int = 0, minibatch: int = 32,
                 calibration_margin: float = 0.1, extractor_hash: str = "") -> None:
        super().__init__(check_int(n_features, "n_features"), extractor_hash)
        self.batch_size = check_int(batch_size, "batch_size")
        self.epochs = check_int(epochs, "epochs")
        self.lr = check_positive(lr, "lr")
        self.minibatch = check_int(minibatch, "minibatch")
        self.seed = check_int(seed, "seed", minimum=0)
        buf_seq, sgd_seq = np.random.SeedSequence(self.seed).spawn(2)
        self.buffer = ReplayBuffer(memory_size, n_features, quantized=quantized,
                                   quantizer=quantizer, margin=calibration_margin,
                                   seed=int(buf_seq.generate_state(1)[0]))
        self._rng = np.random.default_rng(sgd_seq)
        self.W = np.zeros((0, n_features), np.float32)
        self.b = np.zeros(0, np.float32)
        self._init_pending()

    @property
    def memory_size(self) -> int:
        return self.buffer.capacity

    @property
    def quantized(self) -> bool:
        return self.buffer.quantized

    @property
    def replay_nbytes(self) -> int:
        """Bytes reserved for replayed feature vectors (4× fewer with int8)."""
        return self.buffer.nbytes

    @property
    def label_nbytes(self) -> int:
        """Bytes reserved for replayed labels (same for fp32 and int8 memories)."""
        return self.buffer.label_nbytes

    # --- Head -------------------------------------------------------------------------------
    def _add_class_rows(self) -> None:
        self.W = add_zero_row(self.W)
        self.b = add_zero_row(self.b)
        self.buffer.ensure_classes(len(self.b))

    def _train_batch(self) -> None:
        n = self.n_pending
        Xn, rn = self._px[:n], self._prow[:n]
        if self.buffer.size:
            X = np.concatenate([Xn, self.buffer.features()])
            rows = np.concatenate([rn, self.buffer.rows().astype(np.int64)])
        else:
            X, rows = Xn, rn
        for _ in range(self.epochs):
            sgd_pass_(self.W, self.b, X, rows, self.lr, self.minibatch,
                      self._rng.permutation(X.shape[0]))
        self.buffer._add(Xn.copy(), rn.copy())
        self.n_pending = 0

    def _params(self) -> dict[str, Any]:
        return {"memory_size": self.buffer.capacity, "batch_size": self.batch_size,
                "epochs": self.epochs, "lr": self.lr, "quantized": self.buffer.quantized,
                "seed": self.seed, "minibatch": self.minibatch,
                "calibration_margin": self.buffer.margin}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["meta"]["rng_state"] = rng_state(self._rng)
        state["meta"]["replay"] = self.buffer._meta()
        return state

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"W": self.W, "b": self.b, **self._pending_arrays(), **self.buffer._state_arrays("replay_")}

    def _load_arrays(self, state: dict[str, Any], n_classes: int) -> dict[str, Any]:
        F = self.n_features
        W = expect_array(state, "W", (n_classes, F), np.float32)
        b = expect_array(state, "b", (n_classes,), np.float32)
        rng = rng_from_state(meta_of(state, "rng_state"))
        buffer = self.buffer._restored(state, meta_of(state, "replay"), n_classes, "replay_")
        return {"W": W, "b": b, **self._load_pending(state, n_classes), "_rng": rng, "buffer": buffer}
