"""The ROS 2 launch description of a tinycl graph (used by ``launch/<graph>.launch.py``).

Arguments, as ROS users expect them: ``namespace``, ``preset``, ``model``, ``params_file``,
``log_level``, ``use_sim_time``, ``camera_topic`` and ``image_transport`` (not for ``graphs.NO_CAMERA``); a misspelt
one, or one another tinycl launch file takes, is refused before any node starts (``_stray_arguments``: ``ros2 launch``
ignores an argument no file declares). Each node reads the graph's shipped
parameter file, then ``params_file`` (a user's file outranks the shipped one and needs to hold only what it changes),
then the launch's own file (``_launch_parameters``): launch arguments that are node parameters under ``/**``, so
each node takes the names it declares and no other, and a launch argument outranks both files
(``runner.collect_parameters``: a later file outranks an earlier one); every node's parameters are checked before any
node starts (``_check_parameters``). A node that dies while the graph runs is
restarted from its last checkpoint; one that exits with an error ends the launch (exit code 1):
``restarts.RestartPolicy``; a launch that is killed (even by kill -9) takes its nodes with it, each saving first
(``parent_death``). With ``camera_topic`` set, the robot's
camera driver is the sensor: neither the replay nor the metrics node is started (``graphs.REPLAY_ONLY``), ``image``
is remapped to that topic and frames are taken best-effort (sensor data QoS); the graph then runs until Ctrl-C. A
sensor whose parameter file says ``source: camera`` (or ``rosbag``: a recording of one) is live too: it starts, the
metrics node does not, and the nodes take its frames as a driver's (``graphs.LIVE_CAMERA_PARAMS``). A replay ends the
launch by itself: the metrics node exits once the last prediction is scored (after logging the final scores), and so
does the launch. The extractor and the learner are lifecycle nodes that bring themselves up, once (``_node``).
``log_level`` is the level of the tinycl nodes' own loggers; rcl's and rmw's stay at their default.

Needs ROS 2 (launch, launch_ros); imported only by launch files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import typing
from difflib import get_close_matches
from typing import Any

import yaml
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler, TimerAction
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.logging import launch_config
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

from .bus.log import ros_logger_name
from .graphs import (FINISHER, GRAPHS, LAUNCH_ARGUMENTS, LAUNCH_PRESETS, LIVE_CAMERA_PARAMS, MANAGED, NO_CAMERA, REMAPS,
                     nodes_started)
from .param_files import sensor_is_live, unknown_sections
from .parent_death import launcher_env
from .restarts import RestartPolicy

PACKAGE = "tinycl_nodes"


def _arguments(graph: str) -> list[DeclareLaunchArgument]:
    return [DeclareLaunchArgument(k, default_value=v, description=d) for k, (v, d) in _argument_specs(graph).items()]


def _argument_specs(graph: str) -> dict[str, tuple[str, str]]:
    """name → (default, description) of the graph's launch arguments: every graph's, and its own
    (``graphs.LAUNCH_ARGUMENTS``: the label app's ``port``, the IMU graph's ``imu_topic``)."""
    args = {
        "namespace": ("/tinycl", "namespace of every node (one per robot, e.g. /robot1/tinycl)"),
        "params_file": ("", f"ROS 2 parameter file read after the graph's own (share/{PACKAGE}/config/"
                               f"{graph}.yaml): its values outrank that file's, the rest stays"),
        "preset": ("", f"learning preset ({' | '.join(LAUNCH_PRESETS)}); empty: the parameter file's"),
        "model": ("", "frozen extractor (a shipped name or an .onnx path); empty: the parameter file's"),
        "log_level": ("info", "debug | info | warn | error | fatal: the tinycl nodes' own log lines (rcl's and "
                              "rmw's stay at info; for those: ros2 run … --ros-args --log-level rcl:=debug)"),
        "use_sim_time": ("false", "true | false: stamp messages with /clock (a bag played with --clock); the "
                                  "nodes' periods (checkpoints, head publishing, scoring) stay wall time"),
        "camera_topic": ("", "a camera driver's sensor_msgs/Image topic: replaces the replay sensor" if "sensor" in
                         GRAPHS[graph] else "a camera driver's sensor_msgs/Image topic; empty: image_raw in the "
                         "namespace"),
        "image_transport": ("", "raw | compressed (CompressedImage on <camera topic>/compressed); empty: "
                                "the parameter file's"),
        **{name: (a.default, a.description) for name, a in LAUNCH_ARGUMENTS[graph].items()},
    }
    if graph in NO_CAMERA:
        del args["camera_topic"], args["image_transport"]
    return args


#: every launch argument of tinycl's launch files, whichever graph's (derived: ``graphs.LAUNCH_ARGUMENTS`` says which
#: graph takes ``port`` and ``imu_topic``, ``graphs.NO_CAMERA`` which takes no ``camera_topic``)
KNOWN_ELSEWHERE = frozenset(name for graph in GRAPHS for name in _argument_specs(graph))


def _stray_arguments(context: LaunchContext, graph: str, ours: typing.Collection[str]) -> list[str]:
    """The command line's ``name:=value`` that this launch file does not declare but mean one of tinycl's: a name close
    to one of ours (``namepsace:=`` ran the graph in /tinycl, where it took over that namespace's state, without a
    word: ``ros2 launch`` ignores an argument no launch file declares), or one another tinycl launch file takes and
    this one does not (``port:=`` for a graph without a label app). Other names are left alone, and so is everything
    when this file is not the one ``ros2 launch`` was given (included by a user's launch file, the command line's
    arguments are that file's)."""
    if f"{graph}.launch.py" not in {os.path.basename(a) for a in sys.argv}:
        return []
    lines = []
    for item in context.argv:
        name, sep, value = str(item).partition(":=")
        if not sep or name in ours:
            continue
        close = get_close_matches(name, list(ours), n=1, cutoff=0.8)
        if close or name in KNOWN_ELSEWHERE:
            hint = f"did you mean {close[0]!r}?" if close else f"not one of {graph}.launch.py's"
            lines.append(f"tinycl: {name}:={value}: {graph}.launch.py has no argument {name!r} ({hint} "
                         f"`ros2 launch {PACKAGE} {graph}.launch.py --show-args` lists them): no node started")
    return lines


#: what ROS 2 reads as a boolean (rcl's YAML parameter parser): ``use_sim_time:=`` takes these and no other word
ROS_BOOLEANS = {**dict.fromkeys(("true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y"), True),
                **dict.fromkeys(("false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N"), False)}
#: the severities rcutils takes for ``--log-level`` (in any case): ``log_level:=`` takes these and no other word
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


def _graph(context: LaunchContext, graph: str, declared: tuple[str, ...] = ()) -> list[Any]:
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    if stray := _stray_arguments(context, graph, declared):
        raise ValueError("\n".join(stray))
    namespace, camera = get("namespace"), "" if graph in NO_CAMERA else get("camera_topic")
    # the graph's shipped file first, the user's after it: a user's file of a few lines changes those and keeps the
    # rest (a later file outranks an earlier one: runner.collect_parameters, as for `tinycl launch`'s files)
    files = [str(FindPackageShare(PACKAGE).perform(context) + f"/config/{graph}.yaml")] + (
        [get("params_file")] if get("params_file") else [])
    for path in files:
        if not os.path.isfile(path):   # launch_ros only warns, and every node then ran on its defaults
            raise FileNotFoundError(f"tinycl: parameter file not found: {path} (params_file:=): no node started")
        if stray := unknown_sections(path, graph, GRAPHS[graph]):   # launch_ros and rcl skip such a section
            raise ValueError("\n".join(f"tinycl: {line}: no node started" for line in stray))
    if get("use_sim_time") not in ROS_BOOLEANS:
        raise ValueError(f"tinycl: use_sim_time:={get('use_sim_time')}: expected true or false: no node started")
    if get("log_level").lower() not in LOG_LEVELS:   # each node failed on its own, six rcl lines, the launch went on
        raise ValueError(f"tinycl: log_level:={get('log_level')}: expected one of {', '.join(LOG_LEVELS)}: no node "
                         f"started")
    shared: dict[str, Any] = {k: get(k) for k in ("preset", "model", "image_transport") if k in declared and get(k)}
    shared["use_sim_time"] = ROS_BOOLEANS[get("use_sim_time")]
    # a node's launch argument left empty leaves the parameter files' value
    own_params: dict[str, dict[str, Any]] = {}
    for arg, a in LAUNCH_ARGUMENTS[graph].items():
        if (value := get(arg)) != "":
            own_params.setdefault(a.node, {})[a.parameter] = yaml.safe_load(value)
    # the sensor's own camera (source: camera), or a bag played as one, is live too: it stays, the rest is as for a
    # camera driver
    live = bool(camera) or ("sensor" in GRAPHS[graph] and sensor_is_live(
        files, namespace, shared, own_params.get("sensor", {})))
    if live:   # frames as a camera driver sends them, no ground truth to wait for
        shared |= LIVE_CAMERA_PARAMS
    started = nodes_started(GRAPHS[graph], live, camera_driver=bool(camera))
    files.append(_launch_parameters(graph, namespace, shared, {
        name: {**own_params.get(name, {}), **({"autostart": True} if name in MANAGED else {})} for name in started}))
    remaps = [("image", camera)] if camera else list(REMAPS.get(graph, ()))
    _check_parameters(started, files, namespace, remaps)
    # with a camera the graph runs until Ctrl-C: no replay, nothing to score
    policy = RestartPolicy(finisher=None if live else FINISHER)
    actions: list[Any] = []
    for name in started:
        kwargs = dict(package=PACKAGE, executable=name, name=name, namespace=namespace, output="screen",
                      emulate_tty=True, parameters=list(files),
                      additional_env=launcher_env(),   # a killed launch takes its nodes with it: parent_death
                      remappings=remaps,
                      # the node's own logger only: a bare `--log-level debug` also set rcl's and rmw's, whose
                      # debug lines (thousands a second) buried the nodes' own
                      arguments=["--ros-args", "--log-level",
                                 f"{ros_logger_name(name, namespace)}:={get('log_level')}"])
        actions += _node(name, kwargs, policy)
    return actions


def _check_parameters(nodes: list[str], files: list[str], namespace: str, remaps: list[tuple[str, str]]) -> None:
    """Every node's parameters checked, as the node will read them, before any node starts (``launcher.node_settings``,
    as ``tinycl launch`` does): ``preset:=bogus`` or a misspelt name in ``params_file`` is one line and no node runs.
    Each node used to start, say its own error, and end the launch with 1 after the others had started. Run by the
    nodes' ``python3``, not in this process (``parameter_check``: ``ros2`` runs on the system's Python)."""
    ros_args = ["--ros-args", *(a for f in files for a in ("--params-file", f)), "-r", f"__ns:={namespace}",
                *(a for src, dst in remaps for a in ("-r", f"{src}:={dst}"))]
    python = shutil.which("python3") or "python3"      # the node executables' `#!/usr/bin/env python3`
    try:
        run = subprocess.run([python, "-m", f"{PACKAGE}.parameter_check"], capture_output=True, text=True,
                             timeout=120, input=json.dumps({name: [*ros_args, "-r", f"__node:={name}"]
                                                            for name in nodes}))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"tinycl: cannot check the nodes' parameters with {python}: {exc}: no node started") \
            from None
    if run.returncode != 0:
        lines = run.stdout.strip().splitlines() or [
            f"cannot check the nodes' parameters with {python} (exit {run.returncode}): "
            f"{(run.stderr.strip().splitlines() or ['no output'])[-1]}"]
        raise ValueError("\n".join(f"tinycl: {line}: no node started" for line in lines))


