"""TinyRCE (Pau & Ambrose, tinyML 2023): a Restricted Coulomb Energy classifier, forward-only.

Why RCE on the edge: learning is a distance pass and a few writes — no gradient, no epochs, no
stored dataset — and an input that no prototype covers is recognised as *unknown*, which is
exactly when a robot should ask a person for a label.

The network is a list of prototypes (hidden neurons) ``(center c, radius r, class)``. A
prototype *fires* on ``x`` when ``d(x, c) < r``. Learning a labelled ``x`` (the classic rule):

- every prototype of another class that fires is shrunk to ``r = d`` (it no longer covers x);
- if no prototype of the right class fires, a new one is committed at ``x`` with
  ``r = min(distance to the nearest other-class prototype, r_max)``.

TinyRCE's additions, as the paper lists them, and how they are read here:

- **memory cap**: the number of prototypes is bounded by what fits in ``memory_bytes`` (each
  prototype costs ``4·F + 14`` bytes as stored — float32 center and radius, uint16 class row,
  uint32 hit count and last-use step — and every known class 8 bytes of id);
- **aging** (radius "increased/decreased depending on dist/R"): a right-class prototype that
  *nearly* covers x (``1 ≤ d/r < 1 + grow_margin``) grows to cover it — as long as it does not
  reach the center of another class's prototype, nor ``r_max`` — instead of spending memory on a
  new prototype; a wrong-class prototype that fires shrinks by the factor ``d/r`` (to ``r = d``);
- **pruning**: a prototype shrunk below ``r_min`` can no longer cover anything useful and is
  removed; when memory is full, the least recently useful prototype is evicted (never the last
  one of a class), which is what lets an old user's prototypes give way to a new user's;
- **unambiguous assignment**: when several prototypes fire, the closest one (Euclidean, or
  Manhattan with ``metric="l1"``) decides.

``learning_macs`` counts, exactly, the multiply-accumulates (one per feature per distance)
done by learning; :meth:`decide` says whether an input is known and why.

Cheaper distances (both off by default):

- ``int8_range > 0``: inputs are clipped to ``±int8_range`` and coded as int8 with the scale
  ``int8_range / 127``; centers are *stored* as those int8 codes (a prototype then costs
  ``F + 14`` bytes instead of ``4·F + 14``) and every distance is an integer sum (``|a−b|`` or
  ``(a−b)²`` in int32) times the scale — radii stay in feature units;
- ``max_visit > 0``: at most ``max_visit`` prototypes get a full distance per input. Past that
  many, a coarse pass computes every prototype's distance on the first ``prefix_features``
  features only and the ``max_visit`` nearest by it (ties: the lower index) get the rest of
  their distance (the partial sum is reused). An unvisited prototype counts as not firing:
  decisions may differ from the full pass, which is the trade the experiment measures. MACs:
  ``P·K + max_visit·(F − K)``. The C core (``tinycl_rce_init_ex``) makes the same decisions.
  (A nearest-class-centroid pre-filter was tried first: on HAR, where a class's prototypes come
  from many subjects, it lost up to 33 points at caps the prefix pass loses none.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._util import check_int, expect_array, meta_of
from .errors import InputError, StateError
from .head import Head
from .validation import check_batch, check_features, check_positive

UNKNOWN = "unknown"       # no prototype fires: ask for a label
AMBIGUOUS = "ambiguous"   # prototypes of several classes fire: the closest wins, a label would help
COVERED = "covered"       # prototypes of one class fire
CLASS_ID_BYTES = 8        # int64 class id per known class in the state
_MAX_ROWS = 65535         # class rows are stored as uint16


@dataclass(frozen=True)
class Decision:
    """What TinyRCE makes of one input.

    ``label`` is the class of the closest firing prototype, or None when nothing fires;
    ``nearest`` the class of the prototype with the smallest ``d/r`` (the best guess even for
    an unknown input); ``novelty`` that smallest ``d/r`` (< 1: covered, ≥ 1: unknown);
    ``reason`` one of ``unknown``, ``ambiguous``, ``covered`` (``empty`` before any learning);
    ``candidates`` the classes whose prototypes fire, closest first.
    """

    label: int | None
    nearest: int | None
    reason: str
    novelty: float
    distance: float
    candidates: tuple[int, ...]

    @property
    def known(self) -> bool:
        return self.label is not None

    @property
    def wants_label(self) -> bool:
        """True when a label request is worth its cost: nothing fires, or classes disagree."""
        return self.reason in (UNKNOWN, AMBIGUOUS, "empty")


class TinyRCE(Head):
    """Restricted Coulomb Energy classifier with a memory cap, aging, pruning and closest-wins."""

    kind = "TinyRCE"
    version = 1

    def __init__(self, n_features: int, memory_bytes: int = 40 * 1024, r_max: float = 8.0,
                 r_min: float = 0.0, grow_margin: float = 0.25, metric: str = "l2",
                 int8_range: float = 0.0, max_visit: int = 0, prefix_features: int = 8,
                 extractor_hash: str = "") -> None:
        super().__init__(check_int(n_features, "n_features"), extractor_hash)
        self.memory_bytes = check_int(memory_bytes, "memory_bytes")
        self.r_max = check_positive(r_max, "r_max")
        self.r_min = check_positive(r_min, "r_min", allow_zero=True)
        if self.r_min >= self.r_max:
            raise InputError(f"r_min: must be < r_max ({self.r_max}), got {self.r_min}")
        self.grow_margin = check_positive(grow_margin, "grow_margin", allow_zero=True)
        if metric not in ("l2", "l1"):
            raise InputError(f"metric: must be 'l2' or 'l1', got {metric!r}")
        self.metric = metric
        self.int8_range = check_positive(int8_range, "int8_range", allow_zero=True)
        with np.errstate(over="ignore"):
            self.scale = np.float32(self.int8_range / 127.0) if self.int8_range else np.float32(1.0)
        if not 0 < self.scale < np.inf:     # 1e300: an inf scale made every distance NaN (the C core checks the same)
            raise InputError(f"int8_range: its scale int8_range / 127 must be a float32 above 0 and finite, got "
                             f"{int8_range}")
        self.max_visit = check_int(max_visit, "max_visit", minimum=0)
        self.prefix_features = check_int(prefix_features, "prefix_features")
        if self.max_visit and self.prefix_features >= n_features:
            raise InputError(f"prefix_features: must be < n_features ({n_features}), got {prefix_features}")
        if self.max_prototypes < 1:
            raise InputError(f"memory_bytes: {memory_bytes} B does not hold one prototype of "
                             f"{self.prototype_bytes} B (plus one class id)")
        self.centers = np.zeros((0, n_features), self.center_dtype)
        self.radii = np.zeros(0, np.float32)
        self.rows = np.zeros(0, np.uint16)
        self.hits = np.zeros(0, np.uint32)
        self.last_used = np.zeros(0, np.uint32)
        self.learning_macs = 0
        self.learning_macs_early_exit = 0   # the same passes with early exit (see _early_exit_macs)
        self.counters = {"committed": 0, "grown": 0, "shrunk": 0, "pruned": 0, "evicted": 0, "dropped": 0}

    # --- capacity ---------------------------------------------------------------------------
    @property
    def center_dtype(self) -> type:
        return np.int8 if self.int8_range else np.float32

    @property
    def prototype_bytes(self) -> int:
        """Bytes one prototype takes in the state: center (f32, or int8 codes), radius (f32), row
        (u16), hits, last use (u32)."""
        return np.dtype(self.center_dtype).itemsize * self.n_features + 4 + 2 + 4 + 4

    def _capacity(self, n_classes: int) -> int:
        return (self.memory_bytes - CLASS_ID_BYTES * max(n_classes, 1)) // self.prototype_bytes

    @property
    def max_prototypes(self) -> int:
        """Prototypes that fit in ``memory_bytes`` next to the ids of the classes known now."""
        return self._capacity(len(self.classes))

    @property
    def n_prototypes(self) -> int:
        return int(self.radii.shape[0])

    @property
    def state_bytes(self) -> int:
        """Bytes of learned state (prototypes and class ids), what the memory budget bounds."""
        return self.n_prototypes * self.prototype_bytes + CLASS_ID_BYTES * len(self.classes)

    def _distance_macs(self, visited: int) -> int:
        """MACs of one distance pass that gives ``visited`` prototypes their full distance."""
        P, F, K = self.n_prototypes, self.n_features, self.prefix_features
        if self.max_visit and P > self.max_visit:
            return P * K + visited * (F - K)
        return visited * F

    @property
    def inference_macs(self) -> int:
        """Distance MACs one inference costs now (the coarse prefix pass included when the cap applies)."""
        return self._distance_macs(min(self.n_prototypes, self.max_visit or self.n_prototypes))

    # --- inference ----------------------------------------------------------------------------
    def decide(self, x: Any) -> Decision:
        """Known or unknown, and why: what the labeler needs to decide on a label request."""
        return self.decide_valid(check_features(x, self.n_features))

    def decide_valid(self, x: np.ndarray) -> Decision:
        """:meth:`decide` for ``x`` already checked by ``check_features``."""
        if self.n_prototypes == 0:
            return Decision(None, None, "empty", float("inf"), float("inf"), ())
        d, _ = self._visited_dist(self._code(x))
        ratio = d / np.maximum(self.radii, np.float32(1e-12))
        near = int(ratio.argmin())
        nearest = self.classes[int(self.rows[near])]
        fire = np.flatnonzero(d < self.radii)
        if fire.size == 0:
            return Decision(None, nearest, UNKNOWN, float(ratio[near]), float(d[near]), ())
        order = fire[np.argsort(d[fire], kind="stable")]
        cands = tuple(dict.fromkeys(self.classes[int(r)] for r in self.rows[order]))
        return Decision(cands[0], nearest, AMBIGUOUS if len(cands) > 1 else COVERED,
                        float(ratio[near]), float(d[order[0]]), cands)

    def novelty(self, x: Any) -> float:
        """Smallest ``d/r`` over prototypes: below 1 some prototype covers ``x``; inf before learning."""
        return self.decide(x).novelty

    def predict_valid(self, x: np.ndarray) -> int | None:
        """Closest firing prototype's class; for an unknown input, the best guess (smallest d/r).

        Use :meth:`decide` to tell the two apart; this keeps the ``Head`` contract (a class as
        soon as one is known) so TinyRCE drops into any learner.
        """
        dec = self.decide_valid(x)
        return dec.label if dec.label is not None else dec.nearest

    def classify(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Batch inference: ``(class ids (n,), known (n,) bool)``; unknowns get the best guess."""
        Xv = check_batch(X, self.n_features)
        n = Xv.shape[0]
        if self.n_prototypes == 0:
            return np.full(n, -1, np.int64), np.zeros(n, bool)
        if self.max_visit and self.n_prototypes > self.max_visit:   # per-sample visit sets
            decs = [self.decide_valid(x) for x in Xv]
            return (np.array([d.label if d.known else d.nearest for d in decs], np.int64),
                    np.array([d.known for d in decs], bool))
        ids = np.asarray(self.classes, np.int64)[self.rows.astype(np.intp)]
        out, known = np.empty(n, np.int64), np.empty(n, bool)
        for s in range(0, n, 256):
            D = self._dist_batch(self._code(Xv[s:s + 256]))
            fire = D < self.radii
            closest = np.where(fire, D, np.inf).argmin(1)
            guess = (D / np.maximum(self.radii, np.float32(1e-12))).argmin(1)
            k = fire.any(1)
            out[s:s + 256] = np.where(k, ids[closest], ids[guess])
            known[s:s + 256] = k
        return out, known

    def _scores(self, x: np.ndarray) -> np.ndarray:
        """Per class: −(smallest d/r over its prototypes); a class without prototypes gets −1e9."""
        best = np.full(len(self.classes), np.inf)
        if self.n_prototypes:
            ratio = self._visited_dist(self._code(x))[0] / np.maximum(self.radii, np.float32(1e-12))
            np.minimum.at(best, self.rows.astype(np.intp), ratio.astype(np.float64))
        scores = np.where(np.isfinite(best), -best, -1e9)
        return scores

    # --- learning -----------------------------------------------------------------------------
    def _new_class(self, y: int) -> int:
        if len(self.classes) >= _MAX_ROWS:   # refused before any bookkeeping changes
            raise InputError(f"label: TinyRCE holds at most {_MAX_ROWS} classes")
        return super()._new_class(y)

    def _add_class_rows(self) -> None:
        """Nothing per class: prototypes carry their class row."""

    def _learn(self, x: np.ndarray, idx: int) -> None:
        step = np.uint32(min(self.n_seen + 1, 2**32 - 1))
        x = self._code(x)
        P = self.n_prototypes
        if P == 0:
            self._commit(x, idx, self.r_max, step)
            return
        d, seen = self._visited_dist(x)
        self.learning_macs += self._distance_macs(int(seen.size))
        right = self.rows == idx
        coarse = P * self.prefix_features if self.max_visit and P > self.max_visit else 0
        # early exit on the visited ones, counted from feature 0 (the prefix counted twice: an overcount)
        self.learning_macs_early_exit += self._early_exit_macs(x, right, rows=seen) + coarse
        fire = d < self.radii
        # shrink every wrong-class prototype that fires to the distance of x (factor d/r)
        wrong = np.flatnonzero(fire & ~right)
        if wrong.size:
            self.radii[wrong] = d[wrong]
            self.counters["shrunk"] += int(wrong.size)
        hit = np.flatnonzero(fire & right)
        if hit.size:
            j = int(hit[d[hit].argmin()])
            self.hits[j] = min(int(self.hits[j]) + 1, 2**32 - 1)
            self.last_used[j] = step
        elif not self._grow(x, d, right, step, seen):
            others = d[~right]
            radius = min(float(others.min()) if others.size else self.r_max, self.r_max)
            self._commit(x, idx, radius, step)
        self._prune_dead()

    def _early_exit_macs(self, x: np.ndarray, right: np.ndarray, chunk: int = 8,
                         rows: np.ndarray | None = None) -> int:
        """MACs of the learning distance pass when each distance stops early, ``chunk`` features at a time.

        Learning only needs ``d_j`` exactly where it can matter: a right-class prototype up to
        ``r_j·(1 + grow_margin)`` (fire or grow), any other up to ``r_max`` (fire, or the radius
        ``min(nearest other, r_max)`` of a new prototype). Once the running sum of a distance
        passes that bound the prototype can change nothing, so a device stops there: the
        decisions are identical, only the count differs. (The growth check's center-to-center
        distances are counted in full in both counters.)
        """
        rows = np.arange(self.n_prototypes) if rows is None else rows
        diff = (self.centers[rows].astype(np.float32) - x.astype(np.float32)) * self.scale
        part = np.abs(diff) if self.metric == "l1" else diff * diff
        bound = np.where(right[rows], self.radii[rows] * np.float32(1.0 + self.grow_margin), np.float32(self.r_max))
        if self.metric == "l2":
            bound = bound * bound
        sums = np.add.reduceat(part, np.arange(0, self.n_features, chunk), axis=1).cumsum(axis=1)
        over = sums > bound[:, None]
        stop = np.where(over.any(axis=1), over.argmax(axis=1) + 1, sums.shape[1])
        return int(np.minimum(stop * chunk, self.n_features).sum())

    def _grow(self, x: np.ndarray, d: np.ndarray, right: np.ndarray, step: np.uint32,
              seen: np.ndarray | None = None) -> bool:
        """Aging upward: let the right-class prototype with the smallest ``d/r`` below
        ``1 + grow_margin`` cover x, unless that would reach another class's center (of the
        prototypes visited) or r_max."""
        if self.grow_margin == 0.0:
            return False
        ratio = np.where(right, d / np.maximum(self.radii, np.float32(1e-12)), np.inf)
        j = int(ratio.argmin())
        if not ratio[j] < 1.0 + self.grow_margin:
            return False
        new_r = float(d[j]) * (1.0 + 1e-4)
        if new_r > self.r_max:
            return False
        others = np.flatnonzero(~right)
        if seen is not None:
            others = np.intersect1d(others, seen)
        if others.size:
            dc = self._dist_rows(self.centers[j], others)
            self.learning_macs += int(others.size) * self.n_features
            self.learning_macs_early_exit += int(others.size) * self.n_features
            if new_r >= float(dc.min()):
                return False
        self.radii[j] = np.float32(new_r)
        self.last_used[j] = step
        self.hits[j] = min(int(self.hits[j]) + 1, 2**32 - 1)
        self.counters["grown"] += 1
        return True

    def _commit(self, x: np.ndarray, idx: int, radius: float, step: np.uint32) -> None:
        if radius <= self.r_min:
            self.counters["dropped"] += 1  # x sits on another class's prototype: nothing to cover
            return
        if self.n_prototypes >= self.max_prototypes and not self._evict():
            self.counters["dropped"] += 1
            return
        self.centers = np.concatenate([self.centers, x[None].astype(self.center_dtype)])
        self.radii = np.append(self.radii, np.float32(radius))
        self.rows = np.append(self.rows, np.uint16(idx))
        self.hits = np.append(self.hits, np.uint32(0))
        self.last_used = np.append(self.last_used, step)
        self.counters["committed"] += 1

    def _evict(self) -> bool:
        """Make room: drop the least recently useful prototype whose class keeps another one."""
        per_class = np.bincount(self.rows.astype(np.intp), minlength=len(self.classes))
        eligible = np.flatnonzero(per_class[self.rows.astype(np.intp)] > 1)
        if eligible.size == 0:
            return False
        j = int(eligible[np.lexsort((self.hits[eligible], self.last_used[eligible]))[0]])
        self._remove(np.array([j]))
        self.counters["evicted"] += 1
        return True

    def _prune_dead(self) -> None:
        dead = np.flatnonzero(self.radii <= self.r_min)
        if dead.size:
            self._remove(dead)
            self.counters["pruned"] += int(dead.size)

    def _remove(self, idx: np.ndarray) -> None:
        keep = np.ones(self.n_prototypes, bool)
        keep[idx] = False
        self.centers, self.radii, self.rows = self.centers[keep], self.radii[keep], self.rows[keep]
        self.hits, self.last_used = self.hits[keep], self.last_used[keep]

    # --- distances ----------------------------------------------------------------------------
    def _code(self, x: np.ndarray) -> np.ndarray:
        """Inputs as the distances see them: float32 unchanged, or int8 codes (clipped, scaled)."""
        if not self.int8_range:
            return x
        return np.clip(np.rint(x / self.scale), -127, 127).astype(np.int8)

    def _acc(self, A: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per row of ``A``, the sum a distance is made of (``|a−b|`` or ``(a−b)²`` summed): int32
        for int8 codes, float32 otherwise; the distance is a non-decreasing function of it."""
        if not self.int8_range:
            diff = A - b
            return np.abs(diff).sum(1) if self.metric == "l1" else np.einsum("ij,ij->i", diff, diff)
        diff = A.astype(np.int32) - b.astype(np.int32)          # integer arithmetic: int32 sums
        return np.abs(diff).sum(1) if self.metric == "l1" else np.einsum("ij,ij->i", diff, diff)

    def _pair(self, A: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distances from the rows of ``A`` to ``b`` (same coding), in feature units."""
        acc = self._acc(A, b)
        if not self.int8_range:
            return acc if self.metric == "l1" else np.sqrt(acc)
        d = acc.astype(np.float32) if self.metric == "l1" else np.sqrt(acc.astype(np.float32))
        return (d * self.scale).astype(np.float32)

    def _dist(self, x: np.ndarray) -> np.ndarray:
        """Distances from ``x`` (already coded) to every prototype."""
        return self._pair(self.centers, x)

    def _dist_rows(self, c: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return self._pair(self.centers[rows], c)

    def _dist_batch(self, X: np.ndarray) -> np.ndarray:
        C = self.centers.astype(np.float64) if self.int8_range else self.centers
        Xf = X.astype(np.float64) if self.int8_range else X   # integer codes: exact in float64
        if self.metric == "l1":
            D = np.abs(Xf[:, None, :] - C[None]).sum(2)
        else:
            sq = (Xf * Xf).sum(1)[:, None] - 2.0 * Xf @ C.T + (C * C).sum(1)[None]
            D = np.sqrt(np.maximum(sq, 0.0))
        return (D * self.scale).astype(np.float32)

    def _visit(self, x: np.ndarray) -> np.ndarray:
        """Indices of the prototypes that get a full distance for ``x`` (see ``max_visit``): the
        ``max_visit`` smallest sums over the first ``prefix_features`` features, ties to the lower
        index (the C core keeps the same set in a sorted list)."""
        P, K, m = self.n_prototypes, self.prefix_features, self.max_visit
        if not m or P <= m:
            return np.arange(P)
        coarse = self._acc(self.centers[:, :K], x[:K])
        kth = np.partition(coarse, m - 1)[m - 1]
        below = np.flatnonzero(coarse < kth)
        return np.sort(np.concatenate([below, np.flatnonzero(coarse == kth)[:m - below.size]]))

    def _visited_dist(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distance to every prototype, inf where not visited; the visited indices)."""
        seen = self._visit(x)
        if seen.size == self.n_prototypes:
            return self._dist(x), seen
        d = np.full(self.n_prototypes, np.inf, np.float32)
        d[seen] = self._dist_rows(x, seen)
        return d, seen

    # --- state --------------------------------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        return {"memory_bytes": self.memory_bytes, "r_max": self.r_max, "r_min": self.r_min,
                "grow_margin": self.grow_margin, "metric": self.metric,
                "int8_range": self.int8_range, "max_visit": self.max_visit,
                "prefix_features": self.prefix_features}

    def _meta(self) -> dict[str, Any]:
        return {"learning_macs": int(self.learning_macs), "counters": dict(self.counters),
                "learning_macs_early_exit": int(self.learning_macs_early_exit)}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"centers": self.centers, "radii": self.radii, "rows": self.rows,
                "hits": self.hits, "last_used": self.last_used}

    def _load_arrays(self, state: dict[str, Any], n_classes: int) -> dict[str, Any]:
        arrays = state["arrays"]
        if "radii" not in arrays:
            raise StateError("state: array 'radii' is missing")
        P = int(np.asarray(arrays["radii"]).shape[0]) if np.asarray(arrays["radii"]).ndim == 1 else -1
        if P < 0:
            raise StateError("state: array 'radii' must be 1-d")
        cap = self._capacity(n_classes)
        if P > cap:
            raise StateError(f"state: {P} prototypes exceed this TinyRCE's memory budget "
                             f"({self.memory_bytes} B holds {cap})")
        centers = expect_array(state, "centers", (P, self.n_features), self.center_dtype, nonneg=False)
        radii = expect_array(state, "radii", (P,), np.float32)
        rows = expect_array(state, "rows", (P,), np.uint16)
        hits = expect_array(state, "hits", (P,), np.uint32)
        last_used = expect_array(state, "last_used", (P,), np.uint32)
        if P and (radii.min() < 0 or radii.max() > self.r_max * (1 + 1e-3)):
            raise StateError(f"state: radii must lie in [0, r_max={self.r_max}]")
        if P and int(rows.max()) >= n_classes:
            raise StateError(f"state: 'rows' refers to class row {int(rows.max())}, only {n_classes} classes")
        macs = meta_of(state, "learning_macs")
        if isinstance(macs, bool) or not isinstance(macs, int) or macs < 0:
            raise StateError(f"state: meta 'learning_macs' must be a non-negative int, got {macs!r}")
        counters = meta_of(state, "counters")
        if not isinstance(counters, dict) or set(counters) != set(self.counters) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counters.values()):
            raise StateError("state: meta 'counters' is malformed")
        early = state["meta"].get("learning_macs_early_exit", 0)   # absent in states before it existed
        if isinstance(early, bool) or not isinstance(early, int) or early < 0:
            raise StateError(f"state: meta 'learning_macs_early_exit' must be a non-negative int, got {early!r}")
        return {"centers": centers, "radii": radii, "rows": rows, "hits": hits, "last_used": last_used,
                "learning_macs": macs, "learning_macs_early_exit": early, "counters": dict(counters)}
