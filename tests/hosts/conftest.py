"""Separate hosts for real: network namespaces on a private bridge (``tinycl_nodes.netns``).

``make test`` runs as root, where ``ip netns`` works; elsewhere these tests fail with the reason
(a skipped test is not a pass). Every namespace is removed afterwards, which the fixture checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinycl_nodes.netns import HostNet, available

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def need_hosts() -> None:
    why = available()
    if why:
        pytest.fail(f"tests/hosts need network namespaces: {why} (make test runs as root)")
    if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
        pytest.fail("mosquitto is not installed: run tools/mosquitto/install.sh (make system-deps)")


@pytest.fixture(scope="module")
def net():
    need_hosts()
    n = HostNet(["cloud", "robot1", "robot2", "robot3", "robot4"]).up()
    yield n
    n.close()
    assert n.leftovers() == [], f"namespaces left behind: {n.leftovers()}"


def py_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **extra}
    return env


def run_py(net: HostNet, host: str, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return net.run(host, [PY, *args], timeout=timeout, env=py_env(), cwd=str(ROOT))
