"""Exact undo for any head: a base copy of the head and the samples learned since.

Why: a person's wrong tap must not be learned for good. Heads whose statistics are sums
(streaming NCM, streaming LDA) subtract a sample exactly (``unlearn_valid``); for the others
(TinyRCE's prototypes shrink, grow and get committed in an order that matters) the only exact way
back is to replay: restore the head as it was before the oldest sample still kept and learn the
kept samples again, without (or relabelled) those of the withdrawn answer. The log keeps the last
``max_samples`` samples; a correction of something older is refused (one line). The base and the
log are state (:meth:`state_dict`), so an answer stays changeable across a restart of its node.

What the robot labelled *by* an answer goes too: :class:`PassedOn` keeps the pseudo-labels a labeler passed on
lately, and after a correction each that the corrected model now labels otherwise is taken back.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, NamedTuple

import numpy as np

from . import state as st
from .errors import InputError, StateError
from .head import Head

KIND, VERSION = "ReplayUndo", 1


class ReplayUndo:
    """``learn(x, y, tag)`` through this; ``relabel(tag, y)`` / ``relabel(tag, None)`` change or drop them."""

    def __init__(self, head: Head, max_samples: int = 1000) -> None:
        if max_samples < 1:
            raise InputError(f"max_samples must be >= 1, got {max_samples}")
        self.head, self.max_samples = head, int(max_samples)
        self.base = copy.deepcopy(head)
        self.log: list[tuple[np.ndarray, int, str]] = []

    def reset(self) -> None:
        """The head was replaced (e.g. restored from state): start a new log from it."""
        self.base, self.log = copy.deepcopy(self.head), []

    def learn(self, x: np.ndarray, y: int, tag: str = "") -> None:
        self.head.learn_valid(x, y)
        self.log.append((np.asarray(x, np.float32).copy(), int(y), tag))
        while len(self.log) > self.max_samples:      # roll the base forward: replay costs stay bounded
            x0, y0, _ = self.log.pop(0)
            self.base.learn_valid(x0, y0)

    def tagged(self, tag: str) -> list[tuple[np.ndarray, int]]:
        return [(x, y) for x, y, t in self.log if t == tag]

    def relabel(self, tag: str, y: int | None) -> int:
        """Learn the samples of ``tag`` as ``y`` instead (None: not at all); returns how many changed."""
        n = sum(t == tag for _, _, t in self.log)
        if n == 0:
            raise InputError(f"nothing learned under {tag[:64]!r} is still kept: it cannot be changed")
        head = copy.deepcopy(self.base)
        log = []
        for x, old, t in self.log:
            label = (y if t == tag else old)
            if label is None:
                continue
            head.learn_valid(x, label)
            log.append((x, label, t))
        self._replace(head)
        self.log = log
        return n

    def forget(self, x: np.ndarray, y: int) -> None:
        """Take back the latest sample equal to ``x`` learned as ``y`` (replayed without it)."""
        x = np.asarray(x, np.float32)
        for i in range(len(self.log) - 1, -1, -1):
            if self.log[i][1] == int(y) and np.array_equal(self.log[i][0], x):
                self.log[i] = (self.log[i][0], self.log[i][1], "\0forget")
                self.relabel("\0forget", None)
                return
        raise InputError(f"cannot take back a sample of class {y}: not among the {len(self.log)} kept")

    def state_dict(self) -> dict[str, Any]:
        """The base head (arrays under ``base/``) and the log (samples, classes, tags)."""
        base = self.base.state_dict()
        X = np.stack([x for x, _, _ in self.log]) if self.log else np.zeros((0, self.head.n_features), np.float32)
        arrays = {"X": X, "y": np.asarray([y for _, y, _ in self.log], np.int64),
                  **{f"base/{k}": v for k, v in base["arrays"].items()}}
        meta = {"tags": [t for _, _, t in self.log], "base": {k: v for k, v in base.items() if k != "arrays"}}
        return st.make_state(KIND, VERSION, {"max_samples": self.max_samples}, arrays, meta)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore base and log, checked against the head as it is now: replaying the log on the
        base must give exactly the head (both are saved together); StateError (one line) otherwise,
        and nothing changes."""
        st.check_state(state, KIND, VERSION, ("X", "y"))
        meta, arrays = state.get("meta") or {}, state["arrays"]
        try:
            tags = [str(t) for t in meta["tags"]]
            base = copy.deepcopy(self.head)
            base.load_state_dict({**meta["base"], "arrays": {k[5:]: v for k, v in arrays.items()
                                                             if k.startswith("base/")}})
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"state: undo log is malformed ({type(exc).__name__}: {exc})") from None
        X = st.expect_shape(state, "X", (len(tags), self.head.n_features)).astype(np.float32)
        y = st.expect_shape(state, "y", (len(tags),)).astype(np.int64)
        head = copy.deepcopy(base)
        for x, c in zip(X, y):
            head.learn_valid(x, int(c))
        mine, replayed = self.head.state_dict()["arrays"], head.state_dict()["arrays"]
        if mine.keys() != replayed.keys() or not all(np.array_equal(mine[k], replayed[k]) for k in mine):
            raise StateError("state: the undo log does not lead to the saved head (saved apart?)")
        self.base, self.log = base, [(x, int(c), t) for x, c, t in zip(X, y, tags)]
        while len(self.log) > self.max_samples:
            x0, y0, _ = self.log.pop(0)
            self.base.learn_valid(x0, y0)

    def _replace(self, head: Any) -> None:
        """Make ``self.head`` (the object others hold) equal to ``head``."""
        self.head.load_state_dict(head.state_dict())