def _launch_parameters(graph: str, namespace: str, shared: dict[str, Any], own: dict[str, dict[str, Any]]) -> str:
    """The launch's own parameters as one file, last of the node's parameter files: ``shared`` under ``/**`` (each
    node takes the names it declares), each node's own values (its launch arguments, ``autostart``) in its section.
    Written in this launch's log folder (``$ROS_HOME/log/<date>-<host>-<pid>/``, next to launch.log): nothing to
    remove when the launch ends, however it ends — a temporary file was left in /tmp by a launch killed or
    interrupted before its shutdown handler ran, and so was each ``launch_params_*`` file launch_ros writes for a
    dict of parameters (never removed)."""
    doc: dict[str, Any] = {"/**": {"ros__parameters": shared}}
    prefix = "".join(f"/{part}" for part in namespace.split("/") if part)
    doc |= {f"{prefix}/{name}": {"ros__parameters": values} for name, values in own.items() if values}
    path = os.path.join(launch_config.log_dir, f"tinycl_{graph}_parameters.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(doc, fh)
    return path


def _node(name: str, kwargs: dict[str, Any], policy: RestartPolicy) -> list[Any]:
    """The node's action and what its exit does. A lifecycle node configures and activates itself, once, through its
    own state machine (``autostart``; a transition set later is the user's, and stays), at the launch's start as after
    a restart; a first configure that fails (a missing model: its error line says which) exits with ``USER_ERROR``,
    which ends the launch. Not launch's ``ChangeState`` events: launch_ros waits for the node's ``change_state``
    service in a thread, and a Ctrl-C while the node was still starting made that thread raise ("cannot use
    Destroyable because destruction was requested") and ``ros2 launch`` exit with 1; after a restart the request could
    go to the killed process's service, which the graph lists until its lease ends, and never be answered (both seen
    on Humble)."""
    if name in MANAGED:    # its `autostart: true` is in the launch's parameter file (_launch_parameters)
        node: Node = LifecycleNode(**kwargs)
    else:
        node = Node(**kwargs)
    return [node, RegisterEventHandler(OnProcessExit(
        target_action=node, on_exit=lambda event, context: _on_exit(name, kwargs, policy, event, context)))]


class NodeFailed(RuntimeError):
    """A node of the graph exited with an error: the launch ends, and ``ros2 launch`` exits with 1."""


def _on_exit(name: str, kwargs: dict[str, Any], policy: RestartPolicy, event: Any, context: LaunchContext) -> list[Any]:
    """``restarts.RestartPolicy``'s verdict, as ``tinycl launch`` follows it: a node that died is started again after
    a delay (a lifecycle node brings itself up again) and restores its last checkpoint; a node that failed
    (a misspelt parameter, a missing model or dataset, a camera that cannot be opened: its own error line is above)
    ends the launch at once, raised so that ``ros2 launch`` exits with 1, rather than leaving a graph without it to
    run on; the metrics node's end ends a replay. Not launch's own ``respawn``: it restarts a node after any exit, a
    user's mistake included."""
    if context.is_shutdown:
        return []
    verdict = policy.on_exit(name, event.returncode, time.monotonic())
    if verdict.action == "restart":
        return [LogInfo(msg=f"tinycl: {verdict.message}"),
                TimerAction(period=policy.delay_s, actions=_node(name, kwargs, policy))]
    if verdict.action == "finished":
        return [LogInfo(msg=f"tinycl: {verdict.message}"), EmitEvent(event=Shutdown(reason="replay finished"))]
    if verdict.action == "stop":
        raise NodeFailed(f"tinycl: {verdict.message}")
    return [LogInfo(msg=f"tinycl: {verdict.message}")]       # ended: not restarted, said


def launch_description(graph: str) -> LaunchDescription:
    """The graph's launch arguments (``graphs.LAUNCH_ARGUMENTS``: those beyond every graph's) and nodes."""
    arguments = _arguments(graph)
    declared = tuple(a.name for a in arguments)
    return LaunchDescription(arguments + [OpaqueFunction(function=_graph, args=[graph, declared])])
