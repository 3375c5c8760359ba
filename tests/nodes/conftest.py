"""Node processes on a private DDS domain (loopback), always stopped at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from ..domains import free_domain

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def domain() -> int:
    """A random domain id that this test process has not configured yet (tests/domains.py)."""
    return free_domain()


class NodeProcess:
    """A node in a subprocess whose log lines (its stderr, else its stdout) are collected as they come."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        for line in self.proc.stderr if self.proc.stderr is not None else self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_for_line(self, text: str, timeout_s: float = 20.0) -> str:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.proc.poll() is not None:
                self._t.join(timeout=2)   # its last lines may still be in the pipe
                if any(text in line for line in self.lines):
                    return next(line for line in self.lines if text in line)
                break
            time.sleep(0.05)
        raise AssertionError(f"no log line with {text!r}; got:\n" + "\n".join(self.lines[-30:]))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._t.join(timeout=2)
        return self.proc.returncode


@contextmanager
def node(name: str, domain: int, *params: str, params_file: str | None = None,
         remaps: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Iterator[NodeProcess]:
    """Start ``tinycl_nodes.nodes.<name>`` on the dds backend in ``domain`` with ``-p`` params
    (and ``-r`` remaps; ``env``: more environment variables)."""
    cmd = [sys.executable, "-m", f"tinycl_nodes.nodes.{name}", "--ros-args", "-r", f"__node:={name}"]
    for r in remaps:
        cmd += ["-r", r]
    if params_file:
        cmd += ["--params-file", params_file]
    for p in params:
        cmd += ["-p", p]
    env = {**os.environ, "TINYCL_BUS": "dds", "ROS_DOMAIN_ID": str(domain), "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    n = NodeProcess(proc)
    try:
        yield n
    finally:
        n.stop()


def spin_until(bus, predicate, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        bus.spin_once(0.05)
        if predicate():
            return True
    return predicate()


def matches_made(*ends) -> tuple[int, ...]:
    """DDS total match counts (ever made) of our publishers and subscriptions (dds backend). A node killed with -9
    stays matched (the current count) until its DDS lease ends, so only a total above the one before its kill shows
    that the node started again has matched: messages sent before that went to the dead one alone (volatile)."""
    return tuple(int(e.writer.get_publication_matched_status().total_count if hasattr(e, "writer")
                     else e.reader.get_subscription_matched_status().total_count) for e in ends)


def wait_for_new_matches(bus, ends: tuple, since: tuple[int, ...], n: "NodeProcess") -> tuple[int, ...]:
    """Until each of ``ends`` has matched once more than ``since`` (zeros: once), with the node ``n``'s last lines
    if not within 30 s; the counts then."""
    assert spin_until(bus, lambda: all(m > s for m, s in zip(matches_made(*ends), since, strict=True)), 30), \
        (matches_made(*ends), since, n.lines[-10:])
    return matches_made(*ends)
