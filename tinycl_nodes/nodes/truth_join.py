"""Pairing replayed samples with their ground truth (same stamp), in the order samples arrive.

Used by every node that turns a raw sample into features (the extractor, a board): the sensor
publishes an image and its ``GroundTruth`` on two topics, which may arrive in either order.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any, Callable, NamedTuple

from ..storage import RepeatedFailure

Emit = Callable[[Any, Any, Any], None]   # (header, payload, truth or None)
ENTRY_BYTES = 200                        # bookkeeping per held sample or truth (dict entry, header, tuple)


class Truth(NamedTuple):
    """What is kept of a GroundTruth message (not its strings: a 64 KB class name costs nothing)."""

    label: int
    learnable: bool


class TruthJoin:
    """Releases samples in arrival order, each with its ground truth when one is known.

    With ``wait`` a sample holds back those behind it until its truth arrives or ``timeout_s``
    passes (then it goes without: said as a repeated failure is, at once and then at most once a minute with
    a count — a sensor with no ground truth, a live camera, would otherwise be one line per frame); without
    ``wait`` it goes at once with
    whatever truth is already known. Memory is bounded by bytes: truths unmatched beyond
    ``max_truth_bytes`` are forgotten oldest first, samples waiting beyond ``max_waiting_bytes``
    go without their truth oldest first (one warning line each time it starts happening).
    """

    def __init__(self, emit: Emit, timeout_s: float, wait: bool, log: logging.Logger,
                 max_truth_bytes: int = 2 << 20, max_waiting_bytes: int = 16 << 20) -> None:
        self.emit = emit
        self.timeout_s = timeout_s
        self.wait = wait
        self.log = log
        self.max_truths = max(1, max_truth_bytes // ENTRY_BYTES)
        self.max_waiting_bytes = max_waiting_bytes
        self._truth: OrderedDict[int, Truth] = OrderedDict()
        self._waiting: OrderedDict[int, tuple[Any, Any, float]] = OrderedDict()
        self._waiting_bytes = 0
        self._dropping = {"truth": False, "sample": False}
        self._unpaired = RepeatedFailure("pair the samples with their ground truth", log, attempts="pairings")

    def add_truth(self, key: int, truth: Any) -> None:
        dropped = 0
        while len(self._truth) >= self.max_truths:
            self._truth.popitem(last=False)
            dropped += 1
        self._note("truth", dropped, f"more than {self.max_truths * ENTRY_BYTES >> 10} KB of ground truth without "
                                     "a sample: the oldest is forgotten")
        self._truth[key] = Truth(int(truth.label), bool(truth.learnable))
        self._truth.move_to_end(key)
        self.flush()

    def add_sample(self, key: int, header: Any, payload: Any) -> None:
        if not self.wait:
            self.emit(header, payload, self._truth.pop(key, None))
            return
        old = self._waiting.pop(key, None)
        if old is not None:
            self._waiting_bytes -= _size(old[1])
        self._waiting[key] = (header, payload, time.monotonic())
        self._waiting_bytes += _size(payload)
        over = self._waiting_bytes > self.max_waiting_bytes
        self._note("sample", int(over), f"more than {self.max_waiting_bytes >> 20} MB of samples wait for ground "
                                        "truth: sending the oldest without")
        while self._waiting_bytes > self.max_waiting_bytes and len(self._waiting) > 1:
            self.flush(force=1)
        self.flush()

    def _note(self, what: str, dropped: int, line: str) -> None:
        """One warning when dropping starts (again), not one per message."""
        if dropped and not self._dropping[what]:
            self.log.warning("%s", line)
        self._dropping[what] = bool(dropped)

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
            self._waiting_bytes -= _size(payload)
            if truth is None:
                self._unpaired.failed(f"no ground truth came within {self.timeout_s:g} s of a sample: sent "
                                      "unlabelled (a live camera has none: expect_ground_truth false)")
            else:
                self._unpaired.landed()
            self.emit(header, payload, truth)


def _size(payload: Any) -> int:
    parts = payload if isinstance(payload, tuple) else (payload,)   # e.g. (features, latent)
    return sum(int(getattr(p, "nbytes", 0)) for p in parts) + ENTRY_BYTES
