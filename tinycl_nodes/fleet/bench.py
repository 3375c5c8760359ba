"""Fleet benchmarks (``make bench`` calls :func:`run`): aggregation time and heads/s through mosquitto.

- ``aggregate_s``: time to aggregate 10,000 device heads of 10 classes × 64 features (best of
  ``repeats``), per method; target ≤ 1 s.
- ``relay_heads_per_s``: heads sent by ``devices`` device clients (QoS 1, TLS, client certificate
  + password) through a real mosquitto to the aggregator, which decodes, validates and stores
  each one; from the first publish to the last head accepted. Target ≥ 100 heads/s.
- ``round``: one federated round of ``round_devices`` (200) devices spread over 4 robot hosts
  (network namespaces, ``tinycl_nodes.netns``), each its own TLS identity, through mosquitto on
  the ``cloud`` host to the aggregator there: from the first device head sent to the last device
  holding the global head (end-to-end round time), plus connect time. Needs root (else skipped
  with the reason in the result).

    python -m tinycl_nodes.fleet.bench [--out results/fleet_bench.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..arg_types import output_file
from ..core.federated import HeadSnapshot, aggregate

HASH = "b" * 64


def _heads(n: int, C: int, F: int, seed: int = 0) -> list[HeadSnapshot]:
    rng = np.random.default_rng(seed)
    ids = np.arange(C)
    names = [f"class {i}" for i in ids]
    return [HeadSnapshot(ids, names, rng.integers(0, 500, C), rng.normal(0, 1, (C, F)).astype(np.float32),
                         rng.normal(0, 0.1, C).astype(np.float32), "CWRStar", HASH, 1, 0, f"d{i}")
            for i in range(n)]


def bench_aggregate(n_devices: int = 1000, n_classes: int = 10, n_features: int = 64, repeats: int = 3,
                    methods: tuple[str, ...] = ("fedavg", "median", "trimmed_mean")) -> dict[str, float]:
    snaps = _heads(n_devices, n_classes, n_features)
    out = {}
    for m in methods:
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            aggregate(snaps, m)  # type: ignore[arg-type]
            best = min(best, time.perf_counter() - t)
        out[m] = best
    return out


def bench_relay(n_heads: int = 1000, devices: int = 10, n_classes: int = 10, n_features: int = 64,
                timeout_s: float = 60.0) -> dict[str, Any]:
    """Heads/s device → mosquitto (TLS) → aggregator (decode + checks), on loopback."""
    from .aggregator import Aggregator, AggregatorParams
    from .broker import Broker, current_user, free_port, generate, head_topic
    from .link import MqttLink, MqttParams
    from .payload import encode

    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        return {"error": "mosquitto not installed (tools/mosquitto/install.sh)"}
    names = [f"dev{i}" for i in range(devices)]
    per = -(-n_heads // devices)
    quiet = logging.getLogger("tinycl.bench")
    quiet.setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="tinycl-bench-") as d:
        setup = generate(d, "bench", names, port=free_port(), user=current_user())   # private temp folder (0700)
        with Broker(setup):
            agg = Aggregator(AggregatorParams(fleet="bench", kind="CWRStar", broker_dir=d, extractor_hash=HASH,
                                              n_features=n_features, min_interval_s=3600),
                             logger=quiet)
            links = []
            try:
                if not agg.link.wait_connected(10):
                    return {"error": f"aggregator could not connect: {agg.link.last_error}"}
                clients = []
                for n in names:
                    c = setup.credentials(n)
                    p = MqttParams(port=setup.port, ca_file=setup.ca, cert_file=c.certfile, key_file=c.keyfile,
                                   username=n, password=c.password, client_id=f"bench-{n}")
                    link = MqttLink(p, p.client_id, [], None, quiet).start()
                    links.append(link)
                    clients.append((n, link))
                for _, link in clients:
                    link.wait_connected(10)
                snaps = _heads(devices, n_classes, n_features, seed=1)
                payloads = {n: [encode(snaps[i].copy(version=v + 1, device=n), "bench", n) for v in range(per)]
                            for i, n in enumerate(names)}
                total = per * devices
                t0 = time.perf_counter()
                for v in range(per):
                    for n, link in clients:   # raw QoS 1 publishes: every head, not only the latest
                        link.client.publish(head_topic("bench", n), payloads[n][v], qos=1)
                end = time.monotonic() + timeout_s
                while agg.accepted < total and time.monotonic() < end:
                    time.sleep(0.005)
                dt = time.perf_counter() - t0
                size = len(payloads[names[0]][0])
                return {"heads": int(agg.accepted), "sent": total, "seconds": round(dt, 4),
                        "heads_per_s": round(agg.accepted / dt, 1), "payload_bytes": size, "devices": devices,
                        "refused": agg.refused, "tls": True, "qos": 1}
            finally:
                for link in links:
                    link.stop()
                agg.close()


def bench_round(n_devices: int = 200, n_hosts: int = 4, n_classes: int = 10, n_features: int = 64,
                timeout_s: float = 120.0) -> dict[str, Any]:
    """One round of ``n_devices`` devices on ``n_hosts`` namespaced hosts through the TLS broker."""
    import threading

    from ..netns import HostNet, available
    from .aggregator import Aggregator, AggregatorParams
    from .broker import Broker, current_user, generate, global_topic, head_topic
    from .link import MqttLink, MqttParams
    from .payload import decode, encode

    why = available()
    if why:
        return {"error": f"needs network namespaces: {why}"}
    names = [f"dev{i:03d}" for i in range(n_devices)]
    robots = [f"robot{i + 1}" for i in range(n_hosts)]
    quiet = logging.getLogger("tinycl.bench")
    quiet.setLevel(logging.ERROR)
    got: dict[str, float] = {}
    lock = threading.Lock()

    def on_global(name: str) -> Any:
        def cb(topic: str, data: bytes) -> None:
            if decode(data)[0].round >= 1:
                with lock:
                    got.setdefault(name, time.perf_counter())
        return cb
    with tempfile.TemporaryDirectory(prefix="tinycl-bench-round-") as d, HostNet(["cloud", *robots]) as net:
        t_setup = time.perf_counter()
        setup = generate(d, "bench", names, port=8883, host="cloud", ip=net.ip("cloud"),
                         user=current_user())   # a private temp folder (0700): the broker runs as whoever benches
        setup_s = time.perf_counter() - t_setup
        with Broker(setup, net=net, on="cloud"):
            params = AggregatorParams(fleet="bench", kind="CWRStar", broker_dir=d, mqtt_host=setup.ip,
                                      extractor_hash=HASH, n_features=n_features, min_new_heads=n_devices,
                                      min_interval_s=0.0, tick_s=0.005, max_norm=1e9)
            agg = net.call_in("cloud", lambda: Aggregator(params, logger=quiet))
            stop = threading.Event()
            runner = threading.Thread(target=agg.run, args=(stop,), daemon=True)
            links: list[MqttLink] = []
            try:
                runner.start()
                t_conn = time.perf_counter()
                for i, n in enumerate(names):
                    c = setup.credentials(n)
                    p = MqttParams(host=setup.ip, port=setup.port, ca_file=setup.ca, cert_file=c.certfile,
                                   key_file=c.keyfile, username=n, keepalive_s=60)
                    links.append(net.call_in(robots[i % n_hosts],
                                             lambda p=p, n=n: MqttLink(p, n, [global_topic("bench")], on_global(n),
                                                                       quiet).start()))
                end = time.monotonic() + timeout_s
                while not all(link.connected.is_set() for link in links) and time.monotonic() < end:
                    time.sleep(0.01)
                connect_s = time.perf_counter() - t_conn
                if not agg.link.connected.is_set() or not all(link.connected.is_set() for link in links):
                    return {"error": f"only {sum(link.connected.is_set() for link in links)} of {n_devices} "
                                     f"devices connected within {timeout_s} s"}
                snaps = _heads(n_devices, n_classes, n_features, seed=2)
                payloads = [encode(snaps[i].copy(device=n), "bench", n) for i, n in enumerate(names)]
                time.sleep(0.5)                         # subscriptions acknowledged
                while not agg.round_known and time.monotonic() < end:
                    time.sleep(0.01)                    # a run's first round waits for the broker's last round
                t0 = time.perf_counter()
                for link, n, data in zip(links, names, payloads):
                    link.offer(head_topic("bench", n), data)
                while len(got) < n_devices and time.monotonic() < end:
                    time.sleep(0.002)
                if len(got) < n_devices:
                    return {"error": f"{len(got)} of {n_devices} devices got the global head within {timeout_s} s"}
                rec = agg.rounds[-1]
                return {"devices": n_devices, "hosts": n_hosts + 1, "tls": True, "qos": 1,
                        "payload_bytes": len(payloads[0]), "setup_s": round(setup_s, 3),
                        "connect_s": round(connect_s, 3),
                        "round_s": round(max(got.values()) - t0, 4),
                        "first_global_s": round(min(got.values()) - t0, 4),
                        "round": rec["round"], "devices_in_round": len(rec["devices"])}
            finally:
                stop.set()
                runner.join(5)
                for link in links:
                    link.stop()
                agg.close()


def run(out: str | Path | None = None, n_devices: int = 10000, relay_heads: int = 1000,
        round_devices: int = 200) -> dict[str, Any]:
    """The fleet benchmarks; returns a dict (and writes it as JSON to ``out`` if given)."""
    agg = bench_aggregate(n_devices)
    tenth = bench_aggregate(max(1, n_devices // 10), methods=("fedavg",))["fedavg"]
    relay = bench_relay(relay_heads)
    rnd = bench_round(round_devices) if round_devices else {"skipped": True}
    res = {
        f"aggregate_{n_devices}_heads_10x64_s": {k: round(v, 4) for k, v in agg.items()},
        "aggregate_target_s": 1.0,
        "aggregate_ok": max(agg.values()) <= 1.0,
        # linear growth: fedavg time for 10x the heads, in one run (10 = linear)
        "aggregate_fedavg_ratio_10x_heads": round(agg["fedavg"] / tenth, 2) if tenth > 0 else None,
        "round": rnd,
        "relay": relay,
        "relay_target_heads_per_s": 100.0,
        "relay_ok": relay.get("heads_per_s", 0.0) >= 100.0 and relay.get("heads") == relay.get("sent"),
    }
    if out:
        p = Path(out)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(res, indent=1))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tinycl_nodes.fleet.bench")
    ap.add_argument("--out", type=output_file, default=None)
    ap.add_argument("--devices", type=int, default=10000)
    ap.add_argument("--relay-heads", type=int, default=1000)
    ap.add_argument("--round-devices", type=int, default=200)
    a = ap.parse_args(argv)
    res = run(a.out, a.devices, a.relay_heads, a.round_devices)
    print(json.dumps(res, indent=1))
    return 0 if res["aggregate_ok"] and res["relay_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
