"""One way for every test to pick a DDS domain id.

Cyclone DDS keeps, per process, the configuration a domain was created with (loopback, or a network one for
tests/hosts) while a participant of the process is on it; a test that takes a domain this process still uses with
another config fails ("already configured"), and a fixed or pid-derived id can collide with another test's. So:
random among the ids this process is not using and no earlier test of it has had (a test whose nodes are all
subprocesses uses nothing here, and a node it failed to stop would hear the next test's), and not one of ``avoid``;
each pytest-xdist worker draws from its own share of the range, so that two tests running at once never share a
domain (drawing from the whole range, two files running at once met 1 time in 91, and each then heard the other's
nodes).
"""

from __future__ import annotations

import os
import random
import time

# Clear of 0 (a robot's own graph) and of most of the fleet demo's default 100–199. Until 2026-12-06 the dds backend
# never let a domain go, and a worker's share ran out (with 140–230 alone at the suite's 851st test; with all of this,
# 91 ids a worker, in a CI run): the last bus on a domain now releases it. 1–99 also keep Cyclone's ports
# (7400 + 250·id) below Linux's ephemeral range.
# 41–48 are left out: the discovery tests (tests/bus/test_ros2_humble_discovery.py, test_discovery_layouts.py) take
# them by number, and a random test's Humble node on 46 made test_no_ros2_reader_no_announcement see a ROS 2 peer (a
# fresh-clone run, 2026-12-05).
RANGE = (*range(1, 41), *range(49, 100), *range(140, 231))
_HANDED_OUT: list[int] = []     # the ids handed out in this process, the oldest first


def free_domain(avoid: tuple[int, ...] = ()) -> int:
    """A domain id no test of this process has had yet, if one is left; else the one handed out longest ago that
    this process is not using (a domain is free again once the test's buses and subprocesses are stopped)."""
    from tinycl_nodes.bus.dds import configured_domains

    used = set(configured_domains()) | set(avoid)
    free = [d for d in worker_share() if d not in used]
    if not free:
        raise RuntimeError(f"tests/domains.py: every DDS domain id of this worker's share ({len(worker_share())}) is "
                           "in use in this process: are earlier tests' buses shut down?")
    fresh = [d for d in free if d not in _HANDED_OUT]
    domain = (random.Random(os.getpid() * 7 + time.time_ns()).choice(fresh) if fresh
              else min(free, key=_HANDED_OUT.index))
    if domain in _HANDED_OUT:
        _HANDED_OUT.remove(domain)
    _HANDED_OUT.append(domain)
    return domain


def worker_share() -> tuple[int, ...]:
    """The ids this process draws from: slot N of K takes every K-th id from the N-th.

    A pytest-xdist worker gwN of K is slot N of K; a pytest run beside the workers (``make test``'s lane of tests
    that mostly wait) names its own slot and the count of all of them in ``TINYCL_DOMAIN_SLOT`` and
    ``TINYCL_DOMAIN_SLOTS``, which its workers read too. Outside xdist and with no slot set, all of them."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    slot = os.environ.get("TINYCL_DOMAIN_SLOT") or (worker[2:] if worker.startswith("gw") else "")
    slots = os.environ.get("TINYCL_DOMAIN_SLOTS") or count
    if not (slot.isdigit() and slots.isdigit() and int(slots) > int(slot)):
        return RANGE
    return RANGE[int(slot)::int(slots)]
