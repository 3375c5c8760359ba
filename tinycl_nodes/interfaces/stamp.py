"""builtin_interfaces/Time <-> integer nanoseconds (works for our classes and rclpy's alike)."""

from __future__ import annotations

from typing import Any


def ns_to_time(ns: int, time_cls: type) -> Any:
    """Nanoseconds since the epoch -> a Time message of `time_cls`."""
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return time_cls(sec=sec, nanosec=nanosec)


def time_to_ns(t: Any) -> int:
    """A Time message -> nanoseconds since the epoch."""
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)
