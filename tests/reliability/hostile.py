"""Seeded hostile but well-typed messages for every input topic of a TinyNDC graph, on any bus (dds backend, rclpy):
each has at least one defect a node must refuse. Used by the message fuzz tests and by ``tests/ros2/hostile_driver.py``
(under ROS 2's python, so nothing here imports pytest or a test's fixtures)."""

from __future__ import annotations

import numpy as np

from tinycl_nodes.extractor import FrozenExtractor, model_path
from tinycl_nodes.interfaces import as_sequence

TOPICS = ("image", "ground_truth", "features", "labeled", "head", "global_head", "export_request")
HUGE = "\U0001F600" * 16384 + "x" * 1000          # 65 KB+ of UTF-8


class Fuzzer:
    """Seeded hostile messages; every one has at least one defect a node must refuse."""

    def __init__(self, bus, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        ex = FrozenExtractor(model_path("mnist_0to5_fp32"))
        self.hash, self.n = ex.hash, ex.n_features
        m = bus.msg
        self.Image, self.GT, self.Features = m("sensor_msgs/msg/Image"), m("GroundTruth"), m("Features")
        self.Labeled, self.Head, self.CI, self.String = m("LabeledFeatures"), m("Head"), m("ClassInfo"), \
            m("std_msgs/msg/String")
        self.Header, self.Time = m("std_msgs/msg/Header"), m("builtin_interfaces/msg/Time")
        qos = {"head": "latched", "global_head": "latched", "image": "reliable"}
        types = {"image": self.Image, "ground_truth": self.GT, "features": self.Features, "labeled": self.Labeled,
                 "head": self.Head, "global_head": self.Head, "export_request": self.String}
        self.pubs = {t: bus.create_publisher(t, types[t], qos.get(t, "reliable")) for t in TOPICS}
        self.sent = {t: 0 for t in TOPICS}

    def pick(self, *options):
        return options[int(self.rng.integers(0, len(options)))]

    def rare(self, big, small):
        """``big`` (a 64 KB string, a 2,000-class head…) in 2 % of messages: the run stays short."""
        return big if self.rng.random() < 0.02 else small

    def header(self):
        ns = int(self.rng.integers(0, 2**62))
        return self.Header(stamp=self.Time(sec=ns // 10**9 % 2**31, nanosec=ns % 10**9), frame_id=self.rare(HUGE, ""))

    def bad_vector(self):
        """Features a node must refuse: wrong size, NaN/inf, ±1e38, 1e10, just past the range, or in
        range but with the wrong extractor hash (returned as (values, hash))."""
        n, r = self.n, self.rng
        kind = int(r.integers(0, 7))
        v = r.normal(0, 1, n).astype(np.float32)
        if kind == 0:
            return r.normal(0, 1, self.pick(0, 1, n - 1, n + 1, 5000)).astype(np.float32), self.hash
        if kind == 1:
            v[r.integers(0, n)] = self.pick(np.nan, np.inf, -np.inf)
        elif kind == 2:
            v[:] = self.pick(1e38, -1e38, 3e38)
        elif kind == 3:
            v[r.integers(0, n)] = self.pick(1e10, 1e20, -1e10, 1e-38 * 0 + 1e7)
        elif kind == 4:
            v *= 200.0                                       # far beyond the calibrated range
        elif kind == 5:
            return v, self.pick("", "0" * 64, "deadbeef", self.rare(HUGE, "f" * 64))   # another extractor
        else:
            v[:] = 1e20                                      # the SLDA-killer
        return v, self.hash

    def features(self):
        v, h = self.bad_vector()
        return self.Features(header=self.header(), data=as_sequence(v, "f"), extractor_hash=h,
                             sample_id=int(self.rng.integers(0, 2**32)),
                             true_label=int(self.rng.integers(-2**31, 2**31)), labelled=bool(self.rng.random() < 0.5))

    def message(self, topic: str):
        r = self.rng
        if topic == "image":
            h, w = self.pick((28, 28), (0, 0), (1, 1), (28, 29), self.rare((4096, 4096), (480, 640)))
            enc = self.pick("mono8", "rgb8", "16UC1", "", "yuv422", HUGE[:300], "mono8\x00")
            step = int(self.pick(w, w * 3, 0, 2**32 - 1, w - 1 if w else 1))
            size = int(self.pick(0, 10, h * step + 1 if h * step < 1 << 18 else 100, self.rare(1 << 18, 784)))
            if (h, w, enc, step) == (28, 28, "mono8", 28) and size == 28 * 28:
                size += 1                                     # a valid image would be a real sample
            return self.Image(header=self.header(), height=h, width=w, encoding=enc, is_bigendian=int(r.integers(0, 256)),
                              step=step % 2**32, data=as_sequence(r.integers(0, 256, size, dtype=np.uint8), "B"))
        if topic == "ground_truth":      # unmatched truths (random stamps) with odd labels and 64 KB names
            return self.GT(header=self.header(), label=int(r.integers(-2**31, 2**31)),
                           class_name=self.pick("", self.rare(HUGE, "y" * 64), "\u200d\u00ad\x85"),
                           learnable=bool(r.random() < 0.5))
        if topic == "features":
            return self.features()
        if topic == "labeled":
            return self.Labeled(header=self.header(), features=self.features(),
                                label=int(self.pick(-1, -2, -2**31, 2**31 - 1, 3)), confidence=float(self.pick(
                                    0.5, np.nan, 1e38, -1.0)), source=int(r.integers(0, 256)),
                                label_name=self.pick("", self.rare(HUGE, "z"), "a\x00b"))
        if topic in ("head", "global_head"):
            n = int(self.pick(0, 1, 3, self.rare(2000, 10)))
            d = int(self.pick(self.n, 0, 10**6, self.n))
            W = r.normal(0, 1, int(min(n * max(d, 1), 300_000)) + int(self.pick(0, 1))).astype(np.float32)
            if W.size == n * d and d == self.n and n and self.rng.random() < 0.5:
                W[0] = np.nan
            ids = [int(self.pick(0, 1, 2**32 - 1)) for _ in range(min(n, 50))] + list(range(100, 100 + max(0, n - 50)))
            kind = self.pick("CWRStar */ int evil; /*", "", HUGE[:200], "StreamingLDA\n#define x")
            return self.Head(header=self.header(), classes=[self.CI(id=i, name=self.pick("", HUGE[:100]),
                                                                      sample_count=int(r.integers(0, 2**32)))
                                                            for i in ids],
                             kind=kind, n_features=d % 2**32, weights=as_sequence(W, "f"),
                             bias=as_sequence(r.normal(0, 1, n), "f"), extractor_hash=self.pick(self.hash, "x"),
                             version=int(r.integers(0, 2**32)), n_seen=int(r.integers(0, 2**63)),
                             state=as_sequence(r.integers(0, 256, int(self.pick(0, 100, 5000)), dtype=np.uint8), "B"))
        return self.String(data=self.pick("../../etc", "/tmp/x", "a/../../b", self.rare(HUGE, "y" * 300), "..",
                                          "~root", "x\n/y"))

    def send(self, topic: str) -> None:
        self.pubs[topic].publish(self.message(topic))
        self.sent[topic] += 1
