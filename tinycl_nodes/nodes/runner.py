"""How every node starts: ROS 2-style arguments, a ROS 2 parameter file, pydantic validation.

    python -m tinycl_nodes.nodes.learner --ros-args --params-file config/tinyndc.yaml \
        -r __ns:=/robot1/tinycl -r __node:=learner -p head_kind:=slda

is accepted the same way whether the bus is rclpy (ROS 2 sourced) or our dds backend. A bad
parameter ends the node at start-up with one line per bad value; at run time a callback that
raises is one error line and the node keeps running (the bus takes care of that).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ..core.errors import TinyclError


class NodeParams(BaseModel):
    """Base of every node's parameters: unknown names are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    bus: str | None = None            # dds | local | ros2; default: $TINYCL_BUS, else ros2 if sourced, else dds
    dds_config: str | None = "loopback"
    domain_id: int | None = None
    ros_distro: str = "jazzy"


@dataclass
class RosArgs:
    node_name: str
    namespace: str = "/"
    params_files: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    log_level: str = "info"


def parse_ros_args(argv: list[str], default_name: str) -> RosArgs:
    """The subset of ``--ros-args`` a node needs: params files, -p, -r __ns/__node, --log-level."""
    args = RosArgs(default_name)
    if "--ros-args" not in argv:
        if argv:
            raise TinyclError(f"{default_name}: unexpected arguments {argv!r} (use --ros-args ...)")
        return args
    it = iter(argv[argv.index("--ros-args") + 1:])
    for tok in it:
        if tok == "--":
            break
        if tok == "--params-file":
            args.params_files.append(next(it, ""))
        elif tok in ("-p", "--param"):
            key, sep, value = next(it, "").partition(":=")
            if not sep or not key:
                raise TinyclError(f"{default_name}: -p expects name:=value, got {key!r}")
            args.overrides[key] = yaml.safe_load(value) if value else ""
        elif tok in ("-r", "--remap"):
            key, sep, value = next(it, "").partition(":=")
            if key == "__ns":
                args.namespace = value
            elif key == "__node":
                args.node_name = value
            else:
                raise TinyclError(f"{default_name}: only __ns and __node remaps are supported, got {key!r}")
        elif tok == "--log-level":
            args.log_level = next(it, "info").split(":")[-1].lower()
        else:
            raise TinyclError(f"{default_name}: unknown ROS argument {tok!r}")
    return args


