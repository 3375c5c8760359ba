"""A process on a wall clock the test sets: libfaketime (Debian's ``faketime``, installed by ``make test``).

Only the wall clock moves, as when NTP or a person steps it: ``FAKETIME_DONT_FAKE_MONOTONIC`` keeps the monotonic and
boot-time clocks. (libfaketime 0.9.10 then fails ``time.sleep`` in Python, EINVAL: a process run so must not sleep
that way; ``threading`` waits, ``select`` and DDS waitsets are fine.)
"""

from __future__ import annotations

import glob
import os


def faketime_env(offset: str | os.PathLike[str]) -> dict[str, str]:
    """Environment variables that run a process ``offset`` off the real wall clock ("-400d", "+1h"), or on the offset
    that a file of that name holds (re-read at every call, so that a test steps the clock while the process runs)."""
    libs = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    assert libs, "libfaketime is not installed (Debian package faketime: make test installs it)"
    env = {"LD_PRELOAD": libs[0], "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    if isinstance(offset, str):
        return {**env, "FAKETIME": offset}
    return {**env, "FAKETIME_TIMESTAMP_FILE": str(offset), "FAKETIME_NO_CACHE": "1"}
