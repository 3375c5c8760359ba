"""Streaming nearest class mean: running mean per class, score = −squared L2 distance.

No hyper-parameter and no forgetting: a class mean only moves with samples of that class, and
is the exact average of everything seen. A strong baseline on a good frozen extractor, and the
reference the streaming LDA must beat when classes share an anisotropic covariance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._util import add_zero_row, check_int, expect_array
from .head import Head


class StreamingNCM(Head):
    """Nearest class mean with running means (float64: exact averages over long streams)."""

    kind = "StreamingNCM"
    version = 1

    def __init__(self, n_features: int, extractor_hash: str = "") -> None:
        super().__init__(check_int(n_features, "n_features"), extractor_hash)
        self.means = np.zeros((0, n_features), np.float64)
        self.counts = np.zeros(0, np.int64)
        # scoring caches, kept in step with the means: 2μ in float32 (a float32 mat-vec is ~2×
        # cheaper than a mixed one) and ‖μ‖² in float64
        self._m2 = np.zeros((0, n_features), np.float32)
        self._sqnorm = np.zeros(0, np.float64)

    def _add_class_rows(self) -> None:
        self.means = add_zero_row(self.means)
        self.counts = add_zero_row(self.counts)
        self._sqnorm = add_zero_row(self._sqnorm)
        self._m2 = add_zero_row(self._m2)

    def _learn(self, x: np.ndarray, idx: int) -> None:
        n = int(self.counts[idx]) + 1
        self.counts[idx] = n
        mu = self.means[idx]
        mu += (x - mu) * (1.0 / n)
        self._sqnorm[idx] = mu.dot(mu)
        self._m2[idx] = mu * 2.0

    can_unlearn = True

    def _unlearn(self, x: np.ndarray, idx: int) -> None:
        """Exact: the mean of the other samples of the class."""
        n = int(self.counts[idx]) - 1
        self.counts[idx] = n
        mu = self.means[idx]
        mu += (mu - x) * (1.0 / n)
        self._sqnorm[idx] = mu.dot(mu)
        self._m2[idx] = mu * 2.0

    def _class_rows(self) -> tuple[str, ...]:
        return ("means", "counts", "_m2", "_sqnorm")

    def _scores(self, x: np.ndarray) -> np.ndarray:
        # −‖x − μ‖² = 2μ·x − ‖μ‖² − ‖x‖²
        s = self._m2.dot(x) - self._sqnorm
        s -= float(x.dot(x))
        return s

    def linear(self) -> tuple[np.ndarray, np.ndarray]:
        return self._m2.astype(np.float32), (-self._sqnorm).astype(np.float32)

    def _params(self) -> dict[str, Any]:
        return {}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"means": self.means, "counts": self.counts}

    def _load_arrays(self, state: dict[str, Any], n_classes: int) -> dict[str, Any]:
        means = expect_array(state, "means", (n_classes, self.n_features), np.float64)
        counts = expect_array(state, "counts", (n_classes,), np.int64)
        return {"means": means, "counts": counts,  # caches built with the same ops as _learn
                "_sqnorm": np.array([m.dot(m) for m in means], np.float64),
                "_m2": (means * 2.0).astype(np.float32)}
