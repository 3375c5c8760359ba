"""A robot of a fleet test: the real learner and the real mqtt_bridge node on one local bus, their state in
``state_dir``, and a labeller feeding the learner labelled features of ``CENTERS``' classes (64 features); and
:class:`Pair`, the same two on separate buses with the test carrying each message (a forced interleaving)."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from tinycl_nodes.bus import create_bus
from tinycl_nodes.bus.local import LocalGraph
from tinycl_nodes.nodes.labeler import Labeler, LabelerParams
from tinycl_nodes.nodes.learner import Learner, LearnerParams
from tinycl_nodes.nodes.mqtt_bridge import BridgeParams, MqttBridge

from .conftest import FLEET, Spinner
from .test_broker import FAST

F = 64
CENTERS = np.random.default_rng(0).normal(0, 3, (10, F)).astype(np.float32)


def samples(classes: list[int], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples ``(X, y)`` around the centres of ``classes`` in turn (what :func:`teach_learner` teaches: a test
    computes the statistics a head must hold from them)."""
    rng = np.random.default_rng(seed)
    y = np.array([classes[i % len(classes)] for i in range(n)])
    X = np.stack([(CENTERS[c] + rng.normal(0, 0.3, F)).astype(np.float32) for c in y]) if n else np.zeros((0, F))
    return X, y


def teach_learner(pub: Any, LF: Any, Feat: Any, xhash: str, classes: list[int], n: int, seed: int) -> None:
    """``n`` labelled samples around the centres of ``classes`` in turn, on ``pub`` (a learner's ``labeled``)."""
    for x, c in zip(*samples(classes, n, seed)):
        pub.publish(LF(features=Feat(data=x.tolist(), extractor_hash=xhash), label=int(c), label_name="", source=2,
                       confidence=1.0))


class _Locked:
    """A publisher whose every message goes out under ``lock`` (the local bus delivers it inside publish())."""

    def __init__(self, pub: Any, lock: threading.RLock) -> None:
        self.pub, self.lock = pub, lock

    def publish(self, msg: Any) -> None:
        with self.lock:
            self.pub.publish(msg)


class Robot:
    """``preset`` ``supervised`` (CWR*: the bridge blends) or ``tinycl`` (streaming LDA: the bridge's exact mode);
    the learner publishes its head every ``publish_every`` samples (sent, and a change published, on its 1 s timer);
    ``clock``: the bridge's wall clock (``sent_at``);
    ``labeler``: the real labeler of ``preset`` too (TinyNDC's loop: it pseudo-labels the features :meth:`feed`
    gives it, for the learner), else the test labels for the learner (:meth:`teach`); "first": made before the
    learner, a global head reaches it before the learner's head that took it in ("last": after it)."""

    def __init__(self, setup, name: str, state_dir: Path, xhash: str, preset: str, publish_every: int,
                 clock: Callable[[], float] = time.time, labeler: Literal["", "first", "last"] = "") -> None:
        self.g, ns = LocalGraph(), f"/{name}/tinycl"
        # one message at a time into the robot's nodes, from its spinners' timers and from the test (Spinner): the
        # bridge's timer handed the learner a global head while the test taught it, and 19 of 100 samples raised
        self.lock = threading.RLock()
        self.labeler: Labeler | None = None
        if labeler == "first":
            self._start_labeler(ns, preset, state_dir)
        self.bus = create_bus("learner", ns, backend="local", graph=self.g)
        self.learner = Learner(self.bus, LearnerParams(preset=preset, state_dir=str(state_dir),
                                                       publish_every=publish_every, model_prior=False))
        self.learner.bring_up()
        self.bridge_bus = create_bus("mqtt_bridge", ns, backend="local", graph=self.g)
        self.bridge = MqttBridge(self.bridge_bus, BridgeParams(fleet=FLEET, device=name, broker_dir=setup.directory,
                                                               state_dir=str(state_dir), min_interval_s=0.0,
                                                               period_s=0.2, poll_s=0.02, **FAST), clock=clock)
        self.spinners = [Spinner(self.bus, self.lock), Spinner(self.bridge_bus, self.lock)]
        self.teacher = create_bus("labeler", ns, backend="local", graph=self.g)
        self.LF, self.Feat = self.teacher.msg("LabeledFeatures"), self.teacher.msg("Features")
        self.pub = self.teacher.create_publisher("labeled", self.LF, "reliable")
        self.xhash = xhash
        if labeler == "last":
            self._start_labeler(ns, preset, state_dir)
        if self.labeler is not None:
            self.spinners.append(Spinner(self.labeler_bus, self.lock))
            self.features = self.teacher.create_publisher("features", self.Feat, "reliable")
            self.Header = self.teacher.msg("std_msgs/msg/Header")
            self.Time = self.teacher.msg("builtin_interfaces/msg/Time")
            self.fed = 0

    def _start_labeler(self, ns: str, preset: str, state_dir: Path) -> None:
        self.labeler_bus = create_bus("labeler", ns, backend="local", graph=self.g)
        self.labeler = Labeler(self.labeler_bus, LabelerParams(preset=preset, state_dir=str(state_dir),
                                                               model_prior=False))

    def teach(self, classes: list[int], n: int, seed: int, at_once: bool = False) -> None:
        """``at_once``: no head goes out in the middle (the learner's timer waits for the robot's lock, held for all
        ``n``): one version of all ``n``, as when they come faster than the timer, a round's worth of samples that a
        test counts on being one round."""
        with self.lock if at_once else contextlib.nullcontext():
            teach_learner(_Locked(self.pub, self.lock), self.LF, self.Feat, self.xhash, classes, n, seed)

    def feed(self, classes: list[int], n: int, seed: int, labelled: bool) -> None:
        """``n`` features around the centres of ``classes`` in turn to the labeler, with their labels if ``labelled``
        (it learns those), else unlabelled (it pseudo-labels them)."""
        for x, c in zip(*samples(classes, n, seed)):
            self.fed += 1
            with self.lock:
                self.features.publish(self.Feat(header=self.Header(stamp=self.Time(sec=1, nanosec=self.fed)),
                                                data=x.tolist(), extractor_hash=self.xhash, sample_id=self.fed,
                                                true_label=int(c) if labelled else -1, labelled=labelled))

    def counts(self) -> dict[int, int]:
        """The learner's head: samples per class (its own and what it took in from the fleet)."""
        with self.lock:
            h = self.learner.head
            return {int(c): int(n) for c, n in zip(h.classes, h.counts)}

    def close(self) -> None:
        for s in self.spinners:
            s.stop()
        self.bridge.close()
        if self.labeler is not None:
            self.labeler.close()
            self.labeler_bus.shutdown()
        self.learner.close()
        for b in (self.bus, self.bridge_bus, self.teacher):
            b.shutdown()


