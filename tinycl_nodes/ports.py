"""Who holds a TCP port on this machine, for the one line a node says when the port it binds is taken.

Linux's ``/proc`` only (the listening socket's inode in ``/proc/net/tcp*``, then the process holding it among the
``/proc/<pid>/fd`` this user may read): cheap, and no dependency for a line that only helps. Anything unknown is left
out of the line rather than guessed.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

LISTEN = "0A"   # the state column of /proc/net/tcp for a listening socket


def _listening(port: int, proc: Path) -> dict[str, int]:
    """Socket inode → owner uid of every socket listening on ``port`` (any address, IPv4 or IPv6)."""
    found: dict[str, int] = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == LISTEN and int(f[1].rsplit(":", 1)[1], 16) == port and f[9] != "0":
                found[f[9]] = int(f[7])
    return found


def port_holder(port: int, proc: Path = Path("/proc")) -> str | None:
    """What listens on TCP ``port`` here, in words: ``"python3 (pid 1234)"``, ``"a process of user www-data"`` when
    its process cannot be read, or None when nothing is known."""
    sockets = _listening(port, proc)
    if not sockets:
        return None
    wanted = {f"socket:[{inode}]": inode for inode in sockets}
    for pid in (p for p in os.listdir(proc) if p.isdigit()):
        try:
            for fd in os.scandir(proc / pid / "fd"):
                if os.readlink(fd.path) in wanted:
                    return f"{(proc / pid / 'comm').read_text().strip()} (pid {pid})"
        except OSError:       # gone meanwhile, or another user's
            continue
    uid = next(iter(sockets.values()))
    try:
        return f"a process of user {pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"a process of uid {uid}"
