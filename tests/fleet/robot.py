"""A robot of a fleet test: the real learner and the real mqtt_bridge node on one local bus, their state in
``state_dir``, and a labeller feeding the learner labelled features of ``CENTERS``' classes (64 features)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tinycl_nodes.bus import create_bus
from tinycl_nodes.bus.local import LocalGraph
from tinycl_nodes.nodes.learner import Learner, LearnerParams
from tinycl_nodes.nodes.mqtt_bridge import BridgeParams, MqttBridge

from .conftest import FLEET, Spinner
from .test_broker import FAST

F = 64
CENTERS = np.random.default_rng(0).normal(0, 3, (10, F)).astype(np.float32)


def teach_learner(pub: Any, LF: Any, Feat: Any, xhash: str, classes: list[int], n: int, seed: int) -> None:
    """``n`` labelled samples around the centres of ``classes`` in turn, on ``pub`` (a learner's ``labeled``)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        c = classes[i % len(classes)]
        x = (CENTERS[c] + rng.normal(0, 0.3, F)).astype(np.float32)
        pub.publish(LF(features=Feat(data=x.tolist(), extractor_hash=xhash), label=c, label_name="", source=2,
                       confidence=1.0))


class Robot:
    """``preset`` ``supervised`` (CWR*: the bridge blends) or ``tinycl`` (streaming LDA: the bridge's exact mode);
    the learner publishes its head every ``publish_every`` samples; ``clock``: the bridge's wall clock (``sent_at``)."""

    def __init__(self, setup, name: str, state_dir: Path, xhash: str, preset: str, publish_every: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.g, ns = LocalGraph(), f"/{name}/tinycl"
        self.bus = create_bus("learner", ns, backend="local", graph=self.g)
        self.learner = Learner(self.bus, LearnerParams(preset=preset, state_dir=str(state_dir),
                                                       publish_every=publish_every, model_prior=False))
        self.learner.bring_up()
        self.bridge_bus = create_bus("mqtt_bridge", ns, backend="local", graph=self.g)
        self.bridge = MqttBridge(self.bridge_bus, BridgeParams(fleet=FLEET, device=name, broker_dir=setup.directory,
                                                               state_dir=str(state_dir), min_interval_s=0.0,
                                                               period_s=0.2, poll_s=0.02, **FAST), clock=clock)
        self.spinners = [Spinner(self.bus), Spinner(self.bridge_bus)]
        self.teacher = create_bus("labeler", ns, backend="local", graph=self.g)
        self.LF, self.Feat = self.teacher.msg("LabeledFeatures"), self.teacher.msg("Features")
        self.pub = self.teacher.create_publisher("labeled", self.LF, "reliable")
        self.xhash = xhash

    def teach(self, classes: list[int], n: int, seed: int) -> None:
        teach_learner(self.pub, self.LF, self.Feat, self.xhash, classes, n, seed)

    def counts(self) -> dict[int, int]:
        """The learner's head: samples per class (its own and what it took in from the fleet)."""
        h = self.learner.head
        return {int(c): int(n) for c, n in zip(h.classes, h.counts)}

    def close(self) -> None:
        for s in self.spinners:
            s.stop()
        self.bridge.close()
        self.learner.close()
        for b in (self.bus, self.bridge_bus, self.teacher):
            b.shutdown()
