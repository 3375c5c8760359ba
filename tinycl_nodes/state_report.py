"""What a robot's nodes have learned, read from their state files and journals without starting them (``tinycl
state``): each node's last checkpoint (when, how big, what it holds), what its journal holds beyond it (what a restart
learns again), and the files set aside (a state that could not be used, a journal without its checkpoint).

Read only: no lock is taken (a running node writes its file atomically, so a reader sees the old file or the new one).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .core.errors import TinyclError
from .journal import Journal
from .storage import JOURNAL_ENTRY, journal_segment, load_states, set_aside


@dataclass
class NodeState:
    """One ``<node>.state`` and its journal."""

    node: str
    path: str
    bytes: int
    saved_s: float                                       # the checkpoint's time (the file's mtime)
    parts: dict[str, str] = field(default_factory=dict)  # part → what it holds, in words
    journal_records: int = 0                             # what a restart learns again on top of the checkpoint
    journal_bytes: int = 0
    error: str = ""                                      # the file cannot be used: the node would set it aside


def part_words(state: dict[str, Any]) -> str:
    """A core state dict in a few words: its kind, classes and samples seen, where it says them."""
    words = [str(state.get("kind", "?"))]
    arrays, meta = state.get("arrays") or {}, state.get("meta") or {}
    if "classes" in arrays:
        words.append(f"{np.size(arrays['classes'])} classes")     # np.size: a 0-d array has no len()
    if isinstance(meta.get("n_seen"), int):
        words.append(f"{meta['n_seen']:,} samples")
    if isinstance(meta.get("requests"), list):
        asked = sum(bool(r.get("asked")) for r in meta["requests"] if isinstance(r, dict))
        words.append(f"{asked} questions asked, {len(meta['requests']) - asked} groups forming")
    if "y" in arrays and "X" in arrays:
        words.append(f"{np.size(arrays['y'])} labelled samples kept")
    return ", ".join(words)


def read_node(path: Path, log: logging.Logger) -> NodeState:
    """``path`` (``<node>.state``) and the records of its journal that the checkpoint does not hold."""
    node = NodeState(path.name[:-len(".state")], str(path), 0, 0.0)
    if not path.is_file():                  # a folder, a symlink loop: the node would set it aside
        node.error = f"state: {path.name} is not a file"
        return node
    info = path.stat()
    node.bytes, node.saved_s = info.st_size, info.st_mtime
    first = None
    try:
        states = load_states(path) or {}
        first = journal_segment(states.pop(JOURNAL_ENTRY, None))
        node.parts = {name: part_words(s) for name, s in states.items()}
    except TinyclError as exc:
        node.error = str(exc).splitlines()[0]
    if first is not None:
        for payload in Journal(path.parent, node.node, log).records(first):
            node.journal_records += 1
            node.journal_bytes += len(payload)
    return node


def report(folder: Path, log: logging.Logger) -> tuple[list[NodeState], list[str]]:
    """Every node's state in ``folder``, and the names of the files set aside there."""
    nodes = [read_node(p, log) for p in sorted(folder.glob("*.state"))]
    return nodes, set_aside(folder)


def print_report(folder: Path, nodes: list[NodeState], aside: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"learned state in {folder}")
    for col in ("node", "checkpoint", "holds", "journal (learned again at a restart)"):
        table.add_column(col)
    now = time.time()
    for n in nodes:
        saved = "-" if not n.saved_s else \
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(n.saved_s))} ({_ago(now - n.saved_s)})\n{n.bytes:,} B"
        holds = f"[red]cannot be used: {n.error}[/red]" if n.error else "\n".join(
            f"{part}: {words}" for part, words in n.parts.items())
        journal = f"{n.journal_records:,} records, {n.journal_bytes:,} B" if n.journal_records else "-"
        table.add_row(n.node, saved, holds, journal)
    console = Console()
    console.print(table)
    for name in aside:
        console.print(f"set aside: {name}")


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def main(args: argparse.Namespace) -> int:
    from .nodes.runner import state_dir

    folder = Path(state_dir(args.state_dir, args.namespace))
    if not folder.is_dir() or not any(folder.glob("*.state")):
        raise TinyclError(f"no learned state in {folder} (give --namespace or --state-dir as the nodes had)")
    log = logging.getLogger("tinycl.state")
    nodes, aside = report(folder, log)
    if args.json:
        print(json.dumps({"folder": str(folder), "nodes": [asdict(n) for n in nodes], "set_aside": aside}, indent=1))
    else:
        print_report(folder, nodes, aside)
    return 1 if any(n.error for n in nodes) else 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--namespace", default="/", help="the graph's namespace (its state is $ROS_HOME/tinycl/<namespace>)")
    p.add_argument("--state-dir", default=None, help="the nodes' state_dir, when they were given one")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=main)
