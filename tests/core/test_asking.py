"""The question policy (core/asking.py), exact undo (core/undo.py, NCM/SLDA unlearn_valid) and the one
class-name rule (core/names.py)."""

import copy

import numpy as np
import pytest

from tinycl_nodes.core import state as st
from tinycl_nodes.core.asking import AskPolicy
from tinycl_nodes.core.errors import InputError, StateError
from tinycl_nodes.core.names import check_class_name
from tinycl_nodes.core.ncm import StreamingNCM
from tinycl_nodes.core.rce import TinyRCE
from tinycl_nodes.core.slda import StreamingLDA
from tinycl_nodes.core.undo import PassedOn, ReplayUndo

F = 4


def v(*xs: float) -> np.ndarray:
    return np.array(list(xs) + [0.0] * (F - len(xs)), np.float32)


def test_alike_samples_form_one_question_asked_when_big_enough():
    p = AskPolicy(1.0, "l2", min_size=3, max_open=5, max_per_hour=10)
    assert p.offer(v(0), 1.5, 0.0)[0] == "new"
    assert p.due(1.0) == []                                   # a group of one: not yet
    assert p.offer(v(0.4), 1.2, 1.0)[0] == "joined"
    assert p.offer(v(5), 1.1, 2.0)[0] == "new"                 # far away: another group
    assert p.offer(v(0.2), 1.3, 3.0)[0] == "joined"
    asked = p.due(3.0)
    assert len(asked) == 1 and asked[0].seen == 3 and len(asked[0].samples) == 3
    assert p.due(4.0) == []                                    # asked once
    assert p.offer(v(0.1), 1.0, 5.0)[0] == "joined"            # still joins the open question
    g = p.resolve(asked[0].gid, 6.0, label=7)
    assert len(g.samples) == 4
    how, r = p.offer(v(0.3), 1.0, 7.0)                         # alike to what was just answered
    assert how == "recent" and r.extra["label"] == 7 and p.due(7.0) == []
    p.forget_answer(g.gid, None)                               # withdrawn: alike samples are new again
    assert p.offer(v(0.3), 1.0, 8.0)[0] == "new"


def test_an_answer_reaches_from_each_answered_sample_as_far_as_recent_radius():
    p = AskPolicy(1.0, "l2", min_size=2, max_open=1, max_per_hour=10, recent_radius=1.5)
    p.offer(v(0), 1.5, 0.0)
    p.offer(v(0.9), 1.5, 1.0)                                  # centre 0.45: one group spread along x
    g = p.due(1.0)[0]
    p.resolve(g.gid, 2.0, label=3)
    how, r = p.offer(v(2.3), 1.0, 3.0)                         # 1.85 from the centre, 1.4 from a sample
    assert how == "recent" and r.extra["label"] == 3
    assert p.offer(v(2.5), 1.0, 4.0)[0] == "new"               # 1.6 from the nearest answered sample
    q = AskPolicy(1.0, "l2", min_size=2, max_open=1, max_per_hour=10)   # reach = the group radius
    q.offer(v(0), 1.5, 0.0)
    q.offer(v(0.9), 1.5, 1.0)
    q.resolve(q.due(1.0)[0].gid, 2.0, label=3)
    assert q.offer(v(2.3), 1.0, 3.0)[0] == "new"
    with pytest.raises(InputError, match="recent_radius=-1"):
        AskPolicy(1.0, recent_radius=-1.0)


def test_with_recent_agree_an_answer_reaches_only_samples_the_learner_guesses_as_its_class():
    p = AskPolicy(1.0, "l2", min_size=1, max_open=1, max_per_hour=10, recent_agree=True)
    p.offer(v(0), 1.5, 0.0, guess=3)
    p.resolve(p.due(0.0)[0].gid, 1.0, label=3)
    how, r = p.offer(v(0.5), 1.0, 2.0, guess=3)                # the learner agrees: learned with the answer
    assert how == "recent" and r.extra["label"] == 3
    assert p.offer(v(0.5), 1.0, 3.0, guess=4)[0] == "new"      # it guesses another class: asked about
    assert p.offer(v(0.4), 1.0, 4.0)[0] == "recent"            # no guess given: the answer reaches it
    q = AskPolicy(1.0, "l2", min_size=1, max_open=1, max_per_hour=10)   # default: the guess is not needed
    q.offer(v(0), 1.5, 0.0, guess=3)
    q.resolve(q.due(0.0)[0].gid, 1.0, label=3)
    assert q.offer(v(0.5), 1.0, 2.0, guess=4)[0] == "recent"


