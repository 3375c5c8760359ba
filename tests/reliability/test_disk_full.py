"""A full disk, for real: the learner's state folder and the exporter's folder are on a 1 MiB tmpfs that a filler
file fills up mid-stream.

The learner keeps predicting and learning, says the failure in one line (not one a checkpoint: at save_every 10
that was 21 lines for 200 samples), leaves the last state that landed whole on disk, says so once a write lands
again, and ends with every sample it learned saved. The exporter, exporting each changed head every 0.2 s, says
its failure once too, and exports the newest head once there is room. Needs root (mount), as make test runs."""

from __future__ import annotations

import time

import numpy as np

from tests.conftest import fill
from tests.nodes.conftest import node, spin_until
from tests.nodes.test_bad_input import _sample
from tinycl_nodes.bus import create_bus
from tinycl_nodes.extractor import FrozenExtractor, model_path
from tinycl_nodes.nodes.learner import HEAD_PRESETS
from tinycl_nodes.storage import load_states


def n_seen(path, extractor_hash: str) -> int:
    head = HEAD_PRESETS["supervised"](64, extractor_hash).head
    head.load_state_dict(load_states(path)["head"])
    return head.n_seen


def test_a_full_disk_costs_no_learning_and_one_line(domain, small_disk):
    xhash = FrozenExtractor(model_path("mnist_0to5_fp32")).hash
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, (3, 64))
    bus = create_bus("tester", backend="dds", dds_config="loopback", domain=domain)
    preds: list = []
    bus.create_subscription("predictions", "Prediction", preds.append, "reliable")
    pub = bus.create_publisher("labeled", "LabeledFeatures", "reliable")
    stamp, sent = time.time_ns(), [0]

    def send(k: int) -> None:
        for _ in range(k):
            i = sent[0]
            pub.publish(_sample(bus, centers[i % 3] + rng.normal(0, .3, 64), i % 3, xhash, stamp + i))
            sent[0] += 1
            time.sleep(0.002)
        assert spin_until(bus, lambda: len(preds) == sent[0], 20), (len(preds), sent[0])

    state = small_disk / "learner.state"
    try:
        with node("learner", domain, "preset:=supervised", f"state_dir:={small_disk}", "save_every:=10",
                  "save_period_s:=0.2", "publish_period_s:=0.2") as learner, \
             node("exporter", domain, f"state_dir:={small_disk}", f"out_dir:={small_disk / 'export'}",
                  "period_s:=0.2") as exporter:
            assert spin_until(bus, lambda: pub.get_subscription_count() > 0, 20), learner.lines
            send(50)
            assert spin_until(bus, lambda: state.is_file() and n_seen(state, xhash) == 50, 10)
            exporter.wait_for_line("exported head")
            fill(small_disk)
            send(200)                          # 20 checkpoints' worth, none of which fits
            learner.wait_for_line("cannot save state")
            exporter.wait_for_line("cannot export the head")
            time.sleep(0.5)
            failed = [ln for ln in learner.lines if "cannot save state" in ln]
            assert len(failed) == 1, failed
            assert "No space left on device" in failed[0] and "repeats are said once every 60 s" in failed[0]
            assert n_seen(state, xhash) == 50  # the last write that landed, whole
            unexported = [ln for ln in exporter.lines if "cannot export the head" in ln]
            assert len(unexported) == 1 and "No space left on device" in unexported[0], exporter.lines[-5:]
            assert all(p.class_id == i % 3 for i, p in enumerate(preds[50:], 50))   # it went on learning
            (small_disk / "filler").unlink()
            send(10)
            again = learner.wait_for_line("could save state to")
            assert "again, after" in again and "failed writes" in again, again
            assert spin_until(bus, lambda: n_seen(state, xhash) == 260, 10)
            assert "again, after" in exporter.wait_for_line("could export the head")
            assert learner.proc.poll() is None and exporter.proc.poll() is None
        assert learner.proc.returncode == 0 and exporter.proc.returncode == 0
        assert n_seen(state, xhash) == 260     # every sample learned, saved
        assert (small_disk / "export" / "head.onnx").is_file()
        assert "Traceback" not in "\n".join(learner.lines + exporter.lines)
    finally:
        bus.shutdown()
