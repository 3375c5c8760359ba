"""Atomic, versioned files for learned state: a crash mid-write never leaves a broken file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .core import state as st
from .core.errors import StateError


def write_atomic(path: str | os.PathLike[str], payload: bytes, mode: int = 0o644) -> None:
    """Write ``payload`` to ``path`` via a temp file, fsync and rename (POSIX-atomic).

    The temp file is created private (0600); ``mode`` is what the finished file gets, so an
    exported head can be read by whoever builds the firmware.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_states(path: str | os.PathLike[str], states: dict[str, dict[str, Any]]) -> None:
    """Save several named state dicts (e.g. clusterer + head) as one atomic file."""
    bundle = st.make_state("bundle", 1, {}, {}, {"names": sorted(states)})
    for name, state in states.items():
        bundle["meta"][name] = {k: state[k] for k in ("format", "kind", "version", "params", "meta")}
        bundle["arrays"].update({f"{name}/{k}": v for k, v in state["arrays"].items()})
    write_atomic(path, st.to_bytes(bundle))


def load_states(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]] | None:
    """The named states saved by :func:`save_states`; None if there is no file; StateError if bad."""
    path = Path(path)
    if not path.exists():
        return None
    bundle = st.check_state(st.from_bytes(path.read_bytes()), "bundle", 1)
    out = {}
    for name in bundle["meta"].get("names", []):
        head = dict(bundle["meta"].get(name) or {})
        if not head:
            raise StateError(f"state file {path}: entry {name!r} is missing")
        prefix = f"{name}/"
        head["arrays"] = {k[len(prefix):]: v for k, v in bundle["arrays"].items() if k.startswith(prefix)}
        out[name] = head
    return out
