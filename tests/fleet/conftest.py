"""Fixtures: a generated fleet (CA, certificates, passwords, ACL) and a real mosquitto with TLS."""

from __future__ import annotations

import shutil
from pathlib import Path
import threading
import time
from typing import Any, Callable

import numpy as np
import pytest

from tinycl_nodes.core.federated import HeadSnapshot
from tinycl_nodes.fleet.broker import Broker, current_user, free_port, generate

FLEET = "lab"
DEVICES = ["dev1", "dev2", "dev3", "dev4", "dev5", "evil"]
XH = "e" * 64


def _need_mosquitto() -> None:
    if shutil.which("mosquitto") is None and not __import__("os").path.exists("/usr/sbin/mosquitto"):
        pytest.fail("mosquitto is not installed: run tools/mosquitto/install.sh (make system-deps)")


@pytest.fixture(scope="module")
def fleet_setup(tmp_path_factory):
    _need_mosquitto()
    # pytest's temp folders are 0700 (root's too): the broker runs as whoever runs the tests, not as mosquitto
    # (test_broker_user.py runs one as mosquitto, in a folder it can reach)
    return generate(tmp_path_factory.mktemp("broker"), FLEET, DEVICES, port=free_port(), user=current_user())


@pytest.fixture(scope="module")
def xhash() -> str:
    """The hash of the shipped model whose 64 features the fleet tests' learners take."""
    from tinycl_nodes.extractor import FrozenExtractor, model_path

    return FrozenExtractor(model_path("mnist_0to5_fp32")).hash


@pytest.fixture
def broker(fleet_setup):
    """A fresh broker per test: no retained messages or sessions left by the previous test."""
    for f in (Path(fleet_setup.directory) / "data").glob("*"):
        f.unlink()
    b = Broker(fleet_setup).start()
    yield b
    b.stop()


def wait_for(cond: Callable[[], Any], timeout_s: float = 10.0, step_s: float = 0.02) -> Any:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step_s)
    raise AssertionError(f"condition not met within {timeout_s}s")


def head(device: str, W, counts=None, ids=None, names=None, version: int = 1, h: str = XH) -> HeadSnapshot:
    W = np.asarray(W, np.float32)
    C = W.shape[0]
    ids = list(range(C)) if ids is None else ids
    return HeadSnapshot(ids, names or [f"c{i}" for i in ids], counts or [10] * C, W, np.zeros(C, np.float32),
                        "CWRStar", h, version, int(sum(counts or [10] * C)), device)


class Spinner:
    """Spin a local bus in a thread (the bridge's timers hand global heads to the bus). ``lock``: held while the bus
    runs its due timers. The local bus delivers inside publish(), so a timer's callback and those of every node it
    publishes to run in this thread; a robot's spinners and its test share one lock, so that its nodes take one
    message at a time, as a process's nodes do under its one executor."""

    def __init__(self, bus, lock: threading.RLock | None = None) -> None:
        self.bus, self.lock = bus, lock
        self.t = threading.Thread(target=bus.spin if lock is None else self._spin_locked, daemon=True)
        self.t.start()

    def _spin_locked(self) -> None:
        while self.bus.ok():
            with self.lock:
                self.bus.spin_once(0.0)
            time.sleep(0.005)

    def stop(self) -> None:
        self.bus.request_stop() if hasattr(self.bus, "request_stop") else self.bus.shutdown()
        self.t.join(5)
