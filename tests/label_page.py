"""The label app's state as the phone's page reads it (``GET /api/state``), one way for every test."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def page_state(base: str, token: str | None = None, opener: urllib.request.OpenerDirector | None = None,
               timeout_s: float = 10.0) -> dict[str, Any]:
    """The page's JSON state at ``base`` (``http://host:port``): with the pairing token in its header, as a script
    calls the API, or through ``opener``, a phone's cookie jar that paired. An HTTP error raises."""
    req = urllib.request.Request(f"{base}/api/state", headers={"X-Tinycl-Token": token} if token else {})
    with (opener.open if opener else urllib.request.urlopen)(req, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def first_question(base: str, token: str) -> dict[str, Any] | None:
    """The first question the page shows, or None."""
    return next(iter(page_state(base, token)["pending"]), None)
