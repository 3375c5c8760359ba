"""Which CycloneDDS configuration and domain the dds backend uses."""

from __future__ import annotations

import os
from pathlib import Path
from xml.etree import ElementTree

LOOPBACK_CONFIG_NAME = "cyclonedds-loopback.xml"


def loopback_config() -> Path:
    """The shipped loopback-only configuration (source tree, or an ament install's share/)."""
    candidates = [Path(__file__).resolve().parents[2] / "config" / LOOPBACK_CONFIG_NAME]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "tinycl_nodes" / "config" / LOOPBACK_CONFIG_NAME)
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"{LOOPBACK_CONFIG_NAME} not found in {', '.join(map(str, candidates))}")


def config_uri(config: str | Path | None) -> str | None:
    """'loopback' | a path | XML text | None (then cyclonedds reads $CYCLONEDDS_URI itself)."""
    if config is None or config == "":
        return None
    if config == "loopback":
        config = loopback_config()
    text = str(config)
    if text.lstrip().startswith("<") or text.startswith("file://"):
        return text
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"CycloneDDS config {path} does not exist")
    try:   # cyclonedds only says "Non specific error" (and prints its own line) for broken XML
        ElementTree.parse(path)
    except (ElementTree.ParseError, OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"CycloneDDS config {path} is not well-formed XML ({exc})") from None
    return path.resolve().as_uri()


def domain_id(explicit: int | None) -> int:
    """Explicit id, else $ROS_DOMAIN_ID (as ROS 2 does), else 0."""
    if explicit is not None:
        value = explicit
    else:
        raw = os.environ.get("ROS_DOMAIN_ID", "0").strip() or "0"
        if not raw.isdigit():
            raise ValueError(f"ROS_DOMAIN_ID={raw[:20]!r} is not a domain id (an integer in 0..232)")
        value = int(raw)
    if not 0 <= value <= 232:
        raise ValueError(f"DDS domain id must be in 0..232, got {value}")
    return value
