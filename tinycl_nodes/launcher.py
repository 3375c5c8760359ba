"""`tinycl launch <graph>`: the graph's nodes as separate processes, without ROS 2.

The same nodes and the same parameter file as ``launch/<graph>.launch.py``; each node is its own
process on the dds backend. Their logs are printed with the node name in front; Ctrl-C (or the
end of a finite run) stops them all with SIGINT so each saves its state, then SIGKILL after
``grace_s`` for any that hang.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml

from .core.errors import TinyclError
from .graphs import FINISHER, GRAPHS, REMAPS

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
COLORS = ["cyan", "green", "yellow", "magenta", "blue", "red", "bright_cyan", "bright_green"]


def config_path(graph: str, config: str | None) -> Path:
    path = Path(config) if config else CONFIG_DIR / f"{graph}.yaml"
    if not path.is_file():
        raise TinyclError(f"launch: parameter file not found: {path}")
    return path


@dataclass
class Graph:
    """Running node processes of one graph."""

    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    temp_files: list[Path] = field(default_factory=list)

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def stop(self, grace_s: float = 15.0) -> dict[str, int]:
        """SIGINT every node (they save state), then SIGKILL what is left after ``grace_s``."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        end = time.monotonic() + grace_s
        for name, p in self.procs.items():
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"[launch] {name} did not stop in {grace_s:.0f} s: killed", file=sys.stderr)
                p.kill()
                p.wait()
        for t in self.threads:
            t.join(timeout=2)
        for f in self.temp_files:
            f.unlink(missing_ok=True)
        return {n: p.returncode for n, p in self.procs.items()}


def _pump(name: str, stream: IO[bytes], color: str, out: IO[str]) -> None:
    from rich.console import Console
    from rich.text import Text

    console = Console(file=out, highlight=False, soft_wrap=True)
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip()
        console.print(Text(f"[{name}] ", style=color) + Text(line))


def start_graph(graph: str, config: str | None = None, namespace: str = "/",
                overrides: dict[str, dict[str, str]] | None = None, env: dict[str, str] | None = None,
                log_stream: IO[str] | None = None, nodes: list[str] | None = None) -> Graph:
    """Start the graph's node processes (dds backend) and return at once."""
    if graph not in GRAPHS:
        raise TinyclError(f"launch: unknown graph {graph!r} (known: {', '.join(GRAPHS)})")
    cfg = config_path(graph, config)
    run_env = {**os.environ, "TINYCL_BUS": os.environ.get("TINYCL_BUS", "dds"), "PYTHONUNBUFFERED": "1",
               **(env or {})}
    g = Graph()
    out = log_stream or sys.stderr
    files = [str(cfg)]
    shared = (overrides or {}).get("*")
    if shared:  # a `/**` parameter file: each node takes the names it declares, ignores the rest
        fd, path = tempfile.mkstemp(prefix="tinycl-launch-", suffix=".yaml")
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump({"/**": {"ros__parameters": {k: yaml.safe_load(v) for k, v in shared.items()}}}, fh)
        g.temp_files.append(Path(path))
        files.append(path)
    for i, name in enumerate(nodes or GRAPHS[graph]):
        cmd = [sys.executable, "-m", f"tinycl_nodes.nodes.{name}", "--ros-args"]
        for f in files:
            cmd += ["--params-file", f]
        cmd += ["-r", f"__node:={name}", "-r", f"__ns:={namespace}"]
        for src, dst in REMAPS.get(graph, ()):
            cmd += ["-r", f"{src}:={dst}"]
        for key, value in (overrides or {}).get(name, {}).items():
            cmd += ["-p", f"{key}:={value}"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=run_env,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        g.procs[name] = p
        t = threading.Thread(target=_pump, args=(name, p.stdout, COLORS[i % len(COLORS)], out), daemon=True)
        t.start()
        g.threads.append(t)
    return g


def parse_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    """``node.name:=value`` → {node: {name: value}}; ``name:=value`` → {"*": {…}}, for every node
    that declares ``name`` (passed like a ``/**`` section of a parameter file)."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition(":=")
        if not sep:
            raise TinyclError(f"launch: -p expects node.name:=value, got {item!r}")
        node, dot, name = key.rpartition(".")
        out.setdefault(node if dot else "*", {})[name] = value
    return out


def launch(graph: str, config: str | None, namespace: str, overrides: list[str]) -> int:
    """Run until Ctrl-C (or until every node has exited); stop the rest cleanly."""
    g = start_graph(graph, config, namespace, parse_overrides(overrides))
    print(f"[launch] {graph}: {', '.join(g.procs)} started (Ctrl-C stops them)", file=sys.stderr)
    try:
        while g.alive():
            time.sleep(0.2)
            failed = [n for n, p in g.procs.items() if p.poll() not in (None, 0)]
            if failed:
                print(f"[launch] {', '.join(failed)} exited with an error: stopping the graph", file=sys.stderr)
                break
            if FINISHER in g.procs and g.procs[FINISHER].poll() == 0:
                print("[launch] the replay is scored: stopping the graph", file=sys.stderr)
                break
    except KeyboardInterrupt:
        print("[launch] stopping …", file=sys.stderr)
    codes = g.stop()
    bad = {n: c for n, c in codes.items() if c not in (0, -signal.SIGINT)}
    return 1 if bad else 0