def load_params_file(path: str, node_name: str, namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(wildcard, own) parameters for one node from a ROS 2 YAML file.

    ``/**`` sections apply to every node, so a node ignores the names it does not declare there
    (as rclpy does); ``name`` and ``/ns/name`` sections are its own, and a typo there is an error.
    """
    p = Path(path)
    if not p.is_file():
        raise TinyclError(f"{node_name}: parameter file not found: {p}")
    try:
        doc = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise TinyclError(f"{node_name}: parameter file {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise TinyclError(f"{node_name}: parameter file {p} must map node names to ros__parameters")
    full = f"{namespace.rstrip('/')}/{node_name}"
    wildcard: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for key in ("/**", "**", node_name, full, full.lstrip("/")):
        section = doc.get(key)
        if isinstance(section, dict):
            params = section.get("ros__parameters", {})
            if not isinstance(params, dict):
                raise TinyclError(f"{node_name}: {p}: '{key}: ros__parameters' must be a mapping")
            (wildcard if "*" in key else own).update(params)
    return wildcard, own


def validate(model: type[NodeParams], values: dict[str, Any], node_name: str) -> NodeParams:
    """Pydantic validation; every bad value is one line naming node, parameter, problem and value."""
    try:
        return model(**values)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ".".join(str(x) for x in err["loc"]) or "?"
            got = f" (got {err['input']!r})" if err["type"] != "missing" and "input" in err else ""
            lines.append(f"{node_name}: parameter {name}: {err['msg']}{got}")
        raise TinyclError("\n".join(lines)) from None


class Node:
    """A node: ``Params`` (pydantic), ``__init__(bus, params)`` wires, ``run()`` spins, ``close()`` saves."""

    Params: type[NodeParams] = NodeParams

    def __init__(self, bus: Any, params: NodeParams) -> None:
        self.bus = bus
        self.params = params
        self.log = bus.logger
        self.downstream: list[Any] = []   # publishers whose readers must be matched before spinning

    def run(self) -> None:
        """Wait for downstream readers (incoming samples queue in our readers meanwhile), then spin.

        With reliable, volatile topics a sample published before its reader is matched is lost;
        holding our own callbacks until then makes a freshly started graph lose nothing.
        """
        wait_for_readers(self.bus, self.downstream, getattr(self.params, "wait_timeout_s", 30.0), self.log)
        self.bus.spin()

    def close(self) -> None:
        """Persist state; called once on the way out (Ctrl-C, SIGTERM, end of run)."""


def wait_for_readers(bus: Any, publishers: list[Any], timeout_s: float, log: logging.Logger) -> bool:
    """Spin-free wait until every publisher has a matched subscription (or the timeout)."""
    import time

    end = time.monotonic() + timeout_s
    while bus.ok() and any(p.get_subscription_count() < 1 for p in publishers):
        if time.monotonic() > end:
            log.warning("no reader on %s after %.0f s: starting anyway",
                        ", ".join(p.topic for p in publishers if p.get_subscription_count() < 1), timeout_s)
            return False
        time.sleep(0.02)
    return True


def run_node(node_cls: type[Node], default_name: str, argv: list[str] | None = None,
             parameters: dict[str, Any] | None = None) -> int:
    """Parse args, validate parameters, create the bus, run; exit code 2 on a user's mistake."""
    from ..bus import create_bus

    argv = sys.argv[1:] if argv is None else argv
    try:
        ros = parse_ros_args(argv, default_name)
        values: dict[str, Any] = {}
        declared = node_cls.Params.model_fields
        for f in ros.params_files:
            wildcard, own = load_params_file(f, ros.node_name, ros.namespace)
            values.update({k: v for k, v in wildcard.items() if k in declared})
            values.update(own)
        values.update(parameters or {})
        values.update(ros.overrides)
        params = validate(node_cls.Params, values, ros.node_name)
    except TinyclError as exc:
        print(f"error: {exc}".replace("\n", "\nerror: "), file=sys.stderr)
        return 2
    logging.basicConfig(level=getattr(logging, ros.log_level.upper(), logging.INFO),
                        format="[%(name)s] %(levelname)s: %(message)s", stream=sys.stderr)
    options: dict[str, Any] = {}
    backend = params.bus or os.environ.get("TINYCL_BUS")
    if (backend or "dds") == "dds" and not _rclpy_available(backend):
        options = {"dds_config": params.dds_config, "domain": params.domain_id, "ros_distro": params.ros_distro}
    bus = create_bus(ros.node_name, ros.namespace, backend=backend, **options)
    node: Node | None = None
    stop = _Stopper(bus)
    try:
        node = node_cls(bus, params)
        node.run()
    except TinyclError as exc:
        bus.logger.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        stop.restore()
        if node is not None:
            try:
                node.close()
            except Exception as exc:  # noqa: BLE001 - report, still shut the bus down
                bus.logger.error("while saving state: %s", exc)
        bus.shutdown()
    return 0


def _rclpy_available(backend: str | None) -> bool:
    if backend is not None:
        return backend == "ros2"
    import importlib.util
    return importlib.util.find_spec("rclpy") is not None


class _Stopper:
    """SIGINT/SIGTERM stop the spin loop cleanly so ``close()`` can save state."""

    def __init__(self, bus: Any) -> None:
        self._old: dict[int, Any] = {}
        handler: Callable[[int, Any], None] = lambda signum, frame: bus.request_stop()  # noqa: E731
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, handler)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
