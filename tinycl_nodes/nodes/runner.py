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
import re
import reprlib
import signal
import sys
from collections import deque
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Callable, ClassVar, Literal

import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from ..bus.base import run_guarded
from ..bus.param_spec import INT64_MAX, from_ros_values
from ..core.errors import TinyclError
from ..param_files import misspelt_sections, nested_too_deep, node_sections, yaml_document
from ..parent_death import stop_with_launcher
from ..restarts import USER_ERROR
from ..storage import StateStore, one_line
from ..validation_words import error_words
from .diagnostics import Diagnostics, Status
from .messages import approx_bytes


#: the longest duration a node parameter (a field named ``*_s``) may give, unless its field bounds it itself
MAX_DURATION_S = 365 * 86400.0
#: the shortest one but 0 (where its field allows 0, often "off"): no timer of a node keeps a shorter period, and a
#: tick that is always due takes a core (``publish_period_s:=1e-9``)
MIN_DURATION_S = 1e-3
#: the largest integer a parameter may give, unless its field bounds it itself: a ROS 2 integer parameter is 64-bit,
#: and the dds and local backends took any integer (``publish_every:=1000000000000000000000``)
MAX_INTEGER = INT64_MAX


def _zero_or_a_duration(seconds: float) -> float:
    if 0 < seconds < MIN_DURATION_S:
        raise ValueError(f"a duration is 0 or at least {MIN_DURATION_S:g} s, not {seconds:g}")
    return seconds


_zero_or_a_duration.words = f"0, or at least {MIN_DURATION_S:g}"    # ros2 param describe's constraints (param_spec)


class NodeParams(BaseModel):
    """Base of every node's parameters: unknown names are errors, not silently ignored, and so is a number that is
    not finite (``.inf`` in a parameter file was taken: a timer of infinite period, a learning rate of inf), or a
    duration (a field named ``*_s``) beyond ``MAX_DURATION_S`` where its field sets no bound of its own (a timer holds
    its period in 64-bit nanoseconds, and ``publish_period_s:=1e300`` ended the learner with an OverflowError), or
    below ``MIN_DURATION_S`` but 0 where its field allows 0, or an integer beyond ROS 2's 64 bits.

    ``runtime_mutable`` names the fields a running node applies when they change (``ros2 param
    set``); every other parameter is read-only once the node runs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    runtime_mutable: ClassVar[frozenset[str]] = frozenset()
    bus: Literal["ros2", "dds", "local"] | None = Field(
        None, description="ros2 | dds | local; default: $TINYCL_BUS, else ros2 where rclpy imports, else dds")
    dds_config: str | None = Field(
        "loopback", description="dds backend: CycloneDDS config (loopback | a path | empty: $CYCLONEDDS_URI)")
    domain_id: int | None = Field(None, ge=0, le=232,
                                  description="dds backend: DDS domain (default $ROS_DOMAIN_ID, else 0)")
    ros_distro: Literal["auto", "humble", "jazzy"] = Field(
        "auto", description="dds backend: discovery layout ROS 2 tools read; auto follows the peers")
    diagnostics_period_s: float = Field(
        1.0, ge=0, description="publish this node's health on /diagnostics (diagnostic_msgs/DiagnosticArray) this "
                               "often, seconds; 0: off")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Every integer without an upper bound gets ``MAX_INTEGER``, every duration ``MAX_DURATION_S``; a duration
        bounded below by "above 0" gets ``MIN_DURATION_S`` instead, and one that may be 0 is 0 or at least that. In
        its field: the one check, and the range ``ros2 param describe`` shows."""
        super().__pydantic_init_subclass__(**kwargs)
        changed = False
        zero_or = AfterValidator(_zero_or_a_duration)
        for name, f in cls.model_fields.items():
            bounds = list(f.metadata)
            if name.endswith("_s"):
                bounds = [Ge(MIN_DURATION_S) if isinstance(m, Gt) and m.gt == 0 else m for m in bounds]
                if any(isinstance(m, Ge) and m.ge == 0 for m in bounds) and zero_or not in bounds:
                    bounds.append(zero_or)
                if not any(isinstance(m, (Le, Lt)) for m in bounds):
                    bounds.append(Le(MAX_DURATION_S))
            if f.annotation is int and not any(isinstance(m, (Le, Lt)) for m in bounds):
                bounds.append(Le(MAX_INTEGER))
            if bounds != f.metadata:
                f.metadata[:] = bounds
                changed = True
        if changed:
            cls.model_rebuild(force=True)


