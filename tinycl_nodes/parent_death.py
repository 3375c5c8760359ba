"""A node never outlives its launcher.

``tinycl launch`` and tinycl's ``ros2 launch`` files put their own pid in each node's environment
(``launcher_env``); the node, first thing (``runner.run_node``), asks the kernel for SIGTERM when that process dies
(``stop_with_launcher``). That holds even when the launcher is killed with -9 (an OOM kill, a closed session's
SIGKILL) and can stop nothing itself: the node then saves and stops, rather than running on orphaned and holding its
state file, which a next launch on the same state would refuse. Plain Python: launch files import it under ROS 2's
interpreter.
"""

from __future__ import annotations

import ctypes
import os
import signal
from typing import MutableMapping

LAUNCHER_PID = "TINYCL_LAUNCHER_PID"
PR_SET_PDEATHSIG = 1    # linux/prctl.h


def launcher_env() -> dict[str, str]:
    """For a launcher: what its nodes' environment gets (this process's pid)."""
    return {LAUNCHER_PID: str(os.getpid())}


def stop_with_launcher(environ: MutableMapping[str, str] = os.environ) -> int | None:
    """For a node's process: SIGTERM from the kernel when the launcher that started it dies. Returns the pid of a
    launcher that has died already (before this took effect: the node should not start), else None.

    The variable is taken out of ``environ``, so that the node's own children do not inherit it. A node started
    through a wrapper (``ros2 launch --launch-prefix 'gdb -ex run --args'``) is not the launcher's child: it is
    left as it is while the launcher lives."""
    value = environ.pop(LAUNCHER_PID, "")
    if not value.isdigit():
        return None
    launcher = int(value)
    if os.getppid() == launcher:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == launcher:        # else it died between the two calls
            return None
    try:
        os.kill(launcher, 0)
    except ProcessLookupError:
        return launcher
    except PermissionError:
        pass
    return None
