"""Which novel samples a person is asked about: group what is alike, ask once per group, best first.

Why: a robot that asks about every sample it cannot label floods the person with near-duplicates
(a camera sees the same new object for many frames) and spends its hourly budget on them. Here
novel samples that lie within ``radius`` of a group's centre join that group; a group becomes a
question once it holds ``min_size`` samples (one that does not within ``max_wait_s`` was a
one-off — a glitch, a passer-by — and is dropped unasked, unless ``lone_share`` allows it: while
the questions asked stay below ``lone_share`` × the novel samples offered, the most novel of these
lone samples are asked about with what budget the full groups left — on a short stream, such as a
new user's first minutes, the boundary samples the RCE cannot place are the informative ones, and
this keeps their number a fixed share of what the old policy would ask); among the groups ready,
the most informative (mean novelty × size) is asked first; at most ``max_open`` questions wait for
an answer at once and at most ``max_per_hour`` are asked in any sliding hour — each one a distinct
group. An answer labels every sample of its group. A sample within ``recent_radius`` (default
``radius``) of any sample of a group answered in the last ``recent_s`` seconds is not asked about
again — checked before it could join a group: it belongs to that answer, and the caller may learn it
with the group's answer (``("recent", g)`` with ``g.extra["label"]``). Every answered sample, not
the group's centre, is the reference: a group spread along a direction (a new user's walking windows
vary more than one radius) keeps its reach, and the reach of an answer may be wider than what is
grouped before an answer (``recent_radius`` > ``radius``: a person vouched for these samples).
With ``recent_agree`` the caller passes the learner's best guess (``offer(..., guess=)``, the
nearest prototype's class) and an answer reaches a sample only when that guess is the answer's
class; otherwise the sample is grouped and asked about like any other. Why: a new user's nearest
answered HAR window is of the same activity only 76–94% of the time, and a wrong label taught from
an answer costs more accuracy than a question costs (validation, no budget, radius = r_max, 5 open,
reach 0.5 × r_max: 97.00% → 98.04% at ~26 questions per user either way).

``queue=False, min_size=1, max_wait_s=0, fixed_centre=True, recent_s=0`` is the policy the labeler
had before (ask about each sample at once unless it is within the radius of a pending question's
first sample; past the budget the sample is dropped): kept to measure against.

Pure numpy; the clock is passed in. The caller keys groups by an integer id (``gid``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError, StateError

NOVELTY_CAP = 4.0          # an "empty" or far-away sample is not worth more than 4 nearly-covered ones
MAX_RECENT = 4096          # answered samples remembered at most (oldest forgotten first)


@dataclass
class Group:
    """Novel samples alike enough to be labelled by one answer."""

    gid: int
    centre: np.ndarray             # float64 running mean (or the first sample with fixed_centre)
    samples: list[np.ndarray]      # [0] the sample shown to the person, then the others (≤ max_members)
    keys: list[int]                # the caller's key of each sample (e.g. capture stamps), aligned
    novelty_sum: float
    created: float
    asked: float | None = None     # when it became a question (None: still forming)
    seen: int = 1                  # samples that joined, including those beyond max_members
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        """Informativeness: mean novelty × number of samples the answer labels (= the novelty sum)."""
        return self.novelty_sum


class AskPolicy:
    """Groups of novel samples, and which group to ask about next."""

    def __init__(self, radius: float, metric: str = "l2", *, min_size: int = 3, max_wait_s: float = 300.0,
                 max_open: int = 3, max_per_hour: int = 60, max_members: int = 32, max_groups: int = 200,
                 recent_s: float = 600.0, queue: bool = True, fixed_centre: bool = False,
                 lone_share: float = 0.0, recent_radius: float | None = None, recent_agree: bool = False) -> None:
        if metric not in ("l1", "l2"):
            raise InputError(f"ask policy: metric must be 'l1' or 'l2', got {metric!r}")
        if not radius >= 0 or min_size < 1 or max_wait_s < 0 or max_open < 1 or max_per_hour < 0 \
                or max_members < 1 or max_groups < 1 or recent_s < 0 or not 0 <= lone_share <= 1 \
                or (recent_radius is not None and not recent_radius >= 0):
            raise InputError(f"ask policy: bad settings radius={radius}, min_size={min_size}, "
                             f"max_wait_s={max_wait_s}, max_open={max_open}, max_per_hour={max_per_hour}, "
                             f"max_members={max_members}, max_groups={max_groups}, recent_s={recent_s}, "
                             f"lone_share={lone_share}, recent_radius={recent_radius}")
        self.radius, self.metric = float(radius), metric
        self.min_size, self.max_wait_s, self.max_open = int(min_size), float(max_wait_s), int(max_open)
        self.max_per_hour, self.max_members, self.max_groups = int(max_per_hour), int(max_members), int(max_groups)
        self.recent_s, self.queue, self.fixed_centre = float(recent_s), bool(queue), bool(fixed_centre)
        self.lone_share = float(lone_share)
        self.recent_radius = self.radius if recent_radius is None else float(recent_radius)
        self.recent_agree = bool(recent_agree)
        self.groups: dict[int, Group] = {}
        self.asked_at: list[float] = []
        self.recent: list[tuple[float, np.ndarray, int, int]] = []   # (answered at, sample, class, gid) per answered sample
        self.next_gid = 1
        self.counters = {"offered": 0, "joined": 0, "grouped": 0, "recent": 0, "dropped": 0, "asked": 0}

    # --- distances ------------------------------------------------------------------------------
    def _dist(self, centres: np.ndarray, x: np.ndarray) -> np.ndarray:
        diff = centres - x
        return np.abs(diff).sum(1) if self.metric == "l1" else np.sqrt(np.einsum("ij,ij->i", diff, diff))

    def _nearest(self, x: np.ndarray) -> tuple[Group | None, float]:
        if not self.groups:
            return None, np.inf
        gs = list(self.groups.values())
        d = self._dist(np.stack([g.centre for g in gs]), x)
        j = int(d.argmin())
        return gs[j], float(d[j])

    # --- samples --------------------------------------------------------------------------------
    def offer(self, x: np.ndarray, novelty: float, now: float, key: int = 0,
              guess: int | None = None) -> tuple[str, Group | None]:
        """A sample the labeler cannot label: ``("joined"|"new", group)``, ``("recent", group)`` or ``("dropped", None)``.

        ``guess``: the learner's best guess of its class (nearest prototype); with ``recent_agree``
        an answer reaches the sample only when the guess is that answer's class."""
        x64 = np.asarray(x, np.float64)
        self.counters["offered"] += 1
        nov = float(min(novelty, NOVELTY_CAP)) if np.isfinite(novelty) else NOVELTY_CAP
        self._forget(now)
        if self.recent and self.recent_radius > 0:
            rd = self._dist(np.stack([r[1] for r in self.recent]), x64)
            j = int(rd.argmin())
            if float(rd[j]) <= self.recent_radius and not (self.recent_agree and guess is not None
                                                           and int(guess) != self.recent[j][2]):
                self.counters["recent"] += 1
                t, c, label, gid = self.recent[j]
                return "recent", Group(gid, c, [], [], 0.0, t, t, extra={"label": label})
        g, d = self._nearest(x64)
        if g is not None and d <= self.radius:
            g.seen += 1
            g.novelty_sum += nov
            if len(g.samples) < self.max_members:
                g.samples.append(np.asarray(x, np.float32).copy())
                g.keys.append(int(key))
                if not self.fixed_centre:
                    g.centre += (x64 - g.centre) / len(g.samples)
            self.counters["joined"] += 1
            return "joined", g
        if not self.queue and self.budget_left(now) <= 0:
            self.counters["dropped"] += 1
            return "dropped", None
        if len(self.groups) >= self.max_groups and not self._evict_forming():
            self.counters["dropped"] += 1
            return "dropped", None
        g = Group(self.next_gid, x64.copy(), [np.asarray(x, np.float32).copy()], [int(key)], nov, float(now))
        self.next_gid += 1
        self.groups[g.gid] = g
        self.counters["grouped"] += 1
        return "new", g

    def _evict_forming(self) -> bool:
        forming = [g for g in self.groups.values() if g.asked is None]
        if not forming:
            return False
        del self.groups[min(forming, key=lambda g: (g.score, -g.created)).gid]
        return True

    def _forget(self, now: float) -> None:
        self.recent = [r for r in self.recent if now - r[0] < self.recent_s][-MAX_RECENT:]
        self.asked_at = [t for t in self.asked_at if now - t < 3600.0]

    # --- questions ------------------------------------------------------------------------------
    def budget_left(self, now: float) -> int:
        self._forget(now)
        open_now = sum(g.asked is not None for g in self.groups.values())
        return max(0, min(self.max_per_hour - len(self.asked_at), self.max_open - open_now))

    def due(self, now: float) -> list[Group]:
        """The groups to ask about now (marked asked), most informative first, within the budget."""
        lone = [g for g in self.groups.values() if g.asked is None and g.seen < self.min_size
                and now - g.created >= self.max_wait_s]
        ready = [g for g in self.groups.values() if g.asked is None and g.seen >= self.min_size]
        ready.sort(key=lambda g: (-g.score, g.created))
        out = ready[:self.budget_left(now)]
        lone.sort(key=lambda g: (-g.score, g.created))       # the most novel lone samples first
        room = min(self.budget_left(now) - len(out),
                   int(self.lone_share * self.counters["offered"]) - self.counters["asked"] - len(out))
        out += lone[:max(0, room)]
        for g in lone[max(0, room):]:
            del self.groups[g.gid]
            self.counters["dropped"] += 1
        for g in out:
            g.asked = float(now)
            self.asked_at.append(float(now))
            self.counters["asked"] += 1
        return out

    def resolve(self, gid: int, now: float, label: int | None = None) -> Group | None:
        """A question is answered with class ``label`` (its samples and class are remembered for
        ``recent_s``), or dropped (``label`` None)."""
        g = self.groups.pop(int(gid), None)
        if g is not None and label is not None and self.recent_s > 0:
            self.recent += [(float(now), np.asarray(xs, np.float64), int(label), g.gid) for xs in g.samples]
            del self.recent[:-MAX_RECENT]
        return g

    def forget_answer(self, gid: int, label: int | None = None) -> None:
        """An answer was changed (``label``) or withdrawn (None): alike samples follow the change."""
        self.recent = [(t, c, (int(label) if label is not None else lab), g) if g == gid else (t, c, lab, g)
                       for t, c, lab, g in self.recent if not (g == gid and label is None)]

    def expire(self, now: float, ttl_s: float) -> list[Group]:
        """Groups (forming or asked) older than ``ttl_s``: removed and returned."""
        gone = [g for g in self.groups.values() if now - (g.asked if g.asked is not None else g.created) >= ttl_s]
        for g in gone:
            del self.groups[g.gid]
        return gone

    # --- state ----------------------------------------------------------------------------------
    def not_after(self, now: float) -> None:
        """Every time later than ``now`` (a group's, a question's, an answer's) taken as ``now``: the caller's clock
        was set back since they were taken."""
        for g in self.groups.values():
            g.created = min(g.created, now)
            g.asked = None if g.asked is None else min(g.asked, now)
        self.asked_at = [min(t, now) for t in self.asked_at]
        self.recent = [(min(t, now), c, label, gid) for t, c, label, gid in self.recent]

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able meta, arrays) of the groups, budget and recent answers."""
        meta: dict[str, Any] = {"next_gid": self.next_gid, "asked_at": self.asked_at, "counters": self.counters,
                                "recent_t": [r[0] for r in self.recent], "recent_label": [r[2] for r in self.recent],
                                "recent_gid": [r[3] for r in self.recent], "groups": []}
        arrays: dict[str, np.ndarray] = {}
        for g in self.groups.values():
            meta["groups"].append({"gid": g.gid, "keys": g.keys, "novelty_sum": g.novelty_sum, "created": g.created,
                                   "asked": g.asked, "seen": g.seen})
            arrays[f"group{g.gid}"] = np.stack(g.samples).astype(np.float32)
            arrays[f"centre{g.gid}"] = g.centre
        if self.recent:
            arrays["recent"] = np.stack([r[1] for r in self.recent])
        return meta, arrays

    def load(self, meta: dict[str, Any], arrays: dict[str, Any], n_features: int) -> None:
        """Restore :meth:`state`; StateError (one line) if it does not fit, and nothing changes."""
        try:
            groups = {}
            for m in meta.get("groups", []):
                gid = int(m["gid"])
                samples = np.asarray(arrays[f"group{gid}"], np.float32)
                centre = np.asarray(arrays[f"centre{gid}"], np.float64)
                if samples.ndim != 2 or samples.shape[1] != n_features or centre.shape != (n_features,) \
                        or not np.isfinite(samples).all() or not np.isfinite(centre).all():
                    raise StateError(f"state: question group {gid} holds samples of shape {samples.shape}, "
                                     f"expected (n, {n_features})")
                keys = [int(k) for k in m["keys"]]
                groups[gid] = Group(gid, centre.copy(), list(samples), keys if len(keys) == len(samples)
                                    else [0] * len(samples), float(m["novelty_sum"]), float(m["created"]),
                                    None if m["asked"] is None else float(m["asked"]), int(m["seen"]))
            recent_t = [float(t) for t in meta.get("recent_t", [])]
            rc = np.asarray(arrays["recent"], np.float64) if recent_t else np.zeros((0, n_features))
            recent_label = [int(c) for c in meta.get("recent_label", [])]
            recent_gid = [int(c) for c in meta.get("recent_gid", [])]
            if rc.shape != (len(recent_t), n_features) or not len(recent_label) == len(recent_gid) == len(recent_t):
                raise StateError("state: recent answered groups do not match their times")
            next_gid = max([int(meta.get("next_gid", 1))] + [g + 1 for g in groups])
            asked_at = [float(t) for t in meta.get("asked_at", [])]
            counters = {k: int((meta.get("counters") or {}).get(k, 0)) for k in self.counters}
        except StateError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"state: question groups are malformed ({type(exc).__name__}: {exc})") from None
        self.groups, self.next_gid, self.asked_at, self.counters = groups, next_gid, asked_at, counters
        self.recent = list(zip(recent_t, list(rc), recent_label, recent_gid))
