"""Label request bookkeeping (pure logic): dedupe, expiry, budget, names, persistence, refused answers."""

import copy

import numpy as np
import pytest

from tinycl_nodes.core import state as st
from tinycl_nodes.core.asking import AskPolicy
from tinycl_nodes.core.errors import StateError
from tinycl_nodes.nodes.label_requests import (
    MAX_NAME_CHARS, NEW_CLASS, AnswerError, LabelRequests, next_class_id, render_plot, unit_of,
)
from tinycl_nodes.storage import load_states, save_states

F = 8


def vec(v: float, i: int = 0) -> np.ndarray:
    x = np.zeros(F, np.float32)
    x[i] = v
    return x


def snapshot(r: LabelRequests) -> bytes:
    return st.to_bytes(r.state_dict())


def test_new_sample_asks_and_near_duplicate_joins():
    r = LabelRequests(ttl_s=60, max_per_hour=10, dedupe_distance=0.5)
    out, a = r.offer(vec(1.0), 0.0, stamp_ns=11, sample_id=1, reason="novel", candidates=[2, 0])
    assert out == "asked" and a.candidates == [2, 0] and len(r.pending) == 1
    out, b = r.offer(vec(1.3), 1.0, stamp_ns=12)           # 0.3 away: the same thing seen again
    assert out == "joined" and b is a and len(a.samples) == 2 and a.stamps == [11, 12]
    out, c = r.offer(vec(2.0), 2.0, stamp_ns=13)           # 1.0 away: a new question
    assert out == "asked" and c is not a and len(r.pending) == 2
    assert r.counters["asked"] == 2 and r.counters["joined"] == 1
    # a duplicate joins the closest pending request
    out, d = r.offer(vec(1.9), 3.0)
    assert out == "joined" and d is c


def test_a_request_takes_the_id_it_is_given_and_only_when_it_starts():
    """The labeler gives the id it journaled with the sample: learned again after a kill, the question keeps it."""
    r = LabelRequests(ttl_s=60, max_per_hour=10, dedupe_distance=0.5)
    _, a = r.offer(vec(1.0), 0.0, stamp_ns=11, request_id="from-the-journal")
    _, b = r.offer(vec(1.1), 1.0, stamp_ns=12, request_id="not-used")      # joins: no new request
    _, c = r.offer(vec(3.0), 2.0, stamp_ns=13)
    assert a.request_id == "from-the-journal" and b is a and list(r.pending) == ["from-the-journal", c.request_id]
    assert len(c.request_id) == 36                                          # a fresh UUID


def test_joined_samples_are_capped():
    r = LabelRequests(dedupe_distance=1.0, max_joined=2)
    _, a = r.offer(vec(0.0), 0.0)
    for k in range(5):
        assert r.offer(vec(0.1), 1.0 + k)[0] == "joined"
    assert len(a.samples) == 3 and a.joined_dropped == 3


def test_budget_per_hour_and_max_pending():
    r = LabelRequests(ttl_s=7200, max_per_hour=3, max_pending=10)
    assert [r.offer(vec(float(k)), float(k))[0] for k in range(4)] == ["asked"] * 3 + ["over_budget"]
    assert r.counters["over_budget"] == 1 and len(r.pending) == 3
    assert r.offer(vec(9.0), 3599.0)[0] == "over_budget"
    assert r.offer(vec(9.0), 3601.0)[0] == "asked"          # the first question is an hour old
    r2 = LabelRequests(max_per_hour=100, max_pending=2)
    assert [r2.offer(vec(float(k)), 0.0)[0] for k in range(3)] == ["asked", "asked", "over_budget"]


def test_requests_expire_and_late_answers_are_refused():
    r = LabelRequests(ttl_s=10)
    _, a = r.offer(vec(1.0), 100.0)
    assert r.expire(109.9) == [] and a.request_id in r.pending
    with pytest.raises(AnswerError, match="expired"):        # expired but not swept yet
        r.check_answer(a.request_id, NEW_CLASS, "cat", [0, 1], 110.5)
    gone = r.expire(110.0)
    assert gone == [a] and not r.pending and r.counters["expired"] == 1
    before = snapshot(r)
    with pytest.raises(AnswerError, match="expired"):
        r.check_answer(a.request_id, 0, "", [0, 1], 111.0)
    assert snapshot(r) == before


