"""`tinycl launch <graph>`: the graph's nodes as separate processes, without ROS 2.

The same nodes and the same parameter file as ``launch/<graph>.launch.py``; each node is its own
process on the dds backend. Their logs are printed with the node name in front; Ctrl-C, SIGTERM,
SIGHUP (or the end of a finite run) stop them all with SIGTERM so each saves its state, then
SIGKILL after ``grace_s`` for any that hang; the launcher's temporary files are removed. A launcher
that is killed itself takes its nodes with it (each gets SIGTERM and saves: ``parent_death``). A node that
dies while the graph runs is restarted from its last checkpoint, or stops the graph
(``restarts.RestartPolicy``, the rule ``ros2 launch`` follows too).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable

import yaml

from .bus.dds_config import shipped_config
from .core.errors import TinyclError
from .graphs import FINISHER, GRAPHS, LIVE_CAMERA_PARAMS, REMAPS, STOP_FIRST, nodes_started
from .nodes.runner import STOP_SIGNALS, NodeParams, node_arguments, node_parameters, node_params_model
from .param_files import sensor_is_live, unknown_sections
from .parent_death import launcher_env
from .restarts import USER_ERROR, RestartPolicy

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
#: Popen's arguments that put a node in a process group of its own: ``process_group`` is Python 3.11's; on 3.10 (which
#: pyproject.toml admits: Ubuntu 22.04's, ROS 2 Humble's) it was a TypeError at the first node, so `tinycl launch` and
#: `make demo` started nothing
OWN_PROCESS_GROUP: dict = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
COLORS = ["cyan", "green", "yellow", "magenta", "blue", "red", "bright_cyan", "bright_green"]


def config_path(graph: str, config: str | None) -> Path:
    """``config``, else the graph's shipped file: the checkout's ``config/``, or a colcon install's
    ``share/tinycl_nodes/config/`` (not beside the installed package: ``tinycl launch`` found no file there)."""
    if not config:
        try:
            return shipped_config(f"{graph}.yaml")
        except FileNotFoundError:
            raise TinyclError(f"launch: parameter file not found: {CONFIG_DIR / f'{graph}.yaml'} (nor in an ament "
                              f"install's share/tinycl_nodes/config)") from None
    path = Path(config)
    if not path.is_file():
        raise TinyclError(f"launch: parameter file not found: {path}")
    return path


@dataclass
class Graph:
    """Running node processes of one graph, and how each was started (to restart one)."""

    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    commands: dict[str, list[str]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    log_stream: IO[str] = sys.stderr

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def start(self, name: str) -> None:
        """Start (or restart) node ``name``; its log lines go to ``log_stream`` with its name in front."""
        p = subprocess.Popen(self.commands[name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env,
                             # a group of its own: Ctrl-C reaches the launcher alone (it stops the nodes with
                             # SIGTERM), while the node keeps the terminal (the label app's pairing QR code)
                             stdin=subprocess.DEVNULL, **OWN_PROCESS_GROUP)
        self.procs[name] = p
        color = COLORS[list(self.commands).index(name) % len(COLORS)]
        t = threading.Thread(target=_pump, args=(name, p.stdout, color, self.log_stream), daemon=True)
        t.start()
        self.threads.append(t)

    def stop(self, grace_s: float = 15.0) -> dict[str, int]:
        """Stop every node (``stop_processes``), then join the launcher's threads."""
        codes = stop_processes(self.procs, grace_s)
        for t in self.threads:
            t.join(timeout=2)
        return codes


