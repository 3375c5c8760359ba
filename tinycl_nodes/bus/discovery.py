"""`ros_discovery_info`: tells ROS 2 tools which nodes live in our participant (`ros2 node list`).

rmw_cyclonedds publishes one rmw_dds_common/msg/ParticipantEntitiesInfo per participant on the
DDS topic `ros_discovery_info` (no `rt/` prefix), reliable + transient-local + keep-last 1 (readers
keep-all). Gids are the DDS GUIDs (16 bytes), zero-padded to the layout's Gid size.

Two wire layouts exist under the same topic and DDS type name: Humble (and older) has
`Gid: char[24] data`, Iron and later `char[16] data`. A reader decodes every sample with its own
layout, and rmw_cyclonedds sends no XTypes type information (its sertype has no type discovery),
so DDS matches both layouts with every reader: the layout must be chosen per peer, not per type.

`distro="auto"` (the default) picks it from the peers: a thread watches the built-in
DCPSSubscription topic for remote readers of `ros_discovery_info`. Iron and later put
`typehash=RIHS01_…;` in every endpoint's USER_DATA (ros_discovery_info included); Humble puts no
USER_DATA there. Readers with a type hash read the 16-byte layout, the others the 24-byte one.
We announce in that layout only while such readers exist (the writer of a layout no longer wanted is
re-created empty, so its transient-local sample is not replayed to a later reader of the other one).
A domain mixing both (which ROS 2 itself does not support: the two misread each other's
ros_discovery_info; in practice a peer killed less than a lease ago) gets the layout of the newest
reader, with a warning. Humble drops a 16-byte sample (its deserializer fails) and keeps what it had.
`distro="humble"|"jazzy"` announces in that layout at once, always, without watching.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsSubscription
from cyclonedds.core import GuardCondition, InstanceState, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.pub import DataWriter
from cyclonedds.qos import Policy, Qos
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from ..interfaces import dds_class, dds_type_name
from .qos import LATCHED

TOPIC = "ros_discovery_info"
TYPE = "rmw_dds_common/msg/ParticipantEntitiesInfo"
LAYOUTS = ("humble", "jazzy")   # Gid char[24] (Humble and older) | char[16] (Iron and later)
DISTROS = ("auto", *LAYOUTS)
_ANY = SampleState.Any | ViewState.Any | InstanceState.Any
log = logging.getLogger("tinycl.dds.discovery")


def gid_bytes(guid: uuid.UUID | bytes, distro: str) -> bytes:
    """A DDS GUID as the distro's rmw_dds_common/msg/Gid data."""
    size = len(dds_class("rmw_dds_common/msg/Gid", distro)().data)
    raw = guid.bytes if isinstance(guid, uuid.UUID) else bytes(guid)
    return raw.ljust(size, b"\0")


def reader_layout(user_data: bytes | None) -> str:
    """The Gid layout a remote `ros_discovery_info` reader decodes, from its USER_DATA QoS.

    Iron and later: `typehash=RIHS01_<hex>;` (rmw_cyclonedds `create_readwrite_qos`, rmw_dds_common
    `encode_type_hash_for_user_data_qos`) -> 'jazzy'. Humble: no type hash -> 'humble'.
    """
    keys = {kv.split(b"=", 1)[0].strip() for kv in (user_data or b"").split(b";") if b"=" in kv}
    return "jazzy" if b"typehash" in keys else "humble"