def test_most_informative_first_and_the_budget_counts_distinct_groups():
    p = AskPolicy(0.5, "l1", min_size=2, max_open=1, max_per_hour=2)
    for k in range(2):
        p.offer(v(0), 1.0, 0.0)                                # small group, low novelty
    for k in range(4):
        p.offer(v(9), 3.0, 0.0)                                # bigger, more novel
    first = p.due(0.0)
    assert [g.seen for g in first] == [4]                      # max_open 1: the most informative
    assert p.due(1.0) == []                                    # one open at a time
    p.resolve(first[0].gid, 2.0, 1)
    second = p.due(2.0)
    assert [g.seen for g in second] == [2]
    p.resolve(second[0].gid, 3.0, 2)
    p.offer(v(40), 3.0, 5.0)
    p.offer(v(40), 3.0, 5.0)
    assert p.due(6.0) == [] and p.budget_left(6.0) == 0       # 2 an hour: spent, the group waits
    assert [g.seen for g in p.due(3601.0)] == [2]              # an hour later


def test_one_offs_are_dropped_unasked_and_state_round_trips():
    p = AskPolicy(1.0, "l2", min_size=2, max_wait_s=10.0)
    p.offer(v(0), 1.0, 0.0)
    p.offer(v(5), 1.0, 0.0)
    p.offer(v(5.1), 1.0, 1.0)
    meta, arrays = p.state()
    q = AskPolicy(1.0, "l2", min_size=2, max_wait_s=10.0)
    q.load(copy.deepcopy(meta), dict(arrays), F)
    assert [g.seen for g in q.groups.values()] == [1, 2]
    assert [g.seen for g in q.due(11.0)] == [2] and len(q.groups) == 1 and q.counters["dropped"] == 1
    bad = dict(arrays)
    bad[f"group{next(iter(p.groups))}"] = np.zeros((1, F + 1), np.float32)
    before = (dict(q.groups), q.next_gid)
    with pytest.raises(StateError):
        q.load(meta, bad, F)
    assert (dict(q.groups), q.next_gid) == before


def test_lone_samples_are_asked_most_novel_first_within_their_share():
    p = AskPolicy(0.5, "l2", min_size=3, max_wait_s=10.0, max_open=5, max_per_hour=10, lone_share=0.25)
    for k, nov in enumerate([1.0, 3.0, 2.0, 0.5]):
        p.offer(v(10.0 * k), nov, 0.0)                         # four lone samples, none alike
    assert p.due(5.0) == []                                    # still waiting for company
    asked = p.due(10.0)
    assert [g.novelty_sum for g in asked] == [3.0]             # 0.25 × 4 offered: one, the most novel
    assert p.counters["dropped"] == 3 and not [g for g in p.groups.values() if g.asked is None]
    for k in range(4):
        p.offer(v(100.0 + 10.0 * k), 1.0, 20.0)
    assert len(p.due(30.0)) == 1                               # 8 offered: 2 questions in all
    q = AskPolicy(0.5, "l2", min_size=3, max_wait_s=10.0)      # no share: one-offs are never asked
    q.offer(v(0), 4.0, 0.0)
    assert q.due(10.0) == [] and q.counters["dropped"] == 1


