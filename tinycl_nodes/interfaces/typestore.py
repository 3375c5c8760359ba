"""The rosbags type store: standard ROS 2 types of a distro plus ours, parsed from msg/*.msg."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from .names import PACKAGE

DISTROS: dict[str, Stores] = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}


def msg_dir() -> Path:
    """Where the .msg files are: $TINYCL_MSG_DIR, the source tree, or an ament install's share/."""
    candidates = []
    if env := os.environ.get("TINYCL_MSG_DIR"):
        candidates.append(Path(env))
    candidates.append(Path(__file__).resolve().parents[2] / "msg")
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / PACKAGE / "msg")
    for c in candidates:
        if c.is_dir() and any(c.glob("*.msg")):
            return c
    raise FileNotFoundError(f"no msg/*.msg found (looked in {', '.join(map(str, candidates))}); set TINYCL_MSG_DIR")


@lru_cache(maxsize=None)
def our_types() -> dict:
    """Parse our .msg files once: {'tinycl_nodes/msg/Features': (consts, fields), ...}."""
    types: dict = {}
    for path in sorted(msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(encoding="utf-8"), f"{PACKAGE}/msg/{path.stem}"))
    return types


@lru_cache(maxsize=None)
def typestore(distro: str = "jazzy") -> Typestore:
    """A rosbags type store for `distro` ('humble' | 'jazzy') with our messages registered."""
    if distro not in DISTROS:
        raise ValueError(f"ros_distro must be one of {sorted(DISTROS)}, got {distro!r}")
    store = get_typestore(DISTROS[distro])
    store.register(our_types())
    return store


def message_names() -> list[str]:
    """Our own message types, e.g. ['tinycl_nodes/msg/ClassInfo', ...]."""
    return sorted(our_types())


def type_hash(ros_type: str, distro: str = "jazzy") -> str:
    """RIHS01 hash of a type (what Iron and later put in USER_DATA)."""
    return typestore(distro).hash_rihs01(ros_type)
