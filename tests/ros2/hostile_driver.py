"""Hostile messages into a TinyNDC graph on ROS 2 (run with ROS 2's python, the package built and sourced):

    python3 hostile_driver.py --namespace /fz --messages 3000 --seconds 20 --seed 10 --out sent.json

The hostile but well-typed messages of ``tests/reliability/hostile.py`` (each one with a defect a node must refuse),
through rclpy on every input topic of the graph, round-robin; every fourth one goes out with its CDR broken on the
wire instead: cut at a random byte, or a random 4-byte word made 2^31 - 1 (a sequence or string length, when it
falls on one). Starts once each topic's publisher has matched a reader, spreads the messages over ``--seconds`` (in
bursts of 50: they come among the graph's own), and writes what it sent to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rclpy.duration import Duration
from rclpy.serialization import serialize_message

sys.path.append(str(Path(__file__).resolve().parents[2]))   # for tests.reliability (tinycl_nodes: the installed one)

from tests.reliability.hostile import TOPICS, Fuzzer  # noqa: E402
from tests.ros2.wire_faults import BIG, ENCAPSULATION  # noqa: E402
from tinycl_nodes.bus import create_bus  # noqa: E402
from tinycl_nodes.nodes.runner import wait_for_readers  # noqa: E402


def broken(raw: bytes, fuzz: Fuzzer) -> bytes:
    """``raw`` cut short, or with one aligned word made 2^31 - 1: CDR that does not deserialize, or a message worse
    than it was."""
    r = fuzz.rng
    if r.random() < 0.5 or len(raw) < ENCAPSULATION + 8:
        return raw[:int(r.integers(ENCAPSULATION, len(raw)))]
    at = ENCAPSULATION + 4 * int(r.integers(0, (len(raw) - ENCAPSULATION) // 4))
    return raw[:at] + BIG + raw[at + 4:]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    bus = create_bus("hostile", args.namespace, backend="ros2")
    fuzz = Fuzzer(bus, seed=args.seed)
    wait_for_readers(bus, list(fuzz.pubs.values()), 120.0, bus.logger)
    unmatched = [t for t, p in fuzz.pubs.items() if p.get_subscription_count() == 0]
    broken_sent = {t: 0 for t in TOPICS}
    t0 = time.monotonic()
    for i in range(args.messages):
        if i % 50 == 0:
            time.sleep(max(0.0, t0 + args.seconds * i / args.messages - time.monotonic()))
        topic = TOPICS[i % len(TOPICS)]
        if i % 4 == 3:
            fuzz.pubs[topic].publish(broken(serialize_message(fuzz.message(topic)), fuzz))
            fuzz.sent[topic] += 1
            broken_sent[topic] += 1
        else:
            fuzz.send(topic)
    sent_s = time.monotonic() - t0
    acked = all(p.wait_for_all_acked(Duration(seconds=60)) for p in fuzz.pubs.values())
    Path(args.out).write_text(json.dumps({"sent": fuzz.sent, "broken": broken_sent, "seconds": round(sent_s, 2),
                                          "acked": acked, "unmatched": unmatched}))
    print(f"hostile: {sum(fuzz.sent.values())} messages in {sent_s:.1f} s ({sum(broken_sent.values())} broken on the "
          f"wire), acked: {acked}", flush=True)
    bus.shutdown()


if __name__ == "__main__":
    main()
