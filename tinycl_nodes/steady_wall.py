"""Wall-clock seconds that do not step while the machine runs: the clock of deadlines saved with a node's state.

A question's lifetime, the sliding hour of the question budget, an answer's undo window: these are saved with the
state, so they are wall-clock seconds, and a question asked before a restart keeps its deadline after it. But the
system clock steps. NTP sets a robot without a real-time clock forward minutes after boot, by hours or years; a
person or a GPS fix can set it back. Read from ``time.time()``, a step forward expired every open question at once,
and a step back kept questions open, and the budget spent, for as long as the step: after the clock went back an
hour, a labeler asked nothing new for an hour (tests/nodes/test_labeler_clock_step.py).

So the wall clock is read once per boot, by the first tinycl process, and advanced by ``CLOCK_BOOTTIME``, which no one
sets, which goes on while the machine sleeps, and which every process of the machine shares. The origin is kept for
the boot's later processes in a file of the runtime folder (``$XDG_RUNTIME_DIR``, else ``/dev/shm``: cleared at boot,
and stamped with the kernel's boot id besides). So a node started before NTP, restarted after it, reads its saved
deadlines on the clock that wrote them; a step moves nothing until the next boot. Where no runtime folder can be
written, each process takes the clock as it is when it starts. A time saved in an earlier boot, or before the clock
was set back, can lie in the future: its owner takes it as :func:`now` when it loads it. What a person reads as a
date (a log line, a report) stays ``time.time()``.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

_BOOT = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)     # Linux; elsewhere monotonic (stops in sleep)


def _boot_id() -> str:
    """This boot's id (Linux); elsewhere none, and the origin is this process's."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def origin_file() -> Path:
    """Where this boot's origin is kept: the user's runtime folder, which the system clears at boot."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "tinycl-clock" if runtime else Path("/dev/shm") / f"tinycl-clock-{os.getuid()}"


def _read(path: Path, boot: str) -> float | None:
    """The origin kept in ``path`` for this boot; None if there is none, or the file is not this user's own."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_uid != os.getuid():
            return None
        words = os.read(fd, 256).decode("ascii", "replace").split()
        origin = float(words[1]) if len(words) == 2 and words[0] == boot else math.nan
        return origin if math.isfinite(origin) else None
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _shared_origin(path: Path, boot: str, mine: float) -> float:
    """The origin the boot's first process wrote to ``path``, or ``mine`` now written there (first writer wins)."""
    kept = _read(path, boot)
    if kept is not None:
        return kept
    fd, tmp = tempfile.mkstemp(prefix=".tinycl-clock-", dir=path.parent)
    try:
        os.write(fd, f"{boot} {mine!r}\n".encode())
        os.close(fd)
        try:
            os.link(tmp, path)                     # atomic, and refused where another process was first
            return mine
        except FileExistsError:
            kept = _read(path, boot)
            if kept is not None:
                return kept
            os.replace(tmp, path)                  # an earlier boot's (a runtime folder that outlived the boot)
            return mine
    finally:
        Path(tmp).unlink(missing_ok=True)


def _origin() -> float:
    mine = time.time() - time.clock_gettime(_BOOT)
    boot = _boot_id()
    if not boot:
        return mine
    try:
        return _shared_origin(origin_file(), boot, mine)
    except (OSError, ValueError):
        return mine


_ORIGIN = _origin()


def now() -> float:
    """Wall-clock seconds as the system clock said when this boot's first tinycl process started, advanced without
    the clock's steps since."""
    return _ORIGIN + time.clock_gettime(_BOOT)