#: how a node subscribes raw samples (extractor, board); the sensor publishes with the same choice
ImageQos = Annotated[Literal["reliable", "sensor_data"], Field(
    description="QoS of the image / imu subscription; sensor_data for a camera: the freshest frame wins "
                "(a replay sets reliable, as its sensor does)")]
#: which of a camera's transports a node reads its frames from (extractor, labeler), as image_transport names them
ImageTransport = Annotated[Literal["raw", "compressed"], Field(
    description="raw: sensor_msgs/Image on image; compressed: CompressedImage (jpeg, png) on <image>/compressed (the "
                "image topic after remapping, as image_transport names it)")]


class StateParams(NodeParams):
    """A learning node's parameters for its state (``storage.StateStore``): where, and how often."""

    state_dir: str | None = Field(None, description="state folder (default $ROS_HOME/tinycl/<namespace>)")
    save_every: int = Field(100, ge=1, description="checkpoint the learned state after this many learned samples "
                                                   "(a kill -9 loses at most this many; also at exit and SIGTERM)")
    save_period_s: float = Field(10.0, gt=0, description="checkpoint learning at least this often (seconds)")


class JournaledStateParams(StateParams):
    """A node that journals what it learns between checkpoints (``journal.py``): a kill -9 loses none of it, so its
    checkpoints only bound what a restart learns again, and are ten times rarer than a node's without a journal. On a
    30 frames/s camera graph under ROS 2 (180 s) the learner and the labeler wrote 5.3 MB so, journals included,
    against 9.7 MB with checkpoints every 100 samples and no journal (docs/results.md)."""

    save_every: int = Field(1000, ge=1, description="checkpoint the learned state after this many learned samples "
                                                    "(also at exit and SIGTERM); those since are in the journal: a "
                                                    "restart learns them again, a kill -9 loses none")
    save_period_s: float = Field(60.0, gt=0, description="checkpoint learning at least this often (seconds)")


class ModelPriorParams(NodeParams):
    """A node whose learning may start from the frozen model's class statistics (``model_prior.py``)."""

    model_prior: bool = Field(True, description="start from the model's class statistics (<model>.classes) where "
                                                "the preset does (tinycl); false when this robot's class ids are not "
                                                "the model's training classes")


class ManagedParams(NodeParams):
    """A lifecycle node's parameters: under rclpy it waits for configure/activate unless autostart."""

    autostart: bool = Field(
        False, description="ros2 backend: configure and activate at start (the dds backend always does)")


#: ROS 2's rule for a node's name and each token of a namespace (rcl's: rmw_validate_node_name, _namespace)
_ROS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ROS_NAMESPACE = re.compile(r"/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")
_NAME_RULE = "letters, digits and _, not starting with a digit"
#: rcl flags that take a value / take none, accepted on every backend (the dds backend ignores
#: those about rcl's own logging and security)
_FLAGS_WITH_VALUE = {"-e", "--enclave", "--log-config-file", "--log-file-name"}
_FLAGS = {"--disable-rosout-logs", "--enable-rosout-logs", "--disable-stdout-logs", "--enable-stdout-logs",
          "--disable-external-lib-logs", "--enable-external-lib-logs"}


@dataclass
class RosArgs:
    node_name: str
    namespace: str = "/"
    params_files: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    remaps: list[tuple[str, str]] = field(default_factory=list)
    log_level: str = "info"
    argv: list[str] = field(default_factory=list)


