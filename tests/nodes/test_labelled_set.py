"""The learner's kept labelled samples reach the latched topic from a timer, not from the message thread."""

from __future__ import annotations

import numpy as np

from tinycl_nodes.bus import create_bus
from tinycl_nodes.bus.qos import QosProfile
from tinycl_nodes.interfaces import as_sequence, ns_to_time
from tinycl_nodes.nodes.labelled_set import PUBLISH_PER_TICK, LabelledSet

from .conftest import spin_until


def test_kept_samples_are_latched_by_the_timer_a_few_at_a_time_in_order(domain):
    """25 samples kept in one go (what a learner's wait releases): add() publishes none of them; each timer tick
    latches at most PUBLISH_PER_TICK, the oldest first, until a late reader has all 25 in order. (Before, every
    add() published on the spot: half of the burst that delayed the first stream samples by 40-80 ms.)"""
    keeper = create_bus("keeper", backend="dds", dds_config="loopback", domain=domain)
    reader = create_bus("reader", backend="dds", dds_config="loopback", domain=domain)
    LF, Feat = keeper.msg("LabeledFeatures"), keeper.msg("Features")
    Header, Time = keeper.msg("std_msgs/msg/Header"), keeper.msg("builtin_interfaces/msg/Time")
    kept = LabelledSet(8, keep=100)
    try:
        kept.advertise(keeper, "labelled_init")
        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(25, 8)).astype(np.float32), rng.integers(0, 10, 25)
        for i in range(25):
            h = Header(stamp=ns_to_time(10**18 + i, Time), frame_id="")
            kept.add(LF(header=h, features=Feat(header=h, data=as_sequence(X[i], "f"), extractor_hash="x"),
                        label=int(y[i]), confidence=1.0, source=LF.GROUND_TRUTH), X[i], int(y[i]))
        got: list = []
        reader.create_subscription("labelled_init", "LabeledFeatures", got.append,
                                   QosProfile(reliable=True, transient_local=True, depth=100))
        assert spin_until(reader, lambda: reader.count_publishers("labelled_init") > 0, 30)
        assert not spin_until(reader, lambda: len(got) > 0, 1.0)                 # add() published nothing
        counts = []
        for _ in range(3):
            kept.publish_pending()                                               # one timer tick
            spin_until(reader, lambda: len(got) >= min(25, (len(counts) + 1) * PUBLISH_PER_TICK), 10)
            counts.append(len(got))
        assert counts == [PUBLISH_PER_TICK, 2 * PUBLISH_PER_TICK, 25], counts
        assert [m.label for m in got] == y.tolist()
        assert np.allclose(np.array([list(m.features.data) for m in got]), X)
        kept.publish_pending()
        assert not spin_until(reader, lambda: len(got) > 25, 0.5)               # each one latched once
    finally:
        keeper.shutdown()
        reader.shutdown()
