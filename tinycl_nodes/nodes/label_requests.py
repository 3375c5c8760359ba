"""Label requests: which samples a person is asked about, and what their answers mean.

Pure bookkeeping (numpy only, no bus, the clock is passed in): the labeler node feeds it every
sample TinyRCE cannot label and every ``LabelAnswer`` that comes back, and saves its state next
to the RCE's (atomically, one file) so pending requests survive a restart.

- **grouping** (:class:`~tinycl_nodes.core.asking.AskPolicy`): a sample within the policy's radius
  of a group joins it; a group is asked about once it is big enough, the most informative first,
  within the budget; when it is answered every sample of the group is learned with the answer
  (at most ``max_members`` per group are kept), and a sample alike to a group answered in the
  last minutes is learned with that answer instead of being asked about again. Constructed with
  ``dedupe_distance`` / ``max_joined`` alone it is the old policy (ask at once, join duplicates);
- **skip**: an answer with class ``NO_CLASS`` (−2) — the person skipped or was not sure —
  closes the request and nothing is learned;
- **expiry**: a request is dropped ``ttl_s`` after it was asked (its samples with it); an answer
  to it later is refused as *expired*;
- **budget**: at most ``max_per_hour`` requests in any sliding hour, and at most ``max_pending``
  waiting at once; beyond that a sample is not asked about (counted in ``counters``);
- **class names**: a new class name gets the next free class id; the same name (case and
  surrounding blanks aside) always maps to the same id; names are kept with the state.

Every refused answer raises :class:`AnswerError` (one line) and changes nothing.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from ..core import names
from ..core.asking import AskPolicy
from ..core import state as st
from ..core.names import MAX_NAME_CHARS, normalise_name  # noqa: F401 - MAX_NAME_CHARS re-exported
from ..core.errors import InputError, StateError
from ..core.validation import MAX_CLASS_ID, NEW_CLASS, NO_CLASS  # noqa: F401 - NO_CLASS re-exported
REMEMBERED_IDS = 1000      # answered / expired request ids kept to explain a late answer
MAX_REQUEST_ID = 128       # characters of a request id: the labeler's (a UUID) and the label app's are shorter; a
                           # longer one is no request, and is never echoed in full (label_status, logs, the phone)
KIND, VERSION = "LabelRequests", 2
REQUEST_TTL_S = 600.0      # an unanswered question is dropped this long after it was asked: the labeler's and the
                           # label app's default (one deadline per question: the app counts it from the request's stamp)


class AnswerError(InputError):
    """A LabelAnswer that cannot be used: unknown or expired request, bad class id or name. The message is said to
    the person (label_status → the phone) in words, never with the request id: the labeler's log line adds it."""


@dataclass
class Pending:
    """One open request: the sample asked about and the samples that joined it."""

    request_id: str
    created: float                 # wall-clock seconds (steady_wall: survives a restart, no clock step)
    stamp_ns: int                  # capture stamp of the sample asked about
    sample_id: int
    reason: str
    candidates: list[int]          # known class ids, most likely first, as offered (the labeler: when last sent)
    samples: list[np.ndarray]      # [0] the sample asked about, then the joined ones
    stamps: list[int] = field(default_factory=list)   # capture stamps, aligned with samples
    picture: dict[str, Any] = field(default_factory=dict)  # {"height","width","encoding","data": uint8}
    joined_dropped: int = 0        # duplicates beyond max_joined (not kept)
    gid: int = 0                   # the question group (AskPolicy) this request asks about

    @property
    def features(self) -> np.ndarray:
        return self.samples[0]


@dataclass(frozen=True)
class Resolution:
    """What an accepted answer means: learn ``samples`` as class ``class_id`` named ``class_name``."""

    request: Pending
    class_id: int
    class_name: str
    new_class: bool                # a class id that was not known before this answer


def next_class_id(known: Iterable[int]) -> int:
    """The id a person's new class gets: one past the highest known, or the lowest free one once that is past
    MAX_CLASS_ID (a labelled sample of class 2³¹−1 took it: every new class was then refused, "no free class id")."""
    ids = set(known)
    top = max(ids, default=-1) + 1
    return top if top <= MAX_CLASS_ID else next(i for i in range(len(ids) + 1) if i not in ids)


