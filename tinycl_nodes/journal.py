"""What a node learned since its last checkpoint, appended as it learns: a kill -9 loses none of it.

A checkpoint (:class:`storage.StateStore`) writes the node's whole state, every ``save_every`` samples; between two,
each message the node learned from is one record appended to the current segment, ``<name>.journal-<n>``, with one
``write()`` and no fsync: once ``write()`` returns the kernel holds the bytes, so a kill -9 of the node keeps them (a
power cut may not; the checkpoints are what is fsynced). Each checkpoint starts a new segment and names it in the state,
so a restart loads the checkpoint and hands the records of that segment and the later ones back to the node, which
learns them again, in order (:meth:`StateStore.replay`). A segment is deleted once a checkpoint that holds all of it is
on disk. A journal found without its state file is learned again only if it starts at segment 1 (the node was
killed before its first checkpoint); otherwise its checkpoint is gone (the file deleted: someone starting over) and
it is moved aside with one line.

A record is a length, a CRC-32 and the payload (:func:`pack` parts). A kill cuts at most the last record short, and a
full disk's partial write ends its segment the same way (the next record starts a new one): the replay of that segment
stops there without a word; a record whose checksum fails before the end is one line, and the segment's rest
is not trusted.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Iterator

#: a record's frame: payload length, CRC-32 of the payload
_FRAME = struct.Struct("<II")
#: a record larger than this is not one we wrote (a corrupt length)
MAX_RECORD_BYTES = 64 << 20
_PART = struct.Struct("<I")


def fsync_folder(folder: Path) -> None:
    """Make the names in ``folder`` (a file made or renamed there) survive a power cut; a file system that cannot sync
    a folder is let be."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def pack(*parts: bytes) -> bytes:
    """Several byte strings as one record payload (each length-prefixed)."""
    return b"".join(_PART.pack(len(p)) + p for p in parts)


def unpack(payload: bytes) -> list[bytes]:
    """The parts of :func:`pack` (ValueError if the payload is not made of them)."""
    parts, at = [], 0
    while at < len(payload):
        if at + _PART.size > len(payload):
            raise ValueError("journal record: a part's length is cut short")
        (n,) = _PART.unpack_from(payload, at)
        at += _PART.size
        if at + n > len(payload):
            raise ValueError(f"journal record: a part of {n} bytes with {len(payload) - at} left")
        parts.append(payload[at:at + n])
        at += n
    return parts


class Journal:
    """The segments ``<folder>/<name>.journal-<n>`` of one node: appended to, read back, dropped once checkpointed."""

    def __init__(self, folder: Path, name: str, log: logging.Logger) -> None:
        self.folder, self.name, self.log = Path(folder), name, log
        self._pattern = re.compile(re.escape(f"{name}.journal-") + r"(\d{1,12})")
        self.segment = max(self.segments(), default=0) + 1   # appended to next (made at its first record)
        self._fd = -1
        self._fd_segment = 0
        self._listed = 0                                      # the segment whose name the folder has on disk

    def path(self, segment: int) -> Path:
        return self.folder / f"{self.name}.journal-{segment}"

    def segments(self) -> list[int]:
        """The segment numbers on disk, in order."""
        found = []
        for p in self.folder.glob(f"{self.name}.journal-*"):
            m = self._pattern.fullmatch(p.name)
            if m:
                found.append(int(m.group(1)))
        return sorted(found)

    # --- writing ------------------------------------------------------------------------------------
    def append(self, payload: bytes, sync: bool = False) -> None:
        """One record at the end of the current segment (one ``write()``; OSError if the disk refuses it). ``sync``:
        on disk before it returns, with the records before it in the segment (``fsync``, and the folder's once for a
        new segment): what must survive a power cut too."""
        if self._fd < 0 or self._fd_segment != self.segment:
            self._close()
            self._fd = os.open(self.path(self.segment), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._fd_segment = self.segment
        record = _FRAME.pack(len(payload), zlib.crc32(payload)) + payload
        written = os.write(self._fd, record)
        if written != len(record):      # a full disk part-way: the torn record ends its segment (a replay stops
            torn = self.path(self.segment).name     # there) and the records after it go into the next one
            self._close()
            self.segment += 1
            raise OSError(f"journal {torn}: {written} of {len(record)} bytes written")
        if sync:
            os.fsync(self._fd)
            if self._listed != self.segment:
                fsync_folder(self.folder)
                self._listed = self.segment

    def rotate(self) -> int:
        """Start a new segment (at a checkpoint: what it holds is in the segments before); its number. (The last
        one's file is closed: a node's final checkpoint leaves none open.)"""
        self._close()
        self.segment = max(self.segment, max(self.segments(), default=0)) + 1
        return self.segment

    def drop_before(self, segment: int) -> None:
        """Delete the segments before ``segment`` (a checkpoint that holds them is on disk)."""
        for n in self.segments():
            if n < segment:
                self.path(n).unlink(missing_ok=True)

    def move_aside(self, suffix: str) -> list[Path]:
        """Rename every segment ``<segment><suffix>`` (its checkpoint could not be used: the records have no base)."""
        moved = []
        for n in self.segments():
            target = self.path(n).with_name(self.path(n).name + suffix)
            self.path(n).rename(target)
            moved.append(target)
        self._close()
        self.segment = 1                      # a journal from nothing starts at 1 (what a store without a state
        return moved                          # file replays)

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # --- reading ------------------------------------------------------------------------------------
    def records(self, first: int) -> Iterator[bytes]:
        """The payloads of the segments from ``first`` on, in order."""
        for n in self.segments():
            if n >= first:
                yield from self._read(self.path(n))

    def _read(self, path: Path) -> Iterator[bytes]:
        data = path.read_bytes()
        at = 0
        while at < len(data):
            if at + _FRAME.size > len(data):
                return                                         # the frame of the last record, cut by a kill
            n, crc = _FRAME.unpack_from(data, at)
            end = at + _FRAME.size + n
            if n > MAX_RECORD_BYTES:
                self.log.error("journal %s: a record of %d bytes at byte %d: the rest of the segment (%d bytes) is "
                               "not replayed", path.name, n, at, len(data) - at)
                return
            if end > len(data):
                return                                         # the last record, cut by a kill
            payload = data[at + _FRAME.size:end]
            if zlib.crc32(payload) != crc:
                self.log.error("journal %s: the record at byte %d fails its checksum: the rest of the segment "
                               "(%d bytes) is not replayed", path.name, at, len(data) - at)
                return
            yield payload
            at = end