def test_times_taken_before_the_clock_was_set_back_are_taken_as_now():
    """A labeler's clock set back an hour across a restart: its budget, a forming question and a recent answer were
    taken at times an hour ahead. Taken as is, they held the question, the budget spent and the answer's reach for an
    hour more; ``not_after`` puts them at the new now."""
    hour, t = 3600.0, 10 * 3600.0
    p = AskPolicy(1.0, "l2", min_size=1, max_open=2, max_per_hour=1, recent_s=60.0)
    p.offer(v(0), 1.0, t)
    (asked,) = p.due(t)                               # the hour's one question
    p.resolve(asked.gid, t, label=3)                  # answered: it reaches alike samples for 60 s
    p.offer(v(5), 1.0, t)                             # forming: no budget left
    back = copy.deepcopy(p)
    back.not_after(t - hour)                          # restarted with the clock an hour behind
    now = t - hour + 61
    for policy, fixed in ((back, True), (p, False)):  # p: its times as saved, read on the clock set back
        assert (len(policy.expire(now, ttl_s=60.0)) == 1) is fixed
        assert (policy.offer(v(0.1), 1.0, now)[0] == "new") is fixed     # else "recent": the answer still reaches
        assert (policy.budget_left(t - hour + 3601) == 1) is fixed       # the question left the sliding hour


def test_bad_settings_are_refused():
    with pytest.raises(InputError, match="metric"):
        AskPolicy(1.0, "cosine")
    with pytest.raises(InputError, match="min_size=0"):
        AskPolicy(1.0, min_size=0)
    with pytest.raises(InputError, match="lone_share=1.5"):
        AskPolicy(1.0, lone_share=1.5)


@pytest.mark.parametrize("Head", [StreamingNCM, StreamingLDA])
def test_unlearn_restores_the_head_without_the_sample(Head):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, F)), rng.integers(0, 3, 40)
    a, b = Head(F), Head(F)
    for x, c in zip(X, y):
        a.learn_one(x, int(c))
    for x, c in zip(X[:-1], y[:-1]):
        b.learn_one(x, int(c))
    a.unlearn_valid(X[-1].astype(np.float64), int(y[-1]))
    T = rng.normal(size=(10, F))
    assert np.allclose([a.predict_proba(t) for t in T], [b.predict_proba(t) for t in T], atol=1e-6)
    assert a.sample_counts() == b.sample_counts()
    a.learn_one(v(9, 9), 5)
    assert 5 in a.classes
    a.unlearn_valid(v(9, 9).astype(np.float64), 5)             # its only sample: the class is gone
    assert 5 not in a.classes and [a.predict_one(t) for t in T] == [b.predict_one(t) for t in T]
    with pytest.raises(InputError, match="no such class"):
        a.unlearn_valid(v(1), 42)


