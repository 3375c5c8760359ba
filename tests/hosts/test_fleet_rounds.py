"""A fleet that learns for weeks, in namespaces against a real mosquitto: 20 rounds, exact.

Broker and aggregator on ``cloud``; devices on ``robot1..4``, each a streaming-LDA head (the
default preset's head) with its :class:`FleetMember` bookkeeping, connected over TLS from its own
namespace (by address: this process has no per-namespace /etc/hosts; names are tested in
test_broker_hosts.py). Every device starts from 10 labelled samples of each digit, then learns
digits 0–5 and *its own* new digits (robot1: 6, 7; robot2: 8; robot3: 9) in 20 chunks, one per
round. robot4 (digits 0–5 only) joins late, at round 4 (with what it learned before), and leaves
after round 12 (its knowledge stays in the fleet); robot2 is a straggler in round 8 (the round closes on ``round_timeout_s`` with its
previous head). At the end every device equals the head trained centrally on all the data (within
1 point on every class; in fact to float tolerance), and no class's accuracy on any device falls by
more than 1 point from one round to the next (the weighting does not dilute what was learned once).
"""

from __future__ import annotations

import json
import queue
import threading
import time

import numpy as np
import pytest

from tinycl_nodes.core.federated import FleetMember, HeadSnapshot, load_snapshot_into, snapshot_from_head
from tinycl_nodes.core.slda import StreamingLDA
from tinycl_nodes.fleet.aggregator import Aggregator, AggregatorParams
from tinycl_nodes.fleet.broker import Broker, current_user, generate, global_topic, head_topic, rounds_topic
from tinycl_nodes.fleet.link import MqttLink, MqttParams
from tinycl_nodes.fleet.payload import decode, encode

pytestmark = pytest.mark.waits      # what make test does with it: pyproject.toml

FLEET = "weeks"
ROUNDS = 20
NEW = {"robot1": [6, 7], "robot2": [8], "robot3": [9], "robot4": []}
JOIN = {"robot1": 1, "robot2": 1, "robot3": 1, "robot4": 4}
LEAVE = {"robot4": 12}
STRAGGLE = {8: "robot2"}


class Device:
    """One robot: an SLDA head, its fleet bookkeeping and an MQTT link made inside its namespace."""

    def __init__(self, net, setup, name: str, F: int, xhash: str) -> None:
        self.name, self.head = name, StreamingLDA(F, refresh_every=25, extractor_hash=xhash)
        self.member = FleetMember(name)
        self.version = 0
        self.inbox: "queue.Queue[tuple]" = queue.Queue()
        self.history: list[np.ndarray] = []
        c = setup.credentials(name)
        params = MqttParams(host=setup.ip, port=setup.port, ca_file=setup.ca, cert_file=c.certfile,
                            key_file=c.keyfile, username=name, reconnect_min_s=0.1, reconnect_max_s=0.5)
        self.link = net.call_in(name, lambda: MqttLink(params, name, [global_topic(FLEET)], self._on_global).start())
        assert self.link.wait_connected(10), self.link.last_error

    def _on_global(self, topic: str, data: bytes) -> None:
        self.inbox.put(decode(data, fleet=FLEET))

    def learn(self, X: np.ndarray, y: np.ndarray) -> float:
        """Prequential accuracy on this chunk (predicted before learning it), then learn it."""
        hits = sum(int(self.head.predict_one(x) == c) for x, c in zip(X, y)) if len(y) and self.head.classes else 0
        for x, c in zip(X, y):
            self.head.learn_one(x, int(c))
        return 100.0 * hits / max(1, len(y))

    def report(self, acc: float, n: int) -> None:
        self.version += 1
        snap = self.member.report(snapshot_from_head(self.head, version=self.version, device=self.name), self.version)
        self.link.offer(head_topic(FLEET, self.name), encode(snap, FLEET, self.name,
                                                           metrics={"accuracy": acc, "samples": float(n)}))

    def take(self, rnd: int, timeout_s: float = 20.0) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            meta, g = self.inbox.get(timeout=max(0.01, end - time.monotonic()))
            if meta.round == rnd:
                new = self.member.take(snapshot_from_head(self.head, device=self.name), g,
                                       meta.provenance.get(self.name))
                load_snapshot_into(self.head, new)
                return
        raise AssertionError(f"{self.name}: no global head of round {rnd}")


