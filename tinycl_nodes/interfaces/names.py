"""ROS 2 <-> DDS name mangling, as rmw_cyclonedds does it (so real ROS 2 nodes match ours)."""

from __future__ import annotations

PACKAGE = "tinycl_nodes"


def full_type_name(name: str) -> str:
    """'Features' or 'tinycl_nodes/Features' -> 'tinycl_nodes/msg/Features'."""
    parts = name.strip("/").split("/")
    if len(parts) == 1:
        return f"{PACKAGE}/msg/{parts[0]}"
    if len(parts) == 2:
        return f"{parts[0]}/msg/{parts[1]}"
    if len(parts) == 3:
        return name.strip("/")
    raise ValueError(f"not a ROS 2 message type name: {name!r}")


def dds_type_name(ros_type: str) -> str:
    """'std_msgs/msg/Header' -> 'std_msgs::msg::dds_::Header_' (the DDS type name ROS 2 uses)."""
    pkg, sub, name = full_type_name(ros_type).split("/")
    return f"{pkg}::{sub}::dds_::{name}_"


def ros_type_name(dds_name: str) -> str:
    """Inverse of :func:`dds_type_name`."""
    parts = dds_name.split("::")
    if len(parts) != 4 or parts[2] != "dds_" or not parts[3].endswith("_"):
        raise ValueError(f"not a ROS 2 DDS type name: {dds_name!r}")
    return f"{parts[0]}/{parts[1]}/{parts[3][:-1]}"


def resolve_topic(topic: str, namespace: str = "/") -> str:
    """Resolve a relative topic name against the node namespace: ('features', '/r1') -> '/r1/features'."""
    if not topic or topic.endswith("/") or "//" in topic or " " in topic:
        raise ValueError(f"invalid topic name: {topic!r}")
    if topic.startswith("/"):
        return topic
    ns = "/" + namespace.strip("/")
    return (ns.rstrip("/") + "/" + topic) if ns != "/" else "/" + topic


def remap_topic(topic: str, namespace: str, remaps: list[tuple[str, str]] | None) -> str:
    """The fully qualified name of ``topic`` after rcl's remap rules (``-r from:=to``), first match wins.

    Both sides of a rule are resolved against the node's namespace, as rcl does: with namespace
    ``/r1``, ``image:=/camera/image_raw`` turns ``image`` (``/r1/image``) into ``/camera/image_raw``.
    """
    name = resolve_topic(topic, namespace)
    for src, dst in remaps or ():
        if resolve_topic(src, namespace) == name:
            return resolve_topic(dst, namespace)
    return name


def dds_topic_name(ros_topic: str) -> str:
    """'/r1/tinycl/features' -> 'rt/r1/tinycl/features' (ROS 2 topic prefix)."""
    if not ros_topic.startswith("/"):
        raise ValueError(f"topic must be fully qualified: {ros_topic!r}")
    return "rt" + ros_topic
