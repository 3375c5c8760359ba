"""Where datasets live: ``--data DIR``, else ``$TINYCL_DATA``, else ``../shared/data``."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

from ..core.errors import TinyclError

ENV_VAR = "TINYCL_DATA"


class DataError(TinyclError):
    """A dataset is missing, incomplete or corrupt; the message names the path."""


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: the explicit path, else $TINYCL_DATA, else ../shared/data from the repo.

    The default is looked up relative to the repository root (two levels above this package) and
    then to the current directory, so it works both from a checkout and from the repo root.
    """
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    repo_root = Path(__file__).resolve().parents[2]
    for base in (repo_root, Path.cwd()):
        candidate = (base / ".." / "shared" / "data").resolve()
        if candidate.is_dir():
            return candidate
    return (Path.cwd() / ".." / "shared" / "data").resolve()


def read_sha256sums(folder: Path) -> dict[str, str]:
    """Parse a ``SHA256SUMS`` file (``<hex>  <name>`` lines) of a dataset folder, if present."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return {}
    out: dict[str, str] = {}
    for n, line in enumerate(sums.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        m = _SUM_LINE.match(line.rstrip("\r"))
        if m is None:      # read as a hash of a file named by its second word, it said that file was missing
            raise DataError(f"{sums}: line {n} is not '<sha256>  <file>' (as sha256sum writes it): {line[:60]!r}")
        out[m.group(2).removeprefix("./")] = m.group(1).lower()
    return out


#: a line of sha256sum's output: 64 hex digits, a space, then a space (text) or '*' (binary), then the file name
_SUM_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


def unverified_note(folder: Path) -> None:
    """The one line said when a folder has no SHA256SUMS: its files are used as they are."""
    logging.getLogger("tinycl.datasets").warning(
        "note: %s has no SHA256SUMS: its files are used without a checksum check", folder)


def verify_file(path: Path, expected_sha256: str | None) -> None:
    """Raise DataError when ``path`` is missing or its SHA-256 differs from ``expected_sha256``."""
    if not path.is_file():
        raise DataError(f"dataset file missing: {path}")
    if expected_sha256 is None:
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected_sha256:
        raise DataError(f"dataset file corrupt: {path} has SHA-256 {digest[:16]}…, "
                        f"SHA256SUMS says {expected_sha256[:16]}…")
