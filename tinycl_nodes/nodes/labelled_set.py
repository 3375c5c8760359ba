"""The labelled samples a TinyNDC labeler's clusters start from, kept where they survive a labeler crash.

A labeler whose state file is lost (deleted, or moved aside as corrupt) has no labelled sample and
cannot pseudo-label anything. It cannot re-serve what it lost itself, and the sensor's labelled
replay is long over by then; the node that learns its labels (the learner, or the board in its
place) saw every one of them, keeps durable state and outlives the labeler. So that node keeps the
first ``keep`` ground-truth samples it learned in its state and publishes each on ``topic``
(LabeledFeatures, reliable, transient-local, keep-last ``keep``): a labeler that starts without
state receives them all from the writer's history and re-initialises its clusters from them.
After a restart of the keeper itself they are published again from its state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pydantic import Field

from ..bus.qos import QosProfile
from ..core import state as st
from ..core.errors import StateError
from ..core.prior_worth import WEIGH_MAX
from ..interfaces import as_sequence, ns_to_time
from .messages import stamp_ns
from .runner import NodeParams

KIND = "LabelledSet"
PUBLISH_PERIOD_S = 0.05     # samples kept since the last tick are latched by a timer, at most PUBLISH_PER_TICK a tick:
PUBLISH_PER_TICK = 10       # a learner that learns the 100 samples its wait held in one go does not also publish
#                             them on the message thread then (half of that burst's cost); 200 samples/s


class LabelledParams(NodeParams):
    """Where the node that learns the labeler's labels (learner, board) keeps and latches them."""

    labelled_topic: str = Field("labelled_init", description="the ground-truth samples learned (the labeler's "
                                                             "initial ones), kept in the state and latched here: "
                                                             "a labeler that lost its state recovers them (\"\" = "
                                                             "not published)")
    keep_labelled: int = Field(WEIGH_MAX, ge=0, le=100_000,
                               description="ground-truth samples kept for that (the first ones learned; 0 = none)")


class LabelledSet:
    """The first ``keep`` ground-truth samples learned (x, label, stamp), saved and latched."""

    def __init__(self, n_features: int, keep: int) -> None:
        self.n_features, self.keep = int(n_features), int(keep)
        self.X = np.zeros((0, self.n_features), np.float32)
        self.y = np.zeros(0, np.int64)
        self.stamps = np.zeros(0, np.int64)
        self.pub: Any = None
        self._published = 0                      # of those kept, how many the latched topic has
        self._hash = ""                          # the extractor the kept features come from

    def __len__(self) -> int:
        return int(self.y.size)

    def advertise(self, bus: Any, topic: str) -> list[Any]:
        """Create the latched publisher (none when ``topic`` is "" or ``keep`` 0), publish what is kept, and the
        timer that publishes what is kept later; returns them (for the node to track)."""
        if not topic or not self.keep:
            return []
        self._use(bus)
        self.pub = bus.create_publisher(topic, self._types[0], QosProfile(reliable=True, transient_local=True,
                                                                          depth=self.keep))
        self._published = 0
        self.publish_pending(len(self))
        return [self.pub, bus.create_timer(PUBLISH_PERIOD_S, self.publish_pending)]

    def publish_pending(self, at_most: int = PUBLISH_PER_TICK) -> None:
        """(timer) Latch the samples kept since the last call, the oldest first, at most ``at_most``."""
        if self.pub is None:
            return
        for i in range(self._published, min(len(self), self._published + at_most)):
            self.pub.publish(self._message(i))
            self._published = i + 1

    def add(self, msg: Any, x: np.ndarray, label: int) -> None:
        """Keep a learned ground-truth sample (a LabeledFeatures ``msg`` whose checked features are ``x``)."""
        if len(self) >= self.keep or msg.source != msg.GROUND_TRUTH:
            return
        self._hash = str(msg.features.extractor_hash)
        self.X = np.vstack([self.X, x[None].astype(np.float32)])
        self.y = np.append(self.y, np.int64(label))
        self.stamps = np.append(self.stamps, np.int64(stamp_ns(msg.header)))

    def samples(self, bus: Any) -> list[tuple[Any, np.ndarray, int]]:
        """What is kept, in the order learned, as (LabeledFeatures, features, label): a learner that was killed while
        it held them (its wait for the model's class statistics) takes them up again from here."""
        self._use(bus)
        return [(self._message(i), self.X[i], int(self.y[i])) for i in range(len(self))]

    def _use(self, bus: Any) -> None:
        self._types = bus.msg("LabeledFeatures"), bus.msg("Features"), bus.msg("std_msgs/msg/Header")
        self._time = bus.msg("builtin_interfaces/msg/Time")

    def _message(self, i: int) -> Any:
        labeled, features, header = self._types
        h = header(stamp=ns_to_time(int(self.stamps[i]), self._time), frame_id="")
        return labeled(header=h, features=features(header=h, data=as_sequence(self.X[i], "f"),
                                                   extractor_hash=self._hash, sample_id=0,
                                                   true_label=int(self.y[i]), labelled=True),
                       label=int(self.y[i]), confidence=1.0, source=labeled.GROUND_TRUTH)

    def state_dict(self) -> dict[str, Any]:
        return st.make_state(KIND, 1, {}, {"X": self.X, "y": self.y, "stamps": self.stamps},
                             {"extractor_hash": self._hash})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore (checked first: a bad part changes nothing)."""
        st.check_state(state, KIND, 1, ("X", "y", "stamps"))
        n = np.asarray(state["arrays"]["y"]).size
        y = st.expect_shape(state, "y", (n,))
        if y.dtype.kind not in "iu" or (y < 0).any():
            raise StateError(f"state: {KIND} labels must be class ids >= 0")
        X = st.expect_shape(state, "X", (n, self.n_features))
        stamps = st.expect_shape(state, "stamps", (n,))
        k = min(n, self.keep)
        self.X, self.y, self.stamps = X[:k].astype(np.float32), y[:k].astype(np.int64), stamps[:k].astype(np.int64)
        self._hash = str(state["meta"].get("extractor_hash", ""))
