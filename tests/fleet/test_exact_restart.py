"""Exact mode when the bridge is killed (kill -9) and started again between handing a round's addition to the learner
and the learner's next head.

The bridge accounts an addition as added when it hands it over (``FleetMember.delta``) and saves that; the round it
handed, and the addition itself, were kept for that run only. Restarted, it skipped the round (saved as taken in) and
took the learner's head that lacked it as the latest: the addition was gone if the learner had not got it yet (down,
or the message lost with the killed bridge), the learner's head lacked the fleet's samples, and the bridge reported
that head, keeping its own share short by the addition (negative in the other devices' classes).

The real learner and bridge of dev2 (:class:`tests.fleet.robot.Pair`: the test carries each message, and kills the
bridge as kill -9 does: nothing closed or saved on the way out), the real aggregator (not connected) closing the
rounds, dev1's reports made from known samples: every statistic a head must hold is computed from the samples."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from tinycl_nodes.core.federated import SLDA_KIND, HeadSnapshot, Moments, snapshot_from_head
from tinycl_nodes.fleet.aggregator import Aggregator, AggregatorParams
from tinycl_nodes.fleet.broker import global_topic
from tinycl_nodes.fleet.payload import encode
from tinycl_nodes.storage import file_bytes, load_states, write_atomic

from .conftest import FLEET
from .robot import F, Pair, samples
from .test_exact_removal import assert_holds, stats

DEV1, DEV1_MORE = samples([0, 1], 200, seed=11), samples([0, 1], 300, seed=11)   # the first 200, then 100 more
DEV2, DEV2_MORE = samples([2, 3], 100, seed=2), samples([2, 3], 60, seed=5)


class Fleet:
    """dev2's pair and the aggregator; dev1 only reports."""

    def __init__(self, setup: Any, tmp_path: Any, xhash: str) -> None:
        self.xhash = xhash
        self.agg = Aggregator(AggregatorParams(fleet=FLEET, kind="StreamingLDA", extractor_hash=xhash, n_features=F,
                                               broker_dir=setup.directory, state_dir=str(tmp_path / "agg"),
                                               min_devices=2, min_interval_s=0), start=False)
        self.pair = Pair(setup, tmp_path, xhash)

    def dev1(self, part: tuple[np.ndarray, np.ndarray], version: int) -> None:
        snap = Moments.of_samples(*part).snapshot(SLDA_KIND, self.xhash, version, len(part[1]), "dev1")
        assert self.agg.accept("dev1", encode(snap, FLEET, "dev1", self.agg.round))

    def round_to_dev2(self) -> HeadSnapshot:
        """The aggregator closes a round; dev2's bridge takes it (hands the learner what changed)."""
        assert self.agg.tick(), "a round is due"
        self.pair.bridge._on_mqtt(global_topic(FLEET), self.agg.link._pending[global_topic(FLEET)].payload)
        self.pair.bridge.poll()
        return self.agg.global_head

    def latest_to_bridge(self) -> None:
        """The learner's latest head reaches the bridge, whose report (if any) the aggregator takes."""
        self.pair.deliver(self.pair.heads[-1].version)
        self.agg.accept("dev2", self.pair.offered())

    def first_reports(self) -> None:
        """dev2 learns its 100 samples of 2 and 3 and reports them; dev1 reports its first 200 of 0 and 1."""
        self.pair.teach([2, 3], 100, seed=2)
        self.latest_to_bridge()
        self.dev1(DEV1, 1)

    def restart_bridge(self) -> None:
        self.pair.kill_bridge()
        self.pair.carry = True
        self.pair.start_bridge()
        self.pair.bridge.poll()         # what the restarted bridge hands over at its start

    def reports_its_own_only(self) -> None:
        """dev2's latest head reaches the bridge, which reports exactly dev2's own 100 samples, and keeps every report
        of its own share non-negative."""
        self.latest_to_bridge()
        assert_holds(self.agg.heads["dev2"], stats(DEV2), "dev2's report")
        self.own_shares_never_negative()

    def own_shares_never_negative(self) -> None:
        for v, mom in self.pair.bridge.member.reported.items():
            assert (mom.n > -0.5).all(), f"dev2's report v{v} kept as {dict(zip(mom.keys, mom.n))}"

    def close(self) -> None:
        self.pair.close()
        self.agg.close()


