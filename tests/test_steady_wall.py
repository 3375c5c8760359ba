"""One origin per boot for the clock of saved deadlines (``steady_wall``): processes started on either side of a
clock step read the same time, an origin left by another boot is replaced, and no runtime folder means the
process's own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.faketime import faketime_env
from tinycl_nodes import steady_wall

ROOT = Path(__file__).resolve().parents[1]
READ = "from tinycl_nodes import steady_wall; print(repr(steady_wall.now()))"


def now_in_process(runtime: Path | None, offset: str) -> float:
    """``steady_wall.now()`` as a new process on a wall clock ``offset`` off sees it (``runtime``: its
    XDG_RUNTIME_DIR; None: one that cannot be written)."""
    env = {**os.environ, **faketime_env(offset), "PYTHONPATH": str(ROOT),
           "XDG_RUNTIME_DIR": str(runtime) if runtime else "/proc/no-such-folder"}
    out = subprocess.run([sys.executable, "-c", READ], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return float(out.stdout)


def test_processes_on_either_side_of_a_clock_step_share_the_clock_of_the_boot(tmp_path):
    before = now_in_process(tmp_path, "-3h")          # the first process of the boot, before NTP
    after = now_in_process(tmp_path, "+0")            # NTP has set the clock three hours forward
    assert 0 <= after - before < 30, after - before
    assert abs(before - (time.time() - 3 * 3600)) < 30     # the first one's clock, not the system's now
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert (tmp_path / "tinycl-clock").read_text().split()[0] == boot


def test_an_origin_from_another_boot_or_unreadable_is_replaced_and_none_kept_means_the_process_own(tmp_path):
    kept = tmp_path / "tinycl-clock"
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    for stale in ("0123-another-boot 1000.0\n", "not an origin\n", f"{boot} nan\n"):
        kept.write_text(stale)
        seen = now_in_process(tmp_path, "-2h")
        assert abs(seen - (time.time() - 2 * 3600)) < 30, stale
        assert kept.read_text() != stale
    assert abs(now_in_process(None, "-1h") - (time.time() - 3600)) < 30     # no folder to keep it in


def test_the_origin_file_is_the_runtime_folder_of_the_user(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert steady_wall.origin_file() == tmp_path / "tinycl-clock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert steady_wall.origin_file() == Path("/dev/shm") / f"tinycl-clock-{os.getuid()}"
