"""A robot whose state was wiped (new SD card, reflashed) rejoins the fleet: a new lineage of that device.

Seen in a fleet operator's trial: the wiped robot's learner restarted its heads at v1, below the v63 the aggregator
held for it; the aggregator ignored every one of them ("version rollback") until the version passed 63 — forever,
for a robot that had reached v10,000 — so nothing it learned after the wipe reached the fleet. Now the held head is
kept as a retired lineage (in every round, as a device that stopped sending) and the new head is the device's own."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tinycl_nodes.core.federated import FleetMember, Moments
from tinycl_nodes.fleet.aggregator import Aggregator, AggregatorParams, format_status, status
from tinycl_nodes.fleet.broker import current_user, generate
from tinycl_nodes.fleet.payload import encode

from .conftest import FLEET, XH, _need_mosquitto, head, wait_for
from .robot import F, Robot

pytestmark = pytest.mark.waits      # what make test does with it: pyproject.toml

def robot(setup, name: str, state_dir: Path, xhash: str) -> Robot:
    """The real learner (streaming LDA, preset tinycl: the bridge's exact mode) and bridge, sharing every 100 samples
    (a test of lineages, not of small rounds: those are tests/core/test_federated.py's)."""
    return Robot(setup, name, state_dir, xhash, preset="tinycl", publish_every=100)


def _aggregator(setup, state_dir: Path, xhash: str, log: Path, *more: str) -> subprocess.Popen:
    """The aggregator process (``more``: further arguments, a later one of an option given here wins)."""
    cmd = [sys.executable, "-m", "tinycl_nodes.fleet.aggregator", "--fleet", FLEET, "--broker-dir", setup.directory,
           "--extractor-hash", xhash, "--n-features", str(F), "--kind", "StreamingLDA", "--min-devices", "2",
           "--min-interval", "0", "--state-dir", str(state_dir), *more]
    return subprocess.Popen(cmd, stdout=open(log, "a"), stderr=subprocess.STDOUT, text=True)


def _last_round(state_dir: Path) -> dict:
    try:
        s = status(str(state_dir))
    except Exception:   # not saved yet
        return {}
    return s["rounds"][-1] if s["rounds"] else {}


def test_a_wiped_robot_rejoins_as_a_new_lineage_and_nothing_learned_is_lost(fleet_setup, broker, tmp_path,
                                                                            xhash) -> None:
    """Exact (add) mode, through the real mosquitto, the aggregator process and two real learner + bridge pairs:
    dev1 learns 600 samples, dev2 100; dev1's state_dir is deleted and it restarts (heads from v1 again) and learns
    100 more. The next round holds 700 + 100 samples, class by class, and both learners take all of it in; after the
    aggregator is killed (-9) and restarted, the old lineage is still in the rounds."""
    agg_dir, log = tmp_path / "agg", tmp_path / "agg.log"
    agg = _aggregator(fleet_setup, agg_dir, xhash, log)
    robots = {d: robot(fleet_setup, d, tmp_path / d, xhash) for d in ("dev1", "dev2")}
    try:
        robots["dev1"].teach([0, 1], 600, seed=1)
        robots["dev2"].teach([2, 3], 100, seed=2)
        old = {0: 300, 1: 300, 2: 50, 3: 50}
        wait_for(lambda: _last_round(agg_dir).get("samples") == 700 and all(r.counts() == old
                                                                            for r in robots.values()), timeout_s=30)
        old_version = status(str(agg_dir))["devices"]["dev1"]["version"]
        assert old_version >= 5, old_version

        robots.pop("dev1").close()                      # the robot is reflashed: a new SD card, no state
        shutil.rmtree(tmp_path / "dev1")
        robots["dev1"] = robot(fleet_setup, "dev1", tmp_path / "dev1", xhash)
        robots["dev1"].teach([0, 4], 100, seed=3)
        new = {**old, 0: 350, 4: 50}                    # the old fleet's 700 samples + the 100 learned after the wipe
        wait_for(lambda: _last_round(agg_dir).get("samples") == 800 and all(r.counts() == new
                                                                            for r in robots.values()), timeout_s=30)
        s = status(str(agg_dir))
        assert s["devices"]["dev1"]["version"] < old_version
        assert [r["version"] for r in s["retired"]["dev1"]] == [old_version]
        assert _last_round(agg_dir)["retired"] == {"dev1": [old_version]}
        text = log.read_text()
        assert f"head from dev1 v{s['devices']['dev1']['version']}" in text and f"not the v{old_version} held's" \
            in text and "a new lineage of dev1" in text, text
        assert "version rollback" not in text and "no longer holds" not in text

        agg.send_signal(signal.SIGKILL)                 # the retired lineage survives a kill -9
        agg.wait(10)
        rnd = status(str(agg_dir))["round"]
        agg = _aggregator(fleet_setup, agg_dir, xhash, log)
        robots["dev2"].teach([3], 100, seed=4)
        wait_for(lambda: (_last_round(agg_dir).get("round") or 0) > rnd
                 and _last_round(agg_dir).get("samples") == 900, timeout_s=30)
        assert [r["version"] for r in status(str(agg_dir))["retired"]["dev1"]] == [old_version]
        wait_for(lambda: robots["dev1"].counts() == {**new, 3: 150}, timeout_s=10)
    finally:
        for r in robots.values():
            r.close()
        if agg.poll() is None:
            agg.send_signal(signal.SIGTERM)
            agg.wait(10)


def test_accept_retires_a_lineage_persists_it_and_removal_drops_it(tmp_path, caplog) -> None:
    """Unit level (blend/fedavg heads, no broker running): a rollback sent later retires the held head, a stale copy
    (sent earlier) and a late copy of the retired head are ignored; the round merges both lineages; a restart
    without close (kill -9 after the round's save) keeps the retired lineage; status shows it; --allow without the
    device drops it with the device."""
    caplog.set_level(logging.DEBUG)
    _need_mosquitto()
    st = generate(tmp_path / "broker", "lab", ["robot1", "robot2"], port=18998, user=current_user())

    def agg(allow: list[str] | None = None) -> Aggregator:
        return Aggregator(AggregatorParams(fleet="lab", kind="CWRStar", extractor_hash=XH, n_features=2,
                                           broker_dir=st.directory, allowed_devices=allow,
                                           state_dir=str(tmp_path / "agg"), min_interval_s=0), start=False)
    t0 = time.time() - 100
    a = agg()
    assert a.accept("robot1", encode(head("robot1", [[1, 0], [0, 1]], counts=[60, 40], version=63), "lab", "robot1",
                                     sent_at=t0))
    assert a.accept("robot2", encode(head("robot2", [[1, 0], [0, 1]], counts=[5, 5], version=2), "lab", "robot2",
                                     sent_at=t0))
    assert a.tick() and a.global_head.counts.tolist() == [65, 45]
    # a broker's stale retained copy (sent before the held head): ignored as before
    assert not a.accept("robot1", encode(head("robot1", np.eye(2), counts=[1, 1], version=9), "lab", "robot1",
                                         sent_at=t0 - 50))
    assert "robot1" not in a.retired
    # the wiped robot's first head: v1, sent later
    caplog.clear()
    assert a.accept("robot1", encode(head("robot1", [[0, 1], [1, 0]], counts=[7, 3], version=1), "lab", "robot1",
                                     sent_at=t0 + 10))
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and "new lineage" in r.getMessage()]
    assert len(said) == 1 and "robot1 v1" in said[0] and "v63" in said[0], said
    assert a.heads["robot1"].version == 1 and [h.version for _, h, _ in a.retired["robot1"]] == [63]
    # a late copy of the retired head (a queued delivery) does not replace the new lineage
    assert not a.accept("robot1", encode(head("robot1", [[1, 0], [0, 1]], counts=[60, 40], version=63), "lab",
                                         "robot1", sent_at=t0))
    assert a.heads["robot1"].version == 1
    assert a.tick()
    assert a.global_head.counts.tolist() == [72, 48], "old lineage 60/40 + robot2 5/5 + new lineage 7/3"
    assert a.rounds[-1]["retired"] == {"robot1": [63]} and a.rounds[-1]["new_heads"] == ["robot1"]
    # every lineage in the round: each device's current head (the global head's provenance) and the retired ones
    assert a.rounds[-1]["provenance"] == {"robot1": 1, "robot2": 2}
    assert "retired lineages robot1 v63, 120 samples" in format_status(status(str(tmp_path / "agg"))).splitlines()[-1]
    a.link.stop()                                   # no close(): as killed after the round's save
    b = agg()
    assert [h.version for _, h, _ in b.retired["robot1"]] == [63] and b.heads["robot1"].version == 1
    assert not b.fresh, "the new lineage's head is in the last round"
    b.accept("robot2", encode(head("robot2", [[1, 0], [0, 1]], counts=[6, 5], version=3), "lab", "robot2",
                              sent_at=t0 + 20))
    assert b.tick() and b.global_head.counts.tolist() == [73, 48]
    b.close()
    s = status(str(tmp_path / "agg"))
    assert s["retired"] == {"robot1": [{"version": 63, "sent_at": pytest.approx(t0), "classes": 2, "samples": 100,
                                        "lineage_id": "", "lineage": 1}]}
    text = format_status(s)
    assert "2 device(s), 1 retired lineage(s)" in text.splitlines()[0]
    row = [ln for ln in text.splitlines() if ln.split()[:3] == ["robot1", "v63", "retired"]]
    assert len(row) == 1 and "lineage 1" in row[0], text
    c = agg(["robot2"])                             # robot1 removed: its retired lineage leaves with it
    assert "robot1" not in c.retired and sorted(c.heads) == ["robot2"]
    assert c.tick() and c.global_head.counts.tolist() == [6, 5]
    c.close()
    assert "robot1" not in agg(["robot2"]).retired


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


def test_a_wiped_robot_in_a_blend_fleet_shares_again_and_its_old_classes_stay(fleet_setup, broker, tmp_path,
                                                                               xhash) -> None:
    """Blend (CWR*) mode, the real learners and bridges: dev1 learned class 2, dev2 class 3; dev1 is wiped and learns
    class 4. Old code: its heads (v1, v2, … below the one held) were ignored, class 4 never reached dev2. Now the
    next round brings class 4 to dev2, and class 2 (only dev1's old lineage learned it) stays in the global head."""
    from .test_blend_rounds import robot as blend_robot
    from .test_broker import start_aggregator, stop_aggregator

    agg, stop, t = start_aggregator(fleet_setup, tmp_path, F, extractor_hash=xhash, min_devices=2,
                                    min_interval_s=0.3)
    robots = {"dev1": blend_robot(fleet_setup, "dev1", tmp_path, xhash), "dev2": blend_robot(fleet_setup, "dev2",
                                                                                              tmp_path, xhash)}

    def classes(r: Robot) -> list[int]:
        return sorted(int(k) for k in np.asarray(r.learner.head.state_dict()["arrays"]["classes"]))
    try:
        robots["dev1"].teach([0, 1, 2], 300, seed=1)
        robots["dev2"].teach([0, 1, 3], 120, seed=2)
        wait_for(lambda: all(classes(r) == [0, 1, 2, 3] for r in robots.values()), timeout_s=20)
        old_version = wait_for(lambda: agg.heads["dev1"].n_seen == 300 and agg.heads["dev1"].version, timeout_s=10)
        robots.pop("dev1").close()
        shutil.rmtree(tmp_path / "dev1")
        robots["dev1"] = blend_robot(fleet_setup, "dev1", tmp_path, xhash)
        robots["dev1"].teach([4], 60, seed=3)
        wait_for(lambda: 4 in classes(robots["dev2"]), timeout_s=20)
        assert [h.version for _, h, _ in agg.retired["dev1"]] == [old_version] and \
            agg.heads["dev1"].version < old_version
        g = agg.global_head
        counts = dict(zip(g.class_ids.tolist(), g.counts.tolist()))
        _, retired, _ = agg.retired["dev1"][0]
        kept = dict(zip(retired.class_ids.tolist(), retired.counts.tolist()))[2]    # ~100 (a partial batch is not in)
        assert kept >= 80 and counts[2] >= kept and 4 in counts, (kept, counts)  # old lineage's 2, new one's 4
        wait_for(lambda: classes(robots["dev1"]) == [0, 1, 2, 3, 4], timeout_s=10)
    finally:
        for r in robots.values():
            r.close()
        stop_aggregator(agg, stop, t)


@pytest.mark.parametrize("lost", ["all, clock at 1970", "the learner's state"])
def test_a_reflashed_robot_without_a_clock_rejoins_by_its_lineage_id(fleet_setup, broker, tmp_path, xhash,
                                                                      caplog, lost) -> None:
    """A board with no RTC and no time sync: after the reflash its wall clock starts near 1970, so every head of its
    new lineage says it was sent before the head held. Old code took each for a broker's stale copy and ignored it
    forever (the round never reached 800). Now the bridge's state carries a lineage id drawn when it was created, in
    every head: another id is a new lineage whatever the clock says. Exact mode, the real mosquitto, learners and
    bridges, the aggregator in this process.

    Second case: only the learner's state is lost (deleted, or moved aside unreadable), the bridge's is kept: its
    heads restart below the version it saw, and carried the kept id, so they were stale copies forever (before the
    bridge started a new lineage on seeing them)."""
    from .test_broker import start_aggregator, stop_aggregator
    caplog.set_level(logging.INFO, logger="tinycl.aggregator")
    agg, stop, t = start_aggregator(fleet_setup, tmp_path, F, extractor_hash=xhash, kind="StreamingLDA",
                                    min_devices=2)
    robots = {d: robot(fleet_setup, d, tmp_path / d, xhash) for d in ("dev1", "dev2")}
    try:
        robots["dev1"].teach([0, 1], 600, seed=1)
        robots["dev2"].teach([2, 3], 100, seed=2)
        old = {0: 300, 1: 300, 2: 50, 3: 50}
        wait_for(lambda: _last_round(tmp_path / "agg").get("samples") == 700
                 and all(r.counts() == old for r in robots.values()), timeout_s=30)
        old_version, old_lineage = agg.heads["dev1"].version, agg.metas["dev1"].lineage
        assert old_version >= 5 and len(old_lineage) == 32, (old_version, old_lineage)
        assert robots["dev1"].bridge.lineage == old_lineage

        robots.pop("dev1").close()
        boot, clock = time.monotonic(), time.time
        if lost == "the learner's state":
            for f in (tmp_path / "dev1").glob("learner.*"):
                f.unlink()
            assert (tmp_path / "dev1" / "mqtt_bridge.state").exists()
        else:                                           # reflashed: no state, and the clock of a board without RTC
            shutil.rmtree(tmp_path / "dev1")
            clock = lambda: 86400.0 + time.monotonic() - boot           # noqa: E731  1970-01-02
        robots["dev1"] = Robot(fleet_setup, "dev1", tmp_path / "dev1", xhash, preset="tinycl", publish_every=100,
                               clock=clock)
        robots["dev1"].teach([0, 4], 100, seed=3)
        new = {**old, 0: 350, 4: 50}
        wait_for(lambda: _last_round(tmp_path / "agg").get("samples") == 800
                 and all(r.counts() == new for r in robots.values()), timeout_s=30)
        new_lineage = robots["dev1"].bridge.lineage
        assert new_lineage != old_lineage and agg.metas["dev1"].lineage == new_lineage
        assert (agg.metas["dev1"].sent_at < 2 * 86400) == (clock is not time.time)
        assert agg.heads["dev1"].version < old_version
        assert [(m.lineage, h.version) for m, h, _ in agg.retired["dev1"]] == [(old_lineage, old_version)]
        s = status(str(tmp_path / "agg"))
        assert s["devices"]["dev1"]["lineage_id"] == new_lineage and s["retired"]["dev1"][0]["lineage_id"] == \
            old_lineage
        said = [r.getMessage() for r in caplog.records if "a new lineage of dev1" in r.getMessage()]
        assert len(said) == 1 and f"of lineage {new_lineage[:8]}, not the v{old_version} held's" in said[0], said
    finally:
        for r in robots.values():
            r.close()
        stop_aggregator(agg, stop, t)


def test_lineage_ids_tell_stale_copies_from_new_lives_whatever_the_clocks(tmp_path, caplog) -> None:
    """Unit level: with lineage ids the clock decides nothing. A lower version of the held id is a stale copy even
    sent later; another id is a new lineage even sent in 1970; a copy of the retired id is ignored even sent later
    and of a higher version; a head without id still goes by its sent_at."""
    caplog.set_level(logging.DEBUG)
    _need_mosquitto()
    st = generate(tmp_path / "broker", "lab", ["robot1", "robot2"], port=18997, user=current_user())
    a = Aggregator(AggregatorParams(fleet="lab", kind="CWRStar", extractor_hash=XH, n_features=2,
                                    broker_dir=st.directory, state_dir=str(tmp_path / "agg"), min_interval_s=0),
                   start=False)
    A, B, now = "a" * 32, "b" * 32, time.time()

    def send(version: int, lineage: str, sent_at: float, counts=(60, 40), device: str = "robot1") -> bool:
        return a.accept(device, encode(head(device, np.eye(2), counts=list(counts), version=version), "lab", device,
                                       sent_at=sent_at, lineage=lineage))
    assert send(63, A, now)
    assert not send(9, A, now + 50), "a lower version of the held lineage is a stale copy, whatever its clock"
    assert "robot1" not in a.retired
    assert send(1, B, 86400.0, counts=(7, 3)), "another lineage, its clock near 1970: a new lineage"
    assert a.heads["robot1"].version == 1 and [(m.lineage, h.version) for m, h, _ in a.retired["robot1"]] == [(A, 63)]
    assert not send(64, A, now + 100), "a copy of the retired lineage's head"
    assert send(2, B, 86401.0, counts=(8, 3)) and a.heads["robot1"].version == 2
    assert not send(1, B, 86500.0), "a lower version of the new lineage: a stale copy"
    # a robot of a build without lineage ids: its clock tells, as before
    assert send(40, "", now, device="robot2")
    assert not send(5, "", now - 10, device="robot2") and "robot2" not in a.retired
    assert send(1, "", now + 10, counts=(1, 1), device="robot2") and [h.version for _, h, _ in a.retired["robot2"]] \
        == [40]
    assert a.tick() and a.global_head.counts.tolist() == [60 + 8 + 60 + 1, 40 + 3 + 40 + 1]
    a.close()
    b = Aggregator(AggregatorParams(fleet="lab", kind="CWRStar", extractor_hash=XH, n_features=2,
                                    broker_dir=st.directory, state_dir=str(tmp_path / "agg"), min_interval_s=0),
                   start=False)
    assert b.metas["robot1"].lineage == B and [m.lineage for m, _, _ in b.retired["robot1"]] == [A]
    b.link.stop()


def test_the_bridge_keeps_its_lineage_id_across_restarts_and_draws_one_when_its_state_is_new(fleet_setup,
                                                                                             tmp_path) -> None:
    """A restart keeps the id (else a broker's stale copy, of the id before, would be taken for a new lineage); a
    state_dir wiped draws a new one; blend mode (no bookkeeping) keeps one too; exact:=false keeps the exact mode's
    bookkeeping in the file untouched."""
    from tinycl_nodes.bus import create_bus
    from tinycl_nodes.bus.local import LocalGraph
    from tinycl_nodes.nodes.mqtt_bridge import BridgeParams, MqttBridge
    from tinycl_nodes.storage import load_states, state_path

    def lineage_of(state_dir: Path, **kw) -> str:
        bus = create_bus("mqtt_bridge", "/dev1/tinycl", backend="local", graph=LocalGraph())
        b = MqttBridge(bus, BridgeParams(fleet=FLEET, device="dev1", broker_dir=fleet_setup.directory,
                                         state_dir=str(state_dir), **kw), start=False)
        try:
            return b.lineage
        finally:
            b.close()
            bus.shutdown()
    first = lineage_of(tmp_path / "s", exact=True)
    assert len(first) == 32 and lineage_of(tmp_path / "s", exact=True) == first
    shutil.rmtree(tmp_path / "s")
    second = lineage_of(tmp_path / "s", exact=True)
    assert second != first and lineage_of(tmp_path / "s") == second
    blend = lineage_of(tmp_path / "b", exact=False)
    assert blend not in (first, second) and lineage_of(tmp_path / "b", exact=False) == blend
    # the exact mode's bookkeeping (saved with the id) survives a run with exact:=false
    member = load_states(state_path(tmp_path / "s", "mqtt_bridge"))["member"]
    assert lineage_of(tmp_path / "s", exact=False) == second
    kept = load_states(state_path(tmp_path / "s", "mqtt_bridge"))["member"]
    assert kept["meta"] == member["meta"]


def test_a_version_1_aggregator_state_loads_with_its_retired_lineages_and_a_newer_one_stops_it(tmp_path) -> None:
    """The state's version is 2 since retired lineages are in it: an aggregator of the release before them read a
    version 1 file with retired/ arrays and dropped them without a word. This build reads a version 1 file written in
    the old format (retired lineages kept), saves version 2, and stops on a version it does not know (one line, the
    file in place: moved aside, the fleet's rounds began again at 1)."""
    from tinycl_nodes.core import state as core_state
    from tinycl_nodes.core.errors import TinyclError
    from tinycl_nodes.fleet.aggregator import STATE_VERSION
    from tinycl_nodes.storage import load_states, save_states, state_path
    _need_mosquitto()
    st = generate(tmp_path / "broker", "lab", ["robot1", "robot2"], port=18996, user=current_user())
    t0 = time.time() - 100

    def payload(device: str, counts: list[int], version: int, sent_at: float) -> np.ndarray:
        return np.frombuffer(encode(head(device, np.eye(2), counts=counts, version=version), "lab", device,
                                    sent_at=sent_at), np.uint8)
    glob = encode(head("aggregator", np.eye(2), counts=[72, 48], version=3), "lab", "aggregator", 3,
                  provenance={"robot1": 1, "robot2": 2})
    arrays = {"device/robot1": payload("robot1", [7, 3], 1, t0 + 10), "device/robot2": payload("robot2", [5, 5], 2, t0),
              "retired/robot1/0": payload("robot1", [60, 40], 63, t0), "global": np.frombuffer(glob, np.uint8)}
    meta = {"fleet": "lab", "round": 3, "extractor_hash": XH, "n_features": 2, "head_kind": "CWRStar", "rounds": []}
    path = state_path(tmp_path / "agg", "aggregator")
    path.parent.mkdir()
    save_states(path, {"aggregator": core_state.make_state("aggregator", 1, {}, arrays, meta)})

    def agg() -> Aggregator:
        return Aggregator(AggregatorParams(fleet="lab", kind="CWRStar", extractor_hash=XH, n_features=2,
                                           broker_dir=st.directory, state_dir=str(tmp_path / "agg"), min_interval_s=0),
                          start=False)
    a = agg()
    assert a.round == 3 and [h.version for _, h, _ in a.retired["robot1"]] == [63] and not a.fresh
    assert a.accept("robot2", encode(head("robot2", np.eye(2), counts=[6, 5], version=3), "lab", "robot2"))
    assert a.tick() and a.round == 4 and a.global_head.counts.tolist() == [73, 48], "the retired lineage is in"
    a.close()
    saved = load_states(path)
    assert saved["aggregator"]["version"] == STATE_VERSION == 2
    assert status(str(tmp_path / "agg"))["retired"]["robot1"][0]["version"] == 63

    saved["aggregator"]["version"] = 3                  # a newer release's state, met by this build
    save_states(path, saved)
    with pytest.raises(TinyclError) as e:
        agg()
    msg = str(e.value)
    assert "\n" not in msg and "version 3" in msg and "newer release" in msg and "Nothing was moved" in msg, msg
    assert path.exists() and not list(path.parent.glob("*.bad-*"))
    with pytest.raises(TinyclError, match="version 3, written by a newer release") as e:
        status(str(tmp_path / "agg"))
    assert "\n" not in str(e.value)


def test_min_devices_and_min_new_heads_count_robots_not_lineages(tmp_path) -> None:
    """A wiped robot is one robot with two lineages: alone it closes no round of --min-devices 2, and its new
    lineage's head is one new head, not two (the retired one is no longer new). The round that closes with a second
    robot merges all three heads."""
    _need_mosquitto()
    st = generate(tmp_path / "broker", "lab", ["robot1", "robot2"], port=18994, user=current_user())
    a = Aggregator(AggregatorParams(fleet="lab", kind="CWRStar", extractor_hash=XH, n_features=2,
                                    broker_dir=st.directory, min_devices=2, min_new_heads=2, min_interval_s=0),
                   start=False)
    A, B, C = "a" * 32, "b" * 32, "c" * 32
    assert a.accept("robot1", encode(head("robot1", np.eye(2), counts=[60, 40], version=63), "lab", "robot1",
                                     lineage=A))
    assert not a.tick()
    assert a.accept("robot1", encode(head("robot1", np.eye(2), counts=[7, 3], version=1), "lab", "robot1", lineage=B))
    assert "robot1" in a.retired and a.fresh == {"robot1"}
    assert not a.tick(), "one robot, two lineages: not two devices, not two new heads"
    assert a.accept("robot2", encode(head("robot2", np.eye(2), counts=[5, 5], version=1), "lab", "robot2", lineage=C))
    assert a.tick() and a.global_head.counts.tolist() == [72, 48]
    assert a.rounds[-1]["devices"] == ["robot1", "robot2"] and a.rounds[-1]["retired"] == {"robot1": [63]}
    a.link.stop()


def test_status_says_when_the_aggregator_heard_a_device_not_what_its_clock_said(tmp_path) -> None:
    """A robot whose clock is 30 days behind (its RTC battery gone flat; the fleet's certificates are older, so TLS
    lets it in) sends a head now: `tinycl fleet status` said "sent … (30 days ago)", and "nothing new from robot1
    (last heard 30 days ago)" for a robot heard a moment before. Now: when this aggregator took the head (saved with
    its state), and what the robot's clock said beside it."""
    _need_mosquitto()
    st = generate(tmp_path / "broker", "lab", ["robot1", "robot2"], port=18997, user=current_user())

    def agg() -> Aggregator:
        return Aggregator(AggregatorParams(fleet="lab", kind="CWRStar", extractor_hash=XH, n_features=2,
                                           broker_dir=st.directory, state_dir=str(tmp_path / "agg"), min_interval_s=0),
                          start=False)
    behind = time.time() - 30 * 86400
    a = agg()
    assert a.accept("robot1", encode(head("robot1", np.eye(2), counts=[6, 4], version=3), "lab", "robot1",
                                     sent_at=behind))
    assert a.tick()
    assert a.accept("robot2", encode(head("robot2", np.eye(2), counts=[5, 5], version=2), "lab", "robot2"))
    a.close()
    b = agg()                                         # kept with the state
    assert set(b.heard) == {"robot1", "robot2"} and abs(b.heard["robot1"] - time.time()) < 60, b.heard
    b.close()
    text = format_status(status(str(tmp_path / "agg")))
    row = next(ln for ln in text.splitlines() if ln.startswith("robot1 "))
    assert " s ago; its clock said " in row and "days ago" not in row, text
    assert time.strftime("%Y-%m-%d", time.localtime(behind)) in row, row
    under_way = text.splitlines()[-1]
    assert under_way.startswith("round 2 under way: new heads from robot2; nothing new from robot1 (last heard "), text
    assert "days ago" not in under_way, text
    print(text)
