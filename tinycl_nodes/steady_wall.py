"""Wall-clock seconds that do not step while a process runs: the clock of deadlines saved with a node's state.

A question's lifetime, the sliding hour of the question budget, an answer's undo window: these are saved with the
state, so they are wall-clock seconds, and a question asked before a restart keeps its deadline after it. But the
system clock steps. NTP sets a robot without a real-time clock forward minutes after boot, by hours or years; a
person or a GPS fix can set it back. Read from ``time.time()``, a step forward expired every open question at once,
and a step back kept questions open, and the budget spent, for as long as the step: after the clock went back an
hour, a labeler asked nothing new for an hour (tests/nodes/test_labeler_clock_step.py).

So the wall clock is read once, when the process starts (imports this module), and advanced by ``CLOCK_BOOTTIME``,
which no one sets and which goes on while the machine sleeps. A step moves nothing while the process runs; the next
process takes the clock as it is then. A time saved before the clock was set back lies in that process's future: its
owner takes it as :func:`now` when it loads it. What a person reads as a date (a log line, a report) stays
``time.time()``.
"""

from __future__ import annotations

import time

_BOOT = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)     # Linux; elsewhere monotonic (stops in sleep)
_ORIGIN = time.time() - time.clock_gettime(_BOOT)


def now() -> float:
    """Wall-clock seconds as the system clock said when this process started, advanced without its steps."""
    return _ORIGIN + time.clock_gettime(_BOOT)
