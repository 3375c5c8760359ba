"""A launcher's node processes, as /proc shows them (tests that signal one node of a running graph)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

#: ``python -c IGNORING_SIGINT -m …`` runs ``python -m …`` with SIGINT ignored, as a non-interactive shell starts a job
#: in the background (`… &` in a script)
IGNORING_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                   "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    """Running (not a zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def node_pid(launcher: int, name: str) -> int | None:
    """The running child of ``launcher`` that is node ``name`` (its ``-r __node:=name`` argument), if any."""
    for pid in children(launcher):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"__node:={name}".encode() in args and alive(pid):
            return pid
    return None


def kill9(launcher: int, name: str) -> int:
    """kill -9 node ``name`` of ``launcher`` (as an OOM kill would); its pid."""
    pid = node_pid(launcher, name)
    assert pid is not None, f"no running {name} node under pid {launcher}"
    os.kill(pid, signal.SIGKILL)
    return pid


def kill9_launcher(launcher, timeout_s: float = 30.0) -> tuple[list[int], list[int], float]:
    """kill -9 of a launcher (its ``subprocess.Popen``), as an OOM kill or a closed session's SIGKILL would: (its node
    processes, those still running ``timeout_s`` later — then killed, so a test leaves nothing behind — and the
    time.time() of the kill)."""
    import time

    nodes = children(launcher.pid)
    t_kill = time.time()
    launcher.kill()
    launcher.wait(timeout=10)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and any(alive(p) for p in nodes):
        time.sleep(0.2)
    left = [p for p in nodes if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    return nodes, left, t_kill