def test_the_addition_lost_with_the_killed_bridge_is_handed_again(fleet_setup, tmp_path, xhash) -> None:
    """Round 1 (dev1's 200 samples + dev2's 100) is handed over, but the bridge is killed before the learner got it.
    Restarted, the bridge hands the same addition again: dev2 holds all 300 samples, reports only its own 100, and
    every later round is exact. Old code: dev2's learner stayed at its own 100 samples (the round was saved as taken
    in, the retained global head skipped), and the restarted bridge kept its report v1 as 100 of 2, 3 and -100 of 0,
    1."""
    fleet = Fleet(fleet_setup, tmp_path, xhash)
    pair = fleet.pair
    try:
        fleet.first_reports()
        pair.carry = False                                   # the learner does not get round 1's addition
        assert_holds(fleet.round_to_dev2(), stats(DEV1, DEV2), "round 1")
        assert pair.counts() == {2: 50, 3: 50}
        fleet.restart_bridge()
        assert_holds(snapshot_from_head(pair.learner.head), stats(DEV1, DEV2), "dev2 after its bridge's restart")
        fleet.latest_to_bridge()
        fleet.own_shares_never_negative()
        assert_holds(fleet.agg.heads["dev2"], stats(DEV2), "dev2's report")
        assert not fleet.agg.fresh, "dev2 took round 1 in and learned nothing: no new round"

        pair.teach([2, 3], 60, seed=5)                       # dev2 learns on: a round of exactly everyone's samples
        fleet.latest_to_bridge()
        assert_holds(fleet.agg.heads["dev2"], stats(DEV2, DEV2_MORE), "dev2's next report")
        everyone = stats(DEV1, DEV2, DEV2_MORE)
        assert_holds(fleet.round_to_dev2(), everyone, "round 2")
        fleet.latest_to_bridge()
        assert_holds(snapshot_from_head(pair.learner.head), everyone, "dev2 after round 2")
        fleet.own_shares_never_negative()
    finally:
        fleet.close()


def test_a_head_without_the_handed_round_is_not_reported_after_a_restart(fleet_setup, tmp_path, xhash) -> None:
    """The learner takes round 1 in, but its head that holds it has not reached the bridge when the bridge is killed;
    restarted, the bridge gets the learner's head before it first (as a latched topic can: the newer head published
    just after the restarted bridge matched), and a round closes whose global head holds dev2's report v1. Now: that
    head is not reported and every head stays exact. Old code: the restarted bridge reported that head as its own
    learning, kept as report v1 with -100 samples of 0 and 1; round 2, which holds report v1, then handed dev2 300
    samples to add where 100 were new: dev2 held 500 of 0 and 1 for dev1's 300 (and a round 3 took 200 out)."""
    fleet = Fleet(fleet_setup, tmp_path, xhash)
    pair = fleet.pair
    try:
        fleet.first_reports()
        assert_holds(fleet.round_to_dev2(), stats(DEV1, DEV2), "round 1")
        assert [m.version for m in pair.heads] == [1, 2]     # v2 holds round 1; the bridge has not seen it
        fleet.restart_bridge()
        assert_holds(snapshot_from_head(pair.learner.head), stats(DEV1, DEV2), "dev2 after round 1 (once)")
        pair.deliver(1)                                      # the head before round 1 reaches the restarted bridge
        pending = pair.bridge.link._pending.get(pair.bridge.out_topic)
        if pending is not None:                              # what the bridge reports of it (old code: its share)
            fleet.agg.accept("dev2", pending.payload)
        fleet.dev1(DEV1_MORE, 2)                             # dev1 learns 100 more: round 2
        everyone = stats(DEV1_MORE, DEV2)
        assert_holds(fleet.round_to_dev2(), everyone, "round 2")
        pair.deliver(2)                                      # the head that holds round 1
        fleet.latest_to_bridge()
        assert_holds(snapshot_from_head(pair.learner.head), everyone, "dev2 after round 2")
        assert_holds(fleet.agg.heads["dev2"], stats(DEV2), "dev2's report")
        assert not fleet.agg.fresh, "dev2 took round 2 in and learned nothing: no new round"
        fleet.own_shares_never_negative()
    finally:
        fleet.close()


