"""The bus: one small interface (see base.Bus), three backends: ros2 (rclpy), dds (cyclonedds), local.

    from tinycl_nodes.bus import create_bus, RELIABLE
    bus = create_bus("learner", namespace="/robot1/tinycl")        # backend picked as below
    pub = bus.create_publisher("head", "Head", LATCHED)
    bus.create_subscription("labeled", "LabeledFeatures", on_labeled, RELIABLE)
    bus.spin()

Backend: explicit argument, else $TINYCL_BUS, else 'ros2' if rclpy imports, else 'dds'.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from .base import Bus, Publisher, Timer
from .qos import LATCHED, PROFILES, RELIABLE, ROUNDS, SENSOR_DATA, QosProfile, profile

BACKENDS = ("ros2", "dds", "local")


def select_backend(explicit: str | None = None) -> str:
    """The backend name to use (see module docstring)."""
    choice = explicit or os.environ.get("TINYCL_BUS") or None
    if choice is None:
        try:
            choice = "ros2" if importlib.util.find_spec("rclpy") is not None else "dds"
        except (ImportError, ValueError):
            choice = "dds"
    if choice not in BACKENDS:
        raise ValueError(f"unknown bus backend {choice!r}; use one of {', '.join(BACKENDS)}")
    return choice


def create_bus(name: str, namespace: str = "/", parameters: dict[str, Any] | None = None,
               backend: str | None = None, **options: Any) -> Bus:
    """A node on the chosen backend. dds options: domain, dds_config ('loopback' | path), ros_distro."""
    choice = select_backend(backend)
    if choice == "local":
        from .local import LocalBus
        return LocalBus(name, namespace, parameters, **options)
    if choice == "dds":
        from .dds import DdsBus
        return DdsBus(name, namespace, parameters, **options)
    from .ros2 import Ros2Bus
    return Ros2Bus(name, namespace, parameters, **options)


__all__ = ["BACKENDS", "Bus", "LATCHED", "PROFILES", "Publisher", "QosProfile", "RELIABLE", "ROUNDS", "SENSOR_DATA",
           "Timer", "create_bus", "profile", "select_backend"]
