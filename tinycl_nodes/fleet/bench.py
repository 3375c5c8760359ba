"""Fleet benchmarks (``make bench`` calls :func:`run`): aggregation time and heads/s through mosquitto.

- ``aggregate_s``: time to aggregate 1,000 device heads of 10 classes × 64 features (best of
  ``repeats``), per method; target ≤ 1 s.
- ``relay_heads_per_s``: heads sent by ``devices`` device clients (QoS 1, TLS, client certificate
  + password) through a real mosquitto to the aggregator, which decodes, validates and stores
  each one; from the first publish to the last head accepted. Target ≥ 100 heads/s.

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
    from .broker import Broker, free_port, generate, head_topic
    from .link import MqttLink, MqttParams
    from .payload import encode

    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        return {"error": "mosquitto not installed (tools/mosquitto/install.sh)"}
    names = [f"dev{i}" for i in range(devices)]
    per = -(-n_heads // devices)
    quiet = logging.getLogger("tinycl.bench")
    quiet.setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="tinycl-bench-") as d:
        setup = generate(d, "bench", names, port=free_port())
        with Broker(setup):
            agg = Aggregator(AggregatorParams(fleet="bench", broker_dir=d, extractor_hash=HASH, n_features=n_features,
                                              min_interval_s=3600),
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


def run(out: str | Path | None = None, n_devices: int = 1000, relay_heads: int = 1000) -> dict[str, Any]:
    """Both benchmarks; returns a dict (and writes it as JSON to ``out`` if given)."""
    agg = bench_aggregate(n_devices)
    relay = bench_relay(relay_heads)
    res = {
        "aggregate_1000_heads_10x64_s": {k: round(v, 4) for k, v in agg.items()},
        "aggregate_target_s": 1.0,
        "aggregate_ok": max(agg.values()) <= 1.0,
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
    ap.add_argument("--out", default=None)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--relay-heads", type=int, default=1000)
    a = ap.parse_args(argv)
    res = run(a.out, a.devices, a.relay_heads)
    print(json.dumps(res, indent=1))
    return 0 if res["aggregate_ok"] and res["relay_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
