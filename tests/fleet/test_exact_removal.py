"""Exact mode when samples leave the fleet: a device removed (``tinycl aggregate --allow`` without it), or a peer that
un-learned samples (a withdrawn answer). The global head shrinks; every robot's learner must subtract what left, and
every robot's own learning must stay its own, so that the next round sums exactly the remaining samples.

A colleague's FleetMember script found that the bridge's "addition" for such a round is negative: it was clipped to
nothing (a head cannot hold negative counts) yet accounted as handed over, so the robot kept the removed device's
samples and its next report counted them as its own (4 classes instead of 2). Here: the real learner and bridge of
dev2 (:class:`tests.fleet.robot.Pair`), the real aggregator (not connected) closing the rounds, dev1 and dev3 reports
made from known samples, so every statistic a head must hold is computed from the samples themselves."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tinycl_nodes.core.federated import SLDA_KIND, HeadSnapshot, Moments, snapshot_from_head
from tinycl_nodes.fleet.aggregator import Aggregator, AggregatorParams
from tinycl_nodes.fleet.broker import global_topic
from tinycl_nodes.fleet.payload import encode

from .conftest import FLEET
from .robot import F, Pair, samples

pytestmark = pytest.mark.waits      # what make test does with it: pyproject.toml

#: each device's samples: dev1 and dev3 share class 0 (its count falls when dev3 leaves), class 4 is dev3's alone
DEV1, DEV3 = samples([0, 1], 200, seed=11), samples([0, 4], 100, seed=13)
DEV2, DEV2_MORE = samples([2, 3], 100, seed=2), samples([2, 3], 60, seed=5)


def stats(*parts: tuple[np.ndarray, np.ndarray]) -> HeadSnapshot:
    """The streaming-LDA statistics (means, counts, scatter) of the union of ``parts``' samples."""
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return Moments.of_samples(X, y).snapshot(SLDA_KIND, "", 0, len(y))


def counts(snap: HeadSnapshot) -> dict[int, int]:
    return {int(c): int(n) for c, n in zip(snap.class_ids, snap.counts)}


def assert_holds(snap: HeadSnapshot, want: HeadSnapshot, what: str) -> None:
    """``snap`` holds exactly ``want``'s samples: class by class counts, means, and the within-class scatter."""
    assert counts(snap) == counts(want), f"{what}: {counts(snap)}, expected {counts(want)}"
    order = [list(snap.class_ids).index(c) for c in want.class_ids]
    np.testing.assert_allclose(snap.weights[order], want.weights, atol=1e-4, err_msg=f"{what}: class means")
    np.testing.assert_allclose(snap.shared, want.shared, atol=2e-3, err_msg=f"{what}: scatter")


def test_a_removed_device_and_a_peers_unlearning_leave_every_head_and_the_sums_stay_exact(fleet_setup, tmp_path,
                                                                                        xhash) -> None:
    """dev1 learns 200 samples of 0 and 1, dev3 100 of 0 and 4, dev2 (the real pair) 100 of 2 and 3; round 1 holds
    all 400. The aggregator is restarted with --allow dev1,dev2: round 2 must leave dev3's 100 samples out of dev2's
    head (class 0 back to dev1's 100, class 4 gone), dev2's next report must hold only its own 160 samples, and round 3
    exactly dev1's and dev2's. Then dev1 un-learns its last 20 samples: dev2's head loses exactly those. Old code:
    round 2's addition (negative) reached no learner and was accounted as taken in; dev2 kept dev3's samples and
    reported them as its own, so every later round counted them again."""
    agg_dir = tmp_path / "agg"
    pair = Pair(fleet_setup, tmp_path, xhash)
    box: dict[str, Any] = {}

    def aggregator(allow: list[str] | None) -> Aggregator:
        return Aggregator(AggregatorParams(fleet=FLEET, kind="StreamingLDA", extractor_hash=xhash, n_features=F,
                                           broker_dir=fleet_setup.directory, state_dir=str(agg_dir), min_devices=2,
                                           min_interval_s=0, allowed_devices=allow), start=False)

    def report(device: str, part: tuple[np.ndarray, np.ndarray], version: int) -> None:
        """``device``'s report of its own learning ``part``, accepted by the aggregator."""
        snap = Moments.of_samples(*part).snapshot(SLDA_KIND, xhash, version, len(part[1]), device)
        assert box["agg"].accept(device, encode(snap, FLEET, device, box["agg"].round))

    def round_to_dev2() -> HeadSnapshot:
        """The aggregator closes a round; dev2's bridge takes it (hands the learner what changed); the learner's head
        after it reaches the bridge, which offers its report, accepted by the aggregator."""
        agg = box["agg"]
        assert agg.tick(), "a round is due"
        pair.bridge._on_mqtt(global_topic(FLEET), agg.link._pending[global_topic(FLEET)].payload)
        pair.bridge.poll()
        pair.deliver(pair.heads[-1].version)
        agg.accept("dev2", pair.offered())
        return agg.global_head

    def dev2_head() -> HeadSnapshot:
        return snapshot_from_head(pair.learner.head)

    box["agg"] = aggregator(None)
    try:
        pair.teach([2, 3], 100, seed=2)
        pair.deliver(1)
        assert box["agg"].accept("dev2", pair.offered())
        report("dev1", DEV1, 1)
        report("dev3", DEV3, 1)
        assert_holds(round_to_dev2(), stats(DEV1, DEV2, DEV3), "round 1")
        assert_holds(dev2_head(), stats(DEV1, DEV2, DEV3), "dev2 after round 1")
        assert not box["agg"].fresh, "dev2 took round 1 in and learned nothing: no new round"

        box["agg"].close()                                       # the operator removes dev3
        box["agg"] = aggregator(["dev1", "dev2"])
        assert box["agg"].removed == ["dev3"]
        assert_holds(round_to_dev2(), stats(DEV1, DEV2), "round 2, without dev3")
        assert_holds(dev2_head(), stats(DEV1, DEV2), "dev2 after round 2 (dev3's samples subtracted)")

        pair.teach([2, 3], 60, seed=5)                           # dev2 learns on: its report is its own learning only
        pair.deliver(pair.heads[-1].version)
        assert box["agg"].accept("dev2", pair.offered())
        assert_holds(box["agg"].heads["dev2"], stats(DEV2, DEV2_MORE), "dev2's report")
        everyone = stats(DEV1, DEV2, DEV2_MORE)
        assert_holds(round_to_dev2(), everyone, "round 3")
        assert_holds(dev2_head(), everyone, "dev2 after round 3")

        kept = (DEV1[0][:180], DEV1[1][:180])                    # dev1 un-learns its last 20 samples (10 of 0, 10 of 1)
        report("dev1", kept, 2)
        left = stats(kept, DEV2, DEV2_MORE)
        assert_holds(round_to_dev2(), left, "round 4, dev1's unlearning")
        assert_holds(dev2_head(), left, "dev2 after round 4 (dev1's unlearned samples subtracted)")
        assert_holds(box["agg"].heads["dev2"], stats(DEV2, DEV2_MORE), "dev2's report after round 4")
    finally:
        pair.close()
        box["agg"].close()



