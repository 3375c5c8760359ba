"""The head-publishing protocol (head_publisher.py) with a slow disk: a version goes out only once its checkpoint is
on disk, the learner's message thread does not wait for that, and a disk that hangs holds only the newest few."""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from tinycl_nodes import storage
from tinycl_nodes.bus import create_bus
from tinycl_nodes.bus.local import LocalGraph
from tinycl_nodes.extractor import FrozenExtractor, model_path
from tinycl_nodes.nodes.head_publisher import UNSENT_MAX
from tinycl_nodes.nodes.learner import Learner, LearnerParams
from tinycl_nodes.storage import load_states

from .test_bad_input import _sample


def _learner_on_a_held_disk(tmp_path, monkeypatch) -> tuple[threading.Event, Learner, object]:
    """A learner whose checkpoints wait at fsync until ``gate`` is set, and a tester's bus on its graph."""
    gate, real_fsync = threading.Event(), os.fsync

    def held_fsync(fd: int) -> None:
        assert gate.wait(10), "the learner waited for the disk"
        real_fsync(fd)

    monkeypatch.setattr(storage.os, "fsync", held_fsync)
    graph = LocalGraph()
    learner = Learner(create_bus("learner", "/", backend="local", graph=graph),
                      LearnerParams(state_dir=str(tmp_path), preset="supervised", publish_every=1))
    learner.bring_up()
    return gate, learner, create_bus("tester", "/", backend="local", graph=graph)


def test_a_head_version_goes_out_once_its_checkpoint_is_on_disk_and_the_learner_does_not_wait(tmp_path,
                                                                                                monkeypatch):
    gate, learner, bus = _learner_on_a_held_disk(tmp_path, monkeypatch)
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


def test_versions_are_taken_in_blocks_one_checkpoint_each_and_never_used_twice(tmp_path):
    """A camera graph publishes a head version every second; each one used to cost a checkpoint of the whole state
    first (a 72 KB learner state: about 6 GB a day). Now one checkpoint takes ``VERSION_BLOCK`` numbers: 250 versions
    cost 3 writes, each goes out only once the state on disk holds a number at least its own (a kill -9 then goes on
    after the block), and a clean stop saves the last version itself (a restart goes on without a gap)."""
    from tinycl_nodes.nodes.head_publisher import VERSION_BLOCK

    def start() -> tuple[Learner, Any, Any, list[tuple[int, int]]]:
        graph = LocalGraph()
        node = Learner(create_bus("learner", "/", backend="local", graph=graph),
                       LearnerParams(state_dir=str(tmp_path), preset="supervised", publish_every=1,
                                     save_every=10**6, save_period_s=10**6))
        node.bring_up()
        bus = create_bus("tester", "/", backend="local", graph=graph)
        sent: list[tuple[int, int]] = []       # (version published, version on disk as it went out)
        bus.create_subscription("head", "Head", lambda msg: sent.append((int(msg.version), int(load_states(
            next(tmp_path.rglob("learner.state")))["head"]["meta"]["published_version"]))), "latched")
        return node, bus.create_publisher("labeled", "LabeledFeatures"), bus, sent

    learner, pub, bus, sent = start()
    saves = []
    real_save = learner.state.save
    learner.state.save = lambda *a, **k: saves.append(1) or real_save(*a, **k)
    xhash = FrozenExtractor(model_path("mnist_0to5_fp32")).hash
    rng = np.random.default_rng(0)
    for i in range(250):                      # each one learned makes a version (publish_every 1)
        pub.publish(_sample(bus, rng.normal(size=64), i % 3, xhash, 10**18 + i))
        learner.state.flush()
    learner.heads.maybe_publish()            # what the last checkpoint let out
    assert len(saves) == 3 == -(-250 // VERSION_BLOCK), len(saves)
    assert [v for v, _ in sent] == list(range(1, 251)), [v for v, _ in sent][-5:]
    assert all(on_disk >= v for v, on_disk in sent), sent
    assert [on_disk for _, on_disk in sent][-1] == 300
    # a kill -9 now (nothing more saved): the state on disk took up to 300, a restarted learner goes on at 301
    again = Learner(create_bus("again", "/", backend="local", graph=LocalGraph()),
                    LearnerParams(state_dir=str(tmp_path / "copy"), preset="supervised"))
    (tmp_path / "copy").mkdir()
    state = next(tmp_path.rglob("learner.state"))
    (tmp_path / "copy" / "learner.state").write_bytes(state.read_bytes())
    again.bring_up()
    assert again.heads.version == 300
    again.close()
    # a clean stop: the state says the last version itself
    learner.close()
    assert load_states(state)["head"]["meta"]["published_version"] == 250



def test_versions_go_out_in_order_when_two_threads_send(tmp_path, monkeypatch) -> None:
    """The local bus runs a callback in its publisher's thread, so a learner in the fleet tests sent heads from the
    test's thread, its timer's and the bridge's (which hands it the global head) at once. Under load the bridge got
    v4 before v3: taken for a learner whose state was lost, a new lineage, the fleet's samples reported as its own
    (tests/fleet/test_lineage.py, 1 run in ~8 under CPU load). Forced here: while the first version queued is being
    delivered, another thread sends; old code delivered 2 and 3 inside 1's delivery (sent [2, 3, 1])."""
    gate, learner, bus = _learner_on_a_held_disk(tmp_path, monkeypatch)
    done: list[int] = []                    # versions in the order their delivery finished (as a bridge takes them)
    other: list[threading.Thread] = []

    def on_head(msg) -> None:
        if not other:                       # the first delivery: another thread sends meanwhile
            other.append(threading.Thread(target=learner.heads.send_saved))
            other[0].start()
            other[0].join(1.0)
        done.append(int(msg.version))

    bus.create_subscription("head", "Head", on_head, "latched")
    pub = bus.create_publisher("labeled", "LabeledFeatures")
    xhash = FrozenExtractor(model_path("mnist_0to5_fp32")).hash
    rng = np.random.default_rng(0)
    for i in range(3):                      # three versions taken, none out: the disk holds their checkpoint
        pub.publish(_sample(bus, rng.normal(size=64), i % 3, xhash, 10**18 + i))
    assert learner.heads.version == 3 and done == []
    gate.set()
    learner.state.flush()
    learner.heads.send_saved()              # this thread sends v1; the other thread tries during its delivery
    other[0].join(10)
    assert done == [1, 2, 3], done
    learner.close()
