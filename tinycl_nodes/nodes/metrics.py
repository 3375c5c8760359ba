"""metrics node: the learner's predictions scored against a replayed dataset's ground truth.

Publishes running accuracy / macro precision / recall / F1 over the last ``window`` stream samples
on ``metrics`` (Metrics, latched) every ``publish_period_s``. When the replay has ended (the
sensor's ``ground_truth`` publisher is gone) and every sample has its prediction — or no
prediction came for ``idle_timeout_s`` — it logs the final scores (the numbers ``make demo``
prints), publishes them with ``final`` set, writes them to ``out`` if given, and exits when
``exit_when_done``: a launch file ends the graph on that exit. A window that holds no prediction at all (the
extractor or the learner stopped mid-replay) is not scored as 0 %: the final line says so, as an error, and the node
exits with ``USER_ERROR``, which ends the launch with an error too. With a camera there is no ground
truth: it publishes nothing and keeps running.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from ..core.errors import TinyclError
from ..storage import write_atomic
from .diagnostics import WARN, Status
from .monitor import Monitor
from .runner import Node, NodeParams, run_node


class MetricsParams(NodeParams):
    window: int = Field(1000, ge=1, description="scores are over the last `window` stream samples (the paper's 1000)")
    publish_period_s: float = Field(1.0, gt=0, description="how often running scores are published")
    exit_when_done: bool = Field(True, description="exit once the replay ended and its predictions are in")
    idle_timeout_s: float = Field(10.0, gt=0,
                                  description="after the replay ended, wait this long for missing predictions")
    out: str | None = Field(None, description="write the final scores and every stream prediction here (JSON)")


class Metrics(Node):
    Params = MetricsParams

    def __init__(self, bus: Any, params: MetricsParams) -> None:
        super().__init__(bus, params)
        self.monitor = Monitor(bus)
        self.Metrics = bus.msg("Metrics")
        self.pub = bus.create_publisher("metrics", self.Metrics, "latched")
        self.last_change = time.monotonic()
        self._seen = (0, 0)
        self.done = False
        self.nothing_scored = ""    # the final line, when the window held no prediction: the node then fails
        self.last: dict[str, Any] = {}   # the scores last published (on /diagnostics too)
        self._quiet_since: tuple[float, int] | None = None   # (when, truths then): the last prediction, or first truth
        bus.create_timer(params.publish_period_s, self.tick)

    def scores(self) -> dict[str, Any]:
        y, p = self.monitor.stream()
        found = p != -2
        window = min(self.params.window, int(y.size))
        out: dict[str, Any] = {"predictions": self.monitor.received, "stream_samples": int(y.size),
                               "lost": int((~found).sum()), "window": window,
                               "window_predictions": int(found[y.size - window:].sum())}
        if y.size:   # a missing prediction (-2) counts as wrong
            out |= self.monitor.scores(self.params.window)
        return out

    def tick(self) -> None:
        seen = (len(self.monitor.truth), self.monitor.received)
        if seen != self._seen:
            if seen[1] != self._seen[1] or self._quiet_since is None:
                self._quiet_since = (time.monotonic(), seen[0])
            self._seen, self.last_change = seen, time.monotonic()
        if not seen[0] or self.done:
            return
        # a truth received had a publisher (DDS delivers only from matched writers), so none left = the replay ended,
        # also one that came and went between two ticks (a short replay, or a fast graph, before the first tick)
        replaying = self.bus.count_publishers("ground_truth") > 0
        complete = self.monitor.received >= len(self.monitor.truth)
        idle = time.monotonic() - self.last_change > self.params.idle_timeout_s
        final = not replaying and (complete or idle)
        scores = self.last = self.scores()
        self.publish(scores, final)
        if final:
            self.finish(scores)

    def publish(self, s: dict[str, Any], final: bool) -> None:
        self.pub.publish(self.Metrics(
            header=self.bus.msg("std_msgs/msg/Header")(stamp=self.bus.stamp(), frame_id=""),
            predictions=s["predictions"], stream_samples=s["stream_samples"], lost=s["lost"] if final else 0,
            window=s["window"], accuracy=s.get("accuracy", 0.0), precision=s.get("precision", 0.0),
            recall=s.get("recall", 0.0), f1=s.get("f1", 0.0), final=final))

    def finish(self, s: dict[str, Any]) -> None:
        """Log the final scores, write them to ``out``, and stop if ``exit_when_done``."""
        self.done = True
        if s["window"] and not s["window_predictions"]:
            line = (f"final: no prediction for the last {s['window']} of {s['stream_samples']} stream samples "
                    f"({s['predictions']} predictions, {s['lost']} lost): nothing to score (did the extractor or the "
                    "learner stop before the replay ended?)")
            if self.params.exit_when_done:
                self.nothing_scored = line     # said as the node fails (run)
            else:
                self.log.error("%s", line)
        else:
            self.log.info("final: accuracy %.2f%%, precision %.2f%%, recall %.2f%%, F1 %.2f%% on the last %d of %d "
                          "stream samples (%d predictions, %d lost)", s.get("accuracy", 0.0), s.get("precision", 0.0),
                          s.get("recall", 0.0), s.get("f1", 0.0), s["window"], s["stream_samples"], s["predictions"],
                          s["lost"])
        if self.params.out:
            _, p = self.monitor.stream()
            write_atomic(Path(self.params.out), json.dumps({**s, "stream_predictions": p.tolist()}).encode())
        if self.params.exit_when_done:
            self.bus.request_stop()

    def status(self) -> Status:
        """The scores last published, on /diagnostics: WARN while stream samples keep coming and no prediction has
        for ``idle_timeout_s`` (the extractor or the learner stopped). A prediction comes some samples after its
        ground truth, so the newest samples lacking one is no finding (nor is a graph still starting)."""
        s = self.last
        if not s:
            return Status(values={"stream_samples": "0"})
        st = Status(values={"stream_samples": str(s["stream_samples"]), "predictions": str(s["predictions"]),
                            "window": str(s["window"]), "window_predictions": str(s["window_predictions"]),
                            "accuracy_pct": f"{s.get('accuracy', 0.0):.2f}", "f1_pct": f"{s.get('f1', 0.0):.2f}",
                            "final": "yes" if self.done else "no"})
        if self._quiet_since is not None:
            since, truths = self._quiet_since
            quiet_s, unpredicted = time.monotonic() - since, len(self.monitor.truth) - truths
            if unpredicted and quiet_s > self.params.idle_timeout_s:
                st.add(WARN, f"no prediction for {quiet_s:.0f} s while {unpredicted} stream sample(s) came")
        return st

    def run(self) -> None:
        super().run()
        if self.nothing_scored:   # an error line, and an exit code that ends the launch as a failure
            raise TinyclError(self.nothing_scored)


def main(argv: list[str] | None = None) -> int:
    return run_node(Metrics, "metrics", argv)


if __name__ == "__main__":
    raise SystemExit(main())
