"""Value types for the ``tinycl`` command line's options (argparse ``type=``).

A bad value is then argparse's one error line naming the option (``error: argument --sweep: …``, exit 2), before
anything runs: a traceback deep inside an experiment, or a run that does nothing and overwrites the record of a
real one (``experiment select --grids`` with a misspelt name did), are what they replace.
"""

from __future__ import annotations

import argparse
from typing import Callable, Iterable


def count(minimum: int = 1) -> Callable[[str], int]:
    """A whole number ≥ ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
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
