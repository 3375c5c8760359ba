"""cyclonedds-python message classes generated from the rosbags parse (no generated code on disk).

Each ROS 2 type becomes a keyless, @final IdlStruct dataclass named like rmw_cyclonedds names it
(`tinycl_nodes::msg::dds_::Features_`), so its XCDR1 bytes are what a ROS 2 node sends and expects.
Fields have defaults (like rclpy messages), constants are class attributes.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any, Callable

from cyclonedds.idl import IdlStruct
from cyclonedds.idl import types as T
from cyclonedds.idl._main import IdlMeta
from rosbags.interfaces import Nodetype

from .fast_seq import speed_up
from .names import dds_type_name, full_type_name
from .typestore import typestore

_BASE: dict[str, Any] = {
    "bool": bool, "byte": T.byte, "char": T.uint8,
    "int8": T.int8, "uint8": T.uint8, "int16": T.int16, "uint16": T.uint16,
    "int32": T.int32, "uint32": T.uint32, "int64": T.int64, "uint64": T.uint64,
    "float32": T.float32, "float64": T.float64,
}
_BASE_DEFAULT: dict[str, Any] = {"bool": False, "float32": 0.0, "float64": 0.0}


def _base(name: str, bound: int) -> tuple[Any, Callable[[], Any]]:
    if name == "string":
        return (T.bounded_str[bound] if bound else str), str
    if name not in _BASE:
        raise TypeError(f"unsupported ROS 2 base type {name!r}")
    default = _BASE_DEFAULT.get(name, 0)
    return _BASE[name], (lambda: default)


def _field(desc: tuple, distro: str) -> tuple[Any, Callable[[], Any]]:
    """(cyclonedds annotation, default factory) for one rosbags field description."""
    kind, arg = desc
    if kind == Nodetype.BASE:
        return _base(*arg)
    if kind == Nodetype.NAME:
        cls = dds_class(arg, distro)
        return cls, cls
    sub, count = arg
    sub_t, sub_default = _field(sub, distro)
    if kind == Nodetype.ARRAY:
        if sub_t in (T.uint8, T.byte):
            return T.array[sub_t, count], (lambda: bytes(count))
        return T.array[sub_t, count], (lambda: [sub_default() for _ in range(count)])
    if kind == Nodetype.SEQUENCE:
        return (T.sequence[sub_t, count] if count else T.sequence[sub_t]), list
    raise TypeError(f"unsupported field description {desc!r}")


@lru_cache(maxsize=None)
def dds_class(ros_type: str, distro: str = "jazzy") -> type[IdlStruct]:
    """The IdlStruct class for a ROS 2 type, built once per (type, distro)."""
    ros_type = full_type_name(ros_type)
    store = typestore(distro)
    if ros_type not in store.fielddefs:
        raise KeyError(f"unknown message type {ros_type!r}")
    consts, fields = store.fielddefs[ros_type]
    pkg, _, short = ros_type.split("/")
    namespace = IdlMeta.__prepare__(short, (IdlStruct,), typename=dds_type_name(ros_type))
    namespace["__idl_annotations__"]["extensibility"] = "final"
    for name, desc in fields:
        annotation, default = _field(desc, distro)
        namespace["__annotations__"][name] = annotation
        namespace[name] = dataclasses.field(default_factory=default)
    cls = dataclasses.dataclass(IdlMeta(short, (IdlStruct,), namespace))
    cls.__ros_type__ = ros_type
    cls.__qualname__ = f"{pkg}.msg.{short}"
    for cname, _ctype, value in consts:
        setattr(cls, cname, value)
    speed_up(cls)
    return cls
