"""Which sections of a ROS 2 parameter file are one node's, as rcl reads them: ``/**`` (every node) and the node's
own name, bare or with its namespace. Plain Python (and yaml) on purpose: the ROS 2 launch files import it with ROS 2's
own interpreter, which has none of the nodes' packages (pydantic, numpy).
"""

from __future__ import annotations

from typing import Any

import yaml

from .graphs import LIVE_SOURCES


def node_sections(doc: dict[str, Any], node_name: str, namespace: str) -> list[tuple[str, Any]]:
    """(key, section) of every section of ``doc`` that applies to the node, in the order they apply (a later one
    outranks: ``/**`` first, then the node's own)."""
    full = f"{namespace.rstrip('/')}/{node_name}"
    return [(key, doc[key]) for key in ("/**", "**", node_name, full, full.lstrip("/")) if key in doc]


def sensor_is_live(files: list[str], namespace: str, shared: dict[str, Any], own: dict[str, Any]) -> bool:
    """Whether the sensor, started with these parameter files, then the ``/**`` values ``shared`` a launcher adds, then
    its own ``-p`` values ``own``, reads a camera or a recording of one (``graphs.LIVE_SOURCES``): launchers then start
    the graph as for a camera driver (``graphs.LIVE_CAMERA_PARAMS``). A file that cannot be read counts as saying
    nothing: the sensor itself says what is wrong with it when it starts."""
    source: Any = None
    for path in files:
        try:
            with open(path, encoding="utf-8") as fh:
                doc = yaml.safe_load(fh)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        for _, section in node_sections(doc if isinstance(doc, dict) else {}, "sensor", namespace):
            params = section.get("ros__parameters") if isinstance(section, dict) else None
            if isinstance(params, dict) and "source" in params:
                source = params["source"]
    source = own.get("source", shared.get("source", source))
    return source in LIVE_SOURCES
