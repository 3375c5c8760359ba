"""A device's learner as the bridge sees it, run inside one device host (tests/hosts/test_fleet_restarts.py):
on ``v N`` (stdin) it publishes head version N on ``/<device>/tinycl/head`` (Head, latched; the real DDS bus,
loopback inside the host), and prints every ``global_head`` it receives as a JSON line. Head version N holds
100·N samples of each of the classes 0, 1 and the device's own class 10 + index (cumulative, as a learner's)."""

from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np

from tinycl_nodes.bus import LATCHED, create_bus
from tinycl_nodes.core.federated import HeadSnapshot
from tinycl_nodes.interfaces.heads import from_msg, to_msg


def main() -> None:
    name, index, xh = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    bus = create_bus("learner", f"/{name}/tinycl", backend="dds", dds_config="loopback")
    Head, ClassInfo = bus.msg("Head"), bus.msg("ClassInfo")
    pub = bus.create_publisher("head", Head, LATCHED)

    def on_global(msg) -> None:
        s = from_msg(msg)
        print(json.dumps({"t": time.monotonic(), "round": int(s.version), "classes": [int(k[0]) for k in s.keys],
                          "counts": [int(c) for c in s.counts]}), flush=True)
    bus.create_subscription("global_head", Head, on_global, LATCHED)
    threading.Thread(target=bus.spin, daemon=True).start()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.startswith("v "):
            v = int(line.split()[1])
            ids = [0, 1, 10 + index]
            W = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, index, v]], np.float32)
            snap = HeadSnapshot(ids, [f"c{i}" for i in ids], [100 * v] * 3, W, np.zeros(3, np.float32), "CWRStar",
                                xh, v, 300 * v, name)
            pub.publish(to_msg(snap, Head, ClassInfo, bus.stamp()))
    bus.shutdown()


if __name__ == "__main__":
    main()
