"""Shared fixtures: the real data folder (../shared/data or $TINYCL_DATA) and the shipped models."""

from __future__ import annotations

import numpy as np
import pytest

from tinycl_nodes.datasets import data_root
from tinycl_nodes.extractor import FrozenExtractor, model_path


#: test files that boot the board app on QEMU (all on the DDS domain built into the firmware, $ROS_DOMAIN_ID):
#: one worker runs them one after another, or one board's graph hears the other's
QEMU_BOARD_FILES = {"test_arm_qemu.py", "test_board_offline.py", "test_board_state.py", "test_board_uros.py",
                    "test_board_uros_clock.py", "test_board_uros_latent.py", "test_board_rclpy.py"}
#: test files whose bounds are wall-clock ones (samples lost between a kill -9 and the restart at a fixed stream
#: rate, a DDS lease): marked ``timed``, `make test` runs them alone after the two workers are done
TIMED_FILES = {"test_kill.py", "test_launcher.py"}


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "timed: wall-clock bounds; `make test` runs these alone, after the rest")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """`make test` runs on two workers (pytest-xdist, ``--dist loadgroup``): a file's tests stay on one worker (its
    module fixtures are set up once), the QEMU board files share one group, and the ``timed`` files wait for a
    second run of their own. Runs before xdist reads the groups."""
    for item in items:
        name = item.path.name
        if name in TIMED_FILES:
            item.add_marker(pytest.mark.timed)
        if not any(item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.xdist_group("qemu_board" if name in QEMU_BOARD_FILES else str(item.path)))


@pytest.fixture(autouse=True)
def _private_ros_home(tmp_path, monkeypatch):
    """Nodes keep state under $ROS_HOME/tinycl/<namespace> by default: each test gets its own, so no
    test resumes what another (or an earlier run) learned."""
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "ros_home"))


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
