"""rclpy backend: the same interface on a real ROS 2 node (only importable where ROS 2 is sourced).

rcl parses the command line (``--ros-args``: remaps, ``__ns``/``__node``, ``--log-level``,
``-e``…), so a node takes exactly the arguments any ROS 2 node takes. Parameters are declared
with descriptors derived from the node's pydantic model (``param_spec``); a ``ros2 param set``
is validated by the same model and refused with its one-line reason. A managed node is an
rclpy ``LifecycleNode`` whose transitions call the node's configure/activate/deactivate/cleanup.
"""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any, Callable

import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message

from ..interfaces import full_type_name
from .base import Callback, InputCounts, run_guarded, say_dropped
from .log import node_logger
from .param_spec import ParamSpec, param_specs, range_step
from .qos import QosProfile, RELIABLE, profile

Hooks = dict[str, Callable[[], None]]


def to_rclpy_qos(p: QosProfile) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_ALL if p.depth == 0 else HistoryPolicy.KEEP_LAST,
        depth=max(p.depth, 1),
        reliability=ReliabilityPolicy.RELIABLE if p.reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if p.transient_local else DurabilityPolicy.VOLATILE,
        **({"lifespan": Duration(seconds=p.lifespan_s)} if p.lifespan_s > 0 else {}),
    )


def _all_acked(pub: Any) -> bool:
    """base.Publisher's ``all_acked`` for an rclpy publisher: rclpy's ``wait_for_all_acked`` (Humble and later) says
    yes at once for a best-effort one, whose samples no reader acknowledges."""
    return (pub.qos_profile.reliability == ReliabilityPolicy.RELIABLE
            and pub.wait_for_all_acked(Duration(nanoseconds=0)))


def _guard_own_services(node: Node) -> None:
    """rclpy's own services (parameters; a managed node's lifecycle) answer a peer's request in a callback that the
    executor runs: one that raises ends the node's spin, and the node. Seen: a SetParameters whose value has type 99
    (``ros2 service call …/set_parameters rcl_interfaces/srv/SetParameters "{parameters: [{name: preset, value:
    {type: 99}}]}"``: ValueError in rclpy's ``Parameter.from_parameter_msg``). Any such request is now refused in
    one line, and answered as far as rclpy had filled in the answer (a parameter it could not take is not set).
    SetParameters answers each parameter alone (its own result): each is taken alone, so one that raises is one
    refused result, and those after it are still set."""
    from rcl_interfaces.srv import SetParameters

    for srv in list(node.services):
        take = srv.callback
        if srv.srv_type is SetParameters:
            take = _each_parameter(node, srv.srv_name, take)
        srv.callback = _guarded_service(node, srv.srv_name, take)


