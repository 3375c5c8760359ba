"""DDM (Gama et al., 2004): fires on an abrupt error-rate change, stays quiet on a stationary one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinycl_nodes.core.drift import DDM
from tinycl_nodes.core.errors import InputError, StateError


def feed(ddm: DDM, errors) -> list[str]:
    return [ddm.update(bool(e)) for e in errors]


def test_error_free_stream_is_not_a_drift():
    assert set(feed(DDM(), [False] * 500)) == {"none"}


def test_nothing_is_decided_before_min_samples():
    assert set(feed(DDM(min_samples=50), [True] * 10 + [False] * 30 + [True] * 9)) == {"none"}


def test_stationary_periodic_errors_then_abrupt_change():
    ddm = DDM()
    stationary = feed(ddm, [i % 10 == 9 for i in range(2000)])     # exactly 10% errors
    assert set(stationary) == {"none"}
    changed = feed(ddm, [i % 2 == 1 for i in range(200)])          # now 50%
    assert "drift" in changed
    first_drift = changed.index("drift")
    assert first_drift < 100
    assert "warning" in changed[:first_drift]                      # a warning came first
    assert ddm.n < 200 and ddm.n_drifts == 1                       # restarted after the drift


def test_seeded_bernoulli_streams():
    """DDM is known to raise some false alarms; abrupt changes must be caught every time."""
    false_alarms = sum("drift" in feed(DDM(), np.random.default_rng(s).random(1000) < 0.2)
                       for s in range(20))
    assert false_alarms <= 8
    for s in range(20):
        rng = np.random.default_rng(100 + s)
        out = feed(DDM(), np.concatenate([rng.random(1000) < 0.2, rng.random(250) < 0.7]))
        assert "drift" in out[1000:]


def test_state_round_trips_through_json():
    rng = np.random.default_rng(0)
    a = DDM()
    feed(a, rng.random(400) < 0.2)
    b = DDM()
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.state_dict() == a.state_dict()
    tail = np.concatenate([rng.random(100) < 0.2, rng.random(200) < 0.8])
    assert feed(a, tail) == feed(b, tail)
    fresh = DDM()                                  # p_min = inf is stored as null and restored
    restored = DDM()
    restored.load_state_dict(json.loads(json.dumps(fresh.state_dict())))
    assert restored.p_min == float("inf") and restored.state_dict() == fresh.state_dict()


@pytest.mark.parametrize("bad", [
    None, [], {"n": 5}, {"n": 3, "n_errors": 4, "n_drifts": 0, "p_min": None, "s_min": None,
                         "in_warning": False},
    {"n": 3, "n_errors": 1, "n_drifts": 0, "p_min": 0.1, "s_min": None, "in_warning": False},
    {"n": 3, "n_errors": 1, "n_drifts": 0, "p_min": 2.0, "s_min": 0.1, "in_warning": False},
    {"n": -1, "n_errors": 0, "n_drifts": 0, "p_min": None, "s_min": None, "in_warning": False},
    {"n": 3, "n_errors": 1, "n_drifts": 0, "p_min": None, "s_min": None, "in_warning": "no"},
])
def test_bad_state_raises_and_changes_nothing(bad):
    ddm = DDM()
    feed(ddm, [i % 5 == 0 for i in range(100)])
    before = ddm.state_dict()
    with pytest.raises(StateError):
        ddm.load_state_dict(bad)
    assert ddm.state_dict() == before


@pytest.mark.parametrize("kwargs", [{"min_samples": 0}, {"min_samples": 2.5},
                                    {"warning_level": 0}, {"drift_level": -1},
                                    {"warning_level": 3.0, "drift_level": 2.0}])
def test_bad_parameters(kwargs):
    with pytest.raises(InputError):
        DDM(**kwargs)