def check_class_name(name: Any) -> str:
    """A new class name by the one shared rule (:mod:`tinycl_nodes.core.names`); AnswerError if refused."""
    try:
        return names.check_class_name(name)
    except InputError as exc:
        raise AnswerError(f"new class name refused: {exc}") from None


class LabelRequests:
    """Pending label requests, class names and the request budget of one labeler."""

    def __init__(self, ttl_s: float = 600.0, max_per_hour: int = 60, dedupe_distance: float = 0.0,
                 max_pending: int = 50, max_joined: int = 16, metric: str = "l2",
                 policy: AskPolicy | None = None) -> None:
        if ttl_s <= 0 or max_per_hour < 0 or dedupe_distance < 0 or max_pending < 1 or max_joined < 0:
            raise InputError(f"label requests: bad settings ttl_s={ttl_s}, max_per_hour={max_per_hour}, "
                             f"dedupe_distance={dedupe_distance}, max_pending={max_pending}, max_joined={max_joined}")
        if metric not in ("l1", "l2"):
            raise InputError(f"label requests: metric must be 'l1' or 'l2', got {metric!r}")
        self.ttl_s = float(ttl_s)
        self.policy = policy or AskPolicy(dedupe_distance, metric, min_size=1, max_wait_s=0.0, max_open=max_pending,
                                          max_per_hour=max_per_hour, max_members=max_joined + 1, recent_s=0.0,
                                          queue=False, fixed_centre=True)
        self.pending: OrderedDict[str, Pending] = OrderedDict()     # asked, not answered yet
        self._requests: dict[int, Pending] = {}                      # every group's request (asked or forming)
        self._just_asked: list[Pending] = []
        self.closed: OrderedDict[str, str] = OrderedDict()  # request id -> "answered" | "expired" | "skipped"
        self.names: dict[int, str] = {}                     # class id -> name
        self.counters = {"asked": 0, "joined": 0, "over_budget": 0, "answered": 0, "expired": 0, "refused": 0,
                         "skipped": 0}

    @property
    def asked_at(self) -> list[float]:
        return self.policy.asked_at

    # --- asking -------------------------------------------------------------------------------
    def offer(self, x: np.ndarray, now: float, *, stamp_ns: int = 0, sample_id: int = 0, reason: str = "",
              candidates: Iterable[int] = (), novelty: float = float("inf"),
              guess: int | None = None, request_id: str = "") -> tuple[str, Pending | None]:
        """A sample the RCE cannot label: ``("asked", req)`` (asked at once), ``("grouped", req)`` (a new
        group, asked when it is ready), ``("joined", req)``, ``("recent", req-like)`` (alike to what was
        just answered: ``req.extra``… see :class:`AskPolicy`) or ``("over_budget", None)``.

        The caller publishes the requests :meth:`ready` returns (and may attach a picture first). ``request_id``: the
        id a new request gets (a fresh UUID if empty): a labeler that journals the sample gives it, so that learning
        the journal again after a kill asks under the same id.
        """
        x = np.asarray(x, np.float32)
        self.expire(now)
        how, g = self.policy.offer(x, novelty, now, key=int(stamp_ns), guess=guess)
        if how == "joined" and g is not None:
            self.counters["joined"] += 1
            req = self._requests[g.gid]
            req.joined_dropped = g.seen - len(g.samples)
            return "joined", req
        if how == "recent":
            return "recent", g            # type: ignore[return-value]
        if how == "dropped" or g is None:
            self.counters["over_budget"] += 1
            return "over_budget", None
        req = Pending(request_id or str(uuid.uuid4()), float(now), int(stamp_ns), int(sample_id), reason,
                      [int(c) for c in candidates], g.samples, g.keys, gid=g.gid)
        self._requests[g.gid] = req
        self._ask(now)
        return ("asked" if req.request_id in self.pending else "grouped"), req

    def _ask(self, now: float) -> None:
        for g in self.policy.due(now):
            req = self._requests[g.gid]
            req.created = float(now)           # the deadline counts from the question
            self.pending[req.request_id] = req
            self.counters["asked"] += 1
            self._just_asked.append(req)
        self._drop_orphans()                   # due() drops lone groups that waited too long

    def _drop_orphans(self) -> None:
        """Forget the forming requests whose group the policy dropped (a lone sample, a group evicted for room)."""
        for gid in [gid for gid in self._requests if gid not in self.policy.groups]:
            self._requests.pop(gid)

    def ready(self, now: float) -> list[Pending]:
        """The requests asked since the last call (most informative first): publish them."""
        self._ask(now)
        out, self._just_asked = self._just_asked, []
        return out

    def of_stamp(self, stamp_ns: int) -> Pending | None:
        """The request (asked or forming) whose group began with the sample stamped ``stamp_ns``, if any."""
        return next((r for r in self._requests.values() if r.stamp_ns == stamp_ns), None)

    def budget_left(self, now: float) -> int:
        return self.policy.budget_left(now)

    def group_size(self, req: Pending) -> int:
        g = self.policy.groups.get(req.gid)
        return g.seen if g is not None else len(req.samples)

    def expire(self, now: float) -> list[Pending]:
        """Drop the requests asked more than ``ttl_s`` ago (returned, with their samples) and groups
        that waited that long without becoming a question."""
        gone = []
        for g in self.policy.expire(now, self.ttl_s):
            req = self._requests.pop(g.gid, None)
            if req is not None and self.pending.pop(req.request_id, None) is not None:
                self._close(req.request_id, "expired")
                gone.append(req)
        self._drop_orphans()
        self.counters["expired"] += len(gone)
        return gone

    def _close(self, request_id: str, how: str) -> None:
        self.closed[request_id] = how
        while len(self.closed) > REMEMBERED_IDS:
            self.closed.popitem(last=False)

    # --- answers ------------------------------------------------------------------------------
    def check_answer(self, request_id: Any, class_id: Any, new_class_name: Any, known: Iterable[int],
                     now: float) -> Resolution:
        """Validate an answer without changing anything; AnswerError (one line) if it cannot be used."""
        if not isinstance(request_id, str) or not request_id.strip():
            raise AnswerError("label answer without a request id")
        rid = request_id.strip()
        req = self.pending.get(rid)
        if req is not None and now - req.created >= self.ttl_s:
            raise AnswerError(f"the question has expired (asked {now - req.created:.0f} s ago, it waits "
                              f"{self.ttl_s:.0f} s): answer ignored")
        if req is None:
            how = self.closed.get(rid)
            if how == "expired":
                raise AnswerError("the question has expired: answer ignored")
            if how == "answered":
                raise AnswerError("the question was already answered: answer ignored")
            raise AnswerError("the robot does not know this question (unknown label request id): answer ignored")
        if isinstance(class_id, (bool, np.bool_)) or not isinstance(class_id, (int, np.integer)):
            raise AnswerError(f"class id must be an integer, got {class_id!r}")
        cid = int(class_id)
        known_ids = set(int(k) for k in known) | set(self.names)
        if cid == NEW_CLASS:
            new_id, name = self.class_for_name(new_class_name, known_ids)
            return Resolution(req, new_id, name, new_id not in known_ids)
        if cid < 0 or cid not in known_ids:
            raise AnswerError(f"unknown class id {cid} "
                              f"(known: {', '.join(map(str, sorted(known_ids))) or 'none'}; "
                              f"use NEW_CLASS (-1) with a name for a new class)")
        return Resolution(req, cid, self.names.get(cid, str(cid)), False)

    def commit(self, res: Resolution, now: float | None = None) -> None:
        """Apply an accepted answer: the request is closed (its group remembered with the class), a
        new name is recorded."""
        rid = res.request.request_id
        self.pending.pop(rid, None)
        self._requests.pop(res.request.gid, None)
        self.policy.resolve(res.request.gid, res.request.created if now is None else now, res.class_id)
        self._close(rid, "answered")
        self.names.setdefault(res.class_id, res.class_name)
        self.counters["answered"] += 1

    def skip(self, request_id: str) -> Pending:
        """'Skip' / 'not sure': the request is closed, nothing is learned; AnswerError if not pending."""
        req = self.pending.pop(str(request_id).strip(), None)
        if req is None:
            raise AnswerError("cannot skip the question: it is no longer open (answered, skipped or expired)")
        self._requests.pop(req.gid, None)
        self.policy.resolve(req.gid, req.created, None)
        self._close(req.request_id, "skipped")
        self.counters["skipped"] += 1
        return req

    def class_for_name(self, name: Any, known: Iterable[int]) -> tuple[int, str]:
        """The class a person's new class name stands for, with its name as kept: the class already so named, else a
        new id (:func:`next_class_id` past ``known`` and the named classes); AnswerError for a name the rule refuses.
        One rule for an answer and for a changed answer."""
        clean = check_class_name(name)
        existing = self.id_of_name(clean)
        if existing is not None:
            return existing, self.names[existing]
        return next_class_id(set(known) | set(self.names)), clean

    def id_of_name(self, name: str) -> int | None:
        key = normalise_name(name)
        for cid, n in self.names.items():
            if normalise_name(n) == key:
                return cid
        return None

    def rename(self, class_id: int, name: Any, known: Iterable[int]) -> str:
        """A person renames a class: the clean name, or AnswerError (unknown class, name taken, bad name)."""
        cid = int(class_id)
        if cid not in set(int(k) for k in known) | set(self.names):
            raise AnswerError(f"cannot rename class {cid}: no such class")
        clean = check_class_name(name)
        other = self.id_of_name(clean)
        if other is not None and other != cid:
            raise AnswerError(f"cannot rename class {cid} to {clean!r}: class {other} has that name")
        self.names[cid] = clean
        return clean

    def set_names(self, names: dict[int, str]) -> None:
        """Names known from configuration (not overriding names people gave)."""
        for cid, n in names.items():
            self.names.setdefault(int(cid), str(n))

    # --- state --------------------------------------------------------------------------------
    def not_after(self, now: float) -> None:
        """Times later than ``now`` taken as ``now``: saved (or journaled) before the wall clock was set back, they
        would hold their questions open and the budget spent for as long as the step (:mod:`steady_wall`)."""
        for r in self._requests.values():
            r.created = min(r.created, now)
        self.policy.not_after(now)

    def state_dict(self) -> dict[str, Any]:
        reqs, arrays = [], {}
        for r in self._requests.values():
            if r.gid not in self.policy.groups:       # its group dropped since the last expire(): not a request
                continue
            reqs.append({"id": r.request_id, "gid": r.gid, "asked": r.request_id in self.pending, "created": r.created,
                         "stamp_ns": r.stamp_ns, "sample_id": r.sample_id, "reason": r.reason,
                         "candidates": r.candidates, "picture": {k: v for k, v in r.picture.items() if k != "data"}})
            if r.picture:
                arrays[f"picture{r.gid}"] = np.asarray(r.picture["data"], np.uint8)
        pmeta, parrays = self.policy.state()
        arrays.update({f"policy/{k}": v for k, v in parrays.items()})
        params = {"ttl_s": self.ttl_s, "radius": self.policy.radius, "metric": self.policy.metric}
        meta = {"requests": reqs, "policy": pmeta, "closed": list(self.closed.items()),
                "names": {str(k): v for k, v in self.names.items()}, "counters": self.counters}
        return st.make_state(KIND, VERSION, params, arrays, meta)

    def load_state_dict(self, state: dict[str, Any], n_features: int) -> None:
        """Restore requests, question groups and names (settings stay those of this run); StateError if bad."""
        st.check_state(state, KIND, VERSION)
        meta, arrays = state.get("meta") or {}, state["arrays"]
        policy = AskPolicy(self.policy.radius, self.policy.metric, min_size=self.policy.min_size,
                           max_wait_s=self.policy.max_wait_s, max_open=self.policy.max_open,
                           max_per_hour=self.policy.max_per_hour, max_members=self.policy.max_members,
                           max_groups=self.policy.max_groups, recent_s=self.policy.recent_s, queue=self.policy.queue,
                           fixed_centre=self.policy.fixed_centre, lone_share=self.policy.lone_share,
                           recent_radius=self.policy.recent_radius, recent_agree=self.policy.recent_agree)
        try:
            policy.load(meta.get("policy") or {}, {k[7:]: v for k, v in arrays.items() if k.startswith("policy/")},
                        n_features)
            requests: dict[int, Pending] = {}
            pending: OrderedDict[str, Pending] = OrderedDict()
            for r in meta.get("requests", []):
                g = policy.groups.get(int(r["gid"]))
                if g is None and not r["asked"]:
                    continue      # a forming request whose group the policy had dropped (saved by 2026-12-04 builds)
                if g is None:
                    raise StateError(f"state: label request {str(r['id'])[:40]} has no question group")
                pic = dict(r.get("picture") or {})
                if pic:
                    pic["data"] = np.asarray(arrays[f"picture{g.gid}"], np.uint8)
                req = Pending(str(r["id"]), float(r["created"]), int(r["stamp_ns"]), int(r["sample_id"]),
                              str(r["reason"]), [int(c) for c in r["candidates"]], g.samples, g.keys, pic,
                              g.seen - len(g.samples), g.gid)
                requests[g.gid] = req
                if r["asked"]:
                    pending[req.request_id] = req
            names = {int(k): str(v) for k, v in (meta.get("names") or {}).items()}
            closed = OrderedDict((str(k), str(v)) for k, v in meta.get("closed", []))
            counters = {k: int(meta.get("counters", {}).get(k, 0)) for k in self.counters}
        except StateError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"state: label requests are malformed ({type(exc).__name__}: {exc})") from None
        self.policy, self._requests, self.pending = policy, requests, pending
        self.names, self.closed, self.counters = names, closed, counters


