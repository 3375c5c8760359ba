"""cyclonedds-python backend, wire-compatible with ROS 2 (rmw_cyclonedds_cpp) without ROS 2 installed.

`rt/<topic>` DDS topics, `pkg::msg::dds_::Name_` keyless final types (XCDR1), `typehash=RIHS01_…;`
in every endpoint's USER_DATA (Iron and later want it, Humble ignores it; left out with
ros_distro='humble'), `ros_discovery_info` for the node graph in the layout the ROS 2 peers read
(discovery.py). Callbacks run in the thread calling spin()/spin_once(), as with rclpy's executor.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from cyclonedds._clayer import ddspy_take
from cyclonedds.core import DDSException, GuardCondition, InstanceState, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.pub import DataWriter, Publisher
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader, Subscriber
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from ..interfaces import dds_topic_name, type_hash
from .base import BaseBus, Callback, say_dropped
from .dds_config import config_uri, domain_id
from .discovery import DiscoveryInfo
from .log import RosoutHandler
from .qos import QosProfile, RELIABLE, profile

_DOMAINS: dict[int, "_ConfiguredDomain"] = {}
_DOMAINS_LOCK = threading.Lock()
_ANY = SampleState.Any | ViewState.Any | InstanceState.Any
TAKE_BATCH = 64
MAX_ROUNDS = 64   # batches per subscription in one spin_once, then control returns to the caller


@dataclass
class _ConfiguredDomain:
    """A domain id this process uses: Cyclone's Domain made with our config (None: $CYCLONEDDS_URI's, made by the
    first participant), and how many of this process's buses are on it."""

    entity: Domain | None
    uri: str | None
    users: int = 0


def acquire_domain(did: int, uri: str | None) -> None:
    """Configure domain ``did`` with ``uri`` for one more user. Cyclone allows one config per domain id while the
    domain lives in a process, so another config while it is in use is refused; once its last user released it,
    the id can be configured anew (a long-lived process that runs graphs one after another, a test suite)."""
    with _DOMAINS_LOCK:
        known = _DOMAINS.get(did)
        if known is not None and known.uri != uri:
            raise RuntimeError(f"DDS domain {did} already configured in this process with another config")
        if known is None:
            known = _DOMAINS[did] = _ConfiguredDomain(Domain(did, uri) if uri else None, uri)
        known.users += 1


def release_domain(did: int) -> None:
    """One user of ``did`` is done (its participant deleted); the last one deletes the domain and its config."""
    with _DOMAINS_LOCK:
        known = _DOMAINS.get(did)
        if known is None:
            return
        known.users -= 1
        if known.users <= 0:
            del _DOMAINS[did]
            if known.entity is not None:
                known.entity.__del__()


def configured_domains() -> set[int]:
    """Domain ids this process has configured and still uses (each with one config while it does)."""
    with _DOMAINS_LOCK:
        return set(_DOMAINS)


def unconfigured_domain(base: int, span: int) -> int:
    """A domain id in ``[base, base + span)`` for a tool's own graph: ``base + pid % span``, or the next one
    this process is not using — Cyclone keeps a domain's config while it is in use, so a caller (a test suite)
    that holds one set up another way would make ours fail."""
    used = configured_domains()
    start = os.getpid()
    return next((d for k in range(span) if (d := base + (start + k) % span) not in used), base + start % span)


class DdsPublisher:
    """A writer. A reliable write that times out is one message not sent, said in one line at most every
    ``BLOCKED_SAY_S`` per topic, not an exception: a reader that takes nothing for ``max_blocking_s`` is almost always
    a node that died (killed, crashed), which DDS keeps matched until its lease ends, and raising would abort the
    caller's callback — the learner's prediction of a sample would then cost the learning of that sample."""

    BLOCKED_SAY_S = 10.0

    def __init__(self, topic: str, writer: DataWriter, msg_type: type, log: logging.Logger, reliable: bool) -> None:
        self.topic, self.writer, self.msg_type, self.log, self.reliable = topic, writer, msg_type, log, reliable
        self.not_sent = 0                 #: writes that timed out
        self._said: tuple[float, int] = (-self.BLOCKED_SAY_S, 0)   # when the line was last said, and the count then

    def publish(self, msg: Any) -> None:
        if type(msg) is not self.msg_type:
            raise TypeError(f"{self.topic}: expected {self.msg_type.__ros_type__}, got {type(msg).__name__}")
        try:
            self.writer.write(msg)
        except DDSException as exc:
            if exc.code != DDSException.DDS_RETCODE_TIMEOUT:
                raise
            self.not_sent += 1
            now = time.monotonic()
            if now - self._said[0] >= self.BLOCKED_SAY_S:
                count, self._said = self.not_sent - self._said[1], (now, self.not_sent)   # before: /rosout is one too
                self.log.warning("%s: %d message(s) not sent: a reader took none for the blocking time (a node that "
                                 "died stays matched until its DDS lease ends)", self.topic, count)

    def get_subscription_count(self) -> int:
        """Matched subscriptions (rclpy's name), e.g. to wait for readers before a replay starts."""
        return int(self.writer.get_publication_matched_status().current_count)

    def all_acked(self) -> bool:
        """base.Publisher's. Cyclone says yes at once for a best-effort writer: nothing acknowledges its samples.
        The C call itself: cyclonedds-python 11.0.1's ``DataWriter.wait_for_acks`` raises AttributeError on a time-out
        (it reads ``Exception.DDS_RETCODE_TIMEOUT``)."""
        if not self.reliable:
            return False
        ret = self.writer._wait_for_acks(self.writer._ref, 0)
        if ret not in (0, DDSException.DDS_RETCODE_TIMEOUT):
            raise DDSException(ret, f"{self.topic}: waiting for acknowledgements")
        return ret == 0