def test_answers_map_names_to_stable_ids():
    r = LabelRequests(ttl_s=100)
    r.set_names({0: "zero", 1: "one"})
    _, a = r.offer(vec(1.0), 0.0)
    _, b = r.offer(vec(5.0), 0.0)
    _, c = r.offer(vec(9.0), 0.0)
    res = r.check_answer(a.request_id, NEW_CLASS, "  Cat  ", [0, 1, 5], 1.0)
    assert (res.class_id, res.class_name, res.new_class) == (6, "Cat", True)   # next free id after 5
    r.commit(res)
    assert r.names[6] == "Cat" and a.request_id not in r.pending
    # the same name again (case, blanks aside) is the same class
    res2 = r.check_answer(b.request_id, NEW_CLASS, "cat", [0, 1, 5, 6], 2.0)
    assert (res2.class_id, res2.class_name, res2.new_class) == (6, "Cat", False)
    r.commit(res2)
    # an existing class by id, and by its configured name
    res3 = r.check_answer(c.request_id, 1, "", [0, 1, 5, 6], 3.0)
    assert (res3.class_id, res3.class_name) == (1, "one")
    assert r.check_answer(c.request_id, NEW_CLASS, "ZERO", [0, 1, 5, 6], 3.0).class_id == 0
    # an answered request cannot be answered again
    with pytest.raises(AnswerError, match="already answered"):
        r.check_answer(a.request_id, 1, "", [0, 1, 5, 6], 4.0)


@pytest.mark.parametrize("rid, class_id, name, match", [
    ("nope", 0, "", "unknown label request id"),
    ("", 0, "", "without a request id"),
    (None, NEW_CLASS, "cat", "unknown label request id"),   # None → replaced by a fresh unknown id below
    ("OK", 7, "", "unknown class id 7"),
    ("OK", -2, "", "unknown class id -2"),
    ("OK", True, "", "must be an integer"),
    ("OK", NEW_CLASS, "", "empty"),
    ("OK", NEW_CLASS, "   ", "empty"),
    ("OK", NEW_CLASS, "x" * (MAX_NAME_CHARS + 1), "at most"),
    ("OK", NEW_CLASS, "bad\x07name", "control character"),
    ("OK", NEW_CLASS, "bad\x90name", "control character"),
    ("OK", NEW_CLASS, "zero\u200dwidth", "invisible formatting"),
    ("OK", NEW_CLASS, "soft\u00adhyphen", "invisible formatting"),
    ("OK", NEW_CLASS, b"cat", "must be text"),
])
def test_bad_answers_are_refused_and_change_nothing(rid, class_id, name, match):
    r = LabelRequests(ttl_s=100, dedupe_distance=0.5)
    r.set_names({0: "zero"})
    _, a = r.offer(vec(1.0), 0.0)
    r.offer(vec(1.1), 0.5)
    rid = a.request_id if rid == "OK" else ("0" * 8 + "-0000-0000-0000-" + "0" * 12 if rid is None else rid)
    before = snapshot(r)
    with pytest.raises(AnswerError, match=match) as err:
        r.check_answer(rid, class_id, name, [0], 1.0)
    assert "\n" not in str(err.value)
    assert snapshot(r) == before and a.request_id in r.pending and len(a.samples) == 2


def test_a_class_at_the_highest_id_leaves_new_classes_the_lowest_free_ids():
    """A labelled sample of class 2³¹−1 (any node may publish features) took the id past which a new class would go:
    every person's new class was then refused, "no free class id left for a new class"."""
    r = LabelRequests(ttl_s=100)
    _, a = r.offer(vec(1.0), 0.0)
    res = r.check_answer(a.request_id, NEW_CLASS, "cup", [0, 1, 2**31 - 1], 1.0)
    assert (res.class_id, res.new_class) == (2, True)
    assert next_class_id([0, 2, 2**31 - 1]) == 1 and next_class_id([]) == 0 and next_class_id([4]) == 5


