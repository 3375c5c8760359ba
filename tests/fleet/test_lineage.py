"""A robot whose state was wiped (new SD card, reflashed) rejoins the fleet: a new lineage of that device."""

from __future__ import annotations

import numpy as np
import pytest

from tinycl_nodes.core.federated import FleetMember, Moments

from .conftest import XH


def test_a_member_without_state_takes_a_global_holding_its_earlier_lineage_in() -> None:
    """The wiped robot's bridge (no reports held) got the retained global head whose provenance names its old v63:
    'contains report v63 of dev1, which this device no longer holds', refused every round until its own report was in
    one. That learning is the fleet's now: taken in as the others'; its own new learning is added once."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 4)), np.repeat([0, 1, 2], 10)
    glob = Moments.of_samples(X[:20], y[:20]).snapshot("StreamingLDA", XH, 5)     # the fleet's, incl. old lineage
    mine = Moments.of_samples(X[20:], y[20:])
    local = mine.snapshot("StreamingLDA", XH, 1, device="dev1")
    m = FleetMember("dev1")
    add = m.delta(local, glob, 63)
    assert add.counts.tolist() == [10, 10]                                        # the fleet's, nothing of its own
    after = (Moments.of(local) + Moments.of(add)).snapshot("StreamingLDA", XH, 2, device="dev1")  # learner added it
    assert m.report(after, 2).counts.tolist() == [10], "its report is only what it learned itself"
    with pytest.raises(Exception, match="no longer holds"):
        m.delta(local, glob, 1)                     # an older report it does not hold: still refused
