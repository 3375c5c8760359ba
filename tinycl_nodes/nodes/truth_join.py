"""Pairing replayed samples with their ground truth (same stamp), in the order samples arrive.

Used by every node that turns a raw sample into features (the extractor, a board): the sensor
publishes an image and its ``GroundTruth`` on two topics, which may arrive in either order.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any, Callable

Emit = Callable[[Any, Any, Any], None]   # (header, payload, truth or None)


class TruthJoin:
    """Releases samples in arrival order, each with its ground truth when one is known.

    With ``wait`` a sample holds back those behind it until its truth arrives or ``timeout_s``
    passes (then it goes without, with a warning); without ``wait`` it goes at once with
    whatever truth is already known. At most ``max_waiting`` samples and truths are held: past
    that the oldest sample goes without its truth and the oldest truth is forgotten.
    """

    def __init__(self, emit: Emit, timeout_s: float, wait: bool, log: logging.Logger,
                 max_waiting: int = 10_000) -> None:
        self.emit = emit
        self.timeout_s = timeout_s
        self.wait = wait
        self.log = log
        self.max_waiting = max_waiting
        self._truth: dict[int, Any] = {}
        self._waiting: OrderedDict[int, tuple[Any, Any, float]] = OrderedDict()

    def add_truth(self, key: int, truth: Any) -> None:
        if len(self._truth) >= self.max_waiting:
            self._truth.pop(next(iter(self._truth)))
        self._truth[key] = truth
        self.flush()

    def add_sample(self, key: int, header: Any, payload: Any) -> None:
        if not self.wait:
            self.emit(header, payload, self._truth.pop(key, None))
            return
        self._waiting[key] = (header, payload, time.monotonic())
        if len(self._waiting) > self.max_waiting:
            self.log.warning("more than %d samples wait for ground truth: sending the oldest without",
                             self.max_waiting)
            self.flush(force=1)
        self.flush()

    def flush(self, force: int = 0) -> None:
        """Send waiting samples in arrival order while the oldest has its truth (or timed out)."""
        deadline = time.monotonic() - self.timeout_s
        while self._waiting:
            key = next(iter(self._waiting))
            header, payload, since = self._waiting[key]
            truth = self._truth.pop(key, None)
            if truth is None and since > deadline and force <= 0:
                return
            force -= 1
            del self._waiting[key]
            if truth is None:
                self.log.warning("no ground truth for the sample stamped %d: sent unlabelled", key)
            self.emit(header, payload, truth)