def dev1_part(k: int) -> tuple[np.ndarray, np.ndarray]:
    """What dev1 has learned by its report ``k``: 200 samples of 0 and 1, then 20 more before each report."""
    return samples([0, 1], 200 + 20 * (k - 1), seed=11)


def test_the_additions_of_two_rounds_the_learner_missed_are_both_handed_again(fleet_setup, tmp_path, xhash) -> None:
    """Rounds 1 and 2 are handed over while the learner is down; the bridge is killed and started again. It hands
    both again, in order: dev2 holds every sample of dev1's and its own. Old code: the bridge kept (and handed again)
    the latest addition only, round 2's 20 samples: dev2 lacked round 1's 200."""
    fleet = Fleet(fleet_setup, tmp_path, xhash)
    pair = fleet.pair
    try:
        fleet.first_reports()
        pair.carry = False
        assert_holds(fleet.round_to_dev2(), stats(DEV1, DEV2), "round 1")
        fleet.dev1(dev1_part(2), 2)
        assert_holds(fleet.round_to_dev2(), stats(dev1_part(2), DEV2), "round 2")
        assert pair.counts() == {2: 50, 3: 50}
        fleet.restart_bridge()
        assert_holds(snapshot_from_head(pair.learner.head), stats(dev1_part(2), DEV2), "dev2 after the restart")
        fleet.reports_its_own_only()
    finally:
        fleet.close()


def test_a_saved_addition_of_a_round_after_the_last_one_handed_is_one_error_line(fleet_setup, tmp_path, xhash,
                                                                                   caplog) -> None:
    """The additions the bridge saves for a learner that has not taken them in (``handed``, ``handed.<round>``) are
    checked when it starts again: an earlier one named after a round not before the last one handed is refused with
    one line naming it, and the file is moved aside (not a traceback, not an addition handed out of order)."""
    fleet = Fleet(fleet_setup, tmp_path, xhash)
    pair = fleet.pair
    try:
        fleet.first_reports()
        pair.carry = False
        fleet.round_to_dev2()
        fleet.dev1(dev1_part(2), 2)
        fleet.round_to_dev2()
        pair.kill_bridge()
        path = Path(pair.state_dir) / "mqtt_bridge.state"
        states = load_states(path)
        assert sorted(k for k in states if k.startswith("handed")) == ["handed", "handed.1"]
        states["handed.7"] = states.pop("handed.1")
        write_atomic(path, file_bytes(states))
        pair.start_bridge()
        lines = [r.getMessage() for r in caplog.records if "cannot be loaded" in r.getMessage()]
        assert len(lines) == 1 and "the additions handed over are not of rounds before round 2" in lines[0], lines
        assert not path.exists() and list(path.parent.glob("mqtt_bridge.state.bad-*"))
    finally:
        fleet.close()


def test_a_learner_down_for_more_rounds_than_the_topic_keeps_takes_every_round_in(fleet_setup, tmp_path, xhash,
                                                                                  caplog) -> None:
    """dev2's learner is down while 17 rounds close (dev1 learns 20 more samples before each). The bridge hands over
    the first 16, which its ``global_head`` topic keeps for a reader that comes late (``bus.qos.ROUNDS``), and the
    17th waits, said once, for a head that holds them. The learner, reading the topic late, gets the 16 in order and
    takes each in; once its head reaches the bridge the 17th follows: dev2 holds every sample of the fleet. Old code:
    the topic kept the newest addition only, so the learner came back to round 16's 20 samples and lacked 480, and
    the bridge handed round 17 on top."""
    fleet = Fleet(fleet_setup, tmp_path, xhash)
    pair = fleet.pair
    try:
        fleet.first_reports()
        pair.carry = False                                   # the learner is down
        fleet.round_to_dev2()
        for k in range(2, 18):
            fleet.dev1(dev1_part(k), k)
            fleet.round_to_dev2()
        waits = [r.getMessage() for r in caplog.records if "waits" in r.getMessage()]
        assert waits == ["global head round 17 waits: the learner has not taken the last 16 rounds in (rounds 1-16; "
                         "is it running?); taken in once it holds them"], waits
        assert pair.counts() == {2: 50, 3: 50}
        pair.carry = True                                    # the learner is back: it reads the topic late
        pair.bt.create_subscription("global_head", pair.bt.msg("Head"), pair.to_learner.publish, "rounds")
        assert_holds(snapshot_from_head(pair.learner.head), stats(dev1_part(16), DEV2), "dev2 after 16 rounds")
        fleet.latest_to_bridge()                             # its head holds round 16: round 17 is handed now
        pair.bridge.poll()
        assert_holds(snapshot_from_head(pair.learner.head), stats(dev1_part(17), DEV2), "dev2 after 17 rounds")
        fleet.reports_its_own_only()
    finally:
        fleet.close()


