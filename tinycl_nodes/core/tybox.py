"""TyBox-style incremental head: a FIFO buffer of labelled samples sized from a memory budget.

TyBox (Pavan, Roveri et al.; see the NAS-for-incremental-learning thesis built on it) pairs a
fixed feature extractor with a float32 classifier and a buffer ``B`` of supervised samples that
fits the device memory: ``capacity = (memory − model memory) // bytes per stored sample``. On each
labelled sample it pushes the sample (dropping the oldest when full) and runs one SGD pass over
the whole buffer. A DDM drift detector watches the prequential error (predict, then learn); on a
drift, the samples buffered before the warning that preceded it belong to the old concept and
are dropped, so the following passes fit the new one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._linear import sgd_pass_
from ._util import (add_zero_row, check_int, check_rows, expect_array,
                    expect_rows, label_dtype, meta_of, rng_from_state, rng_state)
from .drift import DDM, DRIFT, NONE, WARNING
from .errors import InputError, StateError
from .head import Head, LinearLayer
from .validation import check_positive


class TyBoxHead(LinearLayer, Head):
    """Softmax linear layer retrained on a memory-budgeted FIFO buffer, with DDM drift handling.

    Budget: each stored sample costs ``4·n_features`` bytes (fp32 features) plus its label
    (1 byte up to 256 classes, else 2); ``model_bytes`` defaults to an fp32 linear head for
    ``max_classes`` classes, ``4·max_classes·(n_features + 1)``, so at most ``max_classes``
    classes are accepted (more would break the budget: the sample is refused with InputError).

    Drift handling: prequential errors go to a :class:`~.drift.DDM`, except for samples of a
    class seen fewer than ``drift_grace`` times — the arrival of a new class is not a concept
    drift, and the head cannot predict a class it has barely seen. On ``"drift"`` the samples
    buffered before the current warning began are dropped (all older samples if the detector
    jumped straight to drift); the weights are kept and adapt through the next passes.

    Defaults: ``lr=0.5`` with mean-gradient mini-batches of ``minibatch=16`` (every buffered sample
    is revisited on each new sample, so the effective step per sample is large already).
    """

    kind = "TyBoxHead"
    version = 1

    def __init__(self, n_features: int, memory_bytes: int, model_bytes: int | None = None,
                 lr: float = 0.5, seed: int = 0, drift_detection: bool = True,
                 max_classes: int = 10, minibatch: int = 16, drift_grace: int = 10,
                 extractor_hash: str = "") -> None:
        super().__init__(check_int(n_features, "n_features"), extractor_hash)
        self.memory_bytes = check_int(memory_bytes, "memory_bytes")
        self.max_classes = check_int(max_classes, "max_classes")
        self.model_bytes = (4 * self.max_classes * (n_features + 1) if model_bytes is None
                            else check_int(model_bytes, "model_bytes", minimum=0))
        self.lr = check_positive(lr, "lr")
        self.seed = check_int(seed, "seed", minimum=0)
        self.minibatch = check_int(minibatch, "minibatch")
        self.drift_grace = check_int(drift_grace, "drift_grace", minimum=0)
        self.drift_detection = bool(drift_detection)
        ldt = label_dtype(self.max_classes)
        self.bytes_per_sample = 4 * n_features + ldt.itemsize
        free = self.memory_bytes - self.model_bytes
        if free < self.bytes_per_sample:
            raise InputError(
                f"memory_bytes={self.memory_bytes}: after the model ({self.model_bytes} B) "
                f"{max(free, 0)} B are left, less than one buffered sample "
                f"({self.bytes_per_sample} B = {n_features} fp32 features + {ldt.itemsize} B label)")
        self.capacity = free // self.bytes_per_sample
        self._x = np.zeros((self.capacity, n_features), np.float32)
        self._rows = np.zeros(self.capacity, ldt)
        self._start = 0                                  # slot of the oldest sample
        self.size = 0
        self.W = np.zeros((0, n_features), np.float32)
        self.b = np.zeros(0, np.float32)
        self.seen = np.zeros(0, np.int64)                # labelled samples per class
        self.ddm = DDM() if self.drift_detection else None
        self.last_status = NONE
        self.n_dropped = 0
        self._warn_pushes: int | None = None             # pushes since the current warning began
        self._rng = np.random.default_rng(self.seed)

    # --- public extras ----------------------------------------------------------------------
    def buffer(self) -> tuple[np.ndarray, np.ndarray]:
        """Buffered samples oldest first: (features float32 (n, F), class ids int64 (n,))."""
        slots = self._slots(np.arange(self.size))
        ids = np.asarray(self.classes, np.int64)
        return self._x[slots].copy(), ids[self._rows[slots].astype(np.intp)]

    @property
    def n_drifts(self) -> int:
        return self.ddm.n_drifts if self.ddm is not None else 0

    # --- Head -------------------------------------------------------------------------------
    def _new_class(self, y: int) -> int:
        if len(self.classes) >= self.max_classes:
            raise InputError(f"label: class {y} would be class #{len(self.classes) + 1}, the memory "
                             f"budget is sized for max_classes={self.max_classes}")
        return super()._new_class(y)

    def _add_class_rows(self) -> None:
        self.W = add_zero_row(self.W)
        self.b = add_zero_row(self.b)
        self.seen = add_zero_row(self.seen)

    def _slots(self, logical: np.ndarray) -> np.ndarray:
        return (self._start + logical) % self.capacity

    def _learn(self, x: np.ndarray, idx: int) -> None:
        if self.ddm is not None and self.seen[idx] >= self.drift_grace:
            error = int(self._scores(x).argmax()) != idx      # prequential: before learning x
            self.last_status = status = self.ddm.update(error)
            if status == WARNING:
                if self._warn_pushes is None:
                    self._warn_pushes = 0
            elif status == DRIFT:
                self._drop_oldest(self.size - min(self._warn_pushes or 0, self.size))
                self._warn_pushes = None
            else:
                self._warn_pushes = None
        self._push(x, idx)
        self.seen[idx] += 1
        order = self._slots(self._rng.permutation(self.size))
        sgd_pass_(self.W, self.b, self._x, self._rows, self.lr, self.minibatch, order)

    def _push(self, x: np.ndarray, idx: int) -> None:
        if self.size < self.capacity:
            slot = (self._start + self.size) % self.capacity
            self.size += 1
        else:
            slot = self._start
            self._start = (self._start + 1) % self.capacity
        self._x[slot] = x
        self._rows[slot] = idx
        if self._warn_pushes is not None:
            self._warn_pushes += 1

    def _drop_oldest(self, k: int) -> None:
        self._start = (self._start + k) % self.capacity
        self.size -= k
        self.n_dropped += k

    def _params(self) -> dict[str, Any]:
        return {"memory_bytes": self.memory_bytes, "model_bytes": self.model_bytes,
                "lr": self.lr, "seed": self.seed, "drift_detection": self.drift_detection,
                "max_classes": self.max_classes, "minibatch": self.minibatch,
                "drift_grace": self.drift_grace}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["meta"].update({
            "rng_state": rng_state(self._rng),
            "ddm": self.ddm.state_dict() if self.ddm is not None else None,
            "warn_pushes": self._warn_pushes, "n_dropped": self.n_dropped,
            "last_status": self.last_status})
        return state

    def _arrays(self) -> dict[str, np.ndarray]:
        slots = self._slots(np.arange(self.size))
        return {"W": self.W, "b": self.b, "seen": self.seen,
                "buffer_x": self._x[slots], "buffer_rows": self._rows[slots]}

    def _load_arrays(self, state: dict[str, Any], n_classes: int) -> dict[str, Any]:
        F = self.n_features
        if n_classes > self.max_classes:
            raise StateError(f"state: {n_classes} classes, this head allows {self.max_classes}")
        W = expect_array(state, "W", (n_classes, F), np.float32)
        b = expect_array(state, "b", (n_classes,), np.float32)
        seen = expect_array(state, "seen", (n_classes,), np.int64)
        size = expect_rows(state, "buffer_x", self.capacity)
        bx = expect_array(state, "buffer_x", (size, F), np.float32)
        brows = expect_array(state, "buffer_rows", (size,), kinds="u")
        check_rows(brows, n_classes, "buffer_rows")
        rng = rng_from_state(meta_of(state, "rng_state"))
        ddm_state = meta_of(state, "ddm")
        ddm = None
        if self.drift_detection:
            if ddm_state is None:
                raise StateError("state: saved without drift detection, this head detects drift")
            ddm = DDM(self.ddm.min_samples, self.ddm.warning_level, self.ddm.drift_level)
            ddm.load_state_dict(ddm_state)
        elif ddm_state is not None:
            raise StateError("state: saved with drift detection, this head has it off")
        warn = meta_of(state, "warn_pushes")
        if warn is not None and (isinstance(warn, bool) or not isinstance(warn, int) or warn < 0):
            raise StateError(f"state: 'warn_pushes' must be null or a non-negative int, got {warn!r}")
        dropped = meta_of(state, "n_dropped")
        if isinstance(dropped, bool) or not isinstance(dropped, int) or dropped < 0:
            raise StateError(f"state: 'n_dropped' must be a non-negative int, got {dropped!r}")
        status = meta_of(state, "last_status")
        if status not in (NONE, WARNING, DRIFT):
            raise StateError(f"state: 'last_status' must be none/warning/drift, got {status!r}")
        x = np.zeros_like(self._x)
        rows = np.zeros_like(self._rows)
        x[:size] = bx
        rows[:size] = brows
        return {"W": W, "b": b, "seen": seen, "_x": x, "_rows": rows, "_start": 0, "size": size,
                "_rng": rng, "ddm": ddm, "_warn_pushes": warn, "n_dropped": dropped,
                "last_status": status}
