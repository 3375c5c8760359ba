"""One origin per boot for the clock of saved deadlines (``steady_wall``): processes started on either side of a
clock step read the same time; an origin left by another boot, or unreadable, is replaced; a file there that is not
the user's own regular file (a FIFO would hang the process), or a state folder that cannot be written, leaves each
process its own clock, and says why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.faketime import faketime_env
from tinycl_nodes import steady_wall

ROOT = Path(__file__).resolve().parents[1]
READ = ("import json; from tinycl_nodes import steady_wall as s; "
        "print(json.dumps([s.now(), s.unshared_words()]))")
BOOT = Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def in_process(state: Path, offset: str) -> tuple[float, str]:
    """(``steady_wall.now()``, its words when unshared) in a new process on a wall clock ``offset`` off, with
    ``state`` as XDG_STATE_HOME."""
    env = {**os.environ, **faketime_env(offset), "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(state)}
    out = subprocess.run([sys.executable, "-c", READ], env=env, capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    seen, words = json.loads(out.stdout)
    return float(seen), words


def near(seen: float, offset_s: float) -> bool:
    return abs(seen - (time.time() + offset_s)) < 30


def test_processes_on_either_side_of_a_clock_step_share_the_clock_of_the_boot(tmp_path):
    before, words = in_process(tmp_path, "-3h")          # the first process of the boot, before NTP
    after, _ = in_process(tmp_path, "+0")                 # NTP has set the clock three hours forward
    assert 0 <= after - before < 30 and near(before, -3 * 3600) and words == "", (after - before, words)
    kept = tmp_path / "tinycl" / "clock"
    assert kept.read_text().split()[0] == BOOT and kept.stat().st_mode & 0o777 == 0o600


def test_an_origin_from_another_boot_or_unreadable_is_replaced(tmp_path):
    kept = tmp_path / "tinycl" / "clock"
    kept.parent.mkdir(parents=True)
    for stale in ("0123-another-boot 1000.0\n", "not an origin\n", f"{BOOT} nan\n", f"{BOOT} 1e999\n"):
        kept.write_text(stale)
        kept.chmod(0o600)
        seen, words = in_process(tmp_path, "-2h")
        assert near(seen, -2 * 3600) and words == "", (stale, words)
        assert kept.read_text() != stale


def test_what_is_not_the_users_own_file_leaves_the_process_its_own_clock_and_says_why(tmp_path):
    kept = tmp_path / "tinycl" / "clock"
    kept.parent.mkdir(parents=True)
    os.mkfifo(kept)                                       # an open of it without O_NONBLOCK never returned
    seen, words = in_process(tmp_path, "-1h")
    assert near(seen, -3600) and "is not a file of this user's own" in words, words
    kept.unlink()
    kept.write_text(f"{BOOT} 1000.0\n")
    for mode, uid in ((0o666, os.getuid()), (0o600, 65534)):     # others may write it; another user's (nobody)
        kept.chmod(mode)
        os.chown(kept, uid, -1)                           # make test runs as root
        seen, words = in_process(tmp_path, "-1h")
        assert near(seen, -3600) and "is not a file of this user's own" in words, (oct(mode), uid, words)
    assert kept.read_text() == f"{BOOT} 1000.0\n"         # left as it was
    seen, words = in_process(Path("/proc/no-such-folder"), "-1h")     # no state folder can be made
    assert near(seen, -3600) and "cannot be kept" in words, words


def test_the_origin_file_is_in_the_users_state_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert steady_wall.origin_file() == tmp_path / "tinycl" / "clock"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert steady_wall.origin_file() == tmp_path / ".local" / "state" / "tinycl" / "clock"