class Revision(NamedTuple):
    """A pseudo-label passed on that a correction changed: ``label`` at ``confidence`` is to be taken back, and
    ``new_label`` (None: none) passed on at ``new_confidence`` instead."""
    x: np.ndarray
    stamp_ns: int
    label: int
    confidence: float
    new_label: int | None
    new_confidence: float


PASSED_KIND, PASSED_VERSION = "PassedOn", 1


class PassedOn:
    """The last ``max_samples`` pseudo-labels a labeler passed on (features, stamp, label, confidence).

    Why: TinyRCE labels a sample that falls inside a prototype, and a person's answer makes prototypes. When the
    answer is withdrawn or changed, the samples its prototypes labelled were learned downstream under the wrong
    class; :meth:`revise` re-decides those of the old class with the corrected model and returns the ones it now
    labels otherwise (or not at all), which the labeler takes back from the learner."""

    def __init__(self, n_features: int, max_samples: int = 1000) -> None:
        if max_samples < 1:
            raise InputError(f"max_samples must be >= 1, got {max_samples}")
        self.n_features, self.max_samples = int(n_features), int(max_samples)
        self.log: list[tuple[np.ndarray, int, int, float]] = []

    def add(self, x: np.ndarray, stamp_ns: int, label: int, confidence: float) -> None:
        self.log.append((np.asarray(x, np.float32).copy(), int(stamp_ns), int(label), float(confidence)))
        if len(self.log) > self.max_samples:
            del self.log[0]

    def revise(self, label: int, decide: Callable[[np.ndarray], tuple[int | None, float]]) -> list[Revision]:
        """Re-decide the samples passed on as ``label`` (``decide``: the corrected model's label, None for none, and
        its confidence); those it labels otherwise are returned, relabelled here or dropped."""
        changed, kept = [], []
        for x, ns, y, conf in self.log:
            if y == label:
                new, new_conf = decide(x)
                if new != y:
                    changed.append(Revision(x, ns, y, conf, new, float(new_conf)))
                    if new is None:
                        continue
                    y, conf = int(new), float(new_conf)
            kept.append((x, ns, y, conf))
        self.log = kept
        return changed

    def state_dict(self) -> dict[str, Any]:
        X = np.stack([x for x, *_ in self.log]) if self.log else np.zeros((0, self.n_features), np.float32)
        arrays = {"X": X, "stamp_ns": np.asarray([e[1] for e in self.log], np.int64),
                  "label": np.asarray([e[2] for e in self.log], np.int64),
                  "confidence": np.asarray([e[3] for e in self.log], np.float32)}
        return st.make_state(PASSED_KIND, PASSED_VERSION, {"max_samples": self.max_samples}, arrays)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """StateError (one line) for a malformed log; nothing changes then."""
        st.check_state(state, PASSED_KIND, PASSED_VERSION, ("X", "stamp_ns", "label", "confidence"))
        n = int(np.asarray(state["arrays"]["label"]).shape[0])
        X = st.expect_shape(state, "X", (n, self.n_features)).astype(np.float32)
        ns, y, conf = (st.expect_shape(state, k, (n,)) for k in ("stamp_ns", "label", "confidence"))
        self.log = [(x, int(a), int(b), float(c)) for x, a, b, c in zip(X, ns, y, conf)][-self.max_samples:]
