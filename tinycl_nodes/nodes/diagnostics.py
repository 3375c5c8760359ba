"""Every node's health on ``/diagnostics``: the ROS convention (``diagnostic_msgs/msg/DiagnosticArray``) that ``ros2
topic echo /diagnostics``, rqt_robot_monitor and diagnostic_aggregator read, so a robot's engineer sees tinycl's nodes
beside the rest of the robot.

One place builds it: the runner starts :class:`Diagnostics` for every node it runs (``diagnostics_period_s``, 0: off).
It says what every node has (uptime, lifecycle state, messages received, bad input dropped, the state file and its
last checkpoint) and takes what the node itself adds from ``Node.status()`` (classes known, questions pending, phones
connected…). One DiagnosticStatus per node and message: ``name`` its fully qualified name, ``hardware_id`` the host.

Levels: WARN while bad input was dropped in the last period, or a checkpoint failed then (a later one landed), or the
journal cannot be written; ERROR while the state cannot be saved (the last checkpoint failed: what was learned since is
not on disk). ``/diagnostics`` is absolute (not in the node's namespace), as ROS nodes publish it; a remap still works.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any

from ..bus.qos import QosProfile
from ..storage import one_line

OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = ("OK", "WARN", "ERROR", "STALE")
TOPIC = "/diagnostics"
#: as ROS 2's diagnostic_updater and aggregator use it: reliable, volatile, a short history
QOS = QosProfile(reliable=True, transient_local=False, depth=10)
ARRAY = "diagnostic_msgs/msg/DiagnosticArray"


@dataclass
class Status:
    """A node's health as it says it: the worst level of its findings, their short messages, and the values a person
    looks at (``key: value`` text, in the order added)."""

    level: int = OK
    findings: list[tuple[int, str]] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)

    def add(self, level: int, message: str) -> None:
        """A finding (WARN or ERROR, with a few words): the status is as bad as its worst one."""
        self.findings.append((level, message))
        self.level = max(self.level, level)

    def merge(self, other: "Status") -> None:
        """``other``'s findings and values too (a node's own, after the runner's)."""
        for level, message in other.findings:
            self.add(level, message)
        self.level = max(self.level, other.level)
        self.values.update(other.values)

    @property
    def message(self) -> str:
        """The findings, worst first (``OK`` without any)."""
        found = sorted(self.findings, key=lambda f: -f[0])
        return "; ".join(m for _, m in found) or LEVEL_NAMES[self.level]


def link_status(link: Any) -> Status:
    """A fleet node's MQTT link (``fleet.link.MqttLink``: the bridge's, the aggregator's): the broker and whether it
    is connected; WARN while not, saying why (a node cut off from its fleet was OK on /diagnostics), and while a
    certificate of its last connection ends soon (``link.ending``: the fleet stops at its end); ERROR once one has
    ended (the next connection is refused)."""
    p = link.params
    broker = f"{p.host}:{p.port}"
    up = link.connected.is_set()
    st = Status(values={"broker": broker, "connected": "yes" if up else "no"})
    if not up:
        st.add(WARN, f"not connected to the broker {broker}" + (f": {link.last_error}" if link.last_error else
                                                                 " (yet)"))
    for end in link.ending:
        st.add(ERROR if end.ended else WARN, end.words)
    return st


def when(wall_s: float) -> str:
    """A wall-clock time as a person reads it (local, ISO 8601, to the second)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(wall_s))


class Diagnostics:
    """The runner's: builds a node's :class:`Status` and publishes it on ``/diagnostics`` every ``period_s``."""

    def __init__(self, node: Any, period_s: float) -> None:
        bus = node.bus
        self.node, self.bus, self.period_s = node, bus, period_s
        self.name = bus.namespace.rstrip("/") + "/" + bus.name
        self.hardware_id = socket.gethostname()
        self.started = time.monotonic()
        self._dropped = bus.inputs.dropped        # at the last report: what the period dropped
        self._failed: dict[Any, int] = {}         # state file -> checkpoints failed at the last report
        self.pub = None
        try:
            self.Array = bus.msg(ARRAY)
        except ImportError:   # a ROS 2 without diagnostic_msgs (ros_core): the node runs, says once why none
            node.log.warning("no health on %s: diagnostic_msgs is not installed (ros-<distro>-diagnostic-msgs)", TOPIC)
            return
        self.StatusMsg = bus.msg("diagnostic_msgs/msg/DiagnosticStatus")
        self.KeyValue = bus.msg("diagnostic_msgs/msg/KeyValue")
        self.Header = bus.msg("std_msgs/msg/Header")
        self.pub = bus.create_publisher(TOPIC, self.Array, QOS)
        self.timer = bus.create_timer(period_s, self.publish)

    def status(self) -> Status:
        """The node's health now: the runner's findings and values, then the node's own (``Node.status``)."""
        node, inputs = self.node, self.bus.inputs
        st = Status()
        st.values["uptime_s"] = f"{time.monotonic() - self.started:.0f}"
        if node.managed:
            st.values["lifecycle_state"] = node.lifecycle_state
        dropped, last_drop = inputs.dropped, inputs.last_drop
        st.values["messages_received"] = str(inputs.received)
        st.values["bad_input_dropped"] = str(dropped)
        if dropped > self._dropped:
            st.add(WARN, f"{dropped - self._dropped} bad input(s) dropped in the last {self.period_s:g} s "
                         f"(last: {last_drop})")
            st.values["last_bad_input"] = last_drop
        self._dropped = dropped
        for store in node.stores:
            self._state(st, store, len(node.stores) > 1)
        try:
            st.merge(node.status())
        except Exception as exc:  # noqa: BLE001 - a status that cannot be made is said, not the end of the node
            st.add(WARN, f"status: {one_line(exc)}")
        return st

    def _state(self, st: Status, store: Any, several: bool) -> None:
        """A state file's values and findings: where, its last checkpoint, whether saving fails."""
        h = store.health()
        tag = f"{h.path.stem}_" if several else ""
        st.values[f"{tag}state_file"] = str(h.path)
        st.values[f"{tag}last_checkpoint"] = when(h.saved_at) if h.saved_at else "none yet"
        if h.saved_at:
            st.values[f"{tag}checkpoint_age_s"] = f"{max(0.0, time.time() - h.saved_at):.0f}"
        failed = h.failed_total - self._failed.get(h.path, 0)
        self._failed[h.path] = h.failed_total
        if h.error:
            st.add(ERROR, f"state cannot be saved to {h.path}: {h.error}")
        elif failed:
            st.add(WARN, f"{failed} checkpoint(s) of {h.path.name} failed in the last {self.period_s:g} s")
        if h.journal_error:
            st.add(WARN, f"journal of {h.path.name} cannot be written: {h.journal_error}")

    def message(self, st: Status) -> Any:
        """The DiagnosticArray of ``st``: one status, this node's."""
        levels = (self.StatusMsg.OK, self.StatusMsg.WARN, self.StatusMsg.ERROR)
        one = self.StatusMsg(level=levels[st.level], name=self.name, message=st.message[:1000],
                             hardware_id=self.hardware_id,
                             values=[self.KeyValue(key=k, value=v) for k, v in st.values.items()])
        return self.Array(header=self.Header(stamp=self.bus.stamp(), frame_id=""), status=[one])

    def publish(self) -> None:
        """The timer's: the node's status now, on /diagnostics."""
        if self.pub is not None:
            self.pub.publish(self.message(self.status()))
