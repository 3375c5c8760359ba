"""Pending label requests, answers and expiry: the app's state, saved as one JSON file.

All methods run in one thread (the server's event loop); the bus thread only builds
:class:`Pending` entries and hands them over. Times are wall-clock seconds (:mod:`~tinycl_nodes.steady_wall`, which
a step of the system clock does not move) so a request keeps its deadline across a restart of the app.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .. import steady_wall
from ..journal import aside_path
from ..core.errors import InputError
from ..core.names import MAX_NAME_CHARS, check_class_name, length_problem, normalise_name
from ..core.validation import MAX_CLASS_ID
from ..nodes.label_requests import MAX_REQUEST_ID, NEW_CLASS
from ..storage import write_atomic

FORMAT, VERSION = "tinycl-label-app", 1
MAX_ID = MAX_REQUEST_ID   # a request id is the labeler's: the same bound
REMEMBERED = 1000       # ids of answered / expired requests kept to explain a late answer
REPLY_S = 10.0      # a verdict on a rename or a change: the labeler's comes in milliseconds; past DDS's retransmits,
                    # still while the person looks
#: what an answer or a withdrawal sent to a robot that writes no verdicts says (the page says it too)
NO_VERDICT = "this robot says no verdict"
WALL_CLOCK_FROM_S = 1_577_836_800.0   # 2020-01-01: an earlier stamp is no wall-clock time (a board without time sync
                                      # stamps its uptime, a bare script 0)


def deadline(stamp_s: float, clock_s: float, now: float, ttl_s: float) -> float:
    """When a question leaves the page (``now``'s wall clock): ``ttl_s`` after the labeler asked it (the LabelRequest's
    stamp), so a request re-sent later (to an app restarted or reconnected) keeps its deadline, as at the labeler.
    Its age is measured on the clock that stamped it, this node's ROS clock ``clock_s`` (simulated time under
    ``use_sim_time``, as the labeler's stamps then are). A stamp that is no wall-clock time, or one ahead of that
    clock (another machine's), counts from now."""
    age = clock_s - stamp_s
    return now + ttl_s - (age if stamp_s >= WALL_CLOCK_FROM_S and age >= 0 else 0.0)


class AnswerError(ValueError):
    """An answer that cannot be sent: the message is shown on the page as is."""


class PictureJson:
    """JSON of a dataclass with a ``picture`` field (an image file's bytes, as base64): one format for requests and
    answers. A file saved before pictures could be JPEG calls it ``png``."""

    picture: bytes | None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]
        d["picture"] = base64.b64encode(self.picture).decode() if self.picture else None
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Any:
        d = dict(d)
        data = d.pop("picture", None) or d.pop("png", None)
        d["picture"] = base64.b64decode(data) if data else None
        return cls(**d)


@dataclass
class Pending(PictureJson):
    request_id: str
    reason: str
    candidates: list[dict[str, Any]]            # {"id", "name", "sample_count"}, most likely first
    picture: bytes | None                       # a PNG or JPEG file (images.picture_file), as the phone downloads it
    width: int
    height: int
    received_s: float
    expires_s: float

    def public(self, now: float) -> dict[str, Any]:
        """What the page gets (no raw bytes: the picture is fetched from /image?id=<id>)."""
        return {"id": self.request_id, "reason": self.reason, "candidates": self.candidates,
                "image": f"image?id={quote(self.request_id, safe='')}" if self.picture else None,
                "width": self.width, "height": self.height, "received_s": self.received_s,
                "expires_in_s": max(0.0, self.expires_s - now)}


@dataclass
class Answer(PictureJson):
    request_id: str
    class_id: int                  # an existing class id, or NEW_CLASS with new_class_name
    new_class_name: str = ""
    class_name: str = ""           # what the page shows
    answered_by: str = ""
    answered_s: float = field(default_factory=steady_wall.now)
    status: str = "sent"           # sent (waiting for the labeler) | learned | refused | withdrawn | unanswered
    message: str = ""              # the labeler's reason for a refusal
    picture: bytes | None = None   # the picture that was answered (the history's thumbnail)
    reason: str = ""
    before: dict[str, Any] | None = None   # the answer as it stood before a change the labeler has not judged yet
    change_sent_s: float | None = None     # when that change was sent, until its verdict or ``reply_s`` without one


