"""Exact mode when a learner's head is still on its way to the bridge while the bridge takes a round in.

Seen once under load (load average ~4.5) in test_lineage.py: a round expected to hold exactly 700 samples, then dev2
reported the fleet's samples as its own and the rounds ran on to 1,300. The learner had published a head before it
took round 2's addition in; the bridge got it after it had handed that addition over, reported its own learning from
it (short by the addition: negative in the other device's classes, sent clipped at 0, kept unclipped as its share in
the next global head), and the next round's addition brought the other device's samples a second time.

Here the interleaving is forced: the real learner and the real bridge on two local buses, the test carrying each
message across (the learner's heads held back as the bus held them), the real aggregator (not connected) closing the
rounds, its global heads given to the bridge's MQTT handler."""

from __future__ import annotations

import numpy as np

from tinycl_nodes.core.federated import Moments
from tinycl_nodes.fleet.aggregator import Aggregator, AggregatorParams
from tinycl_nodes.fleet.broker import global_topic
from tinycl_nodes.fleet.payload import encode

from .conftest import FLEET
from .robot import CENTERS, F, Pair

def test_a_head_published_before_a_round_was_taken_in_is_not_reported(fleet_setup, tmp_path, xhash) -> None:
    """dev1 (its reports made here) learns 579 then 600 samples of 0 and 1, dev2 (the real pair) 100 of 2 and 3.
    dev2's head published after round 1 reaches its bridge only after round 2's addition was handed over, and a
    round closes on the report the bridge makes of it. Old code: that report was 100 samples of 2, 3 and, kept
    unclipped, -21 of 0, 1; round 3 then handed dev2 dev1's last 21 samples again: dev2 held 621 of 0, 1, and
    reported them as its own from then on. Now that head is not reported (its round is older than the addition
    handed); the next head holds it and is: every round holds exactly 700 samples, dev2 too."""
    agg = Aggregator(AggregatorParams(fleet=FLEET, kind="StreamingLDA", extractor_hash=xhash, n_features=F,
                                      broker_dir=fleet_setup.directory, state_dir=str(tmp_path / "agg"),
                                      min_devices=2, min_interval_s=0), start=False)
    pair = Pair(fleet_setup, tmp_path, xhash)
    rng = np.random.default_rng(1)
    X = (CENTERS[np.repeat([0, 1], 300)] + rng.normal(0, 0.3, (600, F))).astype(np.float32)
    y = np.repeat([0, 1], 300)
    names = {0: "0", 1: "1"}

    def dev1(n: int, version: int) -> None:
        """dev1's report of its first ``n`` samples (0 and 1 alternating), accepted by the aggregator."""
        idx = np.r_[np.arange(0, 300), np.arange(300, 600)].reshape(2, 300).T.ravel()[:n]
        snap = Moments.of_samples(X[idx], y[idx], names).snapshot("StreamingLDA", xhash, version, n, "dev1")
        assert agg.accept("dev1", encode(snap, FLEET, "dev1", agg.round))

    def round_to_dev2() -> int:
        """The aggregator closes a round; dev2's bridge gets its global head (then hands any addition over)."""
        assert agg.tick()
        pair.bridge._on_mqtt(global_topic(FLEET), agg.link._pending[global_topic(FLEET)].payload)
        pair.bridge.poll()
        return int(agg.global_head.counts.sum())

    try:
        pair.teach([2, 3], 100, seed=2)                      # head v1
        pair.deliver(1)
        assert agg.accept("dev2", pair.offered())
        dev1(579, 6)
        assert round_to_dev2() == 679                        # round 1: dev2 adds dev1's 579, publishes v2 (held)
        assert [m.version for m in pair.heads] == [1, 2]
        dev1(600, 7)
        assert round_to_dev2() == 700                        # round 2: its addition computed from v1, the latest seen
        pair.deliver(2)                                      # v2 (round 1 in, not round 2) arrives only now
        agg.accept("dev2", pair.offered())                   # a round closes on what the bridge offers now
        if agg.fresh:
            assert round_to_dev2() == 700
        pair.deliver(3)                                      # the head that took round 2 in
        agg.accept("dev2", pair.offered())
        for _ in range(3):                                   # the rounds that follow bring nothing new
            if not agg.fresh:
                break
            assert round_to_dev2() == 700
            pair.deliver(pair.heads[-1].version)
            agg.accept("dev2", pair.offered())
        assert pair.counts() == {0: 300, 1: 300, 2: 50, 3: 50}, "dev2 holds every sample of the fleet once"
        own = {int(c): int(n) for c, n in zip(agg.heads["dev2"].class_ids, agg.heads["dev2"].counts)}
        assert own == {2: 50, 3: 50}, f"dev2 reports only its own learning: {own}"
    finally:
        pair.close()
        agg.close()
