"""The shipped DDS configurations agree on the participant indices the graph's processes take and on the socket
receive buffer they ask for."""

from __future__ import annotations

from xml.etree import ElementTree

from tinycl_nodes.bus.dds_config import (AGENT_PROFILE_NAME, LOOPBACK_CONFIG_NAME, MAX_AUTO_PARTICIPANT_INDEX,
                                         SOCKET_RECEIVE_BUFFER, network_config, shipped_config)


def _text(root: ElementTree.Element, tag: str) -> str:
    found = [e.text for e in root.iter() if e.tag.rsplit("}", 1)[-1] == tag]
    assert len(found) == 1, (tag, found)
    return found[0].strip()


def test_the_agent_announces_itself_to_every_index_a_node_can_take():
    """Without multicast the micro-ROS agent finds a node's process only at the indices it announces to
    (tests/firmware/test_board_uros.py shows what happens past them: the graph never sees the board)."""
    loopback = ElementTree.parse(shipped_config(LOOPBACK_CONFIG_NAME)).getroot()
    network = ElementTree.fromstring(network_config("eth0", ["10.0.0.2"]))
    agent = ElementTree.parse(shipped_config(AGENT_PROFILE_NAME)).getroot()
    for cyclone in (loopback, network):
        assert int(_text(cyclone, "MaxAutoParticipantIndex")) == MAX_AUTO_PARTICIPANT_INDEX
    assert int(_text(agent, "maxInitialPeersRange")) >= MAX_AUTO_PARTICIPANT_INDEX + 1


def test_both_cyclone_configurations_ask_for_the_same_receive_buffer():
    """What the buffer does to a real node's socket is tests/ros2/test_camera_ros2.py's to show."""
    loopback = ElementTree.parse(shipped_config(LOOPBACK_CONFIG_NAME)).getroot()
    network = ElementTree.fromstring(network_config("eth0", ["10.0.0.2"]))
    for cyclone in (loopback, network):
        found = [e.get("max") for e in cyclone.iter() if e.tag.rsplit("}", 1)[-1] == "SocketReceiveBufferSize"]
        assert found == [SOCKET_RECEIVE_BUFFER]
