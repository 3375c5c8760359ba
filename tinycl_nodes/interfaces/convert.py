"""Convert between rosbags message objects and our cyclonedds objects (same field names)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

import numpy as np
from rosbags.interfaces import Nodetype

from .typestore import typestore

_NP = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
    "int64": np.int64, "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}


def _is_primitive(sub: tuple) -> bool:
    return sub[0] == Nodetype.BASE and sub[1][0] != "string"


#: how a field is converted: a nested message, numbers (a numpy array), nested messages, other items, as it is
_MESSAGE, _NUMBERS, _MESSAGES, _ITEMS, _VALUE = range(5)


@lru_cache(maxsize=None)
def _plan(ros_type: str, distro: str) -> tuple[type, tuple[tuple[str, int, Any], ...]]:
    """The rosbags class of ``ros_type`` and how each of its fields converts (worked out once per type: a journal
    converts every message a node learns from)."""
    store = typestore(distro)
    _, fields = store.fielddefs[ros_type]
    steps = []
    for name, (kind, arg) in fields:
        if kind == Nodetype.NAME:
            steps.append((name, _MESSAGE, arg))
        elif kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            sub = arg[0]
            steps.append((name, _NUMBERS, _NP[sub[1][0]]) if _is_primitive(sub) else
                         (name, _MESSAGES, sub[1]) if sub[0] == Nodetype.NAME else (name, _ITEMS, None))
        else:
            steps.append((name, _VALUE, None))
    return store.types[ros_type], tuple(steps)


def to_rosbags(obj: Any, ros_type: str | None = None, distro: str = "jazzy") -> Any:
    """cyclonedds object (or rclpy message) -> rosbags object (primitive arrays become numpy arrays, as rosbags
    wants)."""
    cls, steps = _plan(ros_type or type(obj).__ros_type__, distro)
    kwargs = {}
    for name, how, arg in steps:
        value = getattr(obj, name)
        if how == _VALUE:
            kwargs[name] = value
        elif how == _MESSAGE:
            kwargs[name] = to_rosbags(value, arg, distro)
        elif how == _NUMBERS:
            kwargs[name] = np.frombuffer(value, np.uint8).copy() if isinstance(value, (bytes, bytearray)) \
                else np.asarray(value, dtype=arg)
        elif how == _MESSAGES:
            kwargs[name] = [to_rosbags(v, arg, distro) for v in value]
        else:
            kwargs[name] = list(value)
    return cls(**kwargs)


def from_rosbags(msg: Any, distro: str = "jazzy", make: Callable[[str], type] | None = None) -> Any:
    """rosbags object -> cyclonedds object of the same type (or of ``make(ros_type)``'s: a bus's own types)."""
    ros_type = msg.__msgtype__
    if make is None:
        from .dds_types import dds_class   # not at import: ROS 2 nodes make no DDS types

        make = lambda t: dds_class(t, distro)   # noqa: E731
    cls = make(ros_type)
    _, fields = typestore(distro).fielddefs[ros_type]
    kwargs = {}
    for name, (kind, arg) in fields:
        value = getattr(msg, name)
        if kind == Nodetype.NAME:
            kwargs[name] = from_rosbags(value, distro, make)
        elif kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            sub = arg[0]
            if _is_primitive(sub):
                arr = np.asarray(value)
                kwargs[name] = arr.tobytes() if kind == Nodetype.ARRAY and sub[1][0] in ("uint8", "byte", "char") \
                    else arr.tolist()
            elif sub[0] == Nodetype.NAME:
                kwargs[name] = [from_rosbags(v, distro, make) for v in value]
            else:
                kwargs[name] = list(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)
