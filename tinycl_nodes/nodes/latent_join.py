"""Pairing each labelled sample with its activations at the latent head's cut.

A learner with ``latent_head`` learns on the activations the extractor publishes on ``latents``
(one forward pass gives them with the features, same stamp and ``sample_id``), while the labeler
works on the final features. The two arrive on two topics: a latent is kept (bounded by bytes,
oldest forgotten first) until its labelled sample comes; a labelled sample that comes first waits
for its latent at most ``wait_s``, then is dropped with one warning line. A latent stays known
after use, so a changed answer can take the sample back while it is still kept.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

from ..core.errors import InputError
from .messages import features_of, stamp_ns

Key = tuple[int, int]   # (capture stamp in ns, sample_id): sample ids restart with the extractor


def key_of(features: Any) -> Key:
    return stamp_ns(features.header), int(features.sample_id)


class LatentJoin:
    """Calls ``use(labelled_msg, latent)`` once a labelled sample and its latent are both in."""

    def __init__(self, use: Callable[[Any, np.ndarray], None], n_latent: int, extractor_hash: str, wait_s: float,
                 log: logging.Logger, bound: float | None = None, max_bytes: int = 32 << 20,
                 max_waiting: int = 1024) -> None:
        self.use, self.n_latent, self.hash, self.wait_s, self.log = use, n_latent, extractor_hash, wait_s, log
        self.bound = bound   # the extractor's calibrated |activation| bound at the cut (None: MAX_ABS_FEATURE)
        self.max_latents = max(1, max_bytes // (4 * n_latent + 64))
        self.max_waiting = max_waiting
        self._latent: OrderedDict[Key, np.ndarray] = OrderedDict()
        self._waiting: OrderedDict[Key, tuple[Any, float]] = OrderedDict()

    def add_latent(self, msg: Any) -> None:
        """A ``latents`` message (checked: size, finite, range, this extractor); frees a sample waiting for it."""
        x = features_of(msg, self.n_latent, self.hash, self.bound)
        key = key_of(msg)
        self._latent[key] = x
        while len(self._latent) > self.max_latents:
            self._latent.popitem(last=False)
        waiting = self._waiting.pop(key, None)
        if waiting is not None:
            self.use(waiting[0], x)

    def add_labeled(self, msg: Any) -> None:
        """A labelled sample: used at once if its latent is known, else it waits (bounded)."""
        key = key_of(msg.features)
        x = self._latent.get(key)
        if x is not None:
            self.use(msg, x)
            return
        self._waiting[key] = (msg, time.monotonic())
        if len(self._waiting) > self.max_waiting:
            self._waiting.popitem(last=False)
            self.log.warning("more than %d labelled samples wait for their latents: the oldest is dropped",
                             self.max_waiting)

    def latent_of(self, features: Any) -> np.ndarray:
        """The kept latent of a sample (InputError if it is not or no longer kept)."""
        x = self._latent.get(key_of(features))
        if x is None:
            raise InputError(f"no latent kept for sample {int(features.sample_id)} (is the extractor's latent_head on?)")
        return x

    def expire(self) -> None:
        """Drop labelled samples that waited longer than ``wait_s`` (one line per expiry)."""
        now, dropped = time.monotonic(), 0
        while self._waiting and now - next(iter(self._waiting.values()))[1] > self.wait_s:
            self._waiting.popitem(last=False)
            dropped += 1
        if dropped:
            self.log.warning("%d labelled sample(s) dropped: no latent came within %.1f s (is the extractor's "
                             "latent_head on?)", dropped, self.wait_s)