def parse_ros_args(argv: list[str], default_name: str) -> RosArgs:
    """``--ros-args … [--]`` (any number of sections) as rcl reads them: ``--params-file``,
    ``-p name:=value``, ``-r [node:]from:=to`` (``__ns``, ``__node``/``__name`` and topic remaps),
    ``--log-level [logger:=]level``, ``-e``/``--enclave`` and rcl's logging flags."""
    args = RosArgs(default_name, argv=list(argv))
    i, inside = 0, False
    node_rules: list[tuple[str, str, str]] = []
    while i < len(argv):
        tok = argv[i]
        if tok == "--ros-args":
            inside = True
        elif tok == "--" and inside:
            inside = False
        elif not inside:
            raise TinyclError(f"{default_name}: unexpected argument {tok!r} (node options go after --ros-args)")
        elif tok in ("--params-file", "-p", "--param", "-r", "--remap", "--log-level", *_FLAGS_WITH_VALUE):
            if i + 1 >= len(argv):
                raise TinyclError(f"{default_name}: {tok} needs a value")
            value = argv[i + 1]
            i += 1
            if tok == "--params-file":
                args.params_files.append(value)
            elif tok in ("-p", "--param"):
                key, sep, raw = value.partition(":=")
                if not sep or not key:
                    raise TinyclError(f"{default_name}: -p expects name:=value, got {value!r}")
                try:
                    args.overrides[key] = yaml.safe_load(raw) if raw else ""
                except yaml.YAMLError as exc:     # was a traceback
                    raise TinyclError(f"{default_name}: -p {key}: {raw!r} is not a YAML value "
                                      f"({str(exc).splitlines()[0]})") from None
            elif tok in ("-r", "--remap"):
                rule, sep, dst = value.partition(":=")
                if not sep or not rule or not dst:
                    raise TinyclError(f"{default_name}: -r expects from:=to, got {value!r}")
                node, colon, src = rule.rpartition(":")
                node_rules.append((node if colon else "", src, dst))
            elif tok == "--log-level":
                args.log_level = value.split(":=")[-1].lower()
        elif tok not in _FLAGS:
            raise TinyclError(f"{default_name}: unknown ROS argument {tok!r}")
        i += 1
    for node, src, dst in node_rules:   # __node first: node-targeted rules name the final node name
        if src in ("__node", "__name") and node in ("", default_name):
            args.node_name = dst
    for node, src, dst in node_rules:
        if node not in ("", args.node_name) or src in ("__node", "__name"):
            continue
        if src == "__ns":
            args.namespace = dst
        else:
            args.remaps.append((src, dst))
    if not _ROS_NAME.fullmatch(args.node_name):
        raise TinyclError(f"{default_name}: node name {args.node_name!r}: {_NAME_RULE}")
    if args.namespace != "/" and not _ROS_NAMESPACE.fullmatch(args.namespace):   # 'bad!ns' ran, and made a state
        raise TinyclError(f"{default_name}: namespace {args.namespace!r}: a namespace is /, or /-separated names, "
                          f"each {_NAME_RULE}")                                      # folder of that name
    return args


