"""The labeler's frames until their features come (FrameCache): let go when they come, kept compact when late."""

from types import SimpleNamespace

import numpy as np

from tinycl_nodes.nodes.frame_cache import FrameCache, entry_bytes

FRAME = 640 * 480 * 3


def frame(k: int) -> SimpleNamespace:
    return SimpleNamespace(data=bytes([k % 256]) * FRAME)          # a raw 640x480 rgb8 frame's payload


def drawn(calls: list[int]):
    def compact(stamp, entry):
        calls.append(stamp)
        return "picture", {"data": np.full(40_000, stamp % 256, np.uint8)}     # a 40 KB JPEG's worth
    return compact


def test_an_extractor_that_keeps_up_has_nothing_drawn():
    calls: list[int] = []
    cache = FrameCache(drawn(calls), raw_bytes=8 * FRAME)
    for k in range(300):                  # 10 s at 30 frames/s, each frame's features 2 frames later
        cache.put(k, "image", frame(k))
        if k >= 2:
            cache.done(k - 2)
    assert calls == [] and not cache.kept.entries            # what was done left with the raw tier, undrawn
    assert list(cache.raw.entries) == list(range(292, 300)) and cache.bytes == 8 * FRAME


def test_frames_whose_features_are_late_are_kept_compact_for_seconds():
    calls: list[int] = []
    cache = FrameCache(drawn(calls), raw_bytes=8 * FRAME)
    for k in range(100):                  # features 10 frames (a third of a second) late: past the 8 raw frames
        cache.put(k, "image", frame(k))
        if k >= 10:
            assert cache.get(k - 10) is not None, k
            cache.done(k - 10)
    assert calls == list(range(92))       # every frame pushed out before its features came: drawn once
    assert len(cache.raw.entries) == 8 and len(cache.kept.entries) == 2     # 90, 91 drawn; the rest let go
    kind, picture = cache.get(90)
    assert kind == "picture" and picture["data"][0] == 90


def test_both_tiers_keep_to_their_bounds():
    cache = FrameCache(drawn([]), raw_count=64, raw_bytes=8 * FRAME, compact_count=256, compact_bytes=4_000_000)
    for k in range(1000):                 # no features at all
        cache.put(k, "image", frame(k))
    assert len(cache.raw.entries) == 8 and cache.raw.bytes == 8 * FRAME
    assert len(cache.kept.entries) == 100 and cache.kept.bytes == 100 * 40_000    # the byte bound: 4 MB
    assert min(cache.kept.entries) == 892 and max(cache.kept.entries) == 991
    assert cache.bytes == sum(entry_bytes(*e) for t in (cache.raw, cache.kept) for e in t.entries.values())


def test_an_entry_not_worth_keeping_compact_is_let_go():
    cache = FrameCache(lambda stamp, entry: None, raw_count=2)
    for k in range(5):
        cache.put(k, "imu", SimpleNamespace(data=[0.0] * 300))
    assert set(cache.raw.entries) == {3, 4} and not cache.kept.entries and cache.get(0) is None


def test_a_driver_that_stamps_every_frame_alike_still_has_its_newest_frame_kept():
    cache = FrameCache(drawn([]), raw_bytes=8 * FRAME)
    for k in range(5):
        cache.put(0, "image", frame(k))
        cache.done(0)                     # the features of stamp 0 came (and took its picture if needed)
    cache.put(0, "image", frame(5))
    assert cache.get(0)[1].data[0] == 5 and cache.bytes == FRAME