class DdsSubscription:
    def __init__(self, topic: str, reader: DataReader, msg_type: type, callback: Callback) -> None:
        self.topic, self.reader, self.msg_type, self.callback = topic, reader, msg_type, callback
        self.condition = ReadCondition(reader, _ANY)


class RosoutWriter:
    """``/rosout`` (rcl_interfaces/msg/Log) with rcl's rosout QoS: reliable, transient-local, depth 1000,
    lifespan 10 s."""

    QOS = QosProfile(reliable=True, transient_local=True, depth=1000, lifespan_s=10.0)

    def __init__(self, bus: "DdsBus") -> None:
        self.Log = bus.msg("rcl_interfaces/msg/Log")
        self.bus = bus
        self.pub = bus.create_publisher("/rosout", self.Log, self.QOS)

    def publish(self, level: int, name: str, text: str, file: str, function: str, line: int) -> None:
        if self.bus.participant is not None:
            self.pub.publish(self.Log(stamp=self.bus.stamp(), level=level, name=name, msg=text, file=file,
                                      function=function, line=line))


class DdsBus(BaseBus):
    """One DDS participant per node, like rmw_cyclonedds."""

    backend = "dds"

    def __init__(self, name: str, namespace: str = "/", parameters: dict[str, Any] | None = None, *,
                 domain: int | None = None, dds_config: str | None = None, ros_distro: str = "auto",
                 remaps: list[tuple[str, str]] | None = None, log_level: str = "info", rosout: bool = True) -> None:
        super().__init__(name, namespace, parameters, remaps, log_level)
        if ros_distro not in ("auto", "humble", "jazzy"):
            raise ValueError(f"ros_distro must be 'auto', 'humble' or 'jazzy', got {ros_distro!r}")
        # 'auto': ros_discovery_info follows the peers (discovery.py). Our message types are the same in
        # both distros and Humble ignores the USER_DATA type hash, so types and hash are Jazzy's then.
        self.ros_distro = ros_distro
        self.distro = "humble" if ros_distro == "humble" else "jazzy"
        self.domain_id = domain_id(domain)
        acquire_domain(self.domain_id, config_uri(dds_config))
        try:
            self.participant = DomainParticipant(self.domain_id, qos=Qos(Policy.Userdata(data=b"enclave=/;")))
        except BaseException:
            release_domain(self.domain_id)
            raise
        self._pub = Publisher(self.participant)
        self._sub = Subscriber(self.participant)
        self._topics: dict[str, Topic] = {}
        self._subs: list[DdsSubscription] = []
        self._waitset = WaitSet(self.participant)
        self._wake = GuardCondition(self.participant)
        self._waitset.attach(self._wake)
        self.discovery = DiscoveryInfo(self.participant, self._pub, name, self.namespace, ros_distro, self.qos)
        self.discovery.publish()
        if rosout:
            self._rosout = RosoutWriter(self)
            self.logger.addHandler(RosoutHandler(self._rosout.publish))

    # QoS ---------------------------------------------------------------------------------------------
    def qos(self, p: QosProfile, ros_type: str) -> Qos:
        """DDS QoS for a profile, with the type hash in USER_DATA as Iron and later expect."""
        history = Policy.History.KeepAll if p.depth == 0 else Policy.History.KeepLast(p.depth)
        policies = [
            Policy.Reliability.Reliable(duration(seconds=p.max_blocking_s)) if p.reliable
            else Policy.Reliability.BestEffort,
            Policy.Durability.TransientLocal if p.transient_local else Policy.Durability.Volatile,
            history,
        ]
        if p.transient_local:   # what a late joiner gets: the history, as rmw_cyclonedds sets it (default: 1)
            policies.append(Policy.DurabilityService(0, history, -1, -1, -1))
        if p.lifespan_s > 0:
            policies.append(Policy.Lifespan(duration(seconds=p.lifespan_s)))
        if self.distro != "humble":
            policies.append(Policy.Userdata(data=f"typehash={type_hash(ros_type, self.distro)};".encode()))
        return Qos(*policies)

    def _topic(self, name: str, msg_type: type) -> Topic:
        dds_name = dds_topic_name(name)
        topic = self._topics.get(dds_name)
        if topic is None:
            topic = self._topics[dds_name] = Topic(self.participant, dds_name, msg_type)
        elif topic.data_type is not msg_type:
            raise TypeError(f"topic {name} already used with {topic.data_type.__ros_type__} in this node")
        return topic

    # pub/sub -----------------------------------------------------------------------------------------
    def create_publisher(self, topic: str, msg_type: type | str, qos: QosProfile | str = RELIABLE) -> DdsPublisher:
        t = self._resolve_type(msg_type)
        name = self.topic_name(topic)
        p = profile(qos)
        writer = DataWriter(self._pub, self._topic(name, t), self.qos(p, t.__ros_type__))
        self.discovery.add(writer, is_reader=False)
        return DdsPublisher(name, writer, t, self.logger, p.reliable)

    def create_subscription(self, topic: str, msg_type: type | str, callback: Callback,
                            qos: QosProfile | str = RELIABLE) -> DdsSubscription:
        t = self._resolve_type(msg_type)
        name = self.topic_name(topic)
        reader = DataReader(self._sub, self._topic(name, t), self.qos(profile(qos), t.__ros_type__))
        sub = DdsSubscription(name, reader, t, callback)
        self._waitset.attach(sub.condition)
        self._subs.append(sub)
        self.discovery.add(reader, is_reader=True)
        return sub

    def destroy(self, entity: Any) -> None:
        """Remove a subscription (it is no longer served) or a timer."""
        if isinstance(entity, DdsSubscription) and entity in self._subs:
            self._waitset.detach(entity.condition)
            self._subs.remove(entity)
        super().destroy(entity)

    def count_publishers(self, topic: str) -> int:
        """Writers matched by our subscriptions on ``topic`` (e.g. to see that a replay has ended)."""
        name = self.topic_name(topic)
        return sum(int(s.reader.get_subscription_matched_status().current_count) for s in self._subs if s.topic == name)

    # executor ----------------------------------------------------------------------------------------
    def _take_batch(self, sub: DdsSubscription) -> int:
        """Take up to TAKE_BATCH samples of one subscription and run its callback on each.

        A sample that does not decode is one error line, not a dead loop. Returns how many were
        taken, so the executor can go round the subscriptions fairly.
        """
        batch = ddspy_take(sub.reader._ref, _ANY, TAKE_BATCH)
        if isinstance(batch, int):
            self.logger.error("%s: take failed with DDS return code %d", sub.topic, batch)
            return 0
        for data, info in batch:
            if self._shutdown:
                break
            if not info.valid_data:
                continue
            try:
                msg = sub.msg_type.deserialize(data)
            except Exception as exc:  # noqa: BLE001 - malformed input from the wire
                self.inputs.take()
                what = f"{sub.msg_type.__ros_type__} ({len(data)} bytes): {exc}"
                say_dropped(self.logger, self.inputs, f"{sub.topic}: malformed {what}",
                            f"{sub.topic}: dropped malformed {what}")
                continue
            self._safe(sub.callback, msg, sub.topic)
        return len(batch)

    def spin_once(self, timeout_s: float = 0.0) -> None:
        """Wait up to timeout_s for data or a due timer, then run the callbacks that are ready.

        Subscriptions are served round-robin, one batch each per round (and timers between
        rounds), so a busy topic cannot starve the others: a node joining two topics by stamp
        (images and their ground truth) sees both advance together.
        """
        if self._shutdown:
            return
        wait = self._next_timer_in_s()
        wait = timeout_s if wait is None else min(wait, timeout_s)
        if wait > 0:
            self._waitset.wait(duration(seconds=wait))
            self._wake.set(False)
        for _ in range(MAX_ROUNDS):
            busy = False
            for sub in list(self._subs):
                if self._shutdown:
                    return
                busy |= self._take_batch(sub) == TAKE_BATCH
            self._run_due_timers()
            if not busy:
                break

    def wake(self) -> None:
        """Make a blocked spin_once return (thread-safe). After shutdown began there is nothing to wake, and
        the guard condition may be gone: a stop signal that lands while the participant is being deleted
        (a launcher stopping the graph as this node ends by itself) must not raise from its handler."""
        if self._shutdown:
            return
        try:
            self._wake.set(True)
        except DDSException:
            if not self._shutdown:
                raise

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        for h in [h for h in self.logger.handlers if isinstance(h, RosoutHandler)]:
            self.logger.removeHandler(h)
        try:
            self.discovery.clear()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        self._wake.set(True)
        self._subs.clear()
        participant, self.participant = self.participant, None
        try:
            participant.__del__()  # deletes the participant and all its readers/writers now, not at GC time
        finally:
            release_domain(self.domain_id)