def test_lda_refuses_to_take_back_a_sample_it_never_learned():
    """One far from its class's mean made the covariance indefinite: 29 of 200 predictions changed (F = 16). The head
    is unchanged, and takes back a sample it learned as before."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, F)), rng.integers(0, 3, 40)
    a, b = StreamingLDA(F), StreamingLDA(F)
    for x, c in zip(X, y):
        a.learn_one(x, int(c))
        b.learn_one(x, int(c))
    with pytest.raises(InputError, match=f"a sample of class {int(y[0])} that was never learned"):
        a.unlearn_valid(np.full(F, 10.0), int(y[0]))
    T = rng.normal(size=(200, F))
    assert [a.predict_one(t) for t in T] == [b.predict_one(t) for t in T] and a.sample_counts() == b.sample_counts()
    assert all(np.array_equal(u, w) for u, w in zip(a.state_dict()["arrays"].values(),
                                                    b.state_dict()["arrays"].values()))
    a.unlearn_valid(X[-1], int(y[-1]))
    assert a.sample_counts()[int(y[-1])] == b.sample_counts()[int(y[-1])] - 1


def _rce_through_undo(seed: int, n: int, answer: tuple[int, ...]):
    """A TinyRCE that learned ``n`` random samples through a ReplayUndo, those at ``answer`` tagged."""
    rng = np.random.default_rng(seed)
    X, y = rng.normal(0, 3, (n, F)).astype(np.float32), rng.integers(0, 3, n)
    rce = TinyRCE(F, r_max=4.0)
    undo = ReplayUndo(rce, max_samples=30)
    for i, (x, c) in enumerate(zip(X, y)):
        undo.learn(x, int(c), "answer" if i in answer else "")
    return rng, X, y, rce, undo


def test_replay_undo_is_exact_for_rce():
    rng, X, y, rce, undo = _rce_through_undo(1, 60, (40, 41))
    ref = TinyRCE(F, r_max=4.0)
    for i, (x, c) in enumerate(zip(X, y)):
        if i not in (40, 41):
            ref.learn_valid(x, int(c))
    undo.relabel("answer", None)
    T = rng.normal(0, 3, (50, F)).astype(np.float32)
    assert np.array_equal(rce.classify(T)[0], ref.classify(T)[0]) and rce.n_prototypes == ref.n_prototypes
    with pytest.raises(InputError, match="cannot be changed"):
        undo.relabel("answer", 1)


def test_replay_undo_survives_its_state_and_refuses_a_log_of_another_head():
    rng, _, _, rce, undo = _rce_through_undo(2, 50, (45,))
    saved, saved_rce = st.from_bytes(st.to_bytes(undo.state_dict())), rce.state_dict()
    again = TinyRCE(F, r_max=4.0)                          # a restart: the head from its state, the log from its own
    again.load_state_dict(saved_rce)
    redo = ReplayUndo(again, max_samples=30)
    redo.load_state_dict(saved)
    redo.relabel("answer", None)
    undo.relabel("answer", None)
    T = rng.normal(0, 3, (50, F)).astype(np.float32)
    assert np.array_equal(again.classify(T)[0], rce.classify(T)[0]) and again.n_prototypes == rce.n_prototypes
    other = ReplayUndo(TinyRCE(F, r_max=4.0))              # a head the log does not lead to: refused, unchanged
    with pytest.raises(StateError, match="does not lead to the saved head"):
        other.load_state_dict(saved)
    assert other.log == []


@pytest.mark.parametrize("name, ok", [("  Tea   cup ", "Tea cup"), ("café", "café"), ("a\u200db", None),
                                      ("soft\u00adhyphen", None), ("c1\x9bcontrol", None), ("bell\x07", None),
                                      ("rtl\u202eoverride", None), ("", None), ("x" * 65, None),
                                      ("next\x85line", None), ("unit\x1fsep", None), ("line\u2028sep", None),
                                      ("tab\tand\nnewline", "tab and newline")])
def test_one_class_name_rule(name, ok):
    if ok is None:
        with pytest.raises(InputError):
            check_class_name(name)
    else:
        assert check_class_name(name) == ok


def test_a_withdrawn_answer_takes_back_what_its_prototypes_labelled():
    """Samples the RCE labelled by an answer's prototype are re-decided after the correction: those of the old class
    that the corrected RCE leaves unknown or labels otherwise come back as revisions; the others stay."""
    rce = TinyRCE(F, r_max=1.0)
    undo = ReplayUndo(rce, max_samples=30)
    undo.learn(v(0), 0)                          # class 0 from a label
    undo.learn(v(5), 1, "answer")                # class 1 from a person's answer
    passed = PassedOn(F, max_samples=4)

    def decide(x):
        d = rce.decide_valid(x)
        return (None, 0.0) if d.wants_label else (int(d.label), 1.0 - d.novelty)

    for x in (v(0.2), v(5.2), v(4.9), v(0.1)):
        label, conf = decide(x)
        passed.add(x, int(x[0] * 10), label, conf)
    assert [e[2] for e in passed.log] == [0, 1, 1, 0]
    undo.relabel("answer", None)                              # withdrawn: the class-1 prototype is gone
    revised = passed.revise(1, decide)
    assert [(r.stamp_ns, r.label, r.new_label) for r in revised] == [(52, 1, None), (49, 1, None)]
    assert all(r.confidence > 0.5 for r in revised)           # as they were passed on
    assert [e[2] for e in passed.log] == [0, 0]                # what the answer labelled is no longer kept
    assert passed.revise(0, decide) == []                      # class 0's came from a label: unchanged

    restored = PassedOn(F, max_samples=4)
    restored.load_state_dict(passed.state_dict())
    assert [(e[1], e[2]) for e in restored.log] == [(2, 0), (1, 0)]
    for i in range(6):
        passed.add(v(i), i, 0, 1.0)
    assert len(passed.log) == 4 and passed.log[0][1] == 2      # the oldest go first
    with pytest.raises(StateError):
        restored.load_state_dict({**passed.state_dict(), "arrays": {"X": np.zeros((1, F), np.float32)}})