class DiscoveryInfo:
    """Keeps our participant's ParticipantEntitiesInfo up to date and published in the peers' layout."""

    def __init__(self, participant: Any, publisher: Any, node_name: str, namespace: str, distro: str,
                 qos_factory: Any) -> None:
        if distro not in DISTROS:
            raise ValueError(f"ros_distro must be one of {', '.join(DISTROS)}, got {distro!r}")
        self.distro = distro                      # 'auto' | 'humble' | 'jazzy' (the setting)
        self.node_name, self.namespace = node_name, namespace
        self._participant, self._publisher, self._qos_factory = participant, publisher, qos_factory
        self._participant_guid: uuid.UUID = participant.guid
        self._guids: dict[bool, list[bytes]] = {True: [], False: []}   # is_reader -> GUIDs (16 bytes)
        self._lock = threading.RLock()
        self._topics = {layout: Topic(participant, TOPIC, dds_class(TYPE, layout))
                        for layout in (LAYOUTS if distro == "auto" else (distro,))}
        for layout, topic in self._topics.items():
            assert topic.data_type.__idl_typename__ == dds_type_name(TYPE), layout
        self._writers = {layout: self._new_writer(layout) for layout in self._topics}
        self.peers: dict[uuid.UUID, str] = {}     # remote ros_discovery_info reader -> its layout
        self.layout: str | None = None if distro == "auto" else distro   # what we announce in now
        self._mixed_warned = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if distro == "auto":
            self._builtin = BuiltinDataReader(participant, BuiltinTopicDcpsSubscription)
            self._waitset = WaitSet(participant)
            self._wake = GuardCondition(participant)
            self._waitset.attach(ReadCondition(self._builtin, _ANY))
            self._waitset.attach(self._wake)
            self._thread = threading.Thread(target=self._watch, name=f"ros_discovery_info {node_name}",
                                            daemon=True)
            self._thread.start()

    # writers -----------------------------------------------------------------------------------------
    def _new_writer(self, layout: str) -> DataWriter:
        qos = self._qos_factory(LATCHED, TYPE)
        if layout == "humble":   # as Humble's rmw: no type hash (a Jazzy hash on a 24-byte layout would lie)
            qos = Qos(*[p for p in qos if not isinstance(p, Policy.Userdata)])
        return DataWriter(self._publisher, self._topics[layout], qos)

    def message(self, layout: str | None = None, nodes: bool = True) -> Any:
        """Our ParticipantEntitiesInfo in `layout` (default: the current one, or Jazzy's before any peer)."""
        layout = layout or self.layout or ("jazzy" if self.distro == "auto" else self.distro)
        info_t = dds_class(TYPE, layout)
        node_t = dds_class("rmw_dds_common/msg/NodeEntitiesInfo", layout)
        gid_t = dds_class("rmw_dds_common/msg/Gid", layout)
        with self._lock:
            writers = [self._writers[layout].guid.bytes, *self._guids[False]] if layout in self._writers \
                else list(self._guids[False])
            node = node_t(node_namespace=self.namespace, node_name=self.node_name,
                          reader_gid_seq=[gid_t(data=gid_bytes(g, layout)) for g in self._guids[True]],
                          writer_gid_seq=[gid_t(data=gid_bytes(g, layout)) for g in writers])
        return info_t(gid=gid_t(data=gid_bytes(self._participant_guid, layout)),
                      node_entities_info_seq=[node] if nodes else [])

    def add(self, entity: Any, is_reader: bool) -> None:
        with self._lock:
            self._guids[is_reader].append(entity.guid.bytes)
            self.publish()

    def publish(self) -> None:
        """Write our info in the current layout (in 'auto' mode: nothing until a ROS 2 reader is seen)."""
        with self._lock:
            if self.layout is not None:
                self._writers[self.layout].write(self.message(self.layout))

    def clear(self) -> None:
        """Announce the node is gone (as rmw does on node destruction: an empty node list); stop watching."""
        self.stop()
        with self._lock:
            if self.layout is not None:
                self._writers[self.layout].write(self.message(self.layout, nodes=False))

    def stop(self) -> None:
        if self._thread is not None and not self._stop.is_set():
            self._stop.set()
            self._wake.set(True)
            self._thread.join(timeout=5)

    # auto: watch the peers' ros_discovery_info readers --------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self._waitset.wait(duration(seconds=1))
                if self._stop.is_set():
                    return
                samples = self._builtin.take(N=256)
            except Exception as exc:  # noqa: BLE001 - the participant was deleted under us: nothing to watch
                log.debug("%s: ros_discovery_info watcher stopped: %s", self._fqn(), exc)
                return
            try:
                self._update(samples)
            except Exception:  # noqa: BLE001 - one bad round must not end the watching
                log.exception("%s: announcing on ros_discovery_info failed", self._fqn())

    def _update(self, samples: list) -> None:
        changed = False
        for s in samples:
            info = s.sample_info
            if info.instance_state != InstanceState.Alive:   # the reader (or its participant) went away
                changed |= self.peers.pop(s.key, None) is not None
            elif (info.valid_data and s.topic_name == TOPIC and s.type_name == dds_type_name(TYPE)
                  and s.participant_key != self._participant_guid and s.key not in self.peers):
                ud = s.qos[Policy.Userdata].data if Policy.Userdata in s.qos else None
                self.peers[s.key] = reader_layout(ud)     # insertion order: the newest reader is last
                changed = True
        if changed:
            self._choose()

    def _choose(self) -> None:
        """Announce in the layout of the newest ROS 2 reader still there (none left: announce nothing)."""
        want = next(reversed(self.peers.values()), None)
        if len(set(self.peers.values())) > 1:
            if not self._mixed_warned:
                self._mixed_warned = True
                log.warning("ROS 2 peers of both Gid layouts (Humble, and Iron or later) read ros_discovery_info "
                            "in this domain; node %s announces in the layout of the newest one (now %s); "
                            "set ros_distro to choose", self._fqn(), want)
        else:
            self._mixed_warned = False
        with self._lock:
            if want == self.layout:
                return
            if self.layout is not None:
                # Drop what the old writer holds (transient-local): a later reader must not get that layout.
                old, self._writers[self.layout] = self._writers[self.layout], self._new_writer(self.layout)
                old.__del__()
            self.layout = want
            self.publish()

    def _fqn(self) -> str:
        return self.namespace.rstrip("/") + "/" + self.node_name
