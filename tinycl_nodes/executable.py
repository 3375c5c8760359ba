"""The ``main`` of every node executable (``scripts/<name>``: ``ros2 run tinycl_nodes <name>``, ``ros2 launch``).

A Ctrl-C in a terminal reaches every process of ``ros2 launch``'s group, and launch sends SIGINT to each node as
well. A node still starting (importing numpy, pydantic, onnxruntime, rclpy, cyclonedds: seconds on a small board) had
no handler of its own yet (``runner._Stopper``, installed once its bus exists), and Python's default one raised
KeyboardInterrupt wherever the import was: a traceback per node (or a ``RuntimeError: Error calling __set_name__``,
when it hit a class body of cyclonedds) and ``process has died [exit code -2]``. Stopped before it ran, a node has
learned nothing and has nothing to save: until ``_Stopper`` takes over, SIGINT ends the process at once, quietly,
with exit code 0, as a running node ends on SIGINT (``tinycl launch`` sends SIGTERM for the same reason).

Plain Python, imported first: nothing heavy before the handler is in place.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys


def _stop_while_starting(_signum: int, _frame: object) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    os._exit(0)   # not an exception: one raised inside an import can be caught or rewrapped there


def run(module: str, function: str = "main") -> int:
    """``module.function()``'s exit code; SIGINT before the node's own handler is installed ends it with 0."""
    signal.signal(signal.SIGINT, _stop_while_starting)
    return getattr(importlib.import_module(module), function)()