def per_class(snap: HeadSnapshot, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = snap.predict(X)
    return np.array([100.0 * np.mean(p[y == c] == c) for c in range(10)])


def test_twenty_rounds_exact_and_no_class_falls(net, tmp_path, fp32_extractor, data_dir):
    from tinycl_nodes.datasets import load_mnist

    Xte, yte = load_mnist("test", str(data_dir))
    X, y = fp32_extractor.extract(Xte), yte.astype(np.int64)
    F, xhash = fp32_extractor.n_features, fp32_extractor.hash
    rng = np.random.default_rng(0)
    order = rng.permutation(y.size)
    held, pool = order[:2000], order[2000:]
    init = np.concatenate([pool[y[pool] == c][:10] for c in range(10)])
    pool = np.setdiff1d(pool, init)
    old = rng.permutation(pool[y[pool] < 6])
    shares = np.array_split(old, len(NEW))
    data = {d: rng.permutation(np.concatenate([shares[i], pool[np.isin(y[pool], NEW[d])]]))
            for i, d in enumerate(NEW)}
    chunks = {d: np.array_split(data[d], ROUNDS) for d in NEW}

    # "observer": an identity of its own reads the per-round table (one connection per identity)
    setup = generate(tmp_path / "broker", FLEET, [*NEW, "observer"], port=8883, host="cloud", ip=net.ip("cloud"),
                     user=current_user())   # tmp_path is 0700: the broker runs as whoever runs the tests
    broker = Broker(setup, net=net, on="cloud").start()
    params = AggregatorParams(fleet=FLEET, broker_dir=setup.directory, mqtt_host=setup.ip, kind="StreamingLDA",
                              extractor_hash=xhash, n_features=F, min_interval_s=0.0, round_timeout_s=1.5,
                              state_dir=str(tmp_path / "agg"), tick_s=0.05, mqtt_reconnect_min_s=0.1)
    agg = net.call_in("cloud", lambda: Aggregator(params))
    stop = threading.Event()
    runner = threading.Thread(target=agg.run, args=(stop,), daemon=True)
    runner.start()
    table: list = []
    obs = setup.credentials("observer")
    watcher = net.call_in("robot1", lambda: MqttLink(
        MqttParams(host=setup.ip, port=setup.port, ca_file=setup.ca, cert_file=obs.certfile, key_file=obs.keyfile),
        "observer", [rounds_topic(FLEET)], lambda t, d: table.append(json.loads(d))).start())
    devices: dict[str, Device] = {}
    try:
        for rnd in range(1, ROUNDS + 1):
            for d in NEW:
                if JOIN[d] == rnd:
                    devices[d] = Device(net, setup, d, F, xhash)
                    devices[d].learn(X[init], y[init])
                    for k in range(1, rnd):                  # learned while not yet in the fleet
                        devices[d].learn(X[chunks[d][k - 1]], y[chunks[d][k - 1]])
            active = [d for d in devices if LEAVE.get(d, ROUNDS) >= rnd]
            reporting = [d for d in active if STRAGGLE.get(rnd) != d]
            agg.p = agg.p.model_copy(update={"min_new_heads": len(reporting) + (1 if rnd in STRAGGLE else 0)})
            for d in active:
                idx = chunks[d][rnd - 1]
                acc = devices[d].learn(X[idx], y[idx])
                if d in reporting:
                    devices[d].report(acc, len(idx))
            deadline = time.monotonic() + 20
            while agg.round < rnd and time.monotonic() < deadline:
                time.sleep(0.02)
            assert agg.round == rnd, f"round {rnd} did not close"
            for d in active:
                devices[d].take(rnd)
                devices[d].history.append(per_class(snapshot_from_head(devices[d].head), X[held], y[held]))
        # a device left (robot4) and one straggled: the table says so
        deadline = time.monotonic() + 10
        while (not table or table[-1]["rounds"][-1]["round"] < ROUNDS) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(5)
        watcher.stop()
        for dev in devices.values():
            dev.link.stop()
        agg.close()
        broker.stop()

    # the head trained centrally on all of it
    central = StreamingLDA(F, refresh_every=25, extractor_hash=xhash)
    for d in NEW:
        last = min(LEAVE.get(d, ROUNDS), ROUNDS)
        for idx in [init] + chunks[d][:last]:
            for x, c in zip(X[idx], y[idx]):
                central.learn_one(x, int(c))
    ref = per_class(snapshot_from_head(central), X[held], y[held])
    finals = {d: devices[d].history[-1] for d in ("robot1", "robot2", "robot3")}
    for d, acc in finals.items():
        assert np.abs(acc - ref).max() <= 1.0, (d, acc.round(1), ref.round(1))
        np.testing.assert_allclose(devices[d].head.means, central.means[[central.classes.index(c)
                                                                        for c in devices[d].head.classes]],
                                   rtol=1e-5, atol=1e-5)
    # per-class drops between consecutive rounds. Round 1 -> 2 is left out of the bound: after round
    # 1 the heads have seen 1/20 of the data and a class moves by a few of its ~200 held-out samples
    # (measured: 1.12 points, class 5, the same for the central head on the same data); from then on
    # no class may fall by more than 1 point (dilution would make the learned-once classes fall)
    drops = {(name, i): float((dev.history[i - 1] - dev.history[i]).max())
             for name, dev in devices.items() for i in range(1, len(dev.history))}
    late = {k: v for k, v in drops.items() if k[1] >= 2 or JOIN[k[0]] > 1}
    assert max(late.values()) <= 1.0, f"a class fell by {max(late.values()):.2f} points between rounds"

    rows = table[-1]["rounds"]
    assert [r["round"] for r in rows] == list(range(1, ROUNDS + 1))
    assert rows[7]["stragglers"] == ["robot2"] and "robot2" not in rows[7]["new_heads"]
    assert "robot4" not in rows[2]["devices"] and "robot4" in rows[3]["devices"]
    assert "robot4" in rows[12]["devices"] and "robot4" in rows[-1]["stragglers"]   # left: its knowledge stays
    assert all(r["accuracy"] is not None and 0 <= r["accuracy"] <= 100 for r in rows)
    print("\nround | devices | new heads | stragglers | classes | samples | accuracy (as devices report it)")
    for r in rows:
        print(f"{r['round']:5d} | {len(r['devices']):7d} | {len(r['new_heads']):9d} | "
              f"{','.join(r['stragglers']) or '-':10s} | {r['classes']:7d} | {r['samples']:7d} | {r['accuracy']:.2f}")
    print("central per class:", ref.round(1).tolist(), "max drop between rounds:", round(max(drops.values()), 2),
          "from round 2 on:", round(max(late.values()), 2))
    print("final per device:", {d: a.round(1).tolist() for d, a in finals.items()})
