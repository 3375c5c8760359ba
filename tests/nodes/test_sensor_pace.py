"""When the sensor sends each sample: at rate_hz, at a recording's own times, or at once (Pace)."""

import pytest

from tinycl_nodes.nodes.sensor import MAX_BACKLOG_S, Pace


def test_a_set_rate_spaces_samples_evenly_from_the_first():
    pace = Pace()
    assert [pace.due(10.0, None, now=5.0) for _ in range(3)] == pytest.approx([5.0, 5.1, 5.2])


def test_recorded_times_are_kept_from_the_first_sample_on():
    pace = Pace()
    assert pace.due(0.0, 2.0, now=100.0) == 100.0          # the recording's own start does not matter
    assert pace.due(0.0, 2.5, now=100.0) == pytest.approx(100.5)
    assert pace.due(0.0, 7.5, now=100.6) == pytest.approx(105.5)   # a gap in the recording is kept


def test_no_rate_and_no_recorded_time_is_at_once():
    assert Pace().due(0.0, None, now=1.0) is None


@pytest.mark.parametrize("rate_hz", [10.0, 0.0])
def test_a_stall_sends_at_most_the_backlog_at_once_then_goes_on_from_now(rate_hz):
    """10 samples/s, by rate or by recorded times; the publisher is away 10 s (a full disk, a debugger)."""
    pace = Pace()
    recorded = (k / 10 for k in range(1000))
    pace.due(rate_hz, next(recorded), now=0.0)
    dues = [pace.due(rate_hz, next(recorded), now=10.0) for _ in range(30)]
    at_once = sum(due <= 10.0 for due in dues)
    assert 10 <= at_once <= MAX_BACKLOG_S * 10 + 2, dues      # not the 100 samples it fell behind
    assert dues[at_once] - dues[at_once - 1] == pytest.approx(0.1)   # then its pace again


def test_the_rate_can_be_set_and_cleared_while_a_recording_plays():
    pace = Pace()
    assert pace.due(0.0, 0.0, now=0.0) == 0.0
    assert pace.due(100.0, 5.0, now=0.5) == 0.5            # rate_hz set: the recorded times no longer count
    assert pace.due(100.0, 6.0, now=0.5) == pytest.approx(0.51)
    assert pace.due(0.0, 7.0, now=0.6) == pytest.approx(0.6)   # cleared: the recording's pace from here
    assert pace.due(0.0, 7.2, now=0.6) == pytest.approx(0.8)