def _each_parameter(node: Node, name: str, take: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    from rcl_interfaces.msg import SetParametersResult

    def each(req: Any, resp: Any) -> Any:
        for p in req.parameters:
            try:
                resp.results.extend(take(type(req)(parameters=[p]), type(resp)()).results)
            except Exception as exc:  # noqa: BLE001 - a peer's parameter: its result says why, the node stays up
                why = f"{type(exc).__name__}: {str(exc)[:200]}"
                node.get_logger().error(f"{name}: parameter {p.name[:64]!r} refused: {why}")
                resp.results.append(SetParametersResult(successful=False, reason=why))
        return resp
    return each


def _guarded_service(node: Node, name: str, take: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def guarded(req: Any, resp: Any) -> Any:
        try:
            return take(req, resp)
        except Exception as exc:  # noqa: BLE001 - a peer's request: one line, the node stays up
            node.get_logger().error(f"{name}: request refused: {type(exc).__name__}: {str(exc)[:200]}")
            return resp
    return guarded


def _managed_node_class() -> type:
    """An rclpy LifecycleNode whose transition callbacks call the hooks given by the tinycl node."""
    from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

    class ManagedNode(LifecycleNode):
        hooks: Hooks

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            take = self._service_change_state.callback
            self._service_change_state.callback = lambda req, resp: self._change_state(take, req, resp)

        def _change_state(self, take: Callable[[Any, Any], Any], req: Any, resp: Any) -> Any:
            """``change_state`` to a transition the current state does not have (``ros2 service call
            …/change_state lifecycle_msgs/srv/ChangeState "{transition: {id: 1}}"`` while active, or id 99) raised
            out of rclpy's own callback, through the executor, and the node died: one line now, and the answer
            ``success: false``. rclpy refused an unknown label itself, without a word."""
            t = req.transition
            can = [(d[0], d[1]) for d in self._state_machine.available_transitions]
            if not any(t.label == label if t.label else t.id == tid for tid, label in can):
                asked = f"{t.label[:64]!r}" if t.label else f"{t.id}"
                self.get_logger().error(
                    f"change_state: transition {asked} refused: from {self._state_machine.current_state[1]} the "
                    f"transitions are {', '.join(f'{label} ({tid})' for tid, label in can) or 'none'}")
                resp.success = False
                return resp
            return take(req, resp)

        def _run(self, name: str) -> TransitionCallbackReturn:
            hook = self.hooks.get(name)
            if hook is None:
                return TransitionCallbackReturn.SUCCESS
            try:
                hook()
            except Exception as exc:  # noqa: BLE001 - a failed transition is one line, the node stays up
                self.get_logger().error(f"{name} failed: {type(exc).__name__}: {exc}")
                return TransitionCallbackReturn.FAILURE
            return TransitionCallbackReturn.SUCCESS

        def on_configure(self, state: Any) -> TransitionCallbackReturn:
            return self._run("configure")

        def on_activate(self, state: Any) -> TransitionCallbackReturn:
            return self._run("activate")

        def on_deactivate(self, state: Any) -> TransitionCallbackReturn:
            return self._run("deactivate")

        def on_cleanup(self, state: Any) -> TransitionCallbackReturn:
            return self._run("cleanup")

        def on_shutdown(self, state: Any) -> TransitionCallbackReturn:
            return self._run("shutdown")

    return ManagedNode


class Ros2Bus:
    """Thin adapter over an rclpy node; messages are the colcon-generated classes."""

    backend = "ros2"

    def __init__(self, name: str, namespace: str = "/", parameters: dict[str, Any] | None = None,
                 args: list[str] | None = None, managed: bool = False, log_level: str = "info",
                 **_ignored: Any) -> None:
        if not rclpy.ok():
            rclpy.init(args=[sys.argv[0], *(args or [])])
        cls = _managed_node_class() if managed else Node
        self.node = cls(name, namespace=namespace)
        _guard_own_services(self.node)
        if managed:
            self.node.hooks = {}
        self.managed = managed
        self.name, self.namespace = self.node.get_name(), self.node.get_namespace()
        self.logger = node_logger(self.name, self.namespace, ros_logger=self.node.get_logger())
        self._overrides = dict(parameters or {})
        self._specs: dict[str, ParamSpec] = {}
        self._pending_shutdown = False
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)   # timers: create_timer
        self.inputs = InputCounts()
        self._guard_clock()

    def _guard_clock(self) -> None:
        """rclpy's own ``/clock`` subscription (``use_sim_time``; its time source's, made now or when the parameter is
        set) takes any peer's Clock in a callback that raises for a time rclpy cannot hold: ``ros2 topic pub /clock
        rosgraph_msgs/msg/Clock "{clock: {sec: -5}}"`` ended every node that read /clock (seen under ``ros2 launch
        camera.launch.py use_sim_time:=true``: the labeler, extractor and label app, ValueError "Seconds value must not
        be negative"). Such a Clock is now one line and dropped, as a bad message is; the clock keeps its last time."""
        source = getattr(self.node, "_time_source", None)       # rclpy's (Humble and later), no public handle
        if source is None:
            return
        take = source.clock_callback

        def guarded(msg: Any) -> None:
            run_guarded(take, (msg,), "/clock", self.logger, self.inputs)
        source.clock_callback = guarded                        # the subscription made when use_sim_time is set
        if getattr(source, "_clock_sub", None) is not None:     # the one made already
            source._clock_sub.callback = guarded

    # messages and topics ---------------------------------------------------------------------
    def msg(self, type_name: str) -> type:
        pkg, sub, name = full_type_name(type_name).split("/")
        return getattr(importlib.import_module(f"{pkg}.{sub}"), name)

    def _resolve_type(self, msg_type: type | str) -> type:
        return self.msg(msg_type) if isinstance(msg_type, str) else msg_type

    def topic_name(self, topic: str) -> str:
        """The fully qualified topic after the namespace and rcl's remap rules."""
        return self.node.resolve_topic_name(topic)

    def create_publisher(self, topic: str, msg_type: type | str, qos: QosProfile | str = RELIABLE) -> Any:
        pub = self.node.create_publisher(self._resolve_type(msg_type), topic, to_rclpy_qos(profile(qos)))
        pub.topic = pub.topic_name
        pub.all_acked = lambda: _all_acked(pub)
        return pub

    def create_subscription(self, topic: str, msg_type: type | str, callback: Callback,
                            qos: QosProfile | str = RELIABLE) -> Any:
        """Taken as bytes and deserialized here: a sample that does not deserialize is one line, dropped.

        Taken as a message, rmw_cyclonedds (Humble's) hands rclpy what it could not deserialize as a valid message,
        filled in up to the fault (``serdata_rmw_to_sample``'s false is not looked at): a LabeledFeatures cut before
        its name was learned whole, and one whose sequence length said 2^31 - 1 was resized to it and copied into
        Python: 8 GB and some 25 s of CPU for a 400-byte message. ``deserialize_message`` raises on the same
        fault before anything is copied."""
        cls = self._resolve_type(msg_type)
        type_name = full_type_name(f"{cls.__module__.split('.')[0]}/{cls.__name__}")

        def safe(raw: bytes) -> None:
            self.inputs.take()
            try:
                msg = deserialize_message(raw, cls)
            except Exception as exc:  # noqa: BLE001 - malformed input from the wire (rclpy's RMWError)
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                what = f"{type_name} ({len(raw)} bytes): {why}"
                say_dropped(self.logger, self.inputs, f"{topic}: malformed {what}",
                            f"{topic}: dropped malformed {what}")
                return
            run_guarded(callback, (msg,), topic, self.logger, self.inputs)
        return self.node.create_subscription(cls, topic, safe, to_rclpy_qos(profile(qos)), raw=True)

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Any:
        """Every ``period_s`` of the steady clock, as on the other backends: the nodes' periods (checkpoints, head
        publishing, scoring, timeouts) are wall time. Not the node's clock: with ``use_sim_time`` it follows /clock,
        and these timers then stopped when /clock did (a bag paused, ended or played without --clock: a replay never
        scored, a learned head never published)."""
        return self.node.create_timer(period_s, lambda: run_guarded(callback, (), "timer", self.logger),
                                      clock=self._steady)

    def count_publishers(self, topic: str) -> int:
        """Publishers on ``topic`` in the graph (e.g. to see that a replay has ended)."""
        return self.node.count_publishers(self.topic_name(topic))

    def destroy(self, entity: Any) -> None:
        """Remove a publisher, subscription or timer (a managed node's cleanup)."""
        for kind in ("publisher", "subscription", "timer"):
            if entity in getattr(self.node, f"{kind}s"):
                getattr(self.node, f"destroy_{kind}")(entity)
                return

    # parameters ------------------------------------------------------------------------------
    def declare_parameter(self, name: str, default: Any = None) -> Any:
        return self.node.declare_parameter(name, self._overrides.get(name, default)).value

    def declare_node_parameters(self, params: Any, on_set: Callable[[dict[str, Any]], str | None] | None = None) -> None:
        """Every field of the node's validated parameters, as a ROS 2 parameter with its descriptor.

        ``on_set(changes)`` validates and applies a ``ros2 param set`` (returns None) or refuses it
        (returns the reason); read-only parameters are refused by rclpy before it is called.
        """
        from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
        from rclpy.parameter import Parameter

        values = params.model_dump()
        for spec in param_specs(type(params)):
            ptype = Parameter.Type[spec.kind.upper()]
            desc = ParameterDescriptor(name=spec.name, type=ptype.value, description=spec.description,
                                       additional_constraints=spec.constraints, read_only=spec.read_only)
            bounds = range_step(spec)
            if bounds and spec.kind == "integer":
                desc.integer_range = [IntegerRange(from_value=int(bounds[0]), to_value=int(bounds[1]), step=1)]
            elif bounds and spec.kind == "double":
                desc.floating_point_range = [FloatingPointRange(from_value=bounds[0], to_value=bounds[1], step=0.0)]
            value = spec.to_ros(values[spec.name])
            if isinstance(value, list) and not value:   # rclpy would type [] as a byte array
                self.node.declare_parameter(spec.name, ptype, desc, ignore_override=True)
                self.node.set_parameters([Parameter(spec.name, ptype, value)])
            else:
                self.node.declare_parameter(spec.name, value, desc, ignore_override=True)
            self._specs[spec.name] = spec

        def on_set_parameters(changed: list[Any]) -> Any:
            try:
                ours = {p.name: self._specs[p.name].from_ros(p.value) for p in changed if p.name in self._specs}
            except ValueError as exc:    # YAML text that does not parse
                return SetParametersResult(successful=False, reason=f"{self.name}: {exc}")
            reason = on_set(ours) if (on_set and ours) else None
            return SetParametersResult(successful=reason is None, reason=reason or "")

        self.node.add_on_set_parameters_callback(on_set_parameters)

    def get_parameter(self, name: str) -> Any:
        value = self.node.get_parameter(name).value
        return self._specs[name].from_ros(value) if name in self._specs else value

    # lifecycle -------------------------------------------------------------------------------
    def set_lifecycle_hooks(self, hooks: Hooks) -> None:
        """configure/activate/deactivate/cleanup/shutdown callbacks of a managed node."""
        if not self.managed:
            raise RuntimeError("set_lifecycle_hooks on an unmanaged node")
        self.node.hooks = dict(hooks)

    def bring_up(self) -> bool:
        """configure, then activate, through the node's own state machine (``-p autostart:=true``): ``ros2
        lifecycle get`` then says active and every later transition is the user's. False if one failed (its hook
        has logged why)."""
        from rclpy.lifecycle import TransitionCallbackReturn

        return all(trigger() == TransitionCallbackReturn.SUCCESS
                   for trigger in (self.node.trigger_configure, self.node.trigger_activate))

    # clock and spinning ----------------------------------------------------------------------
    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def stamp(self) -> Any:
        return self.node.get_clock().now().to_msg()

    def request_stop(self) -> None:
        """Make spin() return (signal-safe); the node stays usable until shutdown()."""
        self._pending_shutdown = True

    def ok(self) -> bool:
        return rclpy.ok() and not self._pending_shutdown

    def spin(self, timeout_s: float | None = None) -> None:
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while self.ok() and (end is None or time.monotonic() < end):
            step = 0.1 if end is None else min(0.1, max(0.0, end - time.monotonic()))
            rclpy.spin_once(self.node, timeout_sec=step)

    def spin_once(self, timeout_s: float = 0.0) -> None:
        rclpy.spin_once(self.node, timeout_sec=timeout_s)

    def shutdown(self) -> None:
        self._pending_shutdown = True
        self.node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()

    def __enter__(self) -> "Ros2Bus":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
