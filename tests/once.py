"""A build every pytest-xdist worker of a run needs, made once per run.

The workers of one run share the run's temporary folder: the first to ask makes the build while the others wait on a
lock, then each takes what the first recorded (two colcon builds at once took ~23 s of each of the 2 cores; two
sanitizer builds of the C core ~20 s each). A build that failed records nothing: the next worker to ask tries again.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest


def once_per_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str,
                 make: Callable[[Path], Any]) -> Any:
    """``make(folder)`` in ``<run's temporary folder>/name``, once for all workers; its JSON-able result."""
    if not hasattr(request.config, "workerinput"):        # one process: its own folder
        return make(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent         # the run's folder, of every worker (not of other runs)
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)                   # released when the file closes
        done = shared / f"{name}.json"
        if not done.is_file():
            folder = shared / name
            shutil.rmtree(folder, ignore_errors=True)      # a build that failed in another worker
            folder.mkdir()
            done.write_text(json.dumps(make(folder)))
        return json.loads(done.read_text())
