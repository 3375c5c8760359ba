"""In-process backend: publish() calls the subscribers' callbacks synchronously (experiments, benchmarks)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .base import BaseBus, Callback
from .qos import QosProfile, RELIABLE, profile


@dataclass
class _Topic:
    msg_type: type
    subscribers: list["LocalSubscription"] = field(default_factory=list)
    latched: deque = field(default_factory=deque)     # transient-local history, oldest first: what a late joiner gets


class LocalGraph:
    """The topics shared by all LocalBus nodes of one process (or of one experiment)."""

    def __init__(self) -> None:
        self.topics: dict[str, _Topic] = {}

    def topic(self, name: str, msg_type: type) -> _Topic:
        t = self.topics.setdefault(name, _Topic(msg_type))
        if t.msg_type is not msg_type:
            raise TypeError(f"topic {name} carries {t.msg_type.__name__}, not {msg_type.__name__}")
        return t


DEFAULT_GRAPH = LocalGraph()


@dataclass
class LocalSubscription:
    topic: str
    callback: Callback
    bus: "LocalBus"
    qos: QosProfile


class LocalPublisher:
    def __init__(self, bus: "LocalBus", topic: str, t: _Topic, qos: QosProfile) -> None:
        self.topic, self._t, self._qos, self._bus = topic, t, qos, bus

    def get_subscription_count(self) -> int:
        return len(self._t.subscribers)

    def all_acked(self) -> bool:
        """base.Publisher's: publish() hands each sample to every subscriber before it returns."""
        return True

    def publish(self, msg: Any) -> None:
        if type(msg) is not self._t.msg_type:
            raise TypeError(f"{self.topic}: expected {self._t.msg_type.__name__}, got {type(msg).__name__}")
        if self._qos.transient_local:
            self._t.latched.append(msg)
            while self._qos.depth and len(self._t.latched) > self._qos.depth:
                self._t.latched.popleft()
        for sub in list(self._t.subscribers):
            if not sub.bus._shutdown:
                sub.bus._safe(sub.callback, msg, sub.topic)


class LocalBus(BaseBus):
    """Same interface as the dds backend; delivery happens inside publish()."""

    backend = "local"

    def __init__(self, name: str, namespace: str = "/", parameters: dict[str, Any] | None = None,
                 graph: LocalGraph | None = None, distro: str = "jazzy", remaps: list[tuple[str, str]] | None = None,
                 log_level: str = "info") -> None:
        super().__init__(name, namespace, parameters, remaps, log_level)
        self.graph = graph or DEFAULT_GRAPH
        self.distro = distro
        self._subs: list[LocalSubscription] = []

    def create_publisher(self, topic: str, msg_type: type | str, qos: QosProfile | str = RELIABLE) -> LocalPublisher:
        name = self.topic_name(topic)
        return LocalPublisher(self, name, self.graph.topic(name, self._resolve_type(msg_type)), profile(qos))

    def count_publishers(self, topic: str) -> int:
        """In-process topics have no publisher registry: 1 while the topic exists."""
        return int(self.topic_name(topic) in self.graph.topics)

    def create_subscription(self, topic: str, msg_type: type | str, callback: Callback,
                            qos: QosProfile | str = RELIABLE) -> LocalSubscription:
        name = self.topic_name(topic)
        t = self.graph.topic(name, self._resolve_type(msg_type))
        sub = LocalSubscription(name, callback, self, profile(qos))
        t.subscribers.append(sub)
        self._subs.append(sub)
        if sub.qos.transient_local:
            for msg in list(t.latched)[-sub.qos.depth:] if sub.qos.depth else list(t.latched):
                self._safe(callback, msg, name)
        return sub

    def spin_once(self, timeout_s: float = 0.0) -> None:
        self._run_due_timers()
        wait = self._next_timer_in_s()
        wait = timeout_s if wait is None else min(wait, timeout_s)
        if wait > 0:
            time.sleep(wait)
        self._run_due_timers()

    def shutdown(self) -> None:
        self._shutdown = True
        for sub in self._subs:
            t = self.graph.topics.get(sub.topic)
            if t and sub in t.subscribers:
                t.subscribers.remove(sub)
        self._subs.clear()
