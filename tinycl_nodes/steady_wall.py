"""Wall-clock seconds that do not step while the machine runs: the clock of deadlines saved with a node's state.

A question's lifetime, the sliding hour of the question budget, an answer's undo window: these are saved with the
state, so they are wall-clock seconds, and a question asked before a restart keeps its deadline after it. But the
system clock steps. NTP sets a robot without a real-time clock forward minutes after boot, by hours or years; a
person or a GPS fix can set it back. Read from ``time.time()``, a step forward expired every open question at once,
and a step back kept questions open, and the budget spent, for as long as the step: after the clock went back an
hour, a labeler asked nothing new for an hour (tests/nodes/test_labeler_clock_step.py).

So the wall clock is read once per boot, by the user's first tinycl process, and advanced by ``CLOCK_BOOTTIME``, which
no one sets, which goes on while the machine sleeps, and which every process of the machine shares. The origin is kept
for the boot's later processes in the user's state folder (``$XDG_STATE_HOME/tinycl/clock``, by default
``~/.local/state/tinycl/clock``), stamped with the kernel's boot id: one file whether a node runs from a systemd
service, a shell or tmux, and it outlives a logout. So a node started before NTP, restarted after it, reads its saved
deadlines on the clock that wrote them, and a step moves nothing until the next boot. Where the file cannot be kept
(no home, a read-only one, a file there that is not the user's own regular file), each process takes the clock as it
is when it first asks, and :data:`unshared` says why. A time saved in an earlier boot can lie in the future:
its owner takes it as :func:`now` when it loads it. What a person reads as a date (a log line, a report) stays
``time.time()``.
"""

from __future__ import annotations

import fcntl
import math
import os
import stat
import tempfile
import time
from functools import cache
from pathlib import Path

_BOOT = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)     # Linux; elsewhere monotonic (stops in sleep)

#: why this process's clock is its own, not the boot's ("" while it is the boot's, or not asked yet)
unshared = ""


def _boot_id() -> str:
    """This boot's id (Linux); elsewhere none, and the origin is this process's."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def origin_file() -> Path:
    """Where the boot's origin is kept: the user's state folder (XDG base directories)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "tinycl" / "clock"


def _read(path: Path, boot: str) -> float | None:
    """The origin kept in ``path`` for this boot; None if there is none. ValueError: a file there that is not this
    user's own regular file (a FIFO would block the open: O_NONBLOCK), or that others may write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"{path} cannot be read ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
            raise ValueError(f"{path} is not a file of this user's own that only it writes")
        words = os.read(fd, 256).decode("ascii", "replace").split()
    finally:
        os.close(fd)
    try:
        origin = float(words[1]) if len(words) == 2 and words[0] == boot else math.nan
    except ValueError:
        return None
    return origin if math.isfinite(origin) else None


def _shared_origin(path: Path, boot: str, mine: float) -> float:
    """The origin this boot's first process kept in ``path``, or ``mine``, kept there now (under a lock on the
    folder: two processes starting together take the same)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        kept = _read(path, boot)
        if kept is not None:
            return kept
        fd, tmp = tempfile.mkstemp(prefix=".clock-", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(f"{boot} {mine!r}\n")
            os.replace(tmp, path)          # another boot's origin, or none
        finally:
            Path(tmp).unlink(missing_ok=True)
        return mine
    finally:
        os.close(folder)                   # and the lock with it


@cache
def _origin() -> float:
    global unshared
    mine = time.time() - time.clock_gettime(_BOOT)
    boot = _boot_id()
    if not boot:
        unshared = "this system gives no boot id"
        return mine
    try:
        return _shared_origin(origin_file(), boot, mine)
    except (OSError, ValueError) as exc:
        unshared = str(exc) if isinstance(exc, ValueError) else f"{origin_file()} cannot be kept ({exc})"
        return mine


def unshared_words() -> str:
    """One line for a node that saves deadlines, where its clock is its own ("" where it is the boot's)."""
    _origin()
    return (f"deadlines are on this process's clock, not the boot's ({unshared}): a clock step before a restart "
            "moves the deadlines saved before it" if unshared else "")


def now() -> float:
    """Wall-clock seconds as the system clock said when this boot's first tinycl process asked, advanced without the
    clock's steps since."""
    return _origin() + time.clock_gettime(_BOOT)
