"""Value types for the ``tinycl`` command line's options (argparse ``type=``).

A bad value is then argparse's one error line naming the option (``error: argument --sweep: …``, exit 2), before
anything runs: a traceback deep inside an experiment, or a run that does nothing and overwrites the record of a
real one (``experiment select --grids`` with a misspelt name did), are what they replace.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable


def count(minimum: int = 1, maximum: int | None = None) -> Callable[[str], int]:
    """A whole number ≥ ``minimum`` (and ≤ ``maximum``)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value
    return parse


def number(minimum: float = float("-inf"), below: float = float("inf")) -> Callable[[str], float]:
    """A finite number in [``minimum``, ``below``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not minimum <= value < below:
            raise argparse.ArgumentTypeError(f"must be in [{minimum:g}, {below:g}), got {text}")
        return value
    return parse


#: a size's units: SI (powers of 1000) and binary (powers of 1024); a bare number is bytes
SIZE_UNITS = {"KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "kB": 1000, "KB": 1000, "MB": 1000 ** 2,
              "GB": 1000 ** 3, "B": 1}
#: the largest size taken (a memory budget beyond it is a typo, and inf or 1e400 was an OverflowError)
MAX_SIZE = 1024 ** 4


def byte_size(text: str) -> int:
    """A size in bytes: ``256KiB``, ``1MiB``, ``2GB``, ``300000``; from 1 B to 1 TiB."""
    t = text.strip()
    unit = next((u for u in SIZE_UNITS if t.endswith(u)), "")
    try:
        value = float(t[:len(t) - len(unit)]) * SIZE_UNITS.get(unit, 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 256KiB (a number with B, kB, MB, GB or KiB, "
                                         f"MiB, GiB), got {text!r}") from None
    if not 1 <= value <= MAX_SIZE:       # NaN is not either
        raise argparse.ArgumentTypeError(f"must be 1B to 1TiB, got {text!r}")
    return int(value)


def _items(text: str) -> tuple[str, ...]:
    """The comma-separated items of ``text``, stripped; '' is none."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def counts(minimum: int = 0) -> Callable[[str], tuple[int, ...]]:
    """Comma-separated whole numbers ≥ ``minimum``; '' is none."""
    one = count(minimum)
    return lambda text: tuple(map(one, _items(text)))


def numbers(minimum: float = float("-inf"), below: float = float("inf")) -> Callable[[str], tuple[float, ...]]:
    """Comma-separated numbers in [``minimum``, ``below``); '' is none."""
    one = number(minimum, below)
    return lambda text: tuple(map(one, _items(text)))


def names(known: Iterable[str]) -> Callable[[str], tuple[str, ...]]:
    """Comma-separated names out of ``known``; '' is none."""
    known = tuple(known)

    def parse(text: str) -> tuple[str, ...]:
        given = _items(text)
        unknown = [n for n in given if n not in known]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(map(repr, unknown))} (known: {', '.join(known)})")
        return given
    return parse


def _writable_folder(folder: Path) -> None:
    """Say why ``folder`` cannot be written in (or made), before the work, whose results were lost at its end
    (``--out /proc/x/r.json`` after a whole experiment). Nothing is left behind: a file made and removed in the
    nearest folder that exists; a refused run makes no folder."""
    there = folder
    while not there.exists() and not there.is_symlink() and there != there.parent:
        there = there.parent
    if not there.is_dir():
        raise argparse.ArgumentTypeError(f"{there} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=there):
            pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot write in {folder}: {exc.strerror or exc}") from None


def output_file(text: str) -> str:
    """A file to write: not a folder, in a folder that is (or can be made) writable."""
    path = Path(os.path.expanduser(text))
    if not text.strip() or path.is_dir() or text.endswith(os.sep):
        raise argparse.ArgumentTypeError(f"expected a file to write, got the folder {text!r}")
    _writable_folder(path.parent)
    return text


def output_folder(text: str) -> str:
    """A folder to write in (made by the work, if missing)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder, got ''")
    _writable_folder(Path(os.path.expanduser(text)))
    return text
