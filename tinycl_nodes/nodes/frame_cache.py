"""The samples (camera frames, IMU windows) a labeler may still have to show a person, until their features come.

A frame's features come back after the extractor's forward pass. With a slow backbone (measured: about 350 ms a
frame, 3 frames/s, as a ResNet-50 class model on a robot's CPU) they came after the raw frames held in 8 MB (eight
640x480 frames, 0.27 s at 30 frames/s) had moved on, and the question went to the phone without its picture. So a frame
pushed out of the raw tier before its features came is kept compact instead (``compact``: its picture as JPEG, about
40 KB; a compressed frame as it came), a few seconds' worth in the same 8 MB. A frame whose features came is not: an
extractor that keeps up never has a picture drawn that nobody needs. (It still leaves the raw tier only when pushed
out: freed at once, each 1 MB frame was mapped afresh, 350,000 page faults and 1 s of system time in 10 s of 30
frames/s, against 28,000 and 0.25 s.)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

import numpy as np

#: (kind, payload): "image" (a sensor_msgs Image / CompressedImage, or a frame already reduced to its picture, an
#: array), "imu" (an ImuWindow), "picture" (a drawn picture: its JPEG bytes in ``data``)
Entry = tuple[str, Any]


def entry_bytes(kind: str, payload: Any) -> int:
    """What an entry holds, in bytes."""
    if kind == "picture":
        return int(np.asarray(payload["data"]).nbytes)
    if isinstance(payload, np.ndarray):
        return payload.nbytes
    return len(payload.data) * (4 if kind == "imu" else 1)     # image: uint8; imu: float32


class _Tier:
    """Entries by stamp, oldest pushed out past ``count`` entries or ``max_bytes`` bytes."""

    def __init__(self, count: int, max_bytes: int) -> None:
        self.count, self.max_bytes = count, max_bytes
        self.entries: OrderedDict[int, Entry] = OrderedDict()
        self.bytes = 0

    def pop(self, stamp: int) -> Entry | None:
        entry = self.entries.pop(stamp, None)
        if entry is not None:
            self.bytes -= entry_bytes(*entry)
        return entry

    def put(self, stamp: int, entry: Entry) -> list[tuple[int, Entry]]:
        """Keep ``entry``; the entries it pushed out, oldest first."""
        self.pop(stamp)
        self.entries[stamp] = entry
        self.bytes += entry_bytes(*entry)
        out = []
        while self.entries and (len(self.entries) > self.count or self.bytes > self.max_bytes):
            old, pushed = self.entries.popitem(last=False)
            self.bytes -= entry_bytes(*pushed)
            out.append((old, pushed))
        return out


class FrameCache:
    """Raw samples by stamp (``raw_count`` / ``raw_bytes``), then compact ones (``compact_count`` /
    ``compact_bytes``) for those pushed out before their features came (:meth:`done`)."""

    def __init__(self, compact: Callable[[int, Entry], Entry | None], raw_count: int = 64, raw_bytes: int = 8 << 20,
                 compact_count: int = 256, compact_bytes: int = 8 << 20) -> None:
        self.compact = compact
        self.raw, self.kept = _Tier(raw_count, raw_bytes), _Tier(compact_count, compact_bytes)
        self._done: set[int] = set()        # raw entries whose features came

    def put(self, stamp: int, kind: str, payload: Any) -> None:
        self._done.discard(stamp)           # a driver that stamps every frame alike: this one is new
        for old, entry in self.raw.put(stamp, (kind, payload)):
            if old in self._done:
                self._done.discard(old)
            elif (small := self.compact(old, entry)) is not None:
                self.kept.put(old, small)

    def get(self, stamp: int) -> Entry | None:
        return self.raw.entries.get(stamp) or self.kept.entries.get(stamp)

    def done(self, stamp: int) -> None:
        """The features of ``stamp`` came (and took its picture if they needed one): its sample is no longer kept past
        the raw tier. (One that comes after its features is: rare.)"""
        if stamp in self.raw.entries:
            self._done.add(stamp)
        self.kept.pop(stamp)

    @property
    def bytes(self) -> int:
        return self.raw.bytes + self.kept.bytes
