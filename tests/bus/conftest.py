"""Shared helpers for the bus tests: a private DDS domain on loopback, peer subprocesses that always die."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from ..domains import free_domain

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def domain() -> int:
    """A domain id this test process has not configured (tests/domains.py)."""
    return free_domain()


def peer_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("CYCLONEDDS_URI", None)  # the peer passes the loopback config itself
    return env


@contextmanager
def peer(*args: str, timeout_s: float = 20.0) -> Iterator[subprocess.Popen]:
    """Run tests/bus/peer.py in a subprocess; wait for READY; always kill it afterwards."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.bus.peer", *args], cwd=ROOT, env=peer_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if line.strip() != "READY":
            proc.kill()
            raise AssertionError(f"peer did not start: {line!r} {proc.stderr.read()[-2000:]}")
        yield proc
    finally:
        proc.kill()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass


def wait_for(predicate, timeout_s: float, spin=None) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if spin is not None:
            spin(0.05)
        else:
            time.sleep(0.02)
        if predicate():
            return True
    return predicate()