def stop_processes(procs: dict[str, subprocess.Popen], grace_s: float = 15.0,
                   handover_s: float = 3.0) -> dict[str, int]:
    """SIGTERM the node processes in the reverse of their start order (sources first, sinks last; but
    ``graphs.STOP_FIRST`` first), each once
    the one before it has exited (or after ``handover_s``); SIGKILL what is left when ``grace_s`` has passed;
    exit codes.

    In turn: a node sends its last messages as it stops (the learner its final head), and the node that reads
    them (the exporter, the fleet bridge) is still running to take them — stopped together, the exporter could
    stop before the final head reached it and write none. A node that has exited already costs nothing; one
    that hangs delays the next by ``handover_s`` at most.
    SIGTERM, not SIGINT: a node still starting (importing, creating its bus) has no handler yet, and
    Python's default SIGINT prints a KeyboardInterrupt traceback there, while the default SIGTERM ends it
    quietly (it has learned nothing yet); once running, the node's handler treats both alike."""
    end = time.monotonic() + grace_s
    order = sorted(reversed(procs), key=lambda name: name not in STOP_FIRST)     # a stable sort
    for p in (procs[name] for name in order):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=max(0.0, min(handover_s, end - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
    for name, p in procs.items():
        try:
            p.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"[launch] {name} did not stop in {grace_s:.0f} s: killed", file=sys.stderr)
            p.kill()
            p.wait()
    return {n: p.returncode for n, p in procs.items()}


def _pump(name: str, stream: IO[bytes], color: str, out: IO[str]) -> None:
    from rich.console import Console
    from rich.text import Text

    console = Console(file=out, highlight=False, soft_wrap=True)
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip()
        console.print(Text(f"[{name}] ", style=color) + Text(line))


def start_graph(graph: str, config: str | None = None, namespace: str = "/",
                overrides: dict[str, dict[str, str]] | None = None, env: dict[str, str] | None = None,
                log_stream: IO[str] | None = None, nodes: list[str] | None = None,
                wrap: dict[str, list[str]] | None = None, camera: str | None = None, bag: str | None = None,
                other_sections: tuple[str, ...] = ()) -> Graph:
    """Start the graph's node processes (dds backend) and return at once; the arguments are ``graph_commands``'.
    Every node's parameters are checked first (``node_settings``): a bad one starts no node."""
    commands = graph_commands(graph, config, namespace, overrides, nodes, wrap, camera, bag, other_sections)
    node_settings(commands)
    run_env = {**os.environ, "TINYCL_BUS": os.environ.get("TINYCL_BUS", "dds"), "PYTHONUNBUFFERED": "1",
               **launcher_env(), **(env or {})}
    g = Graph(commands=commands, env=run_env, log_stream=log_stream or sys.stderr)
    try:
        for name in commands:
            g.start(name)
    except BaseException:
        g.stop()           # the nodes already started
        raise
    return g


def graph_commands(graph: str, config: str | None = None, namespace: str = "/",
                   overrides: dict[str, dict[str, str]] | None = None, nodes: list[str] | None = None,
                   wrap: dict[str, list[str]] | None = None, camera: str | None = None, bag: str | None = None,
                   other_sections: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """The command line of each node the graph starts (dds backend), in start order.

    ``wrap``: a command prefix per node, e.g. ``["ip", "netns", "exec", "robot1"]`` to run it on
    another (namespaced) host; the prefix must ``exec`` the node so signals reach it. ``camera``: an OpenCV
    camera (index, device path or URL) read by a sensor node (added to a graph without one, such as the camera
    graph; its ``image`` follows the graph's remaps, so it publishes what the graph reads); ``bag``: a rosbag2 that
    sensor plays instead, as the camera it was recorded from. A section of the parameter file naming no node of the
    graph (a misspelt ``lerner:``, which left the learner on its defaults) is an error naming the closest node;
    ``other_sections``: sections a tool reads, not a node (the fleet demo's ``demo_fleet``).
    """
    if graph not in GRAPHS:
        raise TinyclError(f"launch: unknown graph {graph!r} (known: {', '.join(GRAPHS)})")
    cfg = config_path(graph, config)
    nodes = list(nodes or GRAPHS[graph])
    if camera is not None and bag is not None:
        raise TinyclError("launch: --camera or --bag, not both: the graph has one sensor")
    own_sensor = ({"source": "camera", "camera_device": camera} if camera is not None
                  else {"source": "rosbag", "bag": bag} if bag is not None else None)
    if own_sensor:
        nodes += [] if "sensor" in nodes else ["sensor"]
        overrides = {**(overrides or {})}
        overrides["sensor"] = {**overrides.get("sensor", {}), **own_sensor}
    check_overrides(graph, overrides or {}, nodes)
    if stray := unknown_sections(str(cfg), graph, [*GRAPHS[graph], *nodes], other_sections):
        raise TinyclError("\n".join(f"launch: {line}" for line in stray))
    files = [str(cfg)]
    try:
        given = {node: {k: yaml.safe_load(v) for k, v in values.items()} for node, values in (overrides or {}).items()}
    except yaml.YAMLError as exc:
        raise TinyclError(f"launch: a -p value is not valid YAML: {str(exc).splitlines()[0]}") from None
    shared = (overrides or {}).get("*", {})
    if "sensor" in nodes and sensor_is_live(files, namespace, given.get("*", {}), given.get("sensor", {})):
        # taken as a camera driver's frames are; a -p still outranks
        shared = {**{k: json.dumps(v) for k, v in LIVE_CAMERA_PARAMS.items()}, **shared}
        nodes = nodes_started(nodes, live=True)
    # a name without a node goes to each node that declares it, as a `/**` section would (it went there as a
    # temporary file, which a launcher killed with -9 left behind)
    return {name: _command(name, files, namespace,
                           {**{k: v for k, v in shared.items() if k in declared_parameters(name)},
                            **(overrides or {}).get(name, {})},
                           (wrap or {}).get(name, []), REMAPS.get(graph, ()))
            for name in nodes}


def node_settings(commands: dict[str, list[str]]) -> dict[str, NodeParams]:
    """Each node's parameters as it will take them from its command line (``_command``), checked before any node
    starts: a bad value (``publish_every:=nan``) or a parameter file that is not YAML is then one error line, and no
    node runs — rather than every node started, each printing its error, and the launch ending with 1. A problem every
    node has (their shared file) is said once."""
    settings: dict[str, NodeParams] = {}
    errors: dict[str, list[str]] = {}          # the problem, without the node's name → the nodes that have it
    for name, cmd in commands.items():
        try:
            _, settings[name] = node_arguments(node_params_model(name), name, cmd[cmd.index("--ros-args"):])
        except TinyclError as exc:
            for line in str(exc).splitlines():
                errors.setdefault(line.removeprefix(f"{name}: "), []).append(name)
    if errors:
        raise TinyclError("\n".join(f"{names[0]}: {problem}" if len(names) == 1 else f"launch: {problem}"
                                     for problem, names in errors.items()))
    return settings


def declared_parameters(node: str) -> set[str]:
    """The parameter names ``node`` takes: its model's, and ROS 2's own ``use_sim_time``."""
    return node_parameters(node) | {"use_sim_time"}


def check_overrides(graph: str, overrides: dict[str, dict[str, str]], nodes: list[str]) -> None:
    """Every ``-p`` names a node of the graph and a parameter it declares (a name without a node:
    one that some node declares) — else one error naming the closest valid one."""
    from difflib import get_close_matches

    declared = {n: declared_parameters(n) for n in nodes}
    errors = []
    for node, values in overrides.items():
        if node != "*" and node not in declared:
            close = get_close_matches(node, list(declared), n=1)
            errors.append(f"launch: -p {node}.…: graph {graph} has no node {node!r}"
                          + (f" (did you mean {close[0]!r}?)" if close else f" (nodes: {', '.join(declared)})"))
            continue
        names = set().union(*declared.values()) if node == "*" else declared[node]
        for name in values:
            if name not in names:
                close = get_close_matches(name, sorted(names), n=1)
                where = f"{node}." if node != "*" else ""
                errors.append(f"launch: -p {where}{name}: no node of {graph} declares {name!r}"
                              if node == "*" else f"launch: -p {where}{name}: node {node} has no parameter {name!r}")
                errors[-1] += f" (did you mean {close[0]!r}?)" if close else ""
    if errors:
        raise TinyclError("\n".join(errors))


def _command(name: str, files: list[str], namespace: str, overrides: dict[str, str], wrap: list[str],
             remaps: tuple[tuple[str, str], ...]) -> list[str]:
    cmd = [*wrap, sys.executable, "-m", f"tinycl_nodes.nodes.{name}", "--ros-args"]
    for f in files:
        cmd += ["--params-file", f]
    cmd += ["-r", f"__node:={name}", "-r", f"__ns:={namespace}"]
    for src, dst in remaps:
        cmd += ["-r", f"{src}:={dst}"]
    for key, value in overrides.items():
        cmd += ["-p", f"{key}:={value}"]
    return cmd


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


class StopSignals:
    """Ctrl-C, SIGTERM and SIGHUP, noted by a handler of the launcher's own rather than raised as an exception.

    Ctrl-C was Python's KeyboardInterrupt, which Python installs only when SIGINT is not ignored at start. A script
    that starts ``tinycl launch … &`` starts it with SIGINT ignored (a non-interactive shell does so for a job in the
    background), and such a launcher never heard ``kill -INT``: four launch tests hung in a `make test` started so.
    And an exception raised by a signal lands wherever the main thread is, which could be inside ``Popen.poll()``
    between taking and releasing the lock of its ``wait()``. Here each signal sets ``event`` (the first one names the
    stop); one that comes while the graph stops changes nothing, so it cannot cut the nodes' saving short."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.name: str | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        self._old = {sig: signal.signal(sig, self._note) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    def _note(self, signum: int, _frame: object) -> None:
        self.name = self.name or signal.Signals(signum).name
        self.event.set()


def watch(g: Graph, policy: RestartPolicy, say: Callable[[str], None], stop: threading.Event) -> None:
    """Until the graph is to stop (``stop`` set, or ``policy``'s verdict): each node that exits is restarted or
    stops the graph; returns then, or when every node has exited by itself."""
    seen: set[subprocess.Popen] = set()   # processes whose exit has been judged (not pids: the kernel reuses them)
    due: dict[str, float] = {}            # node → when it is restarted
    while (g.alive() or due) and not stop.wait(0.2):
        now = time.monotonic()
        for name, p in list(g.procs.items()):
            if p.poll() is None or p in seen:
                continue
            seen.add(p)
            verdict = policy.on_exit(name, p.returncode, now)
            say(verdict.message)
            if verdict.action == "ended":
                continue
            if verdict.action != "restart":
                return
            due[name] = now + policy.delay_s
        for name, when in list(due.items()):
            if now >= when:
                del due[name]
                g.start(name)


def launch(graph: str, config: str | None, namespace: str, overrides: list[str], camera: str | None = None,
           bag: str | None = None) -> int:
    """Run until Ctrl-C / SIGTERM / SIGHUP (or until every node has exited); stop the rest cleanly.
    A node that dies meanwhile is restarted or stops the graph (``restarts.RestartPolicy``)."""
    g: Graph | None = None
    with StopSignals() as signals:
        try:
            g = start_graph(graph, config, namespace, parse_overrides(overrides), camera=camera, bag=bag)
            print(f"[launch] {graph}: {', '.join(g.procs)} started (Ctrl-C stops them)", file=sys.stderr)
            if FINISHER in GRAPHS[graph] and FINISHER not in g.procs:
                print(f"[launch] the sensor reads a camera or a recording of one: no {FINISHER} node (no ground truth "
                      "to score); the graph runs until stopped", file=sys.stderr)
            policy = RestartPolicy(finisher=FINISHER if FINISHER in g.procs else None)
            watch(g, policy, lambda message: print(f"[launch] {message}", file=sys.stderr), signals.event)
        finally:
            if signals.name:
                print(f"[launch] {signals.name}: stopping …", file=sys.stderr)
            codes = g.stop() if g is not None else {}
    bad = {n: c for n, c in codes.items() if c not in (0, -signal.SIGINT, -signal.SIGTERM)}
    # a node's one-line refusal (a bag or camera that is not there, a state_dir that is a file) is the user's mistake
    # as a refused -p is: exit code 2, as the node's own
    return USER_ERROR if USER_ERROR in bad.values() else 1 if bad else 0
