"""learner node: labelled features → the active head; publishes predictions and the learned head.

For every sample it predicts first (prequential: the prediction the system would act on), then
learns the label if there is one (a pseudo-label, a person's answer, or ground truth). The head
is published on ``head`` (latched) every ``publish_every`` updates, at most every
``publish_period_s``, and at exit; its state is saved atomically and reloaded on restart.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from .. import presets
from ..core.validation import check_label
from ..extractor import FrozenExtractor, model_path
from .messages import features_of, head_message, stamp_ns
from .runner import Node, NodeParams, run_node
from .state_file import StateFile

HEAD_PRESETS = {"tinyndc": presets.tinyndc_paper, "tinycl": presets.tinycl_best,
                "supervised": presets.supervised_cwr}


class LearnerParams(NodeParams):
    preset: Literal["tinyndc", "tinycl", "supervised"] = "tinycl"   # the head of this preset
    model: str = "mnist_0to5_fp32"
    state_dir: str | None = None
    publish_every: int = Field(500, ge=1)
    publish_period_s: float = Field(1.0, gt=0)
    with_state: bool = False                      # also send the full core state in Head.state
    class_names: dict[int, str] = Field(default_factory=dict)
    latency_log: str | None = None                # write per-sample latency stats here at exit


class Learner(Node):
    Params = LearnerParams

    def __init__(self, bus: Any, params: LearnerParams) -> None:
        super().__init__(bus, params)
        extractor = FrozenExtractor(model_path(params.model))
        self.hash, self.n_features = extractor.hash, extractor.n_features
        self.head = HEAD_PRESETS[params.preset](self.n_features, self.hash).head
        self.state = StateFile(params.state_dir, "learner", self.log)
        saved = self.state.load()
        self.version = 0
        if saved and "head" in saved:
            self.head.load_state_dict(saved["head"])
            self.version = int(saved["head"]["meta"].get("published_version", 0))
            self.log.info("restored head (%d classes, %d samples) from %s", len(self.head.classes),
                          self.head.n_seen, self.state.path)
        self.Prediction = bus.msg("Prediction")
        self.HeadMsg, self.ClassInfo = bus.msg("Head"), bus.msg("ClassInfo")
        self.pred_pub = bus.create_publisher("predictions", self.Prediction, "reliable")
        self.head_pub = bus.create_publisher("head", self.HeadMsg, "latched")
        self.updates_since_publish = 0
        self.latencies: list[int] = []
        bus.create_subscription("labeled", "LabeledFeatures", self.on_labeled, "reliable")
        bus.create_timer(params.publish_period_s, self._maybe_publish)

    def on_labeled(self, msg: Any) -> None:
        x = features_of(msg.features, self.n_features, self.hash)
        label = int(msg.label)
        if label != -1:
            check_label(label)
        predicted = self.head.predict_valid(x)  # exactly what the in-process loop predicts
        if predicted is None:
            cls, conf = -1, 0.0
        else:
            cls, conf = predicted, float(self.head.predict_proba(x)[self.head.classes.index(predicted)])
        self.pred_pub.publish(self.Prediction(header=msg.features.header, sample_id=msg.features.sample_id,
                                              class_id=cls, class_name=self.params.class_names.get(cls, str(cls)),
                                              confidence=conf))
        if label >= 0:
            self.head.learn_valid(x, label)
            self.updates_since_publish += 1
        if self.params.latency_log is not None:
            self.latencies.append(time.time_ns() - stamp_ns(msg.features.header))
        if self.updates_since_publish >= self.params.publish_every:
            self._maybe_publish()

    def _maybe_publish(self) -> None:
        if self.updates_since_publish:
            self.publish_head()

    def publish_head(self) -> None:
        if not self.head.classes:
            return
        self.version += 1
        self.head_pub.publish(head_message(self.HeadMsg, self.ClassInfo, self.head, self.version, self._header(),
                                           self.params.class_names, self.params.with_state))
        self.updates_since_publish = 0

    def _header(self) -> Any:
        return self.bus.msg("std_msgs/msg/Header")(stamp=self.bus.stamp(), frame_id="")

    def close(self) -> None:
        if self.updates_since_publish:
            self.publish_head()
        state = self.head.state_dict()
        state["meta"]["published_version"] = self.version
        self.state.save({"head": state})
        if self.params.latency_log and self.latencies:
            lat = np.array(self.latencies, np.float64) / 1e6
            Path(self.params.latency_log).write_text(json.dumps({
                "n": int(lat.size), "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                "max_ms": float(lat.max()), "mean_ms": float(lat.mean())}))


def main(argv: list[str] | None = None) -> int:
    return run_node(Learner, "learner", argv)


if __name__ == "__main__":
    raise SystemExit(main())
