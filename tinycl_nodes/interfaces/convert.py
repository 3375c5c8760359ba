"""Convert between rosbags message objects and our cyclonedds objects (same field names)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from rosbags.interfaces import Nodetype

from .dds_types import dds_class
from .typestore import typestore

_NP = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
    "int64": np.int64, "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}


def _is_primitive(sub: tuple) -> bool:
    return sub[0] == Nodetype.BASE and sub[1][0] != "string"


def to_rosbags(obj: Any, ros_type: str | None = None, distro: str = "jazzy") -> Any:
    """cyclonedds object -> rosbags object (primitive arrays become numpy arrays, as rosbags wants)."""
    ros_type = ros_type or type(obj).__ros_type__
    store = typestore(distro)
    _, fields = store.fielddefs[ros_type]
    kwargs = {}
    for name, (kind, arg) in fields:
        value = getattr(obj, name)
        if kind == Nodetype.NAME:
            kwargs[name] = to_rosbags(value, arg, distro)
        elif kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            sub = arg[0]
            if _is_primitive(sub):
                kwargs[name] = np.frombuffer(value, np.uint8).copy() if isinstance(value, (bytes, bytearray)) \
                    else np.asarray(value, dtype=_NP[sub[1][0]])
            elif sub[0] == Nodetype.NAME:
                kwargs[name] = [to_rosbags(v, sub[1], distro) for v in value]
            else:
                kwargs[name] = list(value)
        else:
            kwargs[name] = value
    return store.types[ros_type](**kwargs)


def from_rosbags(msg: Any, distro: str = "jazzy", make: Callable[[str], type] | None = None) -> Any:
    """rosbags object -> cyclonedds object of the same type (or of ``make(ros_type)``'s: a bus's own types)."""
    ros_type = msg.__msgtype__
    cls = dds_class(ros_type, distro) if make is None else make(ros_type)
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
