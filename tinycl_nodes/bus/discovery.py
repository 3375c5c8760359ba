"""`ros_discovery_info`: tells ROS 2 tools which nodes live in our participant (`ros2 node list`).

rmw_cyclonedds publishes one rmw_dds_common/msg/ParticipantEntitiesInfo per participant on the
DDS topic `ros_discovery_info` (no `rt/` prefix), reliable + transient-local + keep-last 1. Gids
are the DDS GUIDs (16 bytes), zero-padded to the distro's Gid size (Humble 24, Jazzy 16).
"""

from __future__ import annotations

import uuid
from typing import Any

from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic

from ..interfaces import dds_class, dds_type_name
from .qos import LATCHED

TOPIC = "ros_discovery_info"
TYPE = "rmw_dds_common/msg/ParticipantEntitiesInfo"


def gid_bytes(guid: uuid.UUID, distro: str) -> bytes:
    """A DDS GUID as the distro's rmw_dds_common/msg/Gid data."""
    size = len(dds_class("rmw_dds_common/msg/Gid", distro)().data)
    return guid.bytes.ljust(size, b"\0")


class DiscoveryInfo:
    """Keeps our participant's ParticipantEntitiesInfo up to date and published."""

    def __init__(self, participant: Any, publisher: Any, node_name: str, namespace: str, distro: str,
                 qos_factory: Any) -> None:
        self.distro = distro
        self._info_t = dds_class(TYPE, distro)
        self._node_t = dds_class("rmw_dds_common/msg/NodeEntitiesInfo", distro)
        self._gid_t = dds_class("rmw_dds_common/msg/Gid", distro)
        assert self._info_t.__idl_typename__ == dds_type_name(TYPE)
        topic = Topic(participant, TOPIC, self._info_t)
        self._writer = DataWriter(publisher, topic, qos_factory(LATCHED, TYPE))
        self._participant_gid = gid_bytes(participant.guid, distro)
        self.node_name, self.namespace = node_name, namespace
        self.readers: list[bytes] = []
        self.writers: list[bytes] = [gid_bytes(self._writer.guid, distro)]

    def message(self) -> Any:
        node = self._node_t(node_namespace=self.namespace, node_name=self.node_name,
                            reader_gid_seq=[self._gid_t(data=g) for g in self.readers],
                            writer_gid_seq=[self._gid_t(data=g) for g in self.writers])
        return self._info_t(gid=self._gid_t(data=self._participant_gid), node_entities_info_seq=[node])

    def add(self, entity: Any, is_reader: bool) -> None:
        (self.readers if is_reader else self.writers).append(gid_bytes(entity.guid, self.distro))
        self.publish()

    def publish(self) -> None:
        self._writer.write(self.message())

    def clear(self) -> None:
        """Announce the node is gone (as rmw does on node destruction: an empty node list)."""
        self._writer.write(self._info_t(gid=self._gid_t(data=self._participant_gid), node_entities_info_seq=[]))