def test_pending_requests_survive_a_restart(tmp_path):
    r = LabelRequests(ttl_s=50, max_per_hour=5, dedupe_distance=0.5)
    r.set_names({0: "zero"})
    _, a = r.offer(vec(1.0), 10.0, stamp_ns=123, sample_id=7, reason="ambiguous between 0 and 1", candidates=[1, 0])
    a.picture = {"height": 2, "width": 3, "encoding": "rgb8", "step": 9, "data": np.arange(18, dtype=np.uint8)}
    r.offer(vec(1.2), 11.0, stamp_ns=124)
    _, b = r.offer(vec(5.0), 12.0)
    r.commit(r.check_answer(b.request_id, NEW_CLASS, "dog", [0], 13.0))
    _, e = r.offer(vec(-5.0), 14.0)
    save_states(tmp_path / "labeler.state", {"requests": r.state_dict()})

    again = LabelRequests(ttl_s=50, max_per_hour=5, dedupe_distance=0.5)
    again.load_state_dict(load_states(tmp_path / "labeler.state")["requests"], F)
    assert list(again.pending) == [a.request_id, e.request_id]
    p = again.pending[a.request_id]
    assert (p.stamp_ns, p.sample_id, p.reason, p.candidates, p.stamps) == (123, 7, "ambiguous between 0 and 1",
                                                                           [1, 0], [123, 124])
    assert np.array_equal(np.stack(p.samples), np.stack([vec(1.0), vec(1.2)]))
    assert p.picture["encoding"] == "rgb8" and np.array_equal(p.picture["data"], np.arange(18))
    assert again.names == {0: "zero", 1: "dog"} and again.asked_at == r.asked_at
    # the budget, the answered ids and the duplicates carry over
    with pytest.raises(AnswerError, match="already answered"):
        again.check_answer(b.request_id, 0, "", [0, 1], 15.0)
    assert again.offer(vec(1.1), 15.0)[0] == "joined"
    res = again.check_answer(a.request_id, NEW_CLASS, "Dog", [0, 1], 16.0)
    assert res.class_id == 1 and len(res.request.samples) == 3
    # and they still expire on time after the restart
    assert again.expire(59.9) == []
    assert [q.request_id for q in again.expire(64.0)] == [a.request_id, e.request_id] and not again.pending


def test_bad_saved_requests_are_refused_and_change_nothing():
    r = LabelRequests(dedupe_distance=0.5)
    _, a = r.offer(vec(1.0), 0.0)
    good = r.state_dict()
    fresh = LabelRequests()
    fresh.offer(vec(3.0), 0.0)
    before = snapshot(fresh)
    wrong_f = copy.deepcopy(good)
    wrong_f["arrays"][f"policy/group{a.gid}"] = np.zeros((1, F + 1), np.float32)
    missing = copy.deepcopy(good)
    del missing["arrays"][f"policy/group{a.gid}"]
    other = copy.deepcopy(good)
    other["kind"] = "TinyRCE"
    for bad in (wrong_f, missing, other):
        with pytest.raises(StateError):
            fresh.load_state_dict(bad, F)
        assert snapshot(fresh) == before


def test_render_plot_draws_the_window_over_time_with_units():
    t = np.linspace(0, 6.28, 50)
    window = np.stack([np.sin(t * k) * 9.81 for k in range(1, 7)]).astype(np.float32)
    img = render_plot(window, 320, 200, rate_hz=51.0, names=["ax", "ay", "az", "gx", "gy", "gz"])
    assert img.shape == (200, 320, 3) and img.dtype == np.uint8
    assert (img < 200).any() and (img == 255).any()        # lines drawn on white
    no_units = render_plot(window, 320, 200)
    assert not np.array_equal(img, no_units)                # axis labels (units, seconds) are drawn
    one = render_plot(np.r_[np.arange(49.0), np.nan][None, :], 100, 60)
    assert one.shape == (60, 100, 3) and (one < 200).any()
    # the units, as the y axes' labels left of the tick labels: for HAR's channel names too (the imu sensor's), which
    # were drawn without them (the unit was found by the first letter alone)
    har = render_plot(window, 320, 200, rate_hz=51.0, names=["x_acc", "y_acc", "z_acc", "x_gyro", "y_gyro", "z_gyro"])
    unnamed = render_plot(window, 320, 200, rate_hz=51.0, names=[f"c{i}" for i in range(6)])
    assert (har[:, :16] < 128).sum() > 50 and (unnamed[:, :16] < 128).sum() == 0
    assert [unit_of(n) for n in ("gx", "x_acc", "angular_velocity.z", "ch0")] == ["rad/s", "m/s²", "rad/s", ""]