def unit_of(channel: str) -> str:
    """The unit of an accelerometer (m/s²) or gyroscope (rad/s) channel by its name: ``ax``/``gx`` (a first letter),
    ``x_acc``/``x_gyro`` (HAR's, what the imu sensor sends), ``linear_acceleration.x``/``angular_velocity.x``; else
    none. (By the first letter alone, HAR's channels were plotted without units.)"""
    name = channel.lower()
    if "acc" in name or name[:1] == "a" and "ang" not in name:
        return "m/s²"
    if "gyr" in name or "ang" in name or name[:1] == "g":
        return "rad/s"
    return ""


MIN_SPAN = {"m/s²": 4.0, "rad/s": 2.0}   # the least a plot's y axis spans, by unit: a phone still on a table (gyro
                                        # noise of 0.2 rad/s) is drawn flat, a walk (1 to 6 rad/s) fills its panel


def render_plot(series: np.ndarray, width: int = 320, height: int = 200, rate_hz: float = 0.0,
                names: list[str] | None = None) -> np.ndarray:
    """A signal window as a person can read it: ``series`` (channels, samples) → (height, width, 3) uint8.

    Channels are drawn in groups of three (e.g. accelerometer above gyroscope), each group on its
    own axis with its unit (m/s² for ``a*`` channels, rad/s for ``g*``) and a legend, over time in
    seconds (``rate_hz``; sample index without it). An axis spans at least :data:`MIN_SPAN` of its unit, so that a
    still window looks still beside a moving one (autoscaled, 0.1 rad/s of noise filled the panel as a walk does),
    with room above the lines for the legend. Rendered by matplotlib's Agg canvas.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = np.atleast_2d(np.asarray(series, np.float64))
    series = np.where(np.isfinite(series), series, 0.0)
    names = list(names or [])[:series.shape[0]]
    names += [f"ch{i}" for i in range(len(names), series.shape[0])]
    t = np.arange(series.shape[1]) / rate_hz if rate_hz > 0 else np.arange(series.shape[1])
    fig = Figure(figsize=(width / 100, height / 100), dpi=100, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    groups = list(range(0, series.shape[0], 3))
    axes = fig.subplots(len(groups), 1, sharex=True, squeeze=False)[:, 0]
    colors = ("#d62728", "#2ca02c", "#1f77b4")
    for ax, g in zip(axes, groups):
        chans = series[g:g + 3]
        for k, row in enumerate(chans):
            ax.plot(t, row, lw=0.9, color=colors[k], label=names[g + k])
        unit = unit_of(names[g])
        lo, hi = float(chans.min()), float(chans.max())
        span = max(hi - lo, MIN_SPAN.get(unit, 0.0), 1e-6)
        mid = (lo + hi) / 2
        # a still IMU's noise is drawn small, not stretched over the panel like a walk; the top 30 % is the legend's
        ax.set_ylim(mid - 0.55 * span, mid + 0.55 * span + 0.35 * span)
        ax.set_ylabel(unit, fontsize=6)
        ax.tick_params(labelsize=5, length=2, pad=1)
        ax.legend(fontsize=5, loc="upper right", ncol=3, frameon=False, handlelength=1)
        ax.margins(x=0)
    axes[-1].set_xlabel("time (s)" if rate_hz > 0 else "sample", fontsize=6)
    fig.subplots_adjust(left=0.13, right=0.99, top=0.98, bottom=0.15, hspace=0.15)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[:height, :width, :3])
