"""Two processes on one state file: the second learner started on a state folder a running one holds is refused at
start with one line naming the holder (two graphs on one folder overwrote each other's state); the holder runs on,
and once it is killed -9 the kernel has released its lock and a new learner starts there."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from .conftest import node


def _holds(lock: Path, pid: int, timeout_s: float = 30.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if lock.is_file() and lock.read_text().strip() == str(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_second_learner_on_a_held_state_file_is_refused_until_the_holder_dies(domain, tmp_path):
    lock = tmp_path / ".learner.state.lock"
    with node("learner", domain, f"state_dir:={tmp_path}") as first:
        assert _holds(lock, first.proc.pid), "\n".join(first.lines[-10:])
        with node("learner", domain, f"state_dir:={tmp_path}") as second:
            assert second.proc.wait(60) == 2
            line = second.wait_for_line("is in use by another running process")
            assert f"{tmp_path / 'learner.state'}" in line and f"(pid {first.proc.pid})" in line, line
            assert [ln for ln in second.lines if "Traceback" in ln] == []
        assert first.proc.poll() is None                     # the holder runs on
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
    with node("learner", domain, f"state_dir:={tmp_path}") as third:
        assert _holds(lock, third.proc.pid), "\n".join(third.lines[-10:])
        assert third.stop() == 0