def _line_rows(img: np.ndarray, top: int, bottom: int) -> int:
    """Rows of img[top:bottom] (left of the legend) where a channel's coloured line is drawn."""
    band = img[top:bottom, 45:150].astype(int)
    coloured = (band.max(axis=2) - band.min(axis=2)) > 80
    return int(coloured.any(axis=1).sum())


def test_a_still_imu_is_drawn_flat_beside_a_moving_one():
    """Found answering the imu graph's questions on a phone: the y axes were autoscaled, so a phone lying still (gyro
    noise of +-0.1 rad/s) filled its rad/s panel as a walk (+-3 rad/s) does, and the person told them apart only by
    the 7 px tick labels. An axis spans at least MIN_SPAN of its unit: still looks still, and the legend has room
    above the lines (it was drawn over them)."""
    rng = np.random.default_rng(0)
    names = ["x_acc", "y_acc", "z_acc", "x_gyro", "y_gyro", "z_gyro"]
    still = np.r_[np.array([[-2.0], [-2.0], [-9.5]]) + rng.normal(0, 0.05, (3, 50)), rng.normal(0, 0.05, (3, 50))]
    t = np.linspace(0, 2 * np.pi, 50)
    walk = np.r_[still[:3] + 6 * np.sin(3 * t), np.stack([2.5 * np.sin(2 * t + k) for k in range(3)])]
    quiet = render_plot(still, 320, 200, rate_hz=51.0, names=names)
    moving = render_plot(walk, 320, 200, rate_hz=51.0, names=names)
    gyro_still, gyro_moving = _line_rows(quiet, 100, 170), _line_rows(moving, 100, 170)
    assert gyro_still <= 12 and gyro_moving >= 35, (gyro_still, gyro_moving)
    # the legend (upper right) sits above the lines: nothing coloured under its labels' row, but the handles
    legend_row = moving[95:104, 200:316].astype(int)
    assert ((legend_row.max(axis=2) - legend_row.min(axis=2)) > 80).sum() < 60

def _grouped() -> LabelRequests:
    """As the TinyRCE labeler asks: groups of 2, a lone sample dropped after 10 s, one open question."""
    policy = AskPolicy(0.5, "l2", min_size=2, max_wait_s=10.0, max_open=1, recent_s=0.0)
    return LabelRequests(ttl_s=600, policy=policy)


def test_a_question_asked_survives_a_restart_after_a_lone_sample_was_dropped(tmp_path):
    """A lone sample's group dropped by the policy left its request behind in the state, and loading that
    state refused every request: the question the phone showed was lost at each restart of the labeler
    (the phone's answer to it was then refused: 'the robot does not know this question')."""
    r = _grouped()
    _, a = r.offer(vec(1.0), 0.0, stamp_ns=1)
    r.offer(vec(1.1), 1.0, stamp_ns=2)                     # a group of 2: asked
    assert [q.request_id for q in r.ready(1.0)] == [a.request_id]
    r.offer(vec(5.0), 2.0, stamp_ns=3)                     # a lone sample: its group forms
    r.ready(20.0)                                          # waited 10 s alone: dropped by the policy
    save_states(tmp_path / "labeler.state", {"requests": r.state_dict()})
    again = _grouped()
    again.load_state_dict(load_states(tmp_path / "labeler.state")["requests"], F)
    assert list(again.pending) == [a.request_id]


def test_a_state_that_kept_a_dropped_groups_request_still_restores_the_question_asked():
    """States written before the fix hold such requests: the question asked is restored, the dropped one not."""
    r = _grouped()
    _, a = r.offer(vec(1.0), 0.0, stamp_ns=1)
    r.offer(vec(1.1), 1.0, stamp_ns=2)
    r.ready(1.0)
    _, lone = r.offer(vec(5.0), 2.0, stamp_ns=3)
    saved = r.state_dict()
    orphan = dict(next(q for q in saved["meta"]["requests"] if q["id"] == lone.request_id), gid=999)
    saved["meta"]["requests"].append(orphan)               # as a 2026-12-02 build saved it
    again = _grouped()
    again.load_state_dict(saved, F)
    assert list(again.pending) == [a.request_id] and 999 not in again._requests
    asked_orphan = copy.deepcopy(saved)
    next(q for q in asked_orphan["meta"]["requests"] if q["id"] == a.request_id)["gid"] = 998
    with pytest.raises(StateError, match="has no question group"):          # an asked one is still refused
        _grouped().load_state_dict(asked_orphan, F)
