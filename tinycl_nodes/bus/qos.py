"""QoS profiles of the graph (DESIGN.md conventions), backend-neutral."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class QosProfile:
    """What a topic needs; each backend maps it to its own QoS objects.

    depth=0 means KEEP_ALL: the publisher is slowed down instead of samples being dropped;
    lifespan_s=0 means a sample never expires (else a late joiner gets only younger ones).
    """

    reliable: bool = True
    transient_local: bool = False
    depth: int = 0
    max_blocking_s: float = 1.0
    lifespan_s: float = 0.0

    @property
    def history(self) -> Literal["keep_all", "keep_last"]:
        return "keep_all" if self.depth == 0 else "keep_last"


#: camera frames, IMU windows: a late frame is worth less than a fresh one
SENSOR_DATA = QosProfile(reliable=False, transient_local=False, depth=5)
#: an IMU driver's readings (one reading each, 50–1,000 a second): best effort as drivers send them, but every one
#: counts for its window, so up to a quarter of a second of a 1 kHz driver is queued while the reader is busy (at
#: SENSOR_DATA's 5, any stall over 50 ms loses readings of a 100 Hz phone)
IMU_READINGS = QosProfile(reliable=False, transient_local=False, depth=256)
#: features, labels, predictions, label requests/answers: none lost, order kept
RELIABLE = QosProfile(reliable=True, transient_local=False, depth=0)
#: heads and class lists: a late joiner gets the latest one
LATCHED = QosProfile(reliable=True, transient_local=True, depth=1)
#: the fleet's rounds handed to a learner (``global_head``): a learner that was down while rounds closed gets the last
#: 16, in order (each an addition to its head: one missed leaves it short; at depth 1 it got the newest only)
ROUNDS = QosProfile(reliable=True, transient_local=True, depth=16)

PROFILES: dict[str, QosProfile] = {"sensor_data": SENSOR_DATA, "reliable": RELIABLE, "latched": LATCHED,
                                   "rounds": ROUNDS}


def profile(qos: QosProfile | str) -> QosProfile:
    """Accept a profile or its name ('sensor_data' | 'reliable' | 'latched' | 'rounds')."""
    if isinstance(qos, QosProfile):
        return qos
    try:
        return PROFILES[qos]
    except KeyError:
        raise ValueError(f"unknown QoS profile {qos!r}; use one of {sorted(PROFILES)}") from None