def read_params_file(p: Path, node_name: str) -> dict[str, Any]:
    """A ROS 2 parameter file's sections, or one error line per problem naming ``node_name`` (whoever reads it) and
    the file: missing, not UTF-8 or YAML, nested too deep, not a mapping, a section misspelling a tinycl node."""
    if not p.is_file():
        raise TinyclError(f"{node_name}: parameter file not found: {p}")
    try:
        doc = yaml_document(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise TinyclError(f"{node_name}: parameter file {p} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise TinyclError(f"{node_name}: parameter file {p} cannot be read ({exc.strerror})") from None
    except (yaml.YAMLError, RecursionError) as exc:
        if nested_too_deep(exc):
            raise TinyclError(f"{node_name}: parameter file {p} is nested too deep to be parameters") from None
        raise TinyclError(f"{node_name}: parameter file {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise TinyclError(f"{node_name}: parameter file {p} must map node names to ros__parameters")
    if misspelt := misspelt_sections(doc, node_name):
        raise TinyclError("\n".join(f"{node_name}: {p}: {line}" for line in misspelt))
    return doc


def load_params_file(path: str, node_name: str, namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(wildcard, own) parameters for one node from a ROS 2 YAML file.

    ``/**`` sections apply to every node, so a node ignores the names it does not declare there
    (as rclpy does); ``name`` and ``/ns/name`` sections are its own, and a typo there is an error, as is a section
    whose name is close to a tinycl node's but names none (``param_files.misspelt_sections``).
    """
    p = Path(path)
    return sections_params(read_params_file(p, node_name), p, node_name, namespace)


def sections_params(doc: dict[str, Any], p: Path, node_name: str, namespace: str) -> tuple[dict[str, Any],
                                                                                           dict[str, Any]]:
    """(wildcard, own) parameters of ``node_name`` in the sections of parameter file ``p`` (``read_params_file``'s
    ``doc``); a section of its own without ``ros__parameters`` is an error."""
    wildcard: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for key, section in node_sections(doc, node_name, namespace):
        if section is None:
            continue
        if not isinstance(section, dict) or (section and "ros__parameters" not in section):
            # `learner: {save_every: -5}` was skipped without a word, the node on its defaults
            raise TinyclError(f"{node_name}: {p}: section '{key}' holds no ros__parameters: a node's values go under "
                              f"'{key}: ros__parameters:'")
        params = section.get("ros__parameters") or {}
        if not isinstance(params, dict):
            raise TinyclError(f"{node_name}: {p}: '{key}: ros__parameters' must be a mapping")
        (wildcard if "*" in key else own).update(params)
    return wildcard, own


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 6, 6, 120, 120


def _shown(value: Any) -> str:
    """A refused value as its error line shows it, 200 characters at most: a YAML alias bomb of 381 bytes made a line
    of 32 MB."""
    text = _SHORT.repr(value)
    return text if len(text) <= 200 else text[:199] + "…"


def validate(model: type[NodeParams], values: dict[str, Any], node_name: str) -> NodeParams:
    """Pydantic validation; every bad value is one line naming node, parameter, problem and value."""
    try:
        return model(**values)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name, msg = error_words(err, "?")
            got = f" (got {_shown(err['input'])})" if err["type"] != "missing" and "input" in err else ""
            lines.append(f"{node_name}: parameter {name}: {msg}{got}")
        raise TinyclError("\n".join(lines)) from None


class Node:
    """A node: ``Params`` (pydantic), ``__init__(bus, params)`` wires, ``run()`` spins, ``close()`` saves.

    A managed node (``managed = True``, the ros2/demos ``lifecycle_py`` pattern) loads its model
    or state and creates its topics in ``configure()``, not in ``__init__``; ``deactivate()``
    pauses it (messages that arrive meanwhile are held, up to ``HOLD_BYTES``, and handled on
    ``activate()``), ``cleanup()`` saves and releases. Under rclpy these are its lifecycle
    transitions; on the dds and local backends the runner configures and activates it at start.
    """

    Params: type[NodeParams] = NodeParams
    managed: ClassVar[bool] = False
    HOLD_BYTES: ClassVar[int] = 64 << 20

    def __init__(self, bus: Any, params: NodeParams) -> None:
        self.bus = bus
        self.params = params
        self.log = bus.logger
        # publishers whose readers must be matched before spinning: a publisher, or (publisher, readers)
        self.downstream: list[Any] = []
        self.entities: list[Any] = []     # a managed node's publishers/subscriptions/timers (cleanup)
        self.configured = not self.managed
        self.active = not self.managed
        self._held: deque[tuple[Callable[[Any], None], Any, int]] = deque()
        self._held_bytes, self._dropping = 0, False
        self.stores: list[StateStore] = []   # its state files (``open_state``): their health is on /diagnostics

    @property
    def lifecycle_state(self) -> str:
        """unconfigured | inactive | active: a managed node's lifecycle state, as ``ros2 lifecycle get`` names it."""
        return "active" if self.active else "inactive" if self.configured else "unconfigured"

    def status(self) -> Status:
        """Hook: this node's own part of its health on /diagnostics (``diagnostics.py``): values a person looks at
        (classes known, questions pending…) and a finding if something is wrong. The runner adds what every node
        has (uptime, messages, bad input, state file and checkpoints)."""
        return Status()

    # lifecycle (managed nodes override configure/cleanup) ------------------------------------
    def configure(self) -> None:
        """Load the model or state, create topics: from here on the node can be activated."""
        self.configured = True

    def activate(self) -> None:
        """Start handling messages: first those held while inactive, in order."""
        wait_for_readers(self.bus, self.downstream, getattr(self.params, "wait_timeout_s", 30.0), self.log)
        self.active = True
        while self._held and self.active:
            callback, msg, size = self._held.popleft()
            self._held_bytes -= size
            run_guarded(callback, (msg,), "held message", self.log, self.bus.inputs)

    def hold(self, callback: Callable[[Any], None], msg: Any) -> None:
        """Stop handling messages, ``msg`` first in line: ``activate()`` hands it to ``callback`` again."""
        self.active = False
        size = approx_bytes(msg)
        self._held.appendleft((callback, msg, size))
        self._held_bytes += size

    def deactivate(self) -> None:
        """Pause: nothing learned is lost, incoming messages are held until activate()."""
        self.active = False

    def cleanup(self) -> None:
        """Save, then release the topics and the model (configure() loads them again)."""
        self.close()
        for entity in self.entities:
            self.bus.destroy(entity)
        self.entities.clear()
        self.downstream = []
        self._held.clear()
        self._held_bytes = 0
        self.configured = False

    def bring_up(self) -> None:
        """Configure and activate a managed node (what the dds and local backends do at start)."""
        if self.managed:
            self.configure()
            self.activate()

    def gated(self, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        """``callback`` while active; held for later while a managed node is inactive."""
        def gate(msg: Any) -> None:
            if self.active:
                callback(msg)
                return
            size = approx_bytes(msg)
            self._held.append((callback, msg, size))
            self._held_bytes += size
            dropped = 0
            while self._held_bytes > self.HOLD_BYTES and len(self._held) > 1:
                self._held_bytes -= self._held.popleft()[2]
                dropped += 1
            if dropped and not self._dropping:
                self.log.warning("inactive and more than %d MB of messages held: the oldest are dropped",
                                 self.HOLD_BYTES >> 20)
            self._dropping = bool(dropped)
        return gate

    def track(self, entity: Any) -> Any:
        """Remember a publisher/subscription/timer for cleanup(); returns it."""
        self.entities.append(entity)
        return entity

    def open_state(self, name: str, snapshot: Callable[[], dict[str, dict[str, Any]] | None],
                   journal: bool = False) -> StateStore:
        """This node's ``StateStore`` (``<state_dir>/<name>.state``), checkpointed by a timer too; ``journal``: with
        the journal of what it learned since (``journal.py``: the node records and replays)."""
        p = self.params
        store = StateStore(state_dir(p.state_dir, self.bus.namespace), name, self.log, snapshot,
                           p.save_every, p.save_period_s, journal)
        self.stores = [s for s in self.stores if s.path != store.path] + [store]   # configured again: the new one
        self.track(self.bus.create_timer(min(1.0, p.save_period_s), store.tick))
        return store

    def use_extractor(self, model: str) -> Any:
        """Open the frozen extractor whose features this node takes: sets ``hash``, ``n_features`` and
        ``bound`` (its calibrated range, ``model_range``), and says once when the model has no range."""
        from ..extractor import FrozenExtractor, model_path
        from ..model_range import missing_words

        extractor = FrozenExtractor(model_path(model))
        self.hash, self.n_features, self.bound = extractor.hash, extractor.n_features, extractor.feature_bound
        if self.bound is None:
            self.log.warning("%s has no feature range for this model and card (%s): features are only refused beyond "
                             "|x| > 1e6; measure it with: tinycl model range %s --images DIR", extractor.path.name,
                             missing_words(extractor.path, extractor.hash), extractor.path)
        return extractor

    def use_model_prior(self, extractor: Any) -> Any:
        """The class statistics shipped with ``extractor``'s model (``model_prior.py``) when ``model_prior`` is on,
        else None; a corrupt or foreign file is one error line, and the node goes on from its labelled samples."""
        from ..model_prior import load_prior

        if not self.params.model_prior:
            return None
        try:
            return load_prior(extractor.path, extractor.hash)
        except TinyclError as exc:
            self.log.error("%s: not used, learning starts from the labelled samples alone", str(exc).splitlines()[0])
            return None

    # parameters ---------------------------------------------------------------------------------
    def set_parameters(self, changes: dict[str, Any]) -> str | None:
        """Validate ``changes`` with the same model (then apply them) or return the one-line reason."""
        try:
            new = validate(type(self.params), {**self.params.model_dump(), **changes}, self.bus.name)
        except TinyclError as exc:
            return str(exc).replace("\n", "; ")
        self.params = new
        self.on_parameters_changed(set(changes))
        return None

    def on_parameters_changed(self, names: set[str]) -> None:
        """Hook: ``self.params`` now holds new values of ``names`` (fields in ``runtime_mutable``)."""

    # running ------------------------------------------------------------------------------------
    def run(self) -> None:
        """Wait for downstream readers (incoming samples queue in our readers meanwhile), then spin.

        With reliable, volatile topics a sample published before its reader is matched is lost;
        holding our own callbacks until then makes a freshly started graph lose nothing.
        """
        if not self.managed:
            wait_for_readers(self.bus, self.downstream, getattr(self.params, "wait_timeout_s", 30.0), self.log)
        self.bus.spin()

    def close(self) -> None:
        """Persist state; called once on the way out (Ctrl-C, SIGTERM, end of run) and on cleanup."""


def state_dir(configured: str | None, namespace: str, sub: str = "") -> str:
    """A node's folder for state (or exports): the configured path as given (a relative one is
    relative to the working directory), else ``$ROS_HOME/tinycl/<namespace>/<sub>`` with ROS 2's
    default ``~/.ros`` for ``$ROS_HOME`` — the same wherever ``ros2 launch`` is started."""
    if configured:
        return str(Path(configured).expanduser())
    home = Path(os.environ.get("ROS_HOME") or Path.home() / ".ros").expanduser()
    return str(home.joinpath("tinycl", *[p for p in namespace.strip("/").split("/") if p], *([sub] if sub else [])))


def wait_for_readers(bus: Any, publishers: list[Any], timeout_s: float, log: logging.Logger) -> bool:
    """Spin-free wait until every publisher has its matched subscriptions (or the timeout): a publisher,
    or (publisher, readers expected) — one reader when not said."""
    import time

    wanted = [p if isinstance(p, tuple) else (p, 1) for p in publishers]

    def missing() -> list[str]:
        return [f"{p.topic} ({p.get_subscription_count()} of {n})" for p, n in wanted
                if p.get_subscription_count() < n]

    end = time.monotonic() + timeout_s
    while bus.ok() and missing():
        if time.monotonic() > end:
            log.warning("not all readers on %s after %.0f s: starting anyway", ", ".join(missing()), timeout_s)
            return False
        time.sleep(0.02)
    return True


def node_params_model(name: str) -> type[NodeParams]:
    """The parameter model of node ``name``: the ``Params`` of the node classes its module defines (one model: the
    labeler's two classes share theirs)."""
    import importlib

    from ..graphs import NODE_MODULES

    mod = importlib.import_module(NODE_MODULES[name])
    models = {obj.Params for obj in vars(mod).values()
              if isinstance(obj, type) and issubclass(obj, Node) and obj.__module__ == mod.__name__}
    if len(models) != 1:
        raise TypeError(f"{mod.__name__}: its node classes have {len(models)} parameter models, not one")
    return models.pop()


def node_parameters(name: str) -> set[str]:
    """The parameter names node ``name`` declares."""
    return set(node_params_model(name).model_fields)


def parameters_of_every_node() -> set[str]:
    """Every name some tinycl node declares (``use_sim_time`` included): what a ``/**`` section may hold."""
    from ..graphs import NODE_MODULES

    return set(NodeParams.model_fields).union(*(node_parameters(n) for n in NODE_MODULES)) | {"use_sim_time"}


def collect_parameters(model: type[NodeParams], ros: RosArgs, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The node's values from its parameter files, ``extra`` and ``-p``, in that order, converted as ROS 2 hands them
    (``ParamSpec.from_ros``: YAML text, "" for not set).

    A later parameter file outranks an earlier one (``ros2 launch`` passes its arguments in one after the
    ``params_file``), and within one file the node's own section outranks ``/**``. Names under ``/**`` that the
    node does not declare are skipped (they are for other nodes) unless no tinycl node declares them (a misspelt
    one would be dropped without a word); an unknown name anywhere else is an error naming the closest declared one.
    """
    declared = model.model_fields
    values: dict[str, Any] = {}
    own: dict[str, Any] = {}              # every name given for this node: its own sections, extra and -p
    stray: list[tuple[str, str]] = []
    for f in ros.params_files:
        wildcard, mine = load_params_file(f, ros.node_name, ros.namespace)
        values.update({k: v for k, v in wildcard.items() if k in declared})
        stray += [(f, k) for k in wildcard if k not in declared and k != "use_sim_time"]
        values.update({k: v for k, v in mine.items() if k != "use_sim_time"})
        own.update(mine)
    explicit = {**(extra or {}), **ros.overrides}
    own.update(explicit)
    unknown = []
    for name in own:
        if name not in declared and name != "use_sim_time":
            close = get_close_matches(name, list(declared), n=1)
            unknown.append(f"{ros.node_name}: unknown parameter {name!r}"
                           + (f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(declared)})"))
    if stray:
        everywhere = parameters_of_every_node()
        for f, name in stray:
            if name not in everywhere:
                close = get_close_matches(name, sorted(everywhere), n=1)
                unknown.append(f"{ros.node_name}: {f}: '/**' parameter {name!r} is declared by no tinycl node"
                               + (f" (did you mean {close[0]!r}?)" if close else ""))
    if unknown:
        raise TinyclError("\n".join(unknown))
    values.update({k: v for k, v in explicit.items() if k != "use_sim_time"})
    try:       # as ``ros2 param set`` takes them: what ``ros2 param dump`` wrote is taken back
        return from_ros_values(model, values)
    except ValueError as exc:
        raise TinyclError(f"{ros.node_name}: {exc}") from None


def node_arguments(model: type[NodeParams], default_name: str, argv: list[str],
                   extra: dict[str, Any] | None = None) -> tuple[RosArgs, NodeParams]:
    """A node's command line (``--ros-args …``) read and its parameters validated, as the node does at its start: a
    launcher checks every node's with it before it starts any (``launcher.start_graph``)."""
    ros = parse_ros_args(argv, default_name)
    return ros, validate(model, collect_parameters(model, ros, extra), ros.node_name)


def run_node(node_cls: type[Node], default_name: str, argv: list[str] | None = None,
             parameters: dict[str, Any] | None = None) -> int:
    """Parse args, validate parameters, create the bus, run; exit code ``USER_ERROR`` (2) on a user's mistake
    (a launcher then stops the graph rather than restart the node: ``restarts``)."""
    from ..bus import create_bus, select_backend
    from ..bus.log import console_logging

    process = argv is None              # the node is this process (its main), not a caller's function
    if process and (gone := stop_with_launcher()) is not None:
        print(f"{default_name}: the launcher that started it (pid {gone}) has ended: not starting", file=sys.stderr)
        return 0
    argv = sys.argv[1:] if argv is None else argv
    try:
        ros, params = node_arguments(node_cls.Params, default_name, argv, parameters)
        backend = select_backend(params.bus)
    except (TinyclError, ValueError) as exc:
        print(f"error: {exc}".replace("\n", "\nerror: "), file=sys.stderr)
        return USER_ERROR
    console_logging(ros.log_level)
    options: dict[str, Any] = {"remaps": ros.remaps, "log_level": ros.log_level}
    if backend == "dds":
        options |= {"dds_config": params.dds_config, "domain": params.domain_id, "ros_distro": params.ros_distro}
    elif backend == "ros2":
        options = {"args": ros.argv, "managed": node_cls.managed, "log_level": ros.log_level}
    try:
        bus = create_bus(ros.node_name, ros.namespace, backend=backend, **options)
    except Exception as exc:  # noqa: BLE001 - a bad dds_config, ROS_DOMAIN_ID…: a start-up error, not a traceback
        hint = f" (dds_config {params.dds_config!r})" if backend == "dds" else ""
        print(f"error: {ros.node_name}: cannot start the {backend} bus{hint}: {one_line(exc)}", file=sys.stderr)
        return USER_ERROR
    node: Node | None = None
    stop = _Stopper(bus)
    try:
        node = node_cls(bus, params)
        bus.declare_node_parameters(params, node.set_parameters)
        if params.diagnostics_period_s > 0:
            Diagnostics(node, params.diagnostics_period_s)
        if node.managed and backend != "ros2":
            node.bring_up()
        elif node.managed:
            bus.set_lifecycle_hooks({"configure": node.configure, "activate": node.activate,
                                     "deactivate": node.deactivate, "cleanup": node.cleanup,
                                     "shutdown": lambda: _finalize(node, bus)})
            if getattr(params, "autostart", False) and not bus.bring_up():
                return USER_ERROR
        node.run()
    except TinyclError as exc:
        bus.logger.error("%s", exc)
        return USER_ERROR
    except KeyboardInterrupt:
        pass
    finally:   # our signal handlers stay until the state is saved: a second Ctrl-C cannot cut it short
        if node is not None and node.configured:
            try:
                node.close()
            except Exception as exc:  # noqa: BLE001 - report, still shut the bus down
                bus.logger.error("while saving state: %s", exc)
        bus.shutdown()
        # a process that saved and shut down exits 0 even if a stop signal still comes (a launcher
        # stopping the graph as this node ends by itself): not killed by it on the way out
        stop.restore(ignore=process)
    return 0


def _finalize(node: Node, bus: Any) -> None:
    """``ros2 lifecycle set … shutdown``: ROS 2 has no way back from *finalized*. The node went on learning and
    publishing under that state; now it stops handling messages, and its process saves its state and exits 0 (a
    launch then says the node stopped on purpose and goes on without it)."""
    node.deactivate()
    bus.logger.info("shutdown: the node is finalized: saving its state and exiting")
    bus.request_stop()


#: what stops a node, and a launcher (``launcher.StopSignals``): Ctrl-C (and ``ros2 launch``'s SIGINT), SIGTERM
#: (``tinycl launch``, systemd), a closed terminal's SIGHUP
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stopper:
    """SIGINT/SIGTERM/SIGHUP stop the spin loop cleanly so ``close()`` can save state."""

    def __init__(self, bus: Any) -> None:
        self._old: dict[int, Any] = {}
        handler: Callable[[int, Any], None] = lambda signum, frame: bus.request_stop()  # noqa: E731
        for sig in STOP_SIGNALS:
            self._old[sig] = signal.signal(sig, handler)

    def restore(self, ignore: bool = False) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, signal.SIG_IGN if ignore else old)
