"""The demo's observer: joins predictions with ground truth and scores them like the experiment.

Not part of the learning graph (a robot has no ground truth); it is what `make demo` and the
graph benchmark use to check that the graph learned exactly what the in-process run learns.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..core.metrics import classification_scores
from ..core.validation import check_label
from .messages import stamp_ns

MAX_SAMPLES = 200_000     # truths (and predictions) kept: a replay has at most 10,000 + labelled ones


class Monitor:
    """Collects ``ground_truth`` and ``predictions`` on a bus; both keyed by the sample's stamp."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus
        self.truth: dict[int, tuple[int, bool]] = {}
        self.order: list[int] = []            # stamps in ground-truth (= sensor) order
        self.pred: dict[int, int] = {}
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        bus.create_subscription("ground_truth", "GroundTruth", self._on_truth, "reliable")
        bus.create_subscription("predictions", "Prediction", self._on_prediction, "reliable")

    def _on_truth(self, msg: Any) -> None:
        """A sample's true class (refused: not a class id; the oldest dropped beyond ``MAX_SAMPLES``)."""
        label = check_label(int(msg.label), "ground truth label")
        key = stamp_ns(msg.header)
        if key not in self.truth:
            self.order.append(key)
        self.truth[key] = (label, bool(msg.learnable))
        if len(self.order) > MAX_SAMPLES * 11 // 10:          # trimmed now and then, not at every sample
            del self.order[:len(self.order) - MAX_SAMPLES]
            self.truth = {k: self.truth[k] for k in self.order}

    def _on_prediction(self, msg: Any) -> None:
        """A prediction (refused: a class id below -1, "no class"; the oldest dropped beyond ``MAX_SAMPLES``)."""
        if int(msg.class_id) < -1:
            raise InputError(f"prediction: class id must be -1 (none) or a class, got {int(msg.class_id)}")
        if len(self.pred) >= MAX_SAMPLES:
            del self.pred[next(iter(self.pred))]
        now = time.time_ns()
        self.first_ns = self.first_ns or now
        self.last_ns = now
        self.pred[stamp_ns(msg.header)] = int(msg.class_id)

    def stream(self) -> tuple[np.ndarray, np.ndarray]:
        """(true, predicted) of the unlabelled stream in sensor order; -2 where no prediction came."""
        keys = [k for k in self.order if not self.truth[k][1]]
        return (np.array([self.truth[k][0] for k in keys], np.int64),
                np.array([self.pred.get(k, -2) for k in keys], np.int64))

    def scores(self, last: int) -> dict[str, float]:
        y, p = self.stream()
        return classification_scores(y[-last:], p[-last:])

    @property
    def received(self) -> int:
        return len(self.pred)
