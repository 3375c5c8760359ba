"""A "board" (the C core through ctypes, tinycl_nodes/nodes/board.py) and a Python learner in the
same DDS graph (loopback, private domain), fed the same labelled stream of real MNIST features:
both learn the same classes, make the same predictions (C CWR* follows numpy within 6e-8, so the
argmax agrees on every sample here) and publish heads of the same kind, classes and counts with
weights within 1e-5. Bad input to the board: one error line, it keeps running."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np
import pytest

from tests.nodes.conftest import ROOT, NodeProcess, spin_until
from tinycl_nodes.bus import create_bus
from tinycl_nodes.datasets import load_mnist
from tinycl_nodes.extractor import FrozenExtractor, model_path
from tinycl_nodes.storage import load_states

from ..domains import free_domain

N = 160


@contextmanager
def started(module: str, name: str, ns: str, domain: int, *params: str):
    cmd = [sys.executable, "-m", f"tinycl_nodes.nodes.{module}", "--ros-args", "-r", f"__node:={name}",
           "-r", f"__ns:={ns}"]
    for p in params:
        cmd += ["-p", p]
    env = {**os.environ, "TINYCL_BUS": "dds", "ROS_DOMAIN_ID": str(domain), "PYTHONUNBUFFERED": "1"}
    n = NodeProcess(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True))
    try:
        yield n
    finally:
        n.stop()


def _labeled(bus, x, label, extractor_hash, stamp_ns, sample_id):
    Header, Time = bus.msg("std_msgs/msg/Header"), bus.msg("builtin_interfaces/msg/Time")
    h = Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9))
    f = bus.msg("Features")(header=h, data=np.asarray(x, np.float32), extractor_hash=extractor_hash,
                            sample_id=sample_id, true_label=int(label), labelled=True)
    return bus.msg("LabeledFeatures")(header=h, features=f, label=int(label), confidence=1.0, source=2)


@pytest.fixture(scope="module")
def stream(data_dir):
    ext = FrozenExtractor(model_path("mnist_0to5_fp32"))
    X, y = load_mnist("test", str(data_dir))
    idx = np.random.default_rng(0).permutation(y.size)[:N]
    return ext.extract(X[idx]).astype(np.float32), y[idx].astype(np.int64), ext.hash


def test_python_learner_and_board_learn_the_same(stream, host_build, tmp_path):
    x, y, sha = stream
    domain = free_domain()
    lib = host_build / "libtinycl.so"
    common = ("publish_every:=1000", "publish_period_s:=0.3")
    buses = {ns: create_bus("tester", ns, backend="dds", dds_config="loopback", domain=domain)
             for ns in ("/py/tinycl", "/board/tinycl")}
    preds = {ns: {} for ns in buses}
    heads = {ns: [] for ns in buses}
    pubs = {}
    for ns, bus in buses.items():
        bus.create_subscription("predictions", "Prediction", lambda m, ns=ns: preds[ns].__setitem__(m.sample_id, m),
                                "reliable")
        bus.create_subscription("head", "Head", heads[ns].append, "latched")
        pubs[ns] = bus.create_publisher("labeled", "LabeledFeatures", "reliable")
    try:
        with started("learner", "learner", "/py/tinycl", domain, "preset:=supervised", *common) as py, \
                started("board", "board", "/board/tinycl", domain, f"lib:={lib}", f"state_dir:={tmp_path}",
                        *common) as board:
            for ns, bus in buses.items():
                assert spin_until(bus, lambda ns=ns: pubs[ns].get_subscription_count() > 0, 40), \
                    (py.lines[-5:], board.lines[-5:])
            board.wait_for_line("C core")
            stamp = time.time_ns()
            for i in range(N):
                for ns, bus in buses.items():
                    pubs[ns].publish(_labeled(bus, x[i], y[i], sha, stamp + i, i))
            for ns, bus in buses.items():
                assert spin_until(bus, lambda ns=ns: len(preds[ns]) == N, 30), (ns, len(preds[ns]), board.lines[-5:])
            p_py = np.array([preds["/py/tinycl"][i].class_id for i in range(N)])
            p_c = np.array([preds["/board/tinycl"][i].class_id for i in range(N)])
            conf_py = np.array([preds["/py/tinycl"][i].confidence for i in range(N)])
            conf_c = np.array([preds["/board/tinycl"][i].confidence for i in range(N)])
            same = float((p_py == p_c).mean())
            acc_late = float((p_c[N // 2:] == y[N // 2:]).mean())
            print(f"board vs Python learner: {same:.1%} identical predictions over {N} samples; "
                  f"max |Δconfidence| {np.abs(conf_py - conf_c).max():.2e}; board accuracy (2nd half) {acc_late:.1%}")
            assert same == 1.0
            np.testing.assert_allclose(conf_c, conf_py, atol=1e-4)
            assert acc_late > 0.6                       # it really learned the ten digits
            for ns, bus in buses.items():
                assert spin_until(bus, lambda ns=ns: heads[ns] and heads[ns][-1].n_seen == N, 15), ns
            hp, hc = heads["/py/tinycl"][-1], heads["/board/tinycl"][-1]
            assert hc.kind == hp.kind and hc.extractor_hash == hp.extractor_hash == sha
            assert [c.id for c in hc.classes] == [c.id for c in hp.classes] and len(hc.classes) == 10
            assert [c.sample_count for c in hc.classes] == [c.sample_count for c in hp.classes]
            np.testing.assert_allclose(np.asarray(hc.weights), np.asarray(hp.weights), atol=1e-5)
            np.testing.assert_allclose(np.asarray(hc.bias), np.asarray(hp.bias), atol=1e-5)
            # bad input: one clear line, the board keeps running
            bus = buses["/board/tinycl"]
            pubs["/board/tinycl"].publish(_labeled(bus, np.full(64, np.nan), 1, sha, stamp + 10_000, 10_000))
            pubs["/board/tinycl"].publish(_labeled(bus, np.ones(10), 1, sha, stamp + 10_001, 10_001))
            pubs["/board/tinycl"].publish(_labeled(bus, x[0], 1, "ab" * 32, stamp + 10_002, 10_002))
            for text in ("NaN", "expected shape (64,)", "from extractor abab"):
                assert "ERROR" in board.wait_for_line(text)
            pubs["/board/tinycl"].publish(_labeled(bus, x[1], y[1], sha, stamp + 10_003, 10_003))
            assert spin_until(bus, lambda: 10_003 in preds["/board/tinycl"], 15)
            assert "Traceback" not in "\n".join(board.lines)
        assert board.proc.returncode == 0 and (tmp_path / "board.state").is_file()
        # restart: the C head comes back from its state file
        with started("board", "board", "/board/tinycl", domain, f"lib:={lib}", f"state_dir:={tmp_path}") as again:
            again.wait_for_line("restored C head (10 classes)")
    finally:
        for bus in buses.values():
            bus.shutdown()


def test_missing_library_is_one_clear_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "tinycl_nodes.nodes.board", "--ros-args",
                        "-p", f"lib:={tmp_path / 'nope.so'}"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
                       env={**os.environ, "TINYCL_BUS": "dds", "ROS_DOMAIN_ID": "231"})
    assert p.returncode == 2
    err = [line for line in p.stderr.splitlines() if "ERROR" in line or "error" in line]
    assert len(err) == 1 and "make firmware-deps" in err[0] and "cmake -S" in err[0], p.stderr


def test_an_image_board_killed_between_checkpoints_ends_as_one_never_killed(host_build, data_dir, tmp_path):
    """input image (the firmware app's step: C features, then a learnable label or the C clusterer's pseudo-label):
    two boards take the same frames; one is killed with -9 after its checkpoint of the 100th learned frame, restarts
    and learns the frames since from its journal, publishing no prediction again; once both stop, their C states
    (head and centroids) are the same bytes."""
    X, y = load_mnist("test", str(data_dir))
    idx = np.random.default_rng(1).permutation(y.size)[:160]
    frames, labels = X[idx], y[idx].astype(int)
    learnable = np.arange(frames.shape[0]) < 40                 # 40 labelled frames, then pseudo-labels only
    domain = free_domain()
    lib = host_build / "libtinycl.so"
    common = (f"lib:={lib}", "input:=image", "image_qos:=reliable", "expect_ground_truth:=true",
              "save_every:=100", "save_period_s:=3600", "publish_every:=100000", "publish_period_s:=3600")
    bus = create_bus("tester", backend="dds", dds_config="loopback", domain=domain)
    Header, Time = bus.msg("std_msgs/msg/Header"), bus.msg("builtin_interfaces/msg/Time")
    preds = {ns: [] for ns in ("killed", "kept")}
    image_pubs, truth_pubs = [], []
    for ns in preds:
        bus.create_subscription(f"/{ns}/predictions", "Prediction", preds[ns].append, "reliable")
        image_pubs.append(bus.create_publisher(f"/{ns}/image", "sensor_msgs/msg/Image", "reliable"))
        truth_pubs.append(bus.create_publisher(f"/{ns}/ground_truth", "GroundTruth", "reliable"))
    stamp = time.time_ns()
    try:
        with started("board", "board", "/killed", domain, f"state_dir:={tmp_path / 'killed'}", *common) as killed, \
                started("board", "board", "/kept", domain, f"state_dir:={tmp_path / 'kept'}", *common) as kept:
            assert spin_until(bus, lambda: all(p.get_subscription_count() for p in image_pubs + truth_pubs), 40), \
                (killed.lines[-5:], kept.lines[-5:])
            for i in range(frames.shape[0]):
                h = Header(stamp=Time(sec=(stamp + i) // 10**9, nanosec=(stamp + i) % 10**9))
                for pub in truth_pubs:
                    pub.publish(bus.msg("GroundTruth")(header=h, label=int(labels[i]), class_name=str(labels[i]),
                                                       learnable=bool(learnable[i])))
                for pub in image_pubs:
                    pub.publish(bus.msg("sensor_msgs/msg/Image")(header=h, height=28, width=28, encoding="mono8",
                                                                 step=28, data=frames[i].tobytes()))
                time.sleep(0.003)
            assert spin_until(bus, lambda: all(len(p) == frames.shape[0] for p in preds.values()), 30), \
                ({ns: len(p) for ns, p in preds.items()}, killed.lines[-5:])
            spin_until(bus, lambda: False, 0.3)
            killed.proc.kill()
            killed.proc.wait()
            assert sorted(p.name for p in (tmp_path / "killed").glob("board.journal-*")), "nothing journaled"
        with started("board", "board", "/killed", domain, f"state_dir:={tmp_path / 'killed'}", *common) as again:
            line = again.wait_for_line("restored C head (", 40)
            spin_until(bus, lambda: False, 0.5)
    finally:
        bus.shutdown()
    assert "and its journal (60 messages learned again)" in line, line      # frames 101-160 after the checkpoint
    assert len(preds["killed"]) == frames.shape[0], "a prediction was published again by the replay"
    assert again.proc.returncode == 0 and kept.proc.returncode == 0
    got, want = (load_states(tmp_path / ns / "board.state")["board"]["arrays"] for ns in ("killed", "kept"))
    assert set(got) == set(want) == {"head", "centroids"}
    for k in want:
        assert np.asarray(got[k]).tobytes() == np.asarray(want[k]).tobytes(), k
