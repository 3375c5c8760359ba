"""A serial relay between the board's UART pty and the micro-ROS agent that can hold back chosen XRCE messages.

Tests put it between the real board (QEMU) and the real MicroXRCEAgent to produce, on demand, a timing the link
produces only rarely: the agent's reply to the board's time sync arriving after the board gave up waiting for it.

    board pty  ⇄  XrceRelay  ⇄  a new pty (``agent_pty``) that ``MicroXRCEAgent serial --dev`` opens

Bytes are forwarded unchanged, frame by frame (the client's stream framing: 0x7E, then, escaped by 0x7D, source and
destination address, a little-endian length, the XRCE message and a CRC-16); each frame's XRCE submessage ids decide
whether it is held.
"""

from __future__ import annotations

import os
import select
import threading
import tty
from dataclasses import dataclass, field

BEGIN, ESC, XOR = 0x7E, 0x7D, 0x20
WRITE_DATA, DATA, TIMESTAMP_REPLY = 7, 9, 15   # XRCE submessage ids (DDS-XRCE 1.0, table 10)


def submessage_ids(message: bytes) -> list[int]:
    """The submessage ids of one XRCE message (after its 4-byte header, or 8 with a client key)."""
    off = 4 if message and message[0] & 0x80 else 8
    ids = []
    while off + 4 <= len(message):
        ids.append(message[off])
        off += 4 + int.from_bytes(message[off + 2:off + 4], "little")
        off = (off + 3) & ~3
    return ids


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class FrameSplitter:
    """Cuts a byte stream into whole frames: ``(raw bytes, XRCE message)``; bytes outside a frame come as
    ``(raw, None)``. A frame cut short by a new 0x7E is passed on as such bytes too."""

    def __init__(self) -> None:
        self.raw = bytearray()
        self.body = bytearray()       # unescaped bytes after the 0x7E
        self.escaped = False

    def feed(self, data: bytes) -> list[tuple[bytes, bytes | None]]:
        out: list[tuple[bytes, bytes | None]] = []
        for b in data:
            if b == BEGIN:
                if self.raw:
                    out.append((bytes(self.raw), None))
                self.raw, self.body, self.escaped = bytearray([b]), bytearray(), False
                continue
            self.raw.append(b)
            if not self.raw or self.raw[0] != BEGIN:
                continue
            if b == ESC and not self.escaped:
                self.escaped = True
                continue
            self.body.append(b ^ XOR if self.escaped else b)
            self.escaped = False
            if len(self.body) >= 4 and len(self.body) == 4 + int.from_bytes(self.body[2:4], "little") + 2:
                out.append((bytes(self.raw), bytes(self.body[4:-2])))
                self.raw, self.body = bytearray(), bytearray()
        if self.raw and self.raw[0] != BEGIN:
            out.append((bytes(self.raw), None))
            self.raw = bytearray()
        return out


@dataclass
class LateTimeReply:
    """Hold the agent's time-sync reply until the board has buffered a received message, then deliver both while the
    board waits for a publish to be confirmed: the reply steps the board's epoch clock after the message was stamped.

    From the reply on, messages carrying DATA to the board are held too; the board's next WRITE_DATA (a publish: it
    now waits for the agent's acknowledgement) releases them, then the reply, before that publish reaches the agent."""

    reply: list[bytes] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)
    released: bool = False
    released_data: int = 0

    def to_board(self, raw: bytes, ids: list[int]) -> list[bytes]:
        if self.released:
            return [raw]
        if TIMESTAMP_REPLY in ids:
            self.reply.append(raw)
            return []
        if self.reply and DATA in ids:
            self.data.append(raw)
            return []
        return [raw]

    def before_agent(self, ids: list[int]) -> list[bytes]:
        """What to write to the board before a board frame goes on to the agent."""
        if self.released or not (self.reply and self.data and WRITE_DATA in ids):
            return []
        self.released, self.released_data = True, len(self.data)
        return [*self.data, *self.reply]


class XrceRelay(threading.Thread):
    """Forwards frames both ways until ``stop()``; ``policy`` (a :class:`LateTimeReply`) decides what is held."""

    def __init__(self, board_pty: str, policy: LateTimeReply) -> None:
        super().__init__(daemon=True, name="xrce-relay")
        self.policy = policy
        self.board = os.open(board_pty, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.board)
        self.master, self.slave = os.openpty()   # the slave stays open here: the agent may close and reopen it
        tty.setraw(self.slave)
        self.agent_pty = os.ttyname(self.slave)
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        split = {self.board: FrameSplitter(), self.master: FrameSplitter()}
        try:
            while not self._halt.is_set():
                ready, _, _ = select.select([self.board, self.master], [], [], 0.05)
                for fd in ready:
                    try:
                        chunk = os.read(fd, 4096)
                    except OSError:              # the agent's side closed (it was stopped): nothing to forward
                        continue
                    for raw, message in split[fd].feed(chunk):
                        ids = submessage_ids(message) if message else []
                        if fd == self.board:
                            for held in self.policy.before_agent(ids):
                                _write_all(self.board, held)
                            _write_all(self.master, raw)
                        else:
                            for out in self.policy.to_board(raw, ids):
                                _write_all(self.board, out)
        except BaseException as exc:  # noqa: BLE001 - reported by the test that reads .error
            self.error = exc

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        for fd in (self.board, self.master, self.slave):
            os.close(fd)