class Dev2Processes:
    """dev2 as processes (the learner and bridge nodes on a private DDS domain, the aggregator process, mosquitto; a
    tester node that teaches dev2's learner and reads its heads), dev1 the in-process learner and bridge."""

    def __init__(self, setup: Any, tmp_path: Any, xhash: str) -> None:
        from ..domains import free_domain
        from .robot import Robot
        from .test_lineage import _aggregator
        from tinycl_nodes.bus import create_bus

        self.domain, self.xhash, self.agg_dir = free_domain(), xhash, tmp_path / "agg"
        ns, state = "/dev2/tinycl", tmp_path / "dev2"
        self.learner_args = ("preset:=tinycl", f"state_dir:={state}", "publish_every:=50", "model_prior:=false")
        self.bridge_args = ("fleet:=" + FLEET, "device:=dev2", f"broker_dir:={setup.directory}", f"state_dir:={state}",
                            "min_interval_s:=0.0", "period_s:=0.2", "mqtt_reconnect_min_s:=0.1",
                            "mqtt_reconnect_max_s:=0.5")
        self.remap = (f"__ns:={ns}",)
        self.agg = _aggregator(setup, self.agg_dir, xhash, tmp_path / "agg.log")
        self.bus = create_bus("tester", ns, backend="dds", dds_config="loopback", domain=self.domain)
        self.LF, self.Feat = self.bus.msg("LabeledFeatures"), self.bus.msg("Features")
        self.labeled = self.bus.create_publisher("labeled", self.LF, "reliable")
        self.heads: list = []
        self.bus.create_subscription("head", "Head", self.heads.append, "latched")
        self.dev1 = Robot(setup, "dev1", tmp_path / "dev1", xhash, preset="tinycl", publish_every=200)

    def bridge(self) -> Any:
        from ..nodes.conftest import node
        return node("mqtt_bridge", self.domain, *self.bridge_args, remaps=self.remap)

    def learner(self) -> Any:
        from ..nodes.conftest import node
        return node("learner", self.domain, *self.learner_args, remaps=self.remap)

    def counts(self) -> dict[int, int]:
        """dev2's learner's latest head, class by class."""
        self.bus.spin_once(0.05)
        return {int(c.id): int(c.sample_count) for c in self.heads[-1].classes} if self.heads else {}

    def teach(self, classes: list[int], n: int, seed: int) -> None:
        from .robot import teach_learner
        from .test_lineage import wait_for
        wait_for(lambda: self.bus.spin_once(0.05) or self.labeled.get_subscription_count() > 0, timeout_s=30)
        teach_learner(self.labeled, self.LF, self.Feat, self.xhash, classes, n, seed)

    def first_learning(self, bridge: Any) -> None:
        """dev2's learner learns its 100 samples of 2 and 3, then stops (its ``with`` block ends in the caller)."""
        from .test_lineage import wait_for
        with self.learner():
            self.teach([2, 3], 100, seed=2)
            wait_for(lambda: self.counts() == {2: 50, 3: 50}, timeout_s=30)
            bridge.wait_for_line("fleet mode: exact", timeout_s=30)

    def dev1_round(self, bridge: Any, n: int, seed: int, rnd: int) -> None:
        """dev1 learns ``n`` more samples of 0 and 1, as one head (a round), which dev2's bridge hands over."""
        self.dev1.teach([0, 1], n, seed=seed, at_once=True)
        bridge.wait_for_line(f"global head round {rnd} handed to the learner: {n} samples to add", timeout_s=30)

    def last_round(self) -> dict:
        from .test_lineage import _last_round
        return _last_round(self.agg_dir)

    def close(self) -> None:
        self.dev1.close()
        self.bus.shutdown()
        if self.agg.poll() is None:
            self.agg.terminate()
            self.agg.wait(10)


