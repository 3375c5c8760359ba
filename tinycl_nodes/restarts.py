"""What a launcher does when a node of a running graph exits: one rule for ``tinycl launch`` and ``ros2 launch``.

A node that dies while the graph runs (killed, out of memory, a crash) is restarted: it restores what it had
learned from its last checkpoint (``storage.StateStore``), so a robot keeps learning without anyone restarting the
graph. The graph is stopped instead when restarting cannot help or would do harm:

- the node exited with ``USER_ERROR`` (``runner.run_node``: a bad parameter, a missing model, a state file another
  process holds): it would fail the same way again, and its one-line error says what to fix;
- the node runs once per finite run (``RUN_ONCE``, a replay): the sensor would replay from its start, and the metrics
  node would score the rest of the run as if it were all of it;
- the node died ``limit`` times within ``window_s``: it crashes at every start.

A node that exits 0 has finished (the replay's sensor at the end of its data) or was stopped on purpose (a SIGTERM
or SIGINT sent to it alone: it saved first): it is not restarted, and the launchers say so in one line, since the
graph then goes on without it. The finite run's ``finisher`` exiting 0 has scored the replay, and the graph stops.

Plain Python on purpose: ROS 2 launch files import it with ROS 2's own interpreter.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Literal

from .graphs import FINISHER

#: a node process's exit code for a user's mistake (``runner.run_node``: a bad parameter, a missing file, a state
#: file in use): restarting would fail the same way
USER_ERROR = 2

#: nodes that run once per finite run (see the module's docstring)
RUN_ONCE = frozenset({"sensor", FINISHER})

Action = Literal["restart", "stop", "finished", "ended"]


@dataclass(frozen=True)
class Verdict:
    action: Action
    message: str


def how_it_ended(returncode: int) -> str:
    """``killed by SIGKILL`` for a signal (a negative return code), else ``exit code N``."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class RestartPolicy:
    """Decides, for each exit of a node of one running graph, whether it is restarted (after ``delay_s``)."""

    finisher: str | None = FINISHER   #: the node whose exit 0 ends a finite run (None: the graph runs until stopped)
    delay_s: float = 1.0
    limit: int = 3                    #: restarts of one node within ``window_s``; one more death stops the graph
    window_s: float = 60.0
    deaths: dict[str, list[float]] = field(default_factory=dict)

    def on_exit(self, name: str, returncode: int, now: float) -> Verdict:
        """The verdict on ``name`` exiting with ``returncode`` at monotonic time ``now``."""
        if returncode == 0:
            if name == self.finisher:
                return Verdict("finished", f"the {name} node has ended (the replay is scored): stopping the graph")
            if name == "sensor":
                return Verdict("ended", "the sensor node has finished (its data ended)")
            return Verdict("ended", f"the {name} node has stopped (exit code 0: stopped on purpose, its state saved) "
                                    "and is not restarted: the graph goes on without it")
        how = how_it_ended(returncode)
        if returncode == USER_ERROR:
            return Verdict("stop", f"the {name} node failed ({how}; its error is above): stopping the graph")
        if name in RUN_ONCE and self.finisher is not None:
            why = "a replay would start over" if name == "sensor" else "it would score only the rest of the run"
            return Verdict("stop", f"the {name} node died ({how}) and is not restarted ({why}): stopping the graph")
        recent = [t for t in self.deaths.get(name, []) if now - t < self.window_s] + [now]
        self.deaths[name] = recent
        if len(recent) > self.limit:
            return Verdict("stop", f"the {name} node died ({how}) {len(recent)} times in {self.window_s:g} s and is "
                                   "not restarted again: stopping the graph")
        return Verdict("restart", f"the {name} node died ({how}): restarting it in {self.delay_s:g} s from its last "
                                  f"checkpoint (restart {len(recent)} of at most {self.limit} in {self.window_s:g} s)")
