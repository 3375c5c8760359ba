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
stops there without a word. Damage before the end (a flipped byte, a wrong length, zeros) is skipped to the next
sound record, with one line: what it cost is the damaged records alone.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import time
import zlib
from pathlib import Path
from typing import Iterator

#: a record's frame: payload length, CRC-32 of the payload
_FRAME = struct.Struct("<II")
#: a record larger than this is not one we wrote (a corrupt length)
MAX_RECORD_BYTES = 64 << 20
_PART = struct.Struct("<I")
#: what follows the name of a file set aside: a state file that could not be used (and its journal, with the same
#: suffix) or a copy of a damaged journal segment (``.bad-<time>``), a journal whose checkpoint is gone (``.orphan-``)
BAD, ORPHAN = ".bad-", ".orphan-"


def aside_path(path: Path) -> Path:
    """A free name for a file set aside beside ``path``: ``<name>.bad-<time>``, with ``-1``, ``-2`` … after it when
    that is taken (never one that exists)."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside, i = path.with_name(f"{path.name}{BAD}{stamp}"), 1
    while aside.exists() or aside.is_symlink():
        aside, i = path.with_name(f"{path.name}{BAD}{stamp}-{i}"), i + 1
    return aside


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
                try:
                    self.path(n).unlink(missing_ok=True)
                except OSError as exc:     # not a file (a folder of that name): left, and said
                    self.log.error("journal %s cannot be deleted (%s)", self.path(n), exc.strerror or exc)

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

    def keep_segments_aside(self, first: int) -> str:
        """:meth:`keep_aside` every segment from ``first`` on; the words that say where."""
        kept = []
        for n in self.segments():
            if n >= first:
                try:
                    kept.append(self.keep_aside(self.path(n), self.path(n).read_bytes()).removeprefix("; "))
                except OSError as exc:
                    kept.append(f"{self.path(n).name} cannot be read ({exc.strerror or exc})")
        return "; ".join(kept)

    def _read(self, path: Path) -> Iterator[bytes]:
        """The records of one segment. What a kill cuts short at its end is let go without a word. Damage before the end
        (a flipped byte, a length that is wrong, zeros where a power cut left no data: each 8 zero bytes look like an
        empty record, and 300 MB of them replayed for minutes, deaf to Ctrl-C) is skipped to the next whole record
        whose checksum holds (:func:`next_sound_record`), and the rest is read: one line says how much was skipped.
        Where no sound record follows within :data:`RESYNC_BYTES`, the rest of the segment is not replayed. A damaged
        segment is copied aside (``<segment>.bad-<time>``) before its checkpoint deletes it."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            self.log.error("journal %s cannot be read (%s): not replayed", path, exc.strerror or exc)
            return
        at, skipped, skipped_bytes = 0, 0, 0
        while at + _FRAME.size <= len(data):                   # (a shorter rest: the frame of the last record, cut)
            n, crc = _FRAME.unpack_from(data, at)
            end = at + _FRAME.size + n
            if 0 < n <= MAX_RECORD_BYTES and end <= len(data) and zlib.crc32(data[at + _FRAME.size:end]) == crc:
                yield data[at + _FRAME.size:end]
                at = end
                continue
            resume = next_sound_record(data, at + 1)
            if resume is not None:
                skipped, skipped_bytes, at = skipped + 1, skipped_bytes + resume - at, resume
                continue
            if 0 < n <= MAX_RECORD_BYTES and end > len(data):
                break                                          # the last record, cut by a kill
            what = (f"a record of {n} bytes at byte {at}" if n == 0 or n > MAX_RECORD_BYTES or end > len(data)
                    else f"the record at byte {at} fails its checksum")
            self.log.error("journal %s: %s, and no sound record after it: the rest of the segment (%d bytes) is not "
                           "replayed%s", path.name, what, len(data) - at, self.keep_aside(path, data))
            return
        if skipped:
            self.log.error("journal %s: %d damaged stretch(es) (%d bytes) skipped to the next sound record; the rest "
                           "was replayed%s", path.name, skipped, skipped_bytes, self.keep_aside(path, data))

    def keep_aside(self, path: Path, data: bytes) -> str:
        """Copy segment ``path`` (its bytes ``data``) aside, where no checkpoint deletes it: one that is damaged, or
        whose records the node refused when it learned them again. Once: a restart before the next checkpoint reads
        it again. The words that say where."""
        for kept in self.folder.glob(f"{path.name}{BAD}*"):
            if kept.is_file() and kept.stat().st_size == len(data) and kept.read_bytes() == data:
                return f"; a copy is kept as {kept.name}"
        aside = aside_path(path)
        try:
            with open(aside, "xb") as fh:
                fh.write(data)
        except OSError as exc:
            return f" (no copy could be kept: {exc.strerror or exc})"
        return f"; a copy is kept as {aside.name}"


#: how far past damage a journal's reader looks for the next sound record (zero runs, which a power cut leaves, are
#: skipped at C speed and not counted): a few damaged sectors, not a segment of garbage
RESYNC_BYTES = 1 << 20
#: a candidate record longer than this is checksummed only when what follows it can be a record's frame too: in a
#: segment of 50 MB, one random length in 80 fits, and checksumming each (25 MB on average) made the search hopeless
_CHECKSUM_AT_ONCE = 64 << 10
_NONZERO = re.compile(rb"[^\x00]")


def next_sound_record(data: bytes, start: int) -> int | None:
    """Where the first whole record whose checksum holds begins at or after byte ``start`` (None: none within
    :data:`RESYNC_BYTES` of looking). A record's length is not 0, so one of its first 4 bytes is not zero."""
    at, looked = start, 0
    while at + _FRAME.size <= len(data) and looked < RESYNC_BYTES:
        if not any(data[at:at + 4]):                           # a zero length: skip the zeros
            m = _NONZERO.search(data, at + 4)
            if m is None:
                return None
            at = max(at + 1, m.start() - 3)
            continue
        n, crc = _FRAME.unpack_from(data, at)
        end = at + _FRAME.size + n
        if n <= MAX_RECORD_BYTES and end <= len(data) and (n <= _CHECKSUM_AT_ONCE or _frame_can_start(data, end)) \
                and zlib.crc32(data[at + _FRAME.size:end]) == crc:
            return at
        at, looked = at + 1, looked + 1
    return None


def _frame_can_start(data: bytes, at: int) -> bool:
    """Whether what is at byte ``at`` can follow a record: the end, a frame cut by a kill, zeros, or a frame whose
    length fits."""
    if at + _FRAME.size > len(data):
        return True
    n, _ = _FRAME.unpack_from(data, at)
    return n == 0 or (n <= MAX_RECORD_BYTES and at + _FRAME.size + n <= len(data))