@dataclass
class Rename:
    """A rename sent to the labeler, keyed by its own request id (the labeler answers on label_status)."""
    request_id: str
    class_id: int
    name: str
    sent_s: float
    status: str = "sent"           # sent | renamed | refused | unanswered
    message: str = ""              # the labeler's reason for a refusal

    def public(self) -> dict[str, Any]:
        """What the pages get, with the line they show."""
        if self.status == "renamed":
            text = f"Renamed class {self.class_id} to {self.name}"
        elif self.status == "refused":
            text = f"The robot refused the rename: {self.message}"
        else:
            text = (f"No answer from the robot about renaming class {self.class_id} to {self.name}: "
                    "the name may not have changed")
        return {"type": "rename", "request_id": self.request_id, "class_id": self.class_id, "name": self.name,
                "status": self.status, "message": text}


def clean_name(name: Any) -> str:
    """A new class name as typed, by the labeler's rule (one rule: what the app accepts the labeler learns)."""
    try:
        return check_class_name(name)
    except InputError as exc:
        raise AnswerError(str(exc)) from None


class RequestStore:
    """Pending requests by id (oldest first), a short history of answers, remembered expired ids."""

    def __init__(self, ttl_s: float, history_size: int = 20, max_pending: int = 100,
                 log: logging.Logger | None = None, reply_s: float = REPLY_S) -> None:
        self.ttl_s = ttl_s
        self.max_pending = max_pending
        self.log = log or logging.getLogger("tinycl.label_app")
        self.pending: OrderedDict[str, Pending] = OrderedDict()
        self.history: deque[Answer] = deque(maxlen=history_size)
        self.answered: OrderedDict[str, Answer] = OrderedDict()
        self.expired: OrderedDict[str, float] = OrderedDict()
        # what the robot knows, as the labeler says it (its ``classes``): class id -> {"name", "count"}
        self.classes: dict[int, dict[str, Any]] = {}
        # what this app saw of each class: last seen (a labelled sample on the bus), example pictures (request ids)
        self.last_s: dict[int, float] = {}
        self.examples: dict[int, list[str]] = {}
        self.predictions: deque[dict[str, Any]] = deque(maxlen=10)
        self.renames: OrderedDict[str, Rename] = OrderedDict()   # sent, verdict awaited (not saved: short-lived)
        self.reply_s = reply_s      # a rename or a change without the labeler's verdict this long is said to be so
        self.dirty = False

    # requests ------------------------------------------------------------------------------------
    def add(self, req: Pending, now: float | None = None) -> tuple[str, list[str]]:
        """Take a request: ('new' | 'updated' | 'same' | 'answered' | 'expired', ids dropped to stay under max_pending).

        A request asked again keeps its deadline (duplicates collapse); one already answered is
        not shown again (the caller re-sends the answer: the labeler may not have got it), nor is one
        past its deadline (:func:`deadline`: a re-send of a question this app already let expire).
        """
        now = steady_wall.now() if now is None else now
        if req.request_id in self.answered:
            return "answered", []
        old = self.pending.get(req.request_id)
        if old is not None:
            if (old.reason, old.candidates, old.picture) == (req.reason, req.candidates, req.picture):
                return "same", []
            req.received_s, req.expires_s = old.received_s, old.expires_s
            self.pending[req.request_id] = req
            self.dirty = True
            return "updated", []
        if req.expires_s <= now:
            self._remember(self.expired, req.request_id, now)
            return "expired", []
        self.expired.pop(req.request_id, None)
        self.pending[req.request_id] = req
        dropped = []
        while len(self.pending) > self.max_pending:
            rid, _ = self.pending.popitem(last=False)
            self._remember(self.expired, rid, steady_wall.now())
            dropped.append(rid)
        self.dirty = True
        return "new", dropped

    def expire(self, now: float) -> list[str]:
        """Drop the requests whose time is up; their ids are remembered to explain late answers."""
        gone = [rid for rid, p in self.pending.items() if p.expires_s <= now]
        for rid in gone:
            del self.pending[rid]
            self._remember(self.expired, rid, now)
        if gone:
            self.dirty = True
        return gone

    def expired_at_labeler(self, request_id: str, now: float) -> bool:
        """The labeler says the question expired (its label_status): it leaves now (True), whatever this app's
        deadline; remembered as expired to explain a late answer."""
        if self.pending.pop(request_id, None) is None:
            return False
        self._remember(self.expired, request_id, now)
        self.dirty = True
        return True

    # answers -------------------------------------------------------------------------------------
    def check_answer(self, request_id: Any, class_id: Any = None, new_class_name: Any = None,
                     answered_by: str = "", now: float | None = None) -> Answer:
        """The answer to send, or AnswerError with a message for the person. Changes nothing."""
        now = steady_wall.now() if now is None else now
        req = self.open_request(request_id, now)
        has_id, has_name = class_id is not None, new_class_name not in (None, "")
        if has_id == has_name:
            raise AnswerError("answer with either a class (class_id) or a new class name, not both")
        if has_name:
            name = clean_name(new_class_name)
            for c in req.candidates:       # a name that is already a known class is that class
                if normalise_name(c["name"]) == normalise_name(name):
                    return Answer(request_id, int(c["id"]), "", c["name"], answered_by, now)
            return Answer(request_id, NEW_CLASS, name, name, answered_by, now)
        if isinstance(class_id, bool) or not isinstance(class_id, int):
            raise AnswerError(f"class_id must be an integer, got {class_id!r}"[:200])
        for c in req.candidates:
            if int(c["id"]) == class_id:
                return Answer(request_id, class_id, "", c["name"], answered_by, now)
        raise AnswerError(f"class {class_id} is not one of this question's choices: nothing was sent")

    def open_request(self, request_id: Any, now: float) -> Pending:
        """The open request ``request_id``, or AnswerError saying in words why not (expired, already answered,
        unknown): the person reads it, so it never quotes the request id (the app's log line adds it)."""
        if not isinstance(request_id, str) or not request_id:
            raise AnswerError("request_id must be a non-empty string")
        req = self.pending.get(request_id)
        if req is not None and req.expires_s > now:
            return req
        if req is not None or request_id in self.expired:
            raise AnswerError("this question has expired: nothing was sent")
        if request_id in self.answered:
            raise AnswerError(f"this question was already answered ({self.answered[request_id].class_name}): "
                              "nothing was sent")
        raise AnswerError("the robot is not asking this question (any more): nothing was sent")

    def commit(self, answer: Answer) -> None:
        """The answer was sent: the request leaves, the answer goes to the history (with its picture)."""
        req = self.pending.pop(answer.request_id, None)
        if req is not None:
            answer.picture, answer.reason = req.picture, req.reason
        self.history.appendleft(answer)
        self._remember(self.answered, answer.request_id, answer)
        self.dirty = True

    def skip(self, request_id: str) -> None:
        """'Skip' / 'not sure': the request leaves the page (the labeler is told to drop it)."""
        self.pending.pop(request_id, None)
        self._remember(self.expired, request_id, steady_wall.now())
        self.dirty = True

    def check_correction(self, old: Answer, class_id: Any, new_class_name: Any, answered_by: str) -> Answer | None:
        """The corrected answer (None: withdraw), checked for form (the labeler judges the class). A withdrawn
        answer is refused here: the labeler no longer holds it and would refuse, and its refusal marked the
        withdrawn answer "refused" on the phone (a second tap on Undo, Undo in two tabs)."""
        if old.status == "withdrawn":
            raise AnswerError(f"the answer {old.class_name} was already withdrawn: nothing was sent")
        if class_id is None and new_class_name in (None, ""):
            return None
        if new_class_name not in (None, ""):
            name = clean_name(new_class_name)
            known = [c for c, info in self.classes.items() if normalise_name(info["name"]) == normalise_name(name)]
            if known:
                return Answer(old.request_id, known[0], "", self.classes[known[0]]["name"], answered_by)
            return Answer(old.request_id, NEW_CLASS, name, name, answered_by)
        if isinstance(class_id, bool) or not isinstance(class_id, int) or not 0 <= class_id <= MAX_CLASS_ID:
            raise AnswerError(f"class_id must be an integer from 0 to {MAX_CLASS_ID}, got {str(class_id)[:40]}")
        # whether the labeler knows the class is its to say (it refuses an unknown one, on label_status): the list
        # this app has may lag it, or be that of a labeler which lost its state and no longer holds the answer
        return Answer(old.request_id, class_id, "", self.classes.get(class_id, {}).get("name", str(class_id)),
                      answered_by)

    def check_rename(self, class_id: Any, name: Any, now: float | None = None) -> Rename:
        """A well-formed rename (an integer class id, a name within the labeler's MAX_NAME_CHARS), else
        AnswerError. Whether the class exists and the name is free is the labeler's to say: it owns class names,
        and the app's view of them may lag its own (its verdict comes back on label_status, see settle_rename)."""
        if isinstance(class_id, bool) or not isinstance(class_id, int) or not 0 <= class_id <= MAX_CLASS_ID:
            raise AnswerError(f"class_id must be an integer from 0 to {MAX_CLASS_ID}, got {class_id!r}"[:200])
        if not isinstance(name, str):
            raise AnswerError("name must be text")
        if too_long := length_problem(name):    # said at once: the labeler would refuse it for the same reason
            raise AnswerError(too_long)
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:          # a lone surrogate cannot be sent at all: it was a 500 and a traceback
            raise AnswerError("the class name is not text that can be sent (a lone surrogate)") from None
        return Rename(f"rename-{uuid.uuid4().hex}", class_id, name, steady_wall.now() if now is None else now)

    def sent_rename(self, rename: Rename) -> None:
        """The rename was sent: its verdict (or its silence) is waited for."""
        self._remember(self.renames, rename.request_id, rename)

    def settle_rename(self, status: dict[str, Any]) -> Rename | None:
        """The labeler's ``label_status`` for a rename this app sent (None: not one): renamed or refused, and why."""
        r = self.renames.get(str(status.get("request_id", "")))
        if r is None or status.get("status") not in ("renamed", "refused"):
            return None
        del self.renames[r.request_id]
        r.status, r.message = str(status["status"]), str(status.get("message", ""))[:200]
        if r.status == "renamed":
            r.name = str(status.get("class_name") or r.name)[:MAX_NAME_CHARS]
        return r

    def unanswered_renames(self, now: float) -> list[Rename]:
        """Renames the labeler did not answer within ``reply_s``: no longer waited for."""
        late = [r for r in self.renames.values() if now - r.sent_s >= self.reply_s]
        for r in late:
            del self.renames[r.request_id]
            r.status = "unanswered"
        return late

    def correct(self, old: Answer, new: Answer | None, judged: bool = True) -> None:
        """Record a change (``new``) or a withdrawal (None) of ``old`` in the history; its picture is no longer an
        example of the class it was (a change puts it under the new class once the labeler has learned it). An
        earlier change still unjudged keeps its ``before``: the answer as the labeler last said it holds it.
        ``judged`` False: the robot writes no verdicts, so none is waited for (it was: "no word from the
        robot" after ``reply_s``, and the answer shown as before the change, which such a robot had likely made)."""
        self._drop_example(old.request_id)
        if old.before is None:
            old.before = {"class_id": old.class_id, "new_class_name": old.new_class_name,
                          "class_name": old.class_name, "status": old.status}
        old.change_sent_s = steady_wall.now() if judged else None
        if new is None:
            old.status, old.message = "withdrawn", "" if judged else NO_VERDICT
        else:
            old.class_id, old.new_class_name, old.class_name = new.class_id, new.new_class_name, new.class_name
            old.status, old.message = "sent", ""
        self.dirty = True

    def apply_status(self, status: dict[str, Any]) -> Answer | None:
        """The labeler's ``label_status`` for an answer: learned (with the class id it got) or refused. A refused
        change or withdrawal leaves the answer as it stood (the labeler and the learner still hold it), with the
        labeler's reason: it is not the answer that was refused."""
        a = self.answered.get(str(status.get("request_id", "")))
        what = status.get("status")
        if a is None and what == "learned":
            a = self._answered_elsewhere(status)
        if a is None or what not in ("learned", "refused", "withdrawn"):
            return None
        prior, a.before, a.change_sent_s = a.before, None, None
        if what == "refused" and prior is not None:
            self._as_before(a, prior)
            a.status, a.message = prior["status"], f"change refused: {str(status.get('message', ''))[:180]}"
            if a.status == "learned":
                self._add_example(a)
            self.dirty = True
            return a
        cid = status.get("class_id")
        if what == "learned" and prior is None and a.status == "learned" and a.class_id == cid:
            return None     # said again (to an app started again), maybe by a newer name: it stands as shown ("new")
        a.status, a.message = str(what), str(status.get("message", ""))[:200]
        self._drop_example(a.request_id)
        if what == "learned" and isinstance(cid, int) and cid >= 0:
            # the typed name was one the robot knew ("NINE" for "nine"): no new class. The labeler says so (an older
            # one did not: then by the classes it listed)
            if a.new_class_name and not status.get("new_class", cid not in self.classes):
                a.new_class_name = ""
            a.class_id, a.class_name = cid, str(status.get("class_name") or a.class_name)
            self._add_example(a)
        self.dirty = True
        return a

    def unanswered_changes(self, now: float) -> list[Answer]:
        """Changes and withdrawals the labeler did not judge within ``reply_s`` (a robot that reads no
        label_correction, or a message lost): each answer shows again as the labeler last said it holds it, and
        says that the change may not have been made. A verdict that comes later still counts (``before`` is kept)."""
        late = [a for a in self.answered.values()
                if a.before is not None and a.change_sent_s is not None and now - a.change_sent_s >= self.reply_s]
        for a in late:
            what = "the withdrawal" if a.status == "withdrawn" else f"the change to {a.class_name}"
            self._as_before(a, a.before)
            a.status, a.message, a.change_sent_s = "unanswered", f"{what} may not have been made", None
            self.dirty = True
        return late

    @staticmethod
    def _as_before(a: Answer, before: dict[str, Any]) -> None:
        """``a``'s class back as it stood before a change (its ``before``, as :meth:`correct` kept it)."""
        a.class_id, a.new_class_name, a.class_name = before["class_id"], before["new_class_name"], before["class_name"]

    def _answered_elsewhere(self, status: dict[str, Any]) -> Answer | None:
        """A question still shown here that the labeler learned an answer to from elsewhere (``ros2 topic pub
        label_answer``, a script, another app): it leaves the page and goes to the history as that answer, so
        nobody is asked it again (their answer was refused: "the question was already answered"). None if it is not
        pending here."""
        rid = str(status.get("request_id", ""))
        if rid not in self.pending or not isinstance(status.get("class_id"), int):
            return None
        a = Answer(rid, int(status["class_id"]), "", str(status.get("class_name") or status["class_id"]),
                   "elsewhere (label_answer)")
        self.commit(a)
        self.log.info("request %s was answered elsewhere: %s", rid, a.class_name)
        return a

    def _add_example(self, a: Answer) -> None:
        """``a``'s picture first among the (at most 3) examples of its class."""
        examples = self.examples.setdefault(a.class_id, [])
        if a.picture is not None and a.request_id not in examples:
            self.examples[a.class_id] = ([a.request_id] + examples)[:3]

    def _drop_example(self, request_id: str) -> None:
        for examples in self.examples.values():
            if request_id in examples:
                examples.remove(request_id)
                self.dirty = True

    def observe(self, class_id: int, now: float) -> None:
        """A labelled sample on the bus: when the class was last seen (its count is the labeler's, see set_classes)."""
        self.last_s[int(class_id)] = now

    def set_classes(self, classes: list[tuple[int, str, int]]) -> bool:
        """The labeler's list of the classes it knows now (id, name, count: its ``classes``), which replaces this app's:
        the labeler owns what a class is, its name and its count. True if anything shown changed."""
        new = {int(c): {"name": str(n) or str(c), "count": int(k)} for c, n, k in classes}
        if new == self.classes:
            return False
        self.classes = new
        self.dirty = True
        return True

    def take_counts(self, candidates: list[dict[str, Any]]) -> bool:
        """A question's buttons (the labeler's classes as it sent the question), taken into the list where they are
        newer than it: the labeler publishes its classes before the question, but the two topics can reach this app in
        either order (a page showed "walking 2" in its list beside a question saying "walking | 5 examples"). A count
        only grows between two lists unless an answer is taken back, which the labeler's next list says. True if
        anything shown changed."""
        changed = False
        for c in candidates:
            cid, count = int(c["id"]), int(c["sample_count"])
            known = self.classes.get(cid)
            if known is None or known["count"] < count:
                self.classes[cid] = {"name": str(c["name"]) or str(cid), "count": count}
                changed = True
        self.dirty |= changed
        return changed

    def observe_prediction(self, sample_id: int, class_id: int, name: str, confidence: float, now: float) -> None:
        self.predictions.appendleft({"sample_id": sample_id, "class_id": class_id,
                                     "class_name": name or self.classes.get(class_id, {}).get("name", ""),
                                     "confidence": round(float(confidence), 3), "at_s": now})

    def classes_view(self, now: float | None = None) -> dict[str, Any]:
        """The classes and the last predictions; ages by this machine's clock (the phone's may differ, see
        history_item)."""
        now = steady_wall.now() if now is None else now
        return {"classes": [{"id": c, "name": i["name"], "count": i["count"], "last_s": self.last_s.get(c, 0.0),
                             "last_age_s": max(0.0, now - self.last_s[c]) if self.last_s.get(c) else None,
                             "examples": [f"image?id={quote(r, safe='')}" for r in self.examples.get(c, [])
                                          if r in self.answered and self.answered[r].picture]}
                            for c, i in sorted(self.classes.items())],
                "predictions": [{**p, "age_s": max(0.0, now - p["at_s"])} for p in self.predictions]}

    # page ----------------------------------------------------------------------------------------
    def snapshot(self, now: float) -> dict[str, Any]:
        return {"type": "snapshot", "pending": [p.public(now) for p in self.pending.values()],
                "history": [history_item(a) for a in self.history], "ttl_s": self.ttl_s}

    # persistence ---------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION,
                "pending": [p.to_json() for p in self.pending.values()],
                "history": [a.to_json() for a in self.history],
                "answered": [a.request_id for a in self.answered.values()],
                "classes": {str(k): {**v, "last_s": self.last_s.get(k, 0.0), "examples": self.examples.get(k, [])}
                            for k, v in self.classes.items()},
                "expired": list(self.expired.items())}

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(self.to_json(), separators=(",", ":")).encode())
        self.dirty = False

    def load(self, path: Path, now: float) -> int:
        """Restore from ``path`` (missing: nothing); a bad file is kept aside, never overwritten (a symlink loop too:
        it was taken for no file, without a word)."""
        if not path.exists() and not path.is_symlink():
            return 0
        try:
            doc = json.loads(path.read_text())
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError("not a tinycl label app file")
            if doc.get("version") != VERSION:
                raise ValueError(f"version {doc.get('version')!r}, this app reads version {VERSION}")
            pending = [Pending.from_json(d) for d in doc["pending"]]
            history = [Answer.from_json(d) for d in doc["history"]]
            by_id = {a.request_id: a for a in history}
            answered = [by_id.get(str(r)) or Answer(str(r), NEW_CLASS) for r in doc["answered"]]
            expired = [(str(k), float(v)) for k, v in doc["expired"]]
            saved = {int(k): v for k, v in dict(doc.get("classes") or {}).items()}
            classes = {k: {"name": str(v["name"]), "count": int(v["count"])} for k, v in saved.items()}
            last_s = {k: float(v["last_s"]) for k, v in saved.items()}
            examples = {k: [str(r) for r in v["examples"]][:3] for k, v in saved.items()}
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            aside = aside_path(path)
            path.rename(aside)
            self.log.error("pending requests file %s cannot be loaded (%s): kept as %s, starting empty",
                           path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__, aside.name)
            return 0
        # times later than now were saved before the clock was set back: taken as now (a deadline: at most ttl_s on)
        self.classes, self.last_s, self.examples = classes, {k: min(t, now) for k, t in last_s.items()}, examples
        for p in pending:
            p.received_s, p.expires_s = min(p.received_s, now), min(p.expires_s, now + self.ttl_s)
            self.pending[p.request_id] = p
        for a in history:
            a.answered_s = min(a.answered_s, now)
        self.history.extend(history)
        for a in answered:
            self._remember(self.answered, a.request_id, a)
        for rid, t in expired:
            self._remember(self.expired, rid, min(t, now))
        self.expire(now)
        self.dirty = False
        return len(self.pending)

    @staticmethod
    def _remember(d: OrderedDict, key: str, value: Any) -> None:
        d[key] = value
        d.move_to_end(key)
        while len(d) > REMEMBERED:
            d.popitem(last=False)


def history_item(a: Answer, now: float | None = None) -> dict[str, Any]:
    """An answer as the page shows it. ``age_s`` (by this machine's clock) is what the page counts "ago" and the
    undo window from: a robot's clock can be minutes off the phone's, so ``answered_s`` cannot be compared there."""
    now = steady_wall.now() if now is None else now
    return {"id": a.request_id, "class_id": a.class_id, "class_name": a.class_name,
            "new": bool(a.new_class_name), "answered_s": a.answered_s, "age_s": max(0.0, now - a.answered_s),
            "answered_by": a.answered_by,
            "status": a.status, "message": a.message,
            "image": f"image?id={quote(a.request_id, safe='')}" if a.picture else None}
