"""learner node: labelled features → the active head; publishes predictions and the learned head.

For every sample it predicts first (prequential: the prediction the system would act on), then
learns the label if there is one (a pseudo-label, a person's answer, or ground truth). The head
is published on ``head`` (latched) every ``publish_every`` updates, at most every
``publish_period_s``, and at exit; its state is saved atomically and reloaded on restart.

In a fleet it also subscribes ``global_head`` (Head, latched; the mqtt_bridge publishes the
aggregator's merged head there, ``version`` = the aggregation round). A global head is checked
(``interfaces.heads.from_msg``: sizes, finiteness, unique ids, this node's extractor; then
``federated.check_snapshot``: kind, feature count, norm) — a bad one is one error line and
dropped — a round already merged is skipped, and the rest is merged into the local head by
``global_policy`` (``federated.merge_into_head``; ``blend`` by per-class counts, or ``replace``),
after consolidating the pending batch so nothing learned is lost. The merged head is published
at once; the last merged round is saved with the state. Only CWR* heads (presets ``tinyndc``,
``supervised``) can load a linear global head; with ``tinycl`` (streaming LDA) a global head is
refused with one line (see ``core/federated.py``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from .. import presets
from ..core.federated import HeadSnapshot, merge_into_head
from ..core.validation import check_label
from ..extractor import FrozenExtractor, model_path
from ..interfaces.heads import from_msg
from .messages import features_of, head_message, stamp_ns
from .runner import ManagedParams, Node, run_node, state_dir
from .state_file import StateFile

HEAD_PRESETS = {"tinyndc": presets.tinyndc_paper, "tinycl": presets.tinycl_best,
                "supervised": presets.supervised_cwr,
                # behind a TinyRCE labeler: nearest class mean learns a class from one answer
                "rce": lambda n, h: presets.TinyNDC(None, presets.HEADS["ncm"](n, h))}


class LearnerParams(ManagedParams):
    runtime_mutable = frozenset({"publish_every"})

    preset: Literal["tinyndc", "tinycl", "supervised", "rce"] = Field("tinycl",
                                                                     description="the head of this preset")
    model: str = Field("mnist_0to5_fp32", description="the extractor the features come from (hash + size)")
    state_dir: str | None = Field(None, description="state folder (default $ROS_HOME/tinycl/<namespace>)")
    publish_every: int = Field(500, ge=1, description="publish the head after this many learned samples")
    publish_period_s: float = Field(1.0, gt=0, description="seconds between checks that publish the head if it "
                                                           "learned since it was last published")
    with_state: bool = Field(False, description="also send the full core state in Head.state")
    class_names: dict[int, str] = Field(default_factory=dict,
                                        description="class id → name of predictions and the head (names learned "
                                                    "later are added)")
    latency_log: str | None = Field(None, description="write latency stats (capture → update, JSON in ms) here at "
                                                      "exit; None: not measured")
    global_topic: str = Field("global_head", description="the fleet's merged head (\"\" = not in a fleet)")
    global_policy: Literal["replace", "blend"] = Field("blend",
                                                       description="how it is merged (core/federated.py)")


class Learner(Node):
    """A managed node: ``configure`` loads the head's state, ``cleanup`` saves it."""

    Params = LearnerParams
    managed = True

    def configure(self) -> None:
        params, bus = self.params, self.bus
        extractor = FrozenExtractor(model_path(params.model))
        self.hash, self.n_features = extractor.hash, extractor.n_features
        self.head = HEAD_PRESETS[params.preset](self.n_features, self.hash).head
        self.state = StateFile(state_dir(params.state_dir, bus.namespace), "learner", self.log)
        saved = self.state.load()
        self.version = 0
        self.global_round = 0                     # the last global round merged (saved with the state)
        # class names: configured ones, then those learned (a person's new class, the fleet's) —
        # learned state, saved with the head
        self.class_names: dict[int, str] = dict(params.class_names)
        if saved and "head" in saved:
            self.head.load_state_dict(saved["head"])
            meta = saved["head"]["meta"]
            self.version = int(meta.get("published_version", 0))
            self.global_round = int(meta.get("global_round", 0))
            self.class_names.update({int(k): str(v) for k, v in (meta.get("class_names") or {}).items()})
            self.log.info("restored head (%d classes, %d samples) from %s", len(self.head.classes),
                          self.head.n_seen, self.state.path)
        self.Prediction = bus.msg("Prediction")
        self.HeadMsg, self.ClassInfo = bus.msg("Head"), bus.msg("ClassInfo")
        self.pred_pub = self.track(bus.create_publisher("predictions", self.Prediction, "reliable"))
        self.head_pub = self.track(bus.create_publisher("head", self.HeadMsg, "latched"))
        self.updates_since_publish = 0
        self.latencies: list[int] = []
        self.track(bus.create_subscription("labeled", "LabeledFeatures", self.gated(self.on_labeled), "reliable"))
        if params.global_topic:
            self.track(bus.create_subscription(params.global_topic, self.HeadMsg, self.gated(self.on_global_head),
                                               "latched"))
        self.track(bus.create_timer(params.publish_period_s, self._maybe_publish))
        super().configure()

    def on_labeled(self, msg: Any) -> None:
        x = features_of(msg.features, self.n_features, self.hash)
        label = int(msg.label)
        if label != -1:
            check_label(label)
            if msg.label_name:   # a class named by the labeler (e.g. a person's new class)
                self.class_names[label] = msg.label_name[:64]
        predicted = self.head.predict_valid(x)  # exactly what the in-process loop predicts
        if predicted is None:
            cls, conf = -1, 0.0
        else:
            cls, conf = predicted, float(self.head.predict_proba(x)[self.head.classes.index(predicted)])
        self.pred_pub.publish(self.Prediction(header=msg.features.header, sample_id=msg.features.sample_id,
                                              class_id=cls, class_name=self.class_names.get(cls, str(cls)),
                                              confidence=conf))
        if label >= 0:
            self.head.learn_valid(x, label)
            self.updates_since_publish += 1
        if self.params.latency_log is not None and msg.source == msg.PSEUDO:
            # stream samples only: labelled init samples wait in the labeler by design
            self.latencies.append(time.time_ns() - stamp_ns(msg.features.header))
        if self.updates_since_publish >= self.params.publish_every:
            self._maybe_publish()

    def on_global_head(self, msg: Any) -> None:
        """Merge the fleet's global head (one round once); a bad one raises: one line, dropped."""
        snap = global_snapshot(msg, self.hash)
        if snap.version <= self.global_round:
            self.log.debug("global head round %d already merged (at round %d): skipped", snap.version,
                           self.global_round)
            return
        res = merge_into_head(self.head, snap, self.params.global_policy, self.class_names)
        self.global_round = snap.version
        for reason in res.skipped:
            self.log.warning("global head round %d: %s", snap.version, reason)
        self.log.info("global head round %d merged (%s): %d classes, %d new: %s", snap.version,
                      self.params.global_policy, len(self.head.classes), len(res.imported),
                      ", ".join(n for _, n in res.imported) or "-")
        self.publish_head()

    def _maybe_publish(self) -> None:
        if self.updates_since_publish:
            self.publish_head()

    def publish_head(self) -> None:
        if not self.head.classes:
            return
        self.version += 1
        self.head_pub.publish(head_message(self.HeadMsg, self.ClassInfo, self.head, self.version, self._header(),
                                           self.class_names, self.params.with_state))
        self.updates_since_publish = 0

    def _header(self) -> Any:
        return self.bus.msg("std_msgs/msg/Header")(stamp=self.bus.stamp(), frame_id="")

    def close(self) -> None:
        if self.updates_since_publish:
            self.publish_head()
        state = self.head.state_dict()
        state["meta"]["published_version"] = self.version
        state["meta"]["global_round"] = self.global_round
        state["meta"]["class_names"] = {str(k): v for k, v in self.class_names.items()}
        self.state.save({"head": state})
        if self.params.latency_log and self.latencies:
            lat = np.array(self.latencies, np.float64) / 1e6
            Path(self.params.latency_log).write_text(json.dumps({
                "n": int(lat.size), "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                "max_ms": float(lat.max()), "mean_ms": float(lat.mean())}))


def global_snapshot(msg: Any, extractor_hash: str) -> HeadSnapshot:
    """A received global ``Head`` as a snapshot, after ``interfaces.heads.from_msg``'s checks (raises if bad)."""
    return from_msg(msg, extractor_hash, "global")


def main(argv: list[str] | None = None) -> int:
    return run_node(Learner, "learner", argv)


if __name__ == "__main__":
    raise SystemExit(main())
