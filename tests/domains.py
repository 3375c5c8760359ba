"""One way for every test to pick a DDS domain id.

Cyclone DDS keeps, per process, the configuration a domain was first created with (loopback, or a network
one for tests/hosts); a test that reuses a domain this process already configured with another config fails
("already configured"), and a fixed or pid-derived id can collide with another test's. So: random among the ids
this process has not configured, and not one of ``avoid``.
"""

from __future__ import annotations

import os
import random
import time

RANGE = range(140, 231)   # clear of 0 (a robot's own graph) and of the demos' defaults


def free_domain(avoid: tuple[int, ...] = ()) -> int:
    from tinycl_nodes.bus.dds import configured_domains

    used = set(configured_domains()) | set(avoid)
    return random.Random(os.getpid() * 7 + time.time_ns()).choice([d for d in RANGE if d not in used])
