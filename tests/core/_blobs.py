"""Synthetic, seeded feature streams for the head tests (no dataset needed)."""

from __future__ import annotations

import numpy as np


class Blobs:
    """Gaussian blobs in ``F`` dimensions, L2-normalised like a frozen extractor's embeddings."""

    def __init__(self, n_classes: int = 10, n_features: int = 64, noise: float = 0.25,
                 seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        c = self.rng.normal(size=(n_classes, n_features))
        self.centers = c / np.linalg.norm(c, axis=1, keepdims=True)
        self.noise = noise

    def sample(self, classes, n: int) -> tuple[np.ndarray, np.ndarray]:
        y = self.rng.choice(np.asarray(list(classes)), n)
        F = self.centers.shape[1]
        X = self.centers[y] + self.noise * 4.0 / np.sqrt(F) * self.rng.normal(size=(n, F))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        return X.astype(np.float32), y.astype(np.int64)


def late_class_stream(blobs: Blobs, n1: int = 400, n2: int = 400, only_new: bool = False):
    """Classes 0-5 first; then 6-9 appear (mixed with the old ones unless ``only_new``)."""
    X1, y1 = blobs.sample(range(6), n1)
    X2, y2 = blobs.sample(range(6, 10) if only_new else range(10), n2)
    return np.concatenate([X1, X2]), np.concatenate([y1, y2])


def learn_all(head, X, y) -> None:
    for x, t in zip(X, y):
        head.learn_one(x, int(t))


def accuracy(head, X, y) -> float:
    return float(np.mean([head.predict_one(x) == t for x, t in zip(X, y)]))
