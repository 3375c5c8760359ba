"""Loading a node's saved state without ever losing it: a bad file is kept aside, never overwritten."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ..core.errors import TinyclError
from ..storage import load_states, save_states


class StateFile:
    """One node's state file: ``load()`` at start, ``save(states)`` periodically and at exit."""

    def __init__(self, state_dir: str, name: str, log: logging.Logger) -> None:
        self.path = Path(state_dir) / f"{name}.state"
        self.log = log

    def load(self) -> dict[str, dict[str, Any]] | None:
        """The saved states; None when there is none yet or the file was bad (then kept aside)."""
        try:
            return load_states(self.path)
        except TinyclError as exc:
            aside = self.path.with_name(f"{self.path.name}.bad-{int(time.time())}")
            self.path.rename(aside)
            self.log.error("state file %s cannot be loaded (%s): kept as %s, starting fresh", self.path, exc, aside.name)
            return None

    def save(self, states: dict[str, dict[str, Any]]) -> None:
        save_states(self.path, states)