@pytest.mark.parametrize("labeler", ["first", "last"])
def test_a_class_only_a_removed_device_had_leaves_the_labelers_clusters(fleet_setup, broker, tmp_path, xhash,
                                                                        labeler: str) -> None:
    """Through the real mosquitto and the aggregator process: dev1 runs the real labeler (preset tinycl: TinyNDC's
    loop), learner and bridge, and labels 10 samples each of 0, 1 and 5 then pseudo-labels 40 of 0 and 1; dev3 (learner
    and bridge) learns 50 each of 0, 4 and 5. Round 1 brings class 4 to dev1, and a cluster at its mean to dev1's
    labeler. dev3 is removed (the aggregator restarted with --allow dev1): dev1's head loses class 4 (only dev3 had
    it), keeps 0 and 5 (dev1's own samples), and so must its labeler's clusters. Then dev1 sees 20 samples like
    class 4. A round reaches the labeler before the learner's head that took it in (the labeler merges it) or after
    it (the labeler takes the learner's head): a race, as on a robot; ``first`` (the labeler's subscriptions made
    before the learner's) and ``last`` make each likelier (each took its path in 3 runs of 3 here). Old code: the
    labeler kept class 4's cluster (both), and pseudo-labelled all 20 samples as 4, which the learner learned as
    dev1's own: {0: 30, 1: 30, 5: 10, 4: 20} (``first``); when the replica took a round with the learner's head,
    class 4 got no cluster at all (a run of ``last``: the first wait timed out)."""
    from .robot import Robot
    from .test_lineage import _aggregator, wait_for

    agg_dir, log = tmp_path / "agg", tmp_path / "agg.log"
    agg = _aggregator(fleet_setup, agg_dir, xhash, log)
    dev1 = Robot(fleet_setup, "dev1", tmp_path / "dev1", xhash, preset="tinycl", publish_every=20, labeler=labeler)
    dev3 = Robot(fleet_setup, "dev3", tmp_path / "dev3", xhash, preset="tinycl", publish_every=50)
    labeler = dev1.labeler
    assert labeler is not None
    said: list[int] = []
    dev1.teacher.create_subscription("labeled", dev1.LF, lambda m: said.append(int(m.label)), "reliable")
    try:
        dev1.feed([0, 1, 5], 30, seed=1, labelled=True)
        dev1.feed([0, 1], 40, seed=2, labelled=False)
        dev3.teach([0, 4, 5], 150, seed=3)
        wait_for(lambda: dev1.counts().get(4) == 50 and 4 in labeler.system.clusterer.classes, timeout_s=30)

        agg.terminate()                                     # the operator removes dev3
        agg.wait(10)
        agg = _aggregator(fleet_setup, agg_dir, xhash, log, "--allow", "dev1", "--min-devices", "1")
        wait_for(lambda: 4 not in dev1.counts() and 4 not in labeler.system.head.classes, timeout_s=30)
        assert dev1.counts()[5] == 10 and dev1.counts()[0] > 10, dev1.counts()     # dev1's own samples stay
        clusters = set(labeler.system.clusterer.classes)
        assert 4 not in clusters and {0, 1, 5} <= clusters, f"the labeler's clusters: {sorted(clusters)}"

        said.clear()
        dev1.feed([4], 20, seed=4, labelled=False)
        wait_for(lambda: len(said) == 20, timeout_s=10)
        assert 4 not in said, f"pseudo-labels given to samples like class 4: {said}"
        assert 4 not in dev1.counts() and 4 not in labeler.system.head.classes
    finally:
        dev1.close()
        dev3.close()
        if agg.poll() is None:
            agg.terminate()
            agg.wait(10)
