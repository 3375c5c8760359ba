"""How a node that owns a head (the learner, the board) publishes it: one protocol, one owner.

The head goes out on ``head`` (latched) after ``publish_every`` learned samples, otherwise at most
every ``publish_period_s`` when something changed (a sample, an unlearned one, a renamed class),
and at exit. Version numbers are taken in blocks of ``VERSION_BLOCK``: the first version of a block is first saved
with the node's state, the block's last number as ``published_version``, then published, and the rest of the block
goes out without a write of its own. So a version is never used twice, not even after a kill -9 (the node then goes on
after the block: a gap in the numbers, which only ever increase), and a camera graph that publishes every second
writes its state for that once every ``VERSION_BLOCK`` versions, not at every one (a 72 KB learner state every second
was about 6 GB a day; its own checkpoints, every ``save_every`` samples or ``save_period_s``, are apart). The
checkpoint is written by the state's writer thread and a version goes out from the first message or timer tick after
its block landed, so the node's message thread does not wait for the disk (``storage.py``); at the node's stop it
waits, and saves the last version itself (a clean restart goes on without a gap). A checkpoint that could not be
written (a full disk) still lets its versions out, so that the graph keeps following the head; a kill -9 before a
later write lands can then use those numbers again. While the disk holds a checkpoint, at most
``UNSENT_MAX`` versions wait (the oldest dropped). The message is stamped with the last label
the head learned, so who follows the head (the labeler's replica) knows which labels it holds.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable

from pydantic import Field

from ..core.errors import StateError
from ..core.head import Head
from ..interfaces import ns_to_time
from .messages import head_message
from .runner import NodeParams

#: what a node hands over to be published: its head, class names, and meta added to the state blob
Snapshot = Callable[[], tuple[Head, dict[int, str], dict[str, Any]]]


class HeadParams(NodeParams):
    """The parameters of the head-publishing protocol (learner, board)."""

    publish_every: int = Field(500, ge=1, description="publish the head after this many learned samples")
    publish_period_s: float = Field(1.0, gt=0, description="seconds between checks that publish the head if it "
                                                           "learned since it was last published")
    with_state: bool = Field(True, description="also send the full core state in Head.state (the labeler's head "
                                               "replica follows it after a restart of either node)")
    class_names: dict[int, str] = Field(default_factory=dict,
                                        description="class id → name of predictions and the head (the learner adds "
                                                    "names learned later)")


UNSENT_MAX = 8      # versions waiting for their checkpoint to land, at most
VERSION_BLOCK = 100  # version numbers taken with one checkpoint


class HeadPublisher:
    """``head`` of a node (``node.params`` a :class:`HeadParams`, ``node.state`` its StateStore)."""

    def __init__(self, node: Any, snapshot: Snapshot) -> None:
        bus = node.bus
        self.node, self.snapshot = node, snapshot
        self.HeadMsg, self.ClassInfo = bus.msg("Head"), bus.msg("ClassInfo")
        self.Header, self.Time = bus.msg("std_msgs/msg/Header"), bus.msg("builtin_interfaces/msg/Time")
        self.pub = node.track(bus.create_publisher("head", self.HeadMsg, "latched"))
        node.track(bus.create_timer(node.params.publish_period_s, self.maybe_publish))
        # (its checkpoint's ticket, message) of the versions taken, not yet sent: bounded, so a disk that hangs costs a
        # few messages of memory, not one per version (the oldest is dropped: the newer ones hold what it did)
        self._unsent: deque[tuple[int, Any]] = deque(maxlen=UNSENT_MAX)
        # a version taken and sent whole, in order, also when the node's callbacks run in more than one thread: the
        # local bus runs a callback in its publisher's thread (the fleet tests' learner: the test's thread, its timer
        # and the bridge's, which hands it the global head). Two threads sent v4 and v3 in that order, and the bridge
        # took v3 for a learner whose state was lost (a new lineage: the fleet's samples counted as its own)
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Nothing published, nothing learned (a fresh head)."""
        self.version = 0            # the last version published
        self.taken = 0              # versions up to this are taken (saved with the state: never used again)
        self._taken_ticket = 0      # the checkpoint that holds ``taken``
        self.last_label_ns = 0      # stamp of the last label learned: the header stamp of the head
        self.updates = 0            # changes since the last version

    # --- state --------------------------------------------------------------------------------------
    def meta(self) -> dict[str, int]:
        """What the node saves with its state."""
        return {"published_version": self.taken, "last_label_ns": self.last_label_ns}

    def restore(self, meta: dict[str, Any]) -> None:
        """Take back what :meth:`meta` saved (checked: a bad value raises StateError)."""
        values = {k: meta.get(k, 0) for k in ("published_version", "last_label_ns")}
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise StateError(f"state: {key} must be a non-negative int, got {value!r}")
        self.version = self.taken = values["published_version"]
        self.last_label_ns = values["last_label_ns"]

    # --- learning -----------------------------------------------------------------------------------
    def learned(self, stamp_ns: int) -> None:
        """The head learned the label stamped ``stamp_ns``."""
        self.last_label_ns = stamp_ns
        self.updates += 1

    def changed(self) -> None:
        """The head changed otherwise (a sample taken back, a class renamed): published by the timer."""
        self.updates += 1

    def check(self) -> None:
        """After a message: send what is saved; publish once ``publish_every`` changes are in. (Sent first: a new
        version taken while UNSENT_MAX wait would push out the oldest, though its checkpoint may be on disk now.)"""
        self.send_saved()
        if self.updates >= self.node.params.publish_every:
            self.maybe_publish()

    def maybe_publish(self) -> None:
        self.send_saved()
        if self.updates:
            self.publish()

    def publish(self, wait: bool = False) -> None:
        """Take the next version, and publish it once the checkpoint that took its block is on disk (``wait``: the
        state saved now, waiting for the disk); nothing before the first class."""
        with self._lock:
            head, names, meta = self.snapshot()
            if not head.classes:
                return
            self.version += 1
            if self.version > self.taken or wait:  # first saved, then published: a version number is never used twice
                self.taken = max(self.taken, self.version + VERSION_BLOCK - 1)
                self.node.state.save(wait=wait)
                self._taken_ticket = self.node.state.ticket
            header = self.Header(stamp=ns_to_time(self.last_label_ns, self.Time), frame_id="")
            self._unsent.append((self._taken_ticket, head_message(self.HeadMsg, self.ClassInfo, head, self.version,
                                                                      header, names, self.node.params.with_state,
                                                                      meta)))
            self.updates = 0
            self.send_saved()

    def send_saved(self) -> None:
        """Publish, in order, the versions whose checkpoint is on disk."""
        with self._lock:
            while self._unsent and self.node.state.written(self._unsent[0][0]):
                self.pub.publish(self._unsent.popleft()[1])

    def close(self) -> None:
        """At the node's stop: the last version too, every one published once on disk; the state then says the last
        version published (the node's own save at its stop), so a clean restart goes on from it."""
        if self.updates:
            self.publish(wait=True)
        self.node.state.flush()
        self.send_saved()
        self.taken = self.version
