"""Stream metrics: prequential accuracy (test-then-train), macro scores, forgetting, accuracy curve."""

from __future__ import annotations

import numpy as np


class PrequentialAccuracy:
    """Running accuracy of predictions made *before* learning each sample (test-then-train)."""

    def __init__(self) -> None:
        self.n = 0
        self.correct = 0

    def update(self, y_true: int, y_pred: int | None) -> None:
        self.n += 1
        self.correct += int(y_pred is not None and y_pred == y_true)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro precision / recall / F1 in percent.

    Classes are the union of true and predicted labels (as scikit-learn does); a class never
    predicted has precision 0, a class never true has recall 0. ``-1`` in ``y_pred`` means
    "no prediction" and counts as wrong without adding a class.
    """
    y_true = np.asarray(y_true, np.int64)
    y_pred = np.asarray(y_pred, np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(f"need two equal non-empty 1-D label arrays, got {y_true.shape} and {y_pred.shape}")
    labels = np.union1d(y_true, y_pred[y_pred >= 0])
    precision, recall, f1 = [], [], []
    for c in labels:
        tp = np.sum((y_pred == c) & (y_true == c))
        p_den, r_den = np.sum(y_pred == c), np.sum(y_true == c)
        p = tp / p_den if p_den else 0.0
        r = tp / r_den if r_den else 0.0
        precision.append(p)
        recall.append(r)
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    return {"accuracy": 100.0 * float(np.mean(y_true == y_pred)),
            "precision": 100.0 * float(np.mean(precision)),
            "recall": 100.0 * float(np.mean(recall)),
            "f1": 100.0 * float(np.mean(f1))}


def accuracy_on(y_true: np.ndarray, y_pred: np.ndarray, classes: list[int] | np.ndarray) -> float:
    """Accuracy in percent restricted to samples whose true class is in ``classes``."""
    mask = np.isin(y_true, classes)
    return 100.0 * float(np.mean(np.asarray(y_pred)[mask] == np.asarray(y_true)[mask])) if mask.any() else float("nan")


def forgetting(before: float, after: float) -> float:
    """Points of accuracy lost on old classes (positive = forgot, negative = improved)."""
    return float(before - after)


def rolling_accuracy(correct: np.ndarray, window: int = 200) -> np.ndarray:
    """Accuracy over the last ``window`` samples at every stream position (for the curve plot)."""
    c = np.cumsum(np.asarray(correct, np.float64))
    out = np.empty_like(c)
    out[:window] = c[:window] / np.arange(1, min(window, c.size) + 1)
    out[window:] = (c[window:] - c[:-window]) / window
    return 100.0 * out
