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


def reissue(directory: str | Path, cert: Path, out: Path, ends_in_days: float, lasts_days: float = 825):
    """``cert`` signed again by the fleet's CA of ``directory`` (its subject, key and extensions), lasting
    ``lasts_days`` and ending ``ends_in_days`` from now (< 0: ended), written to ``out``: a real certificate of the
    fleet near or past its end, without moving any clock. Its end."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    d = Path(directory)
    ca = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
    old = x509.load_pem_x509_certificate(cert.read_bytes())
    end = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=ends_in_days)
    b = (x509.CertificateBuilder().subject_name(old.subject).issuer_name(ca.subject).public_key(old.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(end - dt.timedelta(days=lasts_days))
         .not_valid_after(end))
    for ext in old.extensions:
        b = b.add_extension(ext.value, ext.critical)
    out.write_bytes(b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return end


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
