"""A fleet of CWR* graphs (presets tinyndc, supervised: the bridge blends) through the real mosquitto, with the real
learner and bridge nodes and the aggregator: a round that only brings the others' learning ends the rounds.

Found by the fleet trial (two robots' fleet_device graphs, `tinycl aggregate --kind CWRStar`, README's recipe): each
learner published its head after blending a round in, its bridge shared it as a new head, which started the next
round: a round every --min-interval forever, each doubling the counts (3,000 samples held as 13 billion after 24
rounds in 5 minutes)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tinycl_nodes.fleet.aggregator import status

from .conftest import wait_for
from .robot import F, Robot
from .test_broker import start_aggregator, stop_aggregator

pytestmark = pytest.mark.waits      # what make test does with it: pyproject.toml

def robot(setup, name: str, tmp, xhash: str) -> Robot:
    """The real learner (CWR*: preset supervised, the bridge blends) and bridge, state in ``tmp/name``."""
    return Robot(setup, name, tmp / name, xhash, preset="supervised", publish_every=20)


def test_blended_rounds_end_when_nothing_new_is_learned(fleet_setup, broker, tmp_path, xhash) -> None:
    agg, stop, t = start_aggregator(fleet_setup, tmp_path, F, extractor_hash=xhash, min_devices=2, min_new_heads=2,
                                    min_interval_s=0.3)
    robots = [robot(fleet_setup, "dev1", tmp_path, xhash), robot(fleet_setup, "dev2", tmp_path, xhash)]
    try:
        robots[0].teach([0, 1, 2], 120, seed=1)
        robots[1].teach([0, 1, 3], 120, seed=2)
        # every sample learned has reached the aggregator, and the round of the last heads is taken in
        wait_for(lambda: all(d in agg.heads and agg.heads[d].n_seen == 120 for d in ("dev1", "dev2")), timeout_s=20)
        wait_for(lambda: agg.round >= 1 and all(r.learner.global_round == agg.round for r in robots), timeout_s=10)
        time.sleep(1.0)
        rnd = agg.round
        time.sleep(3.0)             # ten times --min-interval: the old code closed a round every 0.3 s or so
        assert agg.round == rnd, f"rounds went on with nothing learned: round {rnd}, then {agg.round}"
        assert all(r.learner.global_round == rnd for r in robots)
        for r in robots:            # each took the other's class in
            assert sorted(int(k) for k in np.asarray(r.learner.head.state_dict()["arrays"]["classes"])) == [0, 1, 2, 3]
        wait_for(lambda: {n: v["merged_round"] for n, v in status(str(tmp_path / "agg"))["devices"].items()}
                 == {"dev1": rnd, "dev2": rnd}, timeout_s=5)
        # something new learned is shared again and starts the next round
        robots[0].teach([2], 60, seed=3)
        robots[1].teach([3], 60, seed=4)
        wait_for(lambda: agg.round > rnd, timeout_s=10)
    finally:
        for r in robots:
            r.close()
        stop_aggregator(agg, stop, t)
