"""Message types built at run time from msg/*.msg (rosbags parses, cyclonedds classes are made).

    from tinycl_nodes.interfaces import get_type
    Features = get_type("Features")                 # tinycl_nodes/msg/Features
    msg = Features(data=[0.1, 0.2], sample_id=7)    # every field has a default, like rclpy
"""

from __future__ import annotations

from .arrays import as_sequence
from .convert import from_rosbags, to_rosbags
from .idl_text import idl_for
from .names import dds_topic_name, dds_type_name, full_type_name, remap_topic, resolve_topic, ros_type_name
from .stamp import ns_to_time, time_to_ns
from .typestore import message_names, msg_dir, type_hash, typestore


def get_type(name: str, distro: str = "jazzy") -> type:
    """The message class for 'Features', 'std_msgs/msg/Header', ... (cyclonedds dataclass)."""
    from .dds_types import dds_class

    return dds_class(full_type_name(name), distro)


def __getattr__(name: str) -> object:
    """``dds_class`` when first asked for: cyclonedds (its Python package and its own libddsc: 8.6 MB imported alone) is loaded
    only by what makes DDS types (the dds backend, the tools), not by every node under ROS 2, where rclpy carries the
    messages."""
    if name == "dds_class":
        from .dds_types import dds_class

        return dds_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "as_sequence", "dds_class", "dds_topic_name", "dds_type_name", "from_rosbags", "full_type_name", "get_type",
    "idl_for", "message_names", "msg_dir", "ns_to_time", "remap_topic", "resolve_topic", "ros_type_name",
    "time_to_ns", "to_rosbags", "type_hash", "typestore",
]
