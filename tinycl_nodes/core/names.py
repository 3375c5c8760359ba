"""Class names as people give them: one rule, used by the labeler and by the phone app.

Why one rule: a name the app accepted but the labeler refused was shown as "ok" on the phone and
lost. A name is NFC-normalised, inner white space collapsed to one space, 1 to 64 characters, and
holds no control, format, private-use, surrogate or unassigned character (so no C0/C1 controls,
no zero-width joiner U+200D, no soft hyphen U+00AD, no bidi overrides). Two names that differ
only in case or spacing are the same class.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from .errors import InputError

MAX_NAME_CHARS = 64
#: a kept name's UTF-8 at most (4 bytes a character): what a board's buffers for a name hold (``export.c_board``)
MAX_NAME_BYTES = 4 * MAX_NAME_CHARS
REFUSED_CATEGORIES = {"Cc": "a control character", "Cf": "an invisible formatting character",
                      "Cs": "a surrogate", "Co": "a private-use character", "Cn": "an unassigned character",
                      "Zl": "a line separator", "Zp": "a paragraph separator"}
TYPED_SPACES = frozenset(" \t\n\r")   # control characters a person types as spacing: collapsed, not refused


def check_class_name(name: Any) -> str:
    """The name cleaned, or InputError (one line, for the person) saying what is wrong with it."""
    if not isinstance(name, str):
        raise InputError(f"a class name must be text, got {type(name).__name__}")
    text = unicodedata.normalize("NFC", name)
    for ch in text:   # before collapsing: str.split() also treats U+001C–U+001F, U+0085, U+2028/9 as spaces
        what = None if ch in TYPED_SPACES else REFUSED_CATEGORIES.get(unicodedata.category(ch))
        if what:
            raise InputError(f"the class name contains {what} (U+{ord(ch):04X})")
    clean = kept_form(text)
    if not clean:
        raise InputError("the class name is empty: type a name")
    if too_long := length_problem(clean):
        raise InputError(too_long)
    return clean


def length_problem(name: str) -> str:
    """What is wrong with the name's length, "" if nothing: counted as the name is kept (NFC, spaces collapsed).
    The phone app checks a rename with it (and its page gets MAX_NAME_CHARS): one limit everywhere."""
    n = len(kept_form(name))
    return f"the class name is {n} characters long, at most {MAX_NAME_CHARS}" if n > MAX_NAME_CHARS else ""


def kept_form(name: str) -> str:
    """The name as it is kept: NFC, white space collapsed to single spaces, none at the ends."""
    return " ".join(unicodedata.normalize("NFC", name).split())


def normalise_name(name: str) -> str:
    """The key two names are compared by: case and spacing aside."""
    return kept_form(name).casefold()