NS = "/dev2/tinycl"


class Pair:
    """dev2: a learner (preset tinycl: exact mode) and its bridge on separate local graphs; ``heads`` holds what the
    learner published until :meth:`deliver` hands one to the bridge; a global head the bridge hands over goes to the
    learner at once (as a bus would), unless ``carry`` is False (the learner down, or the bridge killed before the
    bus delivered it)."""

    def __init__(self, setup: Any, tmp_path: Any, xhash: str) -> None:
        self.setup, self.state_dir, self.carry = setup, str(tmp_path / "dev2"), True
        self.lg = LocalGraph()
        self.bus = create_bus("learner", NS, backend="local", graph=self.lg)
        self.learner = Learner(self.bus, LearnerParams(preset="tinycl", state_dir=self.state_dir,
                                                       publish_every=10_000, model_prior=False))
        self.learner.bring_up()
        self.lt = create_bus("carrier", NS, backend="local", graph=self.lg)
        Head = self.lt.msg("Head")
        self.heads: list = []
        self.lt.create_subscription("head", Head, self.heads.append, "latched")
        self.to_learner = self.lt.create_publisher("global_head", Head, "rounds")
        self.LF, self.Feat = self.lt.msg("LabeledFeatures"), self.lt.msg("Features")
        self.labeled = self.lt.create_publisher("labeled", self.LF, "reliable")
        self.xhash = xhash
        self.start_bridge()

    def start_bridge(self) -> None:
        """The bridge (again: on its saved state) on a bus of its own, and the carrier's end there."""
        self.bg = LocalGraph()
        self.bridge_bus = create_bus("mqtt_bridge", NS, backend="local", graph=self.bg)
        self.bridge = MqttBridge(self.bridge_bus, BridgeParams(fleet=FLEET, device="dev2",
                                                               broker_dir=self.setup.directory,
                                                               state_dir=self.state_dir, min_interval_s=0.0),
                                 start=False)
        self.bt = create_bus("carrier", NS, backend="local", graph=self.bg)
        Head = self.bt.msg("Head")
        self.to_bridge = self.bt.create_publisher("head", Head, "latched")
        self.bt.create_subscription("global_head", Head, lambda m: self.carry and self.to_learner.publish(m),
                                    "rounds")

    def kill_bridge(self) -> None:
        """As kill -9: the bridge and its bus are gone, nothing closed or saved on the way out."""
        for b in (self.bridge_bus, self.bt):
            b.shutdown()

    def teach(self, classes: list[int], n: int, seed: int) -> None:
        teach_learner(self.labeled, self.LF, self.Feat, self.xhash, classes, n, seed)
        self.learner.heads.publish(wait=True)

    def deliver(self, version: int) -> None:
        """The learner's head ``version`` reaches the bridge now."""
        self.to_bridge.publish(next(m for m in self.heads if m.version == version))

    def offered(self) -> bytes:
        """The bridge's head payload offered to MQTT (the latest: a retained value)."""
        return self.bridge.link._pending[self.bridge.out_topic].payload

    def counts(self) -> dict[int, int]:
        h = self.learner.head
        return {int(c): int(n) for c, n in zip(h.classes, h.counts)}

    def close(self) -> None:
        self.bridge.close()
        self.learner.close()
        for b in (self.bus, self.bridge_bus, self.lt, self.bt):
            b.shutdown()