def test_processes_the_bridge_killed_after_handing_a_round_while_the_learner_was_down(fleet_setup, broker, tmp_path,
                                                                                      xhash) -> None:
    """The same with the real processes: dev2's learner and bridge nodes on a private DDS domain, kill -9 of the
    bridge, the aggregator process, mosquitto; dev1 the in-process learner and bridge. dev2 learns 100 samples, its
    learner is stopped, dev1 learns 200: round 1 (300 samples) is handed to dev2's learner, which is down; the bridge is
    killed (-9) and started again, then the learner. dev2's learner must hold all 300 samples, class by class, and
    after it learns 60 more the next round 360. Old code: the learner stayed at its own 100 samples, {2: 50, 3: 50}
    (round 1 saved as taken in, the retained global head skipped)."""
    from .test_lineage import wait_for

    dev2 = Dev2Processes(fleet_setup, tmp_path, xhash)
    try:
        with dev2.bridge() as bridge:
            dev2.first_learning(bridge)
            # round 1, while dev2's learner is down: one head of 200 (its timer once sent 3, then 197: two rounds)
            dev2.dev1_round(bridge, 200, seed=1, rnd=1)
            bridge.proc.kill()                               # kill -9
            bridge.proc.wait(10)
        assert dev2.last_round()["samples"] == 300
        everyone = {0: 100, 1: 100, 2: 50, 3: 50}
        with dev2.bridge(), dev2.learner():
            try:
                wait_for(lambda: dev2.counts() == everyone, timeout_s=30)
            except AssertionError:
                raise AssertionError(f"dev2's learner holds {dev2.counts()}, not round 1's {everyone}") from None
            dev2.teach([2, 3], 60, seed=5)
            everyone = {0: 100, 1: 100, 2: 80, 3: 80}
            wait_for(lambda: dev2.last_round().get("samples") == 360 and dev2.counts() == everyone
                     and dev2.dev1.counts() == everyone, timeout_s=30)
    finally:
        dev2.close()


def test_processes_a_learner_down_while_two_rounds_close_takes_both_in(fleet_setup, broker, tmp_path, xhash) -> None:
    """The real processes, as above (dds backend), the bridge alive throughout: dev2's learner is stopped, dev1 learns
    200 samples (round 1), then 100 more (round 2); both additions are handed while the learner is down. Started
    again, the learner reads both off ``global_head`` (transient-local, the last 16 kept) and holds every sample; no
    round follows until dev2 learns more, and that one is exact. Old code (the topic kept its newest message): the
    learner got round 2's 100 samples only, and its bridge, which had accounted both as added, reported the missing
    200 as dev2's own learning, negative: the learner merged a round 3 made of that report before dev2 learned more."""
    from .test_lineage import wait_for

    dev2 = Dev2Processes(fleet_setup, tmp_path, xhash)
    try:
        with dev2.bridge() as bridge:
            dev2.first_learning(bridge)
            dev2.dev1_round(bridge, 200, seed=1, rnd=1)
            # 100 more: one round, or two when dev1's head timer ticks mid-teach under load (63 + 37 seen once)
            dev2.dev1.teach([0, 1], 100, seed=3, at_once=True)
            wait_for(lambda: dev2.last_round().get("samples") == 400, timeout_s=30)
            last = dev2.last_round()["round"]
            assert last >= 2, dev2.last_round()
            bridge.wait_for_line(f"global head round {last} handed to the learner", timeout_s=30)
            everyone = {0: 150, 1: 150, 2: 50, 3: 50}
            with dev2.learner() as learner:
                try:
                    wait_for(lambda: dev2.counts() == everyone, timeout_s=30)
                except AssertionError:
                    raise AssertionError(f"dev2's learner holds {dev2.counts()}, not rounds 1 and 2's "
                                         f"{everyone}") from None
                learner.wait_for_line(f"global head round {last} merged", timeout_s=10)
                merged = "\n".join(learner.lines)
                assert all(f"global head round {r} merged" in merged for r in range(1, last)), merged[-3000:]
                time.sleep(2.0)                              # ten of the bridge's periods: its report, if any
                assert dev2.last_round()["round"] == last, dev2.last_round()
                dev2.teach([2, 3], 60, seed=5)
                everyone = {0: 150, 1: 150, 2: 80, 3: 80}
                wait_for(lambda: dev2.last_round().get("samples") == 460 and dev2.counts() == everyone
                         and dev2.dev1.counts() == everyone, timeout_s=30)
    finally:
        dev2.close()
