"""One logger per node, on every backend: a standard ``logging.Logger`` whose records are formatted
first (printf-style arguments, as the rest of the code base uses them) and then handed on.

- ros2 backend: to rclpy's node logger (which prints in ROS 2's console format and sends to
  ``/rosout``): rclpy's logger takes one string, no format arguments.
- dds / local backends: to Python logging (a node process prints it in ROS 2's console format
  with a wall-clock stamp, ``console_logging``); the dds backend
  also publishes each record as ``rcl_interfaces/msg/Log`` on ``/rosout``, so
  ``ros2 topic echo /rosout`` sees every node whichever backend runs it.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Callable

#: ROS 2 severities (rcl_interfaces/msg/Log constants) of Python's levels
ROS_LEVEL = {logging.DEBUG: 10, logging.INFO: 20, logging.WARNING: 30, logging.ERROR: 40, logging.CRITICAL: 50}
LEVEL_NAMES = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
               "error": logging.ERROR, "fatal": logging.CRITICAL, "critical": logging.CRITICAL}


def ros_logger_name(name: str, namespace: str) -> str:
    """'/robot1/tinycl', 'learner' → 'robot1.tinycl.learner' (rcl's node logger name)."""
    return ".".join([p for p in namespace.strip("/").split("/") if p] + [name])


def ros_severity(levelno: int) -> int:
    return ROS_LEVEL.get(levelno, 50 if levelno > logging.ERROR else 10 * max(1, levelno // 10))


class RosConsoleFormatter(logging.Formatter):
    """``[INFO] [1700000000.123456789] [robot1.tinycl.learner]: text`` — ROS 2's default format."""

    NAMES = {10: "DEBUG", 20: "INFO", 30: "WARN", 40: "ERROR", 50: "FATAL"}

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        stamp = f"{int(record.created)}.{int(record.created % 1 * 1e9):09d}"
        return f"[{self.NAMES[ros_severity(record.levelno)]}] [{stamp}] [{record.name}]: {text}"


class RclpyHandler(logging.Handler):
    """Formats a record, then calls rclpy's logger with the one string it accepts."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__(logging.DEBUG)
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        sev = ros_severity(record.levelno)
        try:   # one call site per severity: rclpy refuses a call site whose severity changes
            if sev == 10:
                self.ros_logger.debug(text)
            elif sev == 20:
                self.ros_logger.info(text)
            elif sev == 30:
                self.ros_logger.warning(text)
            elif sev == 40:
                self.ros_logger.error(text)
            else:
                self.ros_logger.fatal(text)
        except Exception:  # noqa: BLE001 - logging must never take a node down
            self.handleError(record)


class RosoutHandler(logging.Handler):
    """Publishes each record as rcl_interfaces/msg/Log through ``publish(level, name, text, file,
    function, line)``; a record logged while publishing (a DDS error) is not sent again."""

    def __init__(self, publish: Callable[[int, str, str, str, str, int], None]) -> None:
        super().__init__(logging.DEBUG)
        self._publish = publish
        self._busy = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._busy, "on", False):
            return
        self._busy.on = True
        try:
            self._publish(ros_severity(record.levelno), record.name, record.getMessage(), record.pathname,
                          record.funcName, record.lineno)
        except Exception:  # noqa: BLE001
            self.handleError(record)
        finally:
            self._busy.on = False


def node_logger(name: str, namespace: str = "/", level: str | int = "info",
                ros_logger: Any = None) -> logging.Logger:
    """The node's logger: to rclpy's logger when given one, else to stderr in ROS 2's format."""
    logger = logging.getLogger(ros_logger_name(name, namespace))
    for h in list(logger.handlers):
        logger.removeHandler(h)
    if ros_logger is not None:
        logger.propagate = False         # rclpy prints it (and sends it to /rosout)
        logger.setLevel(logging.DEBUG)   # rcutils applies the node's --log-level
        logger.addHandler(RclpyHandler(ros_logger))
    else:
        logger.propagate = True          # printed by the process's handler (see console_logging)
        logger.setLevel(LEVEL_NAMES.get(str(level).lower(), logging.INFO) if isinstance(level, str) else level)
    return logger


def console_logging(level: str = "info") -> None:
    """A node process's console: every record on stderr in ROS 2's format (libraries' too)."""
    logging.basicConfig(level=LEVEL_NAMES.get(level.lower(), logging.INFO), stream=sys.stderr, force=True)
    logging.getLogger().handlers[0].setFormatter(RosConsoleFormatter())

