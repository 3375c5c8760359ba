"""Shared fixtures: the real data folder (../shared/data or $TINYCL_DATA) and the shipped models."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile

import numpy as np
import pytest

from tinycl_nodes import steady_wall
from tinycl_nodes.datasets import data_root
from tinycl_nodes.extractor import FrozenExtractor, model_path
from tinycl_nodes.nodes.runner import STOP_SIGNALS

# steady_wall keeps the boot's clock origin in the user's state folder, taken by the boot's first process. The suite
# keeps its own, taken here from the real clock: a node a test runs on a clock it sets (libfaketime) would otherwise
# write its clock there for every later process of the user, real nodes too.
os.environ["XDG_STATE_HOME"] = _state_home = tempfile.mkdtemp(prefix="tinycl-test-state-")
atexit.register(shutil.rmtree, _state_home, True)
steady_wall.now()


@pytest.fixture(autouse=True)
def _private_ros_home(tmp_path, monkeypatch):
    """Nodes keep state under $ROS_HOME/tinycl/<namespace> by default: each test gets its own, so no
    test resumes what another (or an earlier run) learned."""
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "ros_home"))


# `make test &` in a script runs the suite with SIGINT ignored, and every process a test starts inherits that. The tests
# stop their processes with Ctrl-C's signal, as a terminal does: give them what a terminal gives (a program started
# with SIGINT ignored is tested on purpose: tests/reliability/test_launcher.py).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _signals_left_as_found():
    """Fails a test that leaves a stop signal's handler changed, or a signal blocked, in its worker: every later test
    there would run with it, and each process they start inherits a signal ignored or blocked."""
    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    changed = {s.name: signal.getsignal(s) for s in STOP_SIGNALS if signal.getsignal(s) != before[s]}
    for s in STOP_SIGNALS:
        signal.signal(s, before[s])
    assert not changed, f"the test left signal handlers changed: {changed}"
    now_blocked = signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    assert now_blocked == blocked, f"the test left signals blocked: {sorted(now_blocked - blocked)}"


@pytest.fixture(scope="session")
def data_dir():
    root = data_root()
    if not (root / "mnist" / "SHA256SUMS").is_file():
        pytest.fail(f"MNIST not found under {root}: CI needs ../shared/data beside the clone or TINYCL_DATA")
    return root


@pytest.fixture(scope="session")
def fp32_extractor():
    return FrozenExtractor(model_path("mnist_0to5_fp32"))


@pytest.fixture(scope="session")
def int8_extractor():
    return FrozenExtractor(model_path("mnist_0to5_int8"))


def blobs(n_per_class: int, classes: list[int], dim: int = 16, sep: float = 6.0, seed: int = 0,
          cov_scale: np.ndarray | None = None):
    """Seeded Gaussian blobs: (X float32, y int64), shuffled."""
    rng = np.random.default_rng(seed)
    centers = {c: rng.normal(0, sep / np.sqrt(dim), dim) * np.sqrt(dim) / 2 for c in classes}
    X, y = [], []
    for c in classes:
        noise = rng.normal(0, 1, (n_per_class, dim))
        if cov_scale is not None:
            noise = noise * cov_scale
        X.append(centers[c] + noise)
        y += [c] * n_per_class
    X, y = np.concatenate(X).astype(np.float32), np.asarray(y, np.int64)
    order = rng.permutation(len(y))
    return X[order], y[order]


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (a real file system that runs out of space), unmounted after the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.fail(f"a full disk needs a tmpfs mount (make test runs as root): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk) -> None:
    st = os.statvfs(disk)
    with open(disk / "filler", "wb") as fh:
        try:
            fh.write(b"\0" * (st.f_bavail * st.f_frsize))
            fh.flush()
        except OSError:
            pass
    with pytest.raises(OSError):               # nothing more fits
        (disk / "probe").write_bytes(b"\0" * 8192)
