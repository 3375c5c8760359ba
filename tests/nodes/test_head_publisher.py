"""The head-publishing protocol (head_publisher.py) with a slow disk: a version goes out only once its checkpoint is
on disk, the learner's message thread does not wait for that, and a disk that hangs holds only the newest few."""

from __future__ import annotations

import os
import threading

import numpy as np

from tinycl_nodes import storage
from tinycl_nodes.bus import create_bus
from tinycl_nodes.bus.local import LocalGraph
from tinycl_nodes.extractor import FrozenExtractor, model_path
from tinycl_nodes.nodes.head_publisher import UNSENT_MAX
from tinycl_nodes.nodes.learner import Learner, LearnerParams
from tinycl_nodes.storage import load_states

from .test_bad_input import _sample


def test_a_head_version_goes_out_once_its_checkpoint_is_on_disk_and_the_learner_does_not_wait(tmp_path,
                                                                                                monkeypatch):
    gate, real_fsync = threading.Event(), os.fsync

    def held_fsync(fd: int) -> None:
        assert gate.wait(10), "the learner waited for the disk"
        real_fsync(fd)

    monkeypatch.setattr(storage.os, "fsync", held_fsync)
    graph = LocalGraph()
    learner = Learner(create_bus("learner", "/", backend="local", graph=graph),
                      LearnerParams(state_dir=str(tmp_path), preset="supervised", publish_every=1))
    learner.bring_up()
    bus = create_bus("tester", "/", backend="local", graph=graph)
    sent: list[tuple[int, int]] = []       # (version published, version on disk as it went out)

    def on_head(msg) -> None:
        saved = load_states(next(tmp_path.rglob("learner.state")))["head"]["meta"]["published_version"]
        sent.append((int(msg.version), int(saved)))

    bus.create_subscription("head", "Head", on_head, "latched")
    pub = bus.create_publisher("labeled", "LabeledFeatures")
    xhash = FrozenExtractor(model_path("mnist_0to5_fp32")).hash
    rng = np.random.default_rng(0)
    n = UNSENT_MAX + 4
    for i in range(n):                      # each one learned makes a version (publish_every 1)
        pub.publish(_sample(bus, rng.normal(size=64), i % 3, xhash, 10**18 + i))
    assert learner.heads.version == n and sent == []   # taken, none out: the disk holds the first checkpoint
    gate.set()
    learner.state.flush()
    pub.publish(_sample(bus, rng.normal(size=64), 0, xhash, 10**18 + n))   # the next message sends what is saved
    newest = list(range(n - UNSENT_MAX + 1, n + 1))
    assert [v for v, _ in sent][:UNSENT_MAX] == newest, sent           # in order; the oldest were dropped
    assert all(on_disk >= v for v, on_disk in sent), sent               # never out before it was saved
    learner.close()
    assert [v for v, _ in sent] == newest + [n + 1], sent                # the stop sends the last one
