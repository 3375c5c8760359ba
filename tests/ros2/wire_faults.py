"""LabeledFeatures whose CDR is broken on the wire, as a peer's bug or a hostile peer sends them (run with the ROS 2
kit's python, the package built and sourced):

    python3 wire_faults.py --namespace /wf --hash HASH --n-features 64 --seed 0

Publishes on ``<namespace>/labeled`` (rclpy, the project's reliable QoS), after its reader matched: 4 whole samples
(classes 0 and 1), then each fault below ``--per-fault`` times, made of whole samples of class 1, then a whole sample
of class 2 and one of class 3 (a reader that knows class 3 has taken every message before it). Prints one JSON
line: ``{"whole": 6, "faults": {fault: count}}``.

The faults (each one rmw_cyclonedds cannot deserialize):

- ``cut before its name``: the sample without its last field, ``label_name``; what comes before it is whole (a
  class, a confidence, features), so a node handed the half-filled message learns it;
- ``cut at a random byte`` after the encapsulation header;
- ``a sequence length past the end``: the feature count made 2^31 - 1 (taken as a message, rclpy copied 8 GB);
- ``a string without its NUL``: the name's terminating NUL made a letter.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from rclpy.duration import Duration
from rclpy.serialization import serialize_message

from tinycl_nodes.bus import create_bus
from tinycl_nodes.interfaces import as_sequence

ENCAPSULATION = 4           # CDR's encapsulation header, before the message's first byte
NAMES = ("walking", "seated", "running", "stairs")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--hash", required=True)
    ap.add_argument("--n-features", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-fault", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    bus = create_bus("wire_faults", args.namespace, backend="ros2")
    LF, F = bus.msg("LabeledFeatures"), bus.msg("Features")
    pub = bus.create_publisher("labeled", LF, "reliable")

    def whole(i: int, label: int) -> bytes:
        x = rng.normal(label * 3.0, 1.0, args.n_features).astype(np.float32)
        return serialize_message(LF(features=F(data=as_sequence(x, "f"), extractor_hash=args.hash, sample_id=i),
                                    label=label, confidence=1.0, source=LF.GROUND_TRUTH, label_name=NAMES[label]))

    def faults(raw: bytes, name: str) -> dict[str, bytes]:
        name_field = 4 + len(name) + 1                  # its length, its letters, its NUL (the last bytes)
        at = raw.index(args.hash.encode()) - 4           # the hash's length: the feature count is just before it
        count = at - 4 * args.n_features - 4
        return {"cut before its name": raw[:-name_field],
                "cut at a random byte": raw[:int(rng.integers(ENCAPSULATION + 1, len(raw) - name_field))],
                "a sequence length past the end": raw[:count] + (2**31 - 1).to_bytes(4, "little") + raw[count + 4:],
                "a string without its NUL": raw[:-1] + b"x"}

    end = time.monotonic() + 60
    while pub.get_subscription_count() == 0 and time.monotonic() < end:
        bus.spin_once(0.1)
    sent: dict[str, int] = {}
    for i in range(4):
        pub.publish(whole(i, i % 2))
    for k in range(args.per_fault):
        for fault, raw in faults(whole(100 + k, 1), NAMES[1]).items():
            pub.publish(raw)
            sent[fault] = sent.get(fault, 0) + 1
    for i in range(4, 6):
        pub.publish(whole(i, i - 2))
    pub.wait_for_all_acked(Duration(seconds=30))
    print(json.dumps({"whole": 6, "faults": sent}), flush=True)
    bus.shutdown()


if __name__ == "__main__":
    main()
