"""The one small interface every active head follows (River-like, scikit-learn-style state).

A head sits on top of the frozen extractor: it sees a feature vector ``x`` (float32, length
``n_features``) and an integer class id ``y``. Classes are added online the first time their id
is learned. Hyper-parameters live in ``__init__``; learned state lives in attributes and is
exported by ``state_dict()``.
"""

from __future__ import annotations

import abc
import copy
from typing import Any, ClassVar

import numpy as np

from . import state as st
from .errors import ExtractorMismatchError, InputError, StateError
from .validation import MAX_CLASS_ID, check_features, check_label


class Head(abc.ABC):
    """Base class: validation, class bookkeeping and state plumbing shared by all heads.

    Subclasses implement ``_learn(x, idx)`` (``idx`` is the row of class ``y``, already added),
    ``_scores(x)`` (one score per known class, higher is better), ``_add_class_rows()`` and the
    ``_params`` / ``_arrays`` / ``_load_arrays`` trio for state.
    """

    kind: ClassVar[str]
    version: ClassVar[int] = 1

    def __init__(self, n_features: int, extractor_hash: str = "") -> None:
        if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features <= 0:
            raise InputError(f"n_features: must be a positive int, got {n_features!r}")
        self.n_features = n_features
        self.extractor_hash = extractor_hash
        self.classes: list[int] = []
        self._index: dict[int, int] = {}
        self.n_seen = 0
        self.class_seen = np.zeros(0, np.int64)  # samples learned per class, aligned with classes

    # --- public API -------------------------------------------------------------------------
    def learn_one(self, x: Any, y: Any) -> None:
        """Learn one labelled sample; a new class id adds a class."""
        self.learn_valid(check_features(x, self.n_features), check_label(y))

    def predict_proba(self, x: Any) -> np.ndarray:
        """Class probabilities aligned with ``self.classes`` (empty when no class is known)."""
        xv = check_features(x, self.n_features)
        if not self.classes:
            return np.zeros(0, np.float32)
        return _softmax(self._scores(xv))

    def predict_one(self, x: Any) -> int | None:
        """The most likely class id, or None before any class is learned."""
        return self.predict_valid(check_features(x, self.n_features))

    # --- the same, for callers that validated already (the TinyNDC loop: one check per sample)
    def learn_valid(self, x: np.ndarray, y: int) -> None:
        """``learn_one`` for ``x`` already checked by ``check_features`` and ``y`` by ``check_label``."""
        idx = self._index.get(y)
        if idx is None:   # rare: a snapshot makes adding a class all-or-nothing too
            before = copy.deepcopy(self.__dict__)
            try:
                self._learn(x, self._new_class(y))
            except Exception as exc:
                self.__dict__.clear()
                self.__dict__.update(before)
                raise InputError(f"{self.kind}: sample of new class {y} not learned, head unchanged ({exc})") from None
            idx = self._index[y]
        else:
            self._learn(x, idx)    # each head's _learn changes nothing when it raises
        self.n_seen += 1
        self.class_seen[idx] += 1

    def predict_valid(self, x: np.ndarray) -> int | None:
        """``predict_one`` for ``x`` already checked by ``check_features``."""
        if not self.classes:
            return None
        return self.classes[int(self._scores(x).argmax())]

    def linear(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W, b)``: scores are ``W·x + b`` up to a constant per sample (same argmax, same softmax).

        The head as one linear layer: what the exporter writes (ONNX, C header) and the ``Head``
        message carries. Rows are aligned with ``classes``.
        """
        raise NotImplementedError(f"{self.kind} has no linear form")

    def check_extractor(self, extractor_hash: str) -> None:
        """Refuse to be used with features from another frozen extractor."""
        if self.extractor_hash and extractor_hash and extractor_hash != self.extractor_hash:
            raise ExtractorMismatchError(
                f"head was trained on extractor {self.extractor_hash[:12]}, features come from "
                f"{extractor_hash[:12]}: refusing to mix them")

    def state_dict(self) -> dict[str, Any]:
        """A versioned snapshot of hyper-parameters and learned state."""
        arrays = {"classes": np.asarray(self.classes, np.int64), "class_seen": self.class_seen,
                  **self._arrays()}
        meta = {"extractor_hash": self.extractor_hash, "n_seen": self.n_seen,
                "n_features": self.n_features, **self._meta()}
        return st.make_state(self.kind, self.version, self._params(), arrays, meta)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace learned state by ``state``; on any error nothing is changed."""
        st.check_state(state, self.kind, self.version, ("classes",))
        meta = state.get("meta")
        if not isinstance(meta, dict):
            raise StateError("state: 'meta' must be a mapping")
        saved_hash = str(meta.get("extractor_hash", ""))
        if self.extractor_hash and saved_hash and saved_hash != self.extractor_hash:   # first: it explains the rest
            # check_extractor's words are for features reaching a trained head; here the trained head is the saved one
            raise ExtractorMismatchError(
                f"the saved head was learned on extractor {saved_hash[:12]}, this node's model is "
                f"{self.extractor_hash[:12]} (another model:=, or the model or its card changed): "
                f"refusing to mix them")
        if meta.get("n_features") != self.n_features:
            raise StateError(f"state: {self.kind} has {meta.get('n_features')} features, "
                             f"this head has {self.n_features}")
        raw = np.asarray(state["arrays"]["classes"])
        if raw.ndim != 1 or (raw.size and raw.dtype.kind not in "iu"):
            raise StateError(f"state: 'classes' must be a 1-d integer array, got {raw.dtype} {raw.shape}")
        if raw.size and (raw.min() < 0 or raw.max() > MAX_CLASS_ID):
            raise StateError("state: 'classes' holds a class id out of range")
        classes = [int(c) for c in raw]
        if len(set(classes)) != len(classes):
            raise StateError("state: duplicate class ids")
        n_seen = meta.get("n_seen", 0)
        if isinstance(n_seen, bool) or not isinstance(n_seen, int) or n_seen < 0:
            raise StateError(f"state: meta 'n_seen' must be a non-negative int, got {n_seen!r}")
        class_seen = st.expect_shape(state, "class_seen", (len(classes),))
        if class_seen.dtype.kind not in "iu" or (class_seen.size and class_seen.min() < 0):
            raise StateError("state: 'class_seen' must hold non-negative integer counts")
        loaded = self._load_arrays(state, len(classes))  # validates every shape first
        self.classes = classes
        self._index = {c: i for i, c in enumerate(classes)}
        self.n_seen = n_seen
        self.class_seen = class_seen.astype(np.int64)
        for name, value in loaded.items():
            setattr(self, name, value)

    # --- for subclasses ---------------------------------------------------------------------
    def unlearn_valid(self, x: np.ndarray, y: int) -> None:
        """Take back one sample ``x`` learned as ``y`` (a person's answer withdrawn or changed).

        Only heads whose state is a sum over samples can do this exactly (``can_unlearn``); the
        others raise InputError and the caller replays instead (:mod:`tinycl_nodes.core.undo`). A
        class left with no sample is removed. All-or-nothing: a refusal changes nothing.
        """
        if not self.can_unlearn:
            raise InputError(f"{self.kind} cannot take a sample back: replay instead")
        idx = self._index.get(int(y))
        if idx is None or self.class_seen[idx] < 1:
            raise InputError(f"cannot unlearn a sample of class {y}: no such class learned")
        if self.class_seen[idx] == 1:
            self._drop_class(idx)
        else:
            self._unlearn(x, idx)
            self.class_seen[idx] -= 1
        self.n_seen = max(0, self.n_seen - 1)

    can_unlearn: ClassVar[bool] = False

    def _unlearn(self, x: np.ndarray, idx: int) -> None:
        raise NotImplementedError

    def _drop_class(self, idx: int) -> None:
        """Remove the class at row ``idx`` and its rows (heads that can unlearn: ``_class_rows``)."""
        for name in self._class_rows():
            setattr(self, name, np.delete(getattr(self, name), idx, axis=0))
        self.class_seen = np.delete(self.class_seen, idx)
        del self.classes[idx]
        self._index = {c: i for i, c in enumerate(self.classes)}

    def _class_rows(self) -> tuple[str, ...]:
        return ()

    def sample_counts(self) -> dict[int, int]:
        """Samples learned per class id (what a federated aggregator weights class rows by)."""
        return dict(zip(self.classes, self.class_seen.tolist()))

    def _new_class(self, y: int) -> int:
        self.class_seen = np.append(self.class_seen, 0)
        self.classes.append(y)
        self._index[y] = len(self.classes) - 1
        self._add_class_rows()
        return self._index[y]

    @abc.abstractmethod
    def _add_class_rows(self) -> None:
        """Grow per-class arrays by one row (zero / prior-initialised)."""

    @abc.abstractmethod
    def _learn(self, x: np.ndarray, idx: int) -> None:
        """Update learned state with sample ``x`` of the class at row ``idx``: all or nothing (if it
        raises, nothing learned has changed)."""

    @abc.abstractmethod
    def _scores(self, x: np.ndarray) -> np.ndarray:
        """Unnormalised scores, one per known class (logits or negative distances)."""

    def _meta(self) -> dict[str, Any]:
        """Extra JSON state to save besides arrays (rng state, detector counters); default none."""
        return {}

    @abc.abstractmethod
    def _params(self) -> dict[str, Any]:
        """JSON hyper-parameters (what ``__init__`` took, besides n_features/extractor_hash)."""

    @abc.abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """Learned arrays to save (besides ``classes``)."""

    @abc.abstractmethod
    def _load_arrays(self, state: dict[str, Any], n_classes: int) -> dict[str, Any]:
        """Validate arrays of ``state`` for ``n_classes`` classes; return ``{attribute: value}``."""


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


class LinearLayer:
    """Mixin (before :class:`Head`) for the heads whose learned layer is a softmax layer ``W`` (classes × F), ``b``:
    their scores are ``W·x + b`` and their linear form is that layer as it is."""

    W: np.ndarray
    b: np.ndarray

    def _scores(self, x: np.ndarray) -> np.ndarray:
        z = self.W.dot(x)
        z += self.b
        return z

    def linear(self) -> tuple[np.ndarray, np.ndarray]:
        return self.W.astype(np.float32), self.b.astype(np.float32)
