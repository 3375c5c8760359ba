"""InputCounts: every bad input counted; the same reason said 20 times, then once a minute with what was not said."""

from __future__ import annotations

from tinycl_nodes.bus import base
from tinycl_nodes.bus.base import SAID_AT_ONCE, InputCounts


def test_the_same_reason_is_said_20_times_then_once_a_minute_with_a_count(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(base.time, "monotonic", lambda: now[0])
    inputs = InputCounts()
    said = [inputs.drop("/features: dropped: mismatch") for _ in range(25)]
    assert said[:SAID_AT_ONCE - 1] == [""] * (SAID_AT_ONCE - 1) and said[SAID_AT_ONCE:] == [None] * 5
    assert said[SAID_AT_ONCE - 1] == "; the same again is said once every 60 s, with a count"
    assert inputs.drop("/features: dropped: another reason") == ""         # another reason: said at once
    now[0] += 30
    assert inputs.drop("/features: dropped: mismatch") is None
    now[0] += 31                                                           # a minute since the first
    assert inputs.drop("/features: dropped: mismatch") == " (6 more like it in the last 61 s, not said)"
    assert inputs.drop("/features: dropped: mismatch") is None
    now[0] += 61
    assert inputs.drop("/features: dropped: mismatch") == " (1 more like it in the last 61 s, not said)"
    now[0] += 61                                                           # quiet a minute: said as if new
    assert inputs.drop("/features: dropped: mismatch") == ""
    assert inputs.dropped == 31 and inputs.last_drop == "/features: dropped: mismatch"


def test_a_hostile_peers_endless_reasons_are_not_all_kept():
    inputs = InputCounts()
    for i in range(10_000):
        assert inputs.drop(f"/features: dropped: reason {i}") == ""
    assert len(inputs._said) == base.KEPT_REASONS and inputs.dropped == 10_000
