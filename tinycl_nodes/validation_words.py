"""How a pydantic validation error reads in tinycl's one-line messages (parameters, model cards, fleet payloads)."""

from __future__ import annotations

from typing import Any


def error_words(err: Any, where: str = "") -> tuple[str, str]:
    """``(location, message)`` of one of ``ValidationError.errors()``: the dotted location (``where`` when it has
    none), and pydantic's message without its "Value error, " prefix, which a validator's own words do not need."""
    loc = ".".join(str(x) for x in err["loc"]) or where
    return loc, str(err["msg"]).removeprefix("Value error, ")
