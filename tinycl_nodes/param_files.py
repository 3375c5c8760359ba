"""Which sections of a ROS 2 parameter file are one node's, as rcl reads them: ``/**`` (every node) and the node's
own name, bare or with its namespace. Plain Python (and yaml) on purpose: the ROS 2 launch files import it with ROS 2's
own interpreter, which has none of the nodes' packages (pydantic, numpy).
"""

from __future__ import annotations

from difflib import get_close_matches
from typing import Any

import yaml

from .graphs import LIVE_SOURCES, NODE_MODULES

#: PyYAML's libyaml reader where it has one: the pure-Python one took 2 s, for each node, to refuse a file nested a
#: few thousand deep, and libyaml refuses nesting past 1,000 in a line (``exceeded maximum nesting depth``)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def yaml_document(text: str) -> Any:
    """A parameter file's YAML document (yaml.YAMLError, or RecursionError where the pure-Python reader is used, when
    it is not one)."""
    return yaml.load(text, Loader=_LOADER)


def nested_too_deep(exc: BaseException) -> bool:
    """Whether reading a YAML document failed because it nests too deep (either reader's words)."""
    return isinstance(exc, RecursionError) or "exceeded maximum nesting depth" in str(exc)


#: how close a section's name must be to a tinycl node's to be taken for a misspelling of it (difflib's ratio:
#: 'lerner', 'labler', 'sensr' are; 'planner', 'usb_cam', 'camera_driver' — other nodes of a shared file — are not)
CLOSE = 0.8


def node_sections(doc: dict[str, Any], node_name: str, namespace: str) -> list[tuple[str, Any]]:
    """(key, section) of every section of ``doc`` that applies to the node, in the order they apply (a later one
    outranks: ``/**`` first, then the node's own)."""
    full = f"{namespace.rstrip('/')}/{node_name}"
    return [(key, doc[key]) for key in ("/**", "**", node_name, full, full.lstrip("/")) if key in doc]


def _readable(path: str) -> Any:
    """The YAML document of ``path``, or None if it cannot be read (a launcher's look ahead: each node says what is
    wrong with the file when it reads it: ``runner.load_params_file``)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml_document(fh.read())
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):     # RecursionError: nested too deep
        return None


def sensor_is_live(files: list[str], namespace: str, shared: dict[str, Any], own: dict[str, Any]) -> bool:
    """Whether the sensor, started with these parameter files, then the ``/**`` values ``shared`` a launcher adds, then
    its own ``-p`` values ``own``, reads a camera or a recording of one (``graphs.LIVE_SOURCES``): launchers then start
    the graph as for a camera driver (``graphs.LIVE_CAMERA_PARAMS``). A file that cannot be read counts as saying
    nothing: the sensor itself says what is wrong with it when it starts."""
    source: Any = None
    for path in files:
        doc = _readable(path)
        for _, section in node_sections(doc if isinstance(doc, dict) else {}, "sensor", namespace):
            params = section.get("ros__parameters") if isinstance(section, dict) else None
            if isinstance(params, dict) and "source" in params:
                source = params["source"]
    source = own.get("source", shared.get("source", source))
    return source in LIVE_SOURCES


def node_section_names(doc: Any) -> list[tuple[str, str]]:
    """(key, node name) of every node section of a parameter file (a mapping holding ``ros__parameters``), as rcl reads
    ``name``, ``ns/name`` and ``/ns/name``; wildcard sections (``/**``) left out."""
    if not isinstance(doc, dict):
        return []
    return [(str(key), str(key).rstrip("/").rpartition("/")[2]) for key, section in doc.items()
            if isinstance(section, dict) and "ros__parameters" in section and "*" not in str(key)]


def _misspelt(doc: Any, known: Any, others: Any = ()) -> list[tuple[str, str, str]]:
    """(key, name, closest) of each node section whose name is close to one of ``known`` but is none of them, nor
    contains one (a renamed node: ``sensor2``, ``front_sensor``): a misspelling that left that node on its defaults
    without a word. Sections of other nodes (a camera driver's, in a file shared by the whole robot) are left alone,
    as ROS 2 does; ``others`` are sections a tool reads."""
    known = sorted(set(known))
    out = []
    for key, name in node_section_names(doc):
        if name in known or name in others or any(n in name for n in known):
            continue
        close = get_close_matches(name, known, n=1, cutoff=CLOSE)
        if close:
            out.append((key, name, close[0]))
    return out


def misspelt_sections(doc: Any, node_name: str) -> list[str]:
    """For a node alone (it cannot know the graph): one line for each section misspelling a tinycl node's name."""
    return [f"section {key!r} names no tinycl node (did you mean {close!r}?)"
            for key, _, close in _misspelt(doc, {*NODE_MODULES, node_name})]


def unknown_sections(path: str, graph: str, nodes: Any, others: Any = ()) -> list[str]:
    """For a launcher, which knows the graph: one line for each section of parameter file ``path`` misspelling the
    name of a node of it. A file that cannot be read gives none: each node says what is wrong with it when it
    starts."""
    doc = _readable(path)
    return [f"{path}: section {key!r}: graph {graph} has no node {name!r} (did you mean {close!r}?)"
            for key, name, close in _misspelt(doc, nodes, others)]
