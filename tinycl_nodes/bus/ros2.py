"""rclpy backend: the same interface on a real ROS 2 node (only importable where ROS 2 is sourced)."""

from __future__ import annotations

import importlib
from typing import Any, Callable

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..interfaces import full_type_name
from .base import Callback
from .qos import QosProfile, RELIABLE, profile


def to_rclpy_qos(p: QosProfile) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_ALL if p.depth == 0 else HistoryPolicy.KEEP_LAST,
        depth=max(p.depth, 1),
        reliability=ReliabilityPolicy.RELIABLE if p.reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if p.transient_local else DurabilityPolicy.VOLATILE,
    )


class Ros2Bus:
    """Thin adapter over rclpy.node.Node; messages are the colcon-generated classes."""

    backend = "ros2"

    def __init__(self, name: str, namespace: str = "/", parameters: dict[str, Any] | None = None,
                 args: list[str] | None = None, **_ignored: Any) -> None:
        if not rclpy.ok():
            rclpy.init(args=args)
        from rclpy.parameter import Parameter
        overrides = [Parameter(k, value=v) for k, v in (parameters or {}).items()]
        self.node = Node(name, namespace=namespace, parameter_overrides=overrides)
        self.name, self.namespace = self.node.get_name(), self.node.get_namespace()
        self.logger = self.node.get_logger()
        self._pending_shutdown = False

    def msg(self, type_name: str) -> type:
        pkg, sub, name = full_type_name(type_name).split("/")
        return getattr(importlib.import_module(f"{pkg}.{sub}"), name)

    def _resolve_type(self, msg_type: type | str) -> type:
        return self.msg(msg_type) if isinstance(msg_type, str) else msg_type

    def create_publisher(self, topic: str, msg_type: type | str, qos: QosProfile | str = RELIABLE) -> Any:
        pub = self.node.create_publisher(self._resolve_type(msg_type), topic, to_rclpy_qos(profile(qos)))
        pub.topic = pub.topic_name
        return pub

    def create_subscription(self, topic: str, msg_type: type | str, callback: Callback,
                            qos: QosProfile | str = RELIABLE) -> Any:
        def safe(msg: Any) -> None:
            try:
                callback(msg)
            except Exception as exc:  # noqa: BLE001 - a node must survive bad input
                self.logger.error(f"{topic}: dropped: {type(exc).__name__}: {exc}")
        return self.node.create_subscription(self._resolve_type(msg_type), topic, safe, to_rclpy_qos(profile(qos)))

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Any:
        return self.node.create_timer(period_s, callback)

    def declare_parameter(self, name: str, default: Any = None) -> Any:
        return self.node.declare_parameter(name, default).value

    def get_parameter(self, name: str) -> Any:
        return self.node.get_parameter(name).value

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
        if timeout_s is None:
            while rclpy.ok() and not self._pending_shutdown:
                rclpy.spin_once(self.node, timeout_sec=0.1)
        else:
            import time
            end = time.monotonic() + timeout_s
            while rclpy.ok() and not self._pending_shutdown and time.monotonic() < end:
                rclpy.spin_once(self.node, timeout_sec=min(0.1, max(0.0, end - time.monotonic())))

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
