"""Federated learning of classifier heads: the snapshot a device shares, and how heads are merged.

Pure numpy: no I/O, no transport. The fleet layer (``tinycl_nodes.fleet``) moves snapshots over
MQTT; this module decides what a snapshot is, which ones are refused and how they are combined.

Class identity
--------------
A class is the pair **(id, name)**. Two rows are the *same class* only when both the id and the
name are equal. Same id with another name, or same name with another id, are *different classes*
and are never averaged together: the aggregate keeps both rows (the union of classes comes out,
sorted by (id, name)) and lists the clash in :attr:`AggregateResult.conflicts` so an operator sees
that two devices allocated the same id for different things. A device cannot hold two rows with
one id (its head is keyed by id), so :func:`merge_global` imports neither side of such a clash
(see there). Names are compared exactly (case and spaces matter).

Aggregation (the aggregator side), per class ``k`` over the devices ``d`` that have it
-----------------------------------------------------------------------------------
- ``"fedavg"`` — class-aware federated averaging weighted by per-class sample counts
  ``W_k = Σ_d n_dk W_dk / Σ_d n_dk`` (same for the bias); if every count of ``k`` is 0 the rows are
  averaged unweighted. The output count is ``Σ_d n_dk``.
- ``"median"`` — coordinate-wise median of the rows (counts only decide presence). With 2m+1
  devices it tolerates m arbitrary (poisoned) rows.
- ``"trimmed_mean"`` — coordinate-wise mean after dropping ``floor(trim · n_k)`` of the smallest
  and of the largest values of each coordinate (``trim`` in [0, 0.5)); with too few devices to
  trim it is the plain mean.

Refusals (:func:`check_snapshot`), each a :class:`RefusedHead` with a one-line reason: another
extractor hash, NaN/inf anywhere, a weight norm above ``max_norm`` (absurd norm), a device not in
the allowed list, a feature dimension or head kind other than the round's, malformed arrays.

Device-side merge policy (:func:`merge_global`)
-----------------------------------------------
What a device does with the global head it receives, local head ``L`` and global head ``G``:

- ``"replace"`` — every class of ``G`` takes ``G``'s row and count; classes only ``L`` knows
  (learned since the round, or never shared) are kept as they are. Nothing learned locally is
  dropped, the fleet's knowledge wins where it exists.
- ``"blend"`` (default) — a class in both gets ``(n_L·W_L + n_G·W_G) / (n_L + n_G)``; its count
  becomes ``max(n_L, n_G)`` (``G``'s count already includes this device's own samples: summing
  would count them twice and counts would grow every round). Classes of only one side are taken
  as they are. Recent local learning thus keeps a say proportional to its count.

Classes of ``G`` that cannot be imported because their id is used locally by a class of another
name (or appears twice in ``G``) are left out and reported in ``MergeResult.skipped``.

:func:`merge_into_head` is the whole device-side step on a live core head (what the learner and
the labeler's replica both run): refuse a bad global head (:func:`check_snapshot`), consolidate
the pending CWR* batch, merge, load. It needs a head whose learned state *is* its linear form
(CWR*: the consolidated rows ``cw`` and counts ``past``); a streaming-LDA head's linear rows are
``Λμ_c`` under the device's own covariance, so it is refused there.

Rounds for weeks, and exact SLDA federation (:class:`Moments`, :func:`aggregate_exact`,
:class:`FleetMember`): a device shares only the additive statistics of its *own* learning
(counts, per-class sums, and for SLDA the raw second moment), the aggregator adds them, and a
device takes a round in as ``global − its share + its own now``. Classes never dilute over rounds,
nothing is counted twice, and for streaming-LDA heads (shared as means, counts and within-class
scatter, see :class:`HeadSnapshot`) the sum is exactly the head trained on the union of the
devices' data. See docs/fleet.md ("Rounds for weeks").

Why count-weighted averaging works for the TinyNDC fleet: every device starts from the same
labelled samples of *all* classes (k per class), so every device has a row for every class,
calibrated in the same feature space against the same classes. A device that then sees a class
in its stream has a large count for it; the others keep ~k plus a few wrong pseudo-labels. Per
class, ``fedavg`` therefore takes the row of the device that learned it, and ``blend`` then
hands that row to the others (their own count is small). On MNIST (3 devices, classes 6-9 split
2/1/1, one round) every device reaches ≥ 90% of the learning device's accuracy on the classes it
never saw (``tinycl_nodes/fleet/demo.py``). ``median`` ignores counts and does not do this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np

from .errors import ExtractorMismatchError, InputError, TinyclError

METHODS = ("fedavg", "median", "trimmed_mean")
POLICIES = ("replace", "blend", "add")
#: default refusal threshold on the Frobenius norm of a head's weights (see :func:`check_snapshot`)
DEFAULT_MAX_NORM = 1.0e4
MAX_CLASSES = 4096
MAX_FEATURES = 65536
MAX_NAME = 128
#: largest per-class sample count accepted (2^40 ≈ 1.1e12 samples): sums over up to 2^20 devices
#: stay exact in int64 and float64 (a count of 2^63−1 would overflow the first sum)
MAX_COUNT = 1 << 40
SLDA_KIND = "StreamingLDA"
#: the state kind of signed statistics (:meth:`Moments.state_dict`)
MOMENTS_KIND = "Moments"
#: the shrinkage a StreamingLDA snapshot is scored with (StreamingLDA's default)
SLDA_SHRINKAGE = 1e-4


def fleet_policy(kind: str) -> Literal["blend", "add"]:
    """The merge a head of ``kind`` takes from the fleet by default (policy ``auto``): streaming LDA
    only by ``add`` (its state is statistics; the bridge's exact mode), CWR* by ``blend``."""
    return "add" if kind == SLDA_KIND else "blend"


def resolve_policy(policy: str, kind: str) -> str:
    """``policy`` as applied to a head of ``kind``: ``auto`` is :func:`fleet_policy`."""
    return fleet_policy(kind) if policy == "auto" else policy


class RefusedHead(TinyclError):
    """A device head is not used for aggregation; the message is the one-line reason."""


ClassKey = tuple[int, str]


@dataclass
class HeadSnapshot:
    """What a device shares: a linear head ``scores = weights @ x + bias`` with its classes.

    ``class_ids[i]``, ``class_names[i]`` and ``counts[i]`` describe row ``i`` of ``weights``
    (``classes × features`` float32) and ``bias``. ``version`` is the device's head version (or
    the aggregation round for a global head). ``n_seen`` is informative.

    A streaming-LDA head (``kind == "StreamingLDA"``) is shared as its sufficient statistics:
    ``weights`` are the class *means*, ``bias`` zeros, ``counts`` the class counts and ``shared``
    the within-class scatter ``N·Σ`` (features × features, float64); :meth:`linear` turns them
    into the scoring rows. (Without ``shared``, ``weights``/``bias`` are its scoring rows: enough
    to predict, not to merge.) ``scoring`` is a live streaming-LDA head's own scoring rows ``(W, b)``: its cache may
    lag its statistics by up to ``refresh_every − 1`` samples, and what is exported or published must be what it
    predicted with; a snapshot made from statistics alone (a merge) has none and is scored from them.

    ``moments``: an exact-mode addition's own statistics (:meth:`FleetMember.delta`), of either sign — samples that
    left the fleet (a device removed, a peer's un-learning) are subtracted, which no head (counts ≥ 0, a positive
    scatter) can say. The rest of such a snapshot is only their view: the classes that gain samples.
    """

    class_ids: np.ndarray
    class_names: tuple[str, ...]
    counts: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    kind: str
    extractor_hash: str
    version: int = 0
    n_seen: int = 0
    device: str = ""
    shared: np.ndarray | None = None
    scoring: tuple[np.ndarray, np.ndarray] | None = None
    moments: "Moments | None" = None

    def __post_init__(self) -> None:
        self.class_ids = np.asarray(self.class_ids, np.int64).reshape(-1)
        self.class_names = tuple(str(n) for n in self.class_names)
        self.counts = np.asarray(self.counts, np.int64).reshape(-1)
        self.weights = np.asarray(self.weights, np.float32)
        self.bias = np.asarray(self.bias, np.float32).reshape(-1)
        if self.shared is not None:
            self.shared = np.asarray(self.shared, np.float64)
        if self.scoring is not None:
            self.scoring = (np.asarray(self.scoring[0], np.float32), np.asarray(self.scoring[1], np.float32))
        self.validate_shapes()

    # --- properties -----------------------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.weights.shape[1])

    @property
    def keys(self) -> list[ClassKey]:
        return list(zip(self.class_ids.tolist(), self.class_names))

    def validate_shapes(self) -> None:
        """Raise InputError unless arrays agree with each other (shape-only, cheap)."""
        if self.weights.ndim != 2:
            raise InputError(f"head: weights must be 2-d (classes x features), got shape {self.weights.shape}")
        C, F = self.weights.shape
        if not (len(self.class_ids) == len(self.class_names) == len(self.counts) == len(self.bias) == C):
            raise InputError(f"head: {C} weight rows but {len(self.class_ids)} ids, {len(self.class_names)} "
                             f"names, {len(self.counts)} counts, {len(self.bias)} biases")
        if C > MAX_CLASSES or F > MAX_FEATURES or (C and F == 0):
            raise InputError(f"head: shape {C}x{F} out of range (<= {MAX_CLASSES} classes, 1..{MAX_FEATURES} features)")
        if C and (self.class_ids.min() < 0 or self.class_ids.max() > 2**32 - 1):
            raise InputError("head: class id out of range 0..2^32-1")
        if C and self.counts.min() < 0:
            raise InputError("head: negative sample count")
        if C and self.counts.max() > MAX_COUNT:
            raise InputError(f"head: sample count {int(self.counts.max())} above the limit {MAX_COUNT}")
        if any(len(n) > MAX_NAME for n in self.class_names):
            raise InputError(f"head: class name longer than {MAX_NAME} characters")
        if len(set(self.keys)) != C:
            raise InputError("head: a class (id, name) appears twice")
        if self.shared is not None and self.kind != SLDA_KIND:
            raise InputError(f"head: only a {SLDA_KIND} snapshot carries a shared scatter, not {self.kind}")
        if self.shared is not None and self.shared.shape != (F, F):
            raise InputError(f"head: shared scatter has shape {self.shared.shape}, expected {(F, F)}")
        if self.scoring is not None and (self.shared is None or self.scoring[0].shape != (C, F)
                                         or self.scoring[1].shape != (C,)):
            raise InputError(f"head: scoring rows of shape {self.scoring[0].shape} / {self.scoring[1].shape} "
                             f"for a {C}x{F} {SLDA_KIND} snapshot")
        if self.moments is not None and self.moments.s.shape[1:] != (F,):
            raise InputError(f"head: statistics of {self.moments.s.shape[1:]} features for a {C}x{F} snapshot")

    def copy(self, **changes: Any) -> "HeadSnapshot":
        base = dict(class_ids=self.class_ids.copy(), class_names=self.class_names, counts=self.counts.copy(),
                    weights=self.weights.copy(), bias=self.bias.copy(), kind=self.kind,
                    extractor_hash=self.extractor_hash, version=self.version, n_seen=self.n_seen,
                    device=self.device, shared=None if self.shared is None else self.shared.copy(),
                    scoring=None if self.scoring is None else (self.scoring[0].copy(), self.scoring[1].copy()),
                    moments=self.moments)
        if changes.keys() & {"class_ids", "counts", "weights", "shared"}:
            base["scoring"] = None     # other statistics: scored from them, unless the change gives its own rows
            base["moments"] = None
        base.update(changes)
        return HeadSnapshot(**base)

    def linear(self, shrinkage: float = SLDA_SHRINKAGE) -> tuple[np.ndarray, np.ndarray]:
        """Scoring rows ``(W, b)``: the weights as they are, or for SLDA statistics the LDA rows
        ``W = μΛ``, ``b = −½ μΛμᵀ`` with ``Λ = inv((1 − ε)Σ + εI)`` (as ``StreamingLDA`` scores)."""
        if self.shared is None:
            return self.weights, self.bias
        if self.scoring is not None:
            return self.scoring
        N = float(self.counts.sum())
        F = self.n_features
        A = self.shared * ((1.0 - shrinkage) / N if N else 0.0)
        A[np.diag_indices(F)] += shrinkage
        M = self.weights.astype(np.float64)
        W = np.linalg.solve(A, M.T).T
        return W.astype(np.float32), (-0.5 * (M * W).sum(axis=1)).astype(np.float32)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class ids predicted for a batch ``X`` (n, F) (argmax of ``X @ W.T + b``)."""
        if not self.n_classes:
            raise InputError("head: no classes to predict")
        W, b = self.linear()
        scores = np.asarray(X, np.float32) @ W.T + b
        return self.class_ids[scores.argmax(axis=1)]

    def without(self, class_ids: Iterable[int]) -> "HeadSnapshot":
        """This snapshot without the rows of ``class_ids`` (a device's opted-out classes)."""
        drop = set(int(c) for c in class_ids)
        keep = np.array([int(c) not in drop for c in self.class_ids], bool)
        return self.copy(class_ids=self.class_ids[keep], class_names=[n for n, k in zip(self.class_names, keep) if k],
                         counts=self.counts[keep], weights=self.weights[keep].reshape(-1, self.n_features),
                         bias=self.bias[keep],
                         scoring=None if self.scoring is None else (self.scoring[0][keep], self.scoring[1][keep]))


# --- from / to the core heads -----------------------------------------------------------------------
def snapshot_from_head(head: Any, names: Mapping[int, str] | None = None, version: int = 0,
                       device: str = "") -> HeadSnapshot:
    """The shareable snapshot of a core head (CWR*: consolidated weights and ``past`` counts).

    ``names`` maps class id → name (default: ``str(id)``). A CWR* partial batch is not included
    (call ``head.flush()`` first to share it). Other heads: their linear form ``head.linear()``
    (or ``W``/``b``) with the per-class counts ``class_seen`` when the head tracks them.
    """
    names = names or {}
    ids = list(head.classes)
    kind = type(head).kind
    shared = scoring = None
    if kind == "CWRStar":
        W, b, counts = head.cw, np.zeros(len(ids), np.float32), head.past
    elif kind == SLDA_KIND:      # sufficient statistics: means, counts, within-class scatter
        W, b, counts = head.means, np.zeros(len(ids), np.float32), head.counts
        shared = head.covariance * head.n_updates
        rows = head.linear()     # what it predicts with (its cache), unless that is not built for these classes yet
        scoring = rows if rows[0].shape == (len(ids), head.n_features) else None
    else:
        try:
            W, b = head.linear() if hasattr(head, "linear") else (head.W, head.b)
        except (NotImplementedError, AttributeError):
            raise InputError(f"head: a {kind} head has no linear form, it cannot be shared") from None
        counts = np.asarray(getattr(head, "class_seen", np.zeros(len(ids))), np.int64)
        if counts.shape != (len(ids),):
            counts = np.zeros(len(ids), np.int64)
    return HeadSnapshot(ids, [names.get(c, str(c)) for c in ids], counts, np.array(W, np.float32),
                        np.array(b, np.float32), kind, head.extractor_hash, version, int(head.n_seen), device, shared,
                        scoring)


def load_snapshot_into(head: Any, snap: HeadSnapshot) -> None:
    """Replace a CWR* head's consolidated weights and counts, or a streaming-LDA head's statistics
    (means, counts, scatter), by ``snap`` (e.g. a merged head).

    A CWR* head's partial batch is consolidated first (nothing learned is lost); classes are
    keyed by id (names live with the caller). On error the head is unchanged.
    """
    kind = type(head).kind
    if kind not in ("CWRStar", SLDA_KIND) or snap.kind != kind:
        raise InputError(f"head: loading a {snap.kind} snapshot into a {kind} head is not supported")
    if snap.n_classes and snap.n_features != head.n_features:
        raise InputError(f"head: snapshot has {snap.n_features} features, head has {head.n_features}")
    head.check_extractor(snap.extractor_hash)
    if len(set(snap.class_ids.tolist())) != snap.n_classes:
        raise InputError("head: snapshot holds one class id twice (id clash): merge it first")
    C, F = snap.n_classes, head.n_features
    if kind == SLDA_KIND:
        state = head.state_dict()
        n = int(snap.counts.sum())
        shared = snap.shared if snap.shared is not None else np.zeros((F, F))
        state["arrays"].update(classes=snap.class_ids.copy(), class_seen=snap.counts.copy(),
                               means=snap.weights.astype(np.float64).reshape(C, F), counts=snap.counts.copy(),
                               scatter=np.array(shared, np.float64), n_updates=np.asarray(n, np.int64),
                               cache_W=np.zeros((0, F), np.float32), cache_b=np.zeros(0, np.float64),
                               cache_stale=np.asarray(0, np.int64))
        head.load_state_dict(state)
        head.refresh()
        return
    head.flush()
    state = head.state_dict()
    arrays = state["arrays"]
    arrays.update(classes=snap.class_ids.copy(), cw=snap.weights.copy().reshape(C, F),
                  tw=np.zeros((C, F), np.float32), past=snap.counts.copy(), cur=np.zeros(C, np.int64),
                  n_batch=np.asarray(0, np.int64), batch_x=np.zeros((0, F), np.float32),
                  batch_rows=np.zeros(0, np.int64))
    if "class_seen" in arrays:
        arrays["class_seen"] = snap.counts.copy()
    head.load_state_dict(state)


# --- refusals -----------------------------------------------------------------------------------
def check_snapshot(snap: HeadSnapshot, *, extractor_hash: str | None = None,
                   max_norm: float | None = DEFAULT_MAX_NORM, allowed_devices: Iterable[str] | None = None,
                   n_features: int | None = None, kind: str | None = None) -> None:
    """Raise :class:`RefusedHead` (one-line reason) if ``snap`` must not be aggregated."""
    who = f"head from {snap.device or '?'} v{snap.version}"
    if allowed_devices is not None and snap.device not in set(allowed_devices):
        raise RefusedHead(f"{who}: device {snap.device!r} is not allowed in this fleet")
    if extractor_hash and snap.extractor_hash != extractor_hash:
        raise RefusedHead(f"{who}: built on extractor {snap.extractor_hash[:12] or '(none)'}, the fleet "
                          f"uses {extractor_hash[:12]}: refusing to mix them")
    try:
        snap.validate_shapes()
    except InputError as exc:
        raise RefusedHead(f"{who}: {exc}") from None
    if n_features is not None and snap.n_features != n_features:
        raise RefusedHead(f"{who}: {snap.n_features} features, the round has {n_features}")
    if kind is not None and snap.kind != kind:
        raise RefusedHead(f"{who}: head kind {snap.kind!r}, the round aggregates {kind!r}")
    if snap.n_classes == 0 and snap.moments is None:
        raise RefusedHead(f"{who}: no classes: nothing to merge")
    if snap.moments is not None and not snap.moments.finite():
        raise RefusedHead(f"{who}: its statistics contain NaN or inf")
    if not (np.isfinite(snap.weights).all() and np.isfinite(snap.bias).all()):
        raise RefusedHead(f"{who}: weights contain NaN or inf")
    if snap.kind == SLDA_KIND and (snap.shared is None or not np.isfinite(snap.shared).all()):
        raise RefusedHead(f"{who}: a {SLDA_KIND} head must carry its finite statistics (scatter) to be merged")
    if max_norm is not None:
        norm = float(np.sqrt(np.sum(snap.weights.astype(np.float64) ** 2) + np.sum(snap.bias.astype(np.float64) ** 2)))
        if not norm <= max_norm:
            raise RefusedHead(f"{who}: weight norm {norm:.3g} exceeds the limit {max_norm:.3g} (absurd norm)")
    if snap.kind == SLDA_KIND:
        _check_scatter(snap.shared, int(snap.counts.sum()), max_norm, who)


def _check_scatter(scatter: np.ndarray, n: int, max_norm: float | None, who: str) -> None:
    """A within-class scatter is a sum of outer products: symmetric, positive semi-definite, and (per sample) no
    larger than the weights may be — else one absurd device's statistics would enter every device's head."""
    big = float(np.abs(scatter).max(initial=0.0))
    if big and float(np.abs(scatter - scatter.T).max()) > 1e-6 * big:
        raise RefusedHead(f"{who}: its scatter is not symmetric: no sum of outer products")
    low = float(np.linalg.eigvalsh(scatter)[0]) if scatter.size else 0.0
    if low < -1e-6 * max(big, 1.0):
        raise RefusedHead(f"{who}: its scatter has a negative eigenvalue ({low:.3g}): no sum of outer products")
    per_sample = float(np.trace(scatter)) / max(n, 1)
    if max_norm is not None and not per_sample <= max_norm ** 2:
        raise RefusedHead(f"{who}: its scatter's variance per sample {per_sample:.3g} exceeds {max_norm ** 2:.3g} "
                          "(absurd statistics)")


# --- aggregation ----------------------------------------------------------------------------------
@dataclass
class AggregateResult:
    head: HeadSnapshot
    devices: list[str]
    #: per class key, how many devices contributed
    support: dict[ClassKey, int] = field(default_factory=dict)
    #: human-readable clashes: same id with different names, or same name with different ids
    conflicts: list[str] = field(default_factory=list)


def aggregate(snaps: Sequence[HeadSnapshot], method: Literal["fedavg", "median", "trimmed_mean"] = "fedavg",
              trim: float = 0.2, version: int = 0, min_count: int = 0) -> AggregateResult:
    """Merge device heads into one global head (the union of their classes); see module docstring.

    All snapshots must share the extractor hash, kind and feature count (check them with
    :func:`check_snapshot` first; a mismatch here raises InputError). A device row of class ``k``
    takes part only if its count is ``>= min_count`` (0: every row).
    """
    if method not in METHODS:
        raise InputError(f"aggregate: method must be one of {', '.join(METHODS)}, got {method!r}")
    if not 0.0 <= trim < 0.5:
        raise InputError(f"aggregate: trim must be in [0, 0.5), got {trim}")
    if not snaps:
        raise InputError("aggregate: no heads to aggregate")
    first = snaps[0]
    if first.kind == SLDA_KIND:
        if method != "fedavg":
            raise InputError(f"aggregate: {SLDA_KIND} statistics merge exactly (fedavg), not by {method}")
        if min_count:
            snaps = [s.without(s.class_ids[s.counts < min_count]) for s in snaps]
        glob = aggregate_exact(snaps, version)
        return AggregateResult(glob, [s.device for s in snaps],
                               {k: sum(k in set(s.keys) for s in snaps) for k in glob.keys}, _conflicts(glob.keys))
    for s in snaps[1:]:
        if s.extractor_hash != first.extractor_hash:
            raise ExtractorMismatchError("aggregate: heads come from different extractors")
        if s.n_features != first.n_features or s.kind != first.kind:
            raise InputError(f"aggregate: heads differ in kind/features ({s.kind}/{s.n_features} vs "
                             f"{first.kind}/{first.n_features})")
    F = first.n_features
    # union of class keys, and the (device, row) -> union row mapping; devices with the same class
    # list (the usual case) are filled together, so the cost is linear with a small constant
    skeys = [tuple(s.keys) for s in snaps]
    keys = sorted(set().union(*skeys))
    index = {k: i for i, k in enumerate(keys)}
    K, D = len(keys), len(snaps)
    W = np.zeros((D, K, F), np.float32)
    B = np.zeros((D, K), np.float32)
    N = np.zeros((D, K), np.float64)
    present = np.zeros((D, K), bool)
    groups: dict[tuple, list[int]] = {}
    for d, sk in enumerate(skeys):
        groups.setdefault(sk, []).append(d)
    for sk, ds in groups.items():
        rows = np.fromiter((index[k] for k in sk), np.int64, len(sk))
        sel = np.asarray(ds)[:, None]
        W[sel, rows] = np.stack([snaps[d].weights for d in ds])
        B[sel, rows] = np.stack([snaps[d].bias for d in ds])
        cnt = np.stack([snaps[d].counts for d in ds])
        N[sel, rows] = cnt
        present[sel, rows] = cnt >= min_count if min_count else True
    support_n = present.sum(axis=0)
    keep = support_n > 0
    out_W = np.zeros((K, F), np.float32)
    out_B = np.zeros(K, np.float32)
    if method == "fedavg":
        wts = np.where(present, N, 0.0)
        zero = wts.sum(axis=0) == 0
        wts[:, zero] = present[:, zero]              # all counts 0: unweighted mean
        tot = wts.sum(axis=0)
        tot[tot == 0] = 1.0
        out_W = (np.einsum("dk,dkf->kf", wts, W, dtype=np.float64) / tot[:, None]).astype(np.float32)
        out_B = ((wts * B).sum(axis=0) / tot).astype(np.float32)
    else:
        for k in np.flatnonzero(keep):
            sel = present[:, k]
            out_W[k], out_B[k] = _robust(W[sel, k], B[sel, k], method, trim)
    # each count <= MAX_COUNT, so the float64 sum is exact; the total is clipped, never overflows
    counts = np.minimum(np.where(present, N, 0).sum(axis=0), MAX_COUNT).astype(np.int64)
    ids = [k[0] for k in keys]
    names = [k[1] for k in keys]
    sel = np.flatnonzero(keep)
    head = HeadSnapshot(np.asarray(ids, np.int64)[sel], [names[i] for i in sel], counts[sel], out_W[sel],
                        out_B[sel], first.kind, first.extractor_hash, version,
                        min(int(sum(s.n_seen for s in snaps)), MAX_COUNT), "global")
    support = {keys[i]: int(support_n[i]) for i in sel}
    return AggregateResult(head, [s.device for s in snaps], support, _conflicts([keys[i] for i in sel]))


def _robust(Wk: np.ndarray, Bk: np.ndarray, method: str, trim: float) -> tuple[np.ndarray, np.ndarray]:
    if method == "median":
        return np.median(Wk, axis=0), np.median(Bk, axis=0)
    n = Wk.shape[0]
    cut = int(math.floor(trim * n))
    if cut == 0:
        return Wk.mean(axis=0), Bk.mean(axis=0)
    return (np.sort(Wk, axis=0)[cut:n - cut].mean(axis=0), np.sort(Bk, axis=0)[cut:n - cut].mean(axis=0))


def _conflicts(keys: Sequence[ClassKey]) -> list[str]:
    by_id: dict[int, list[str]] = {}
    by_name: dict[str, list[int]] = {}
    for i, n in keys:
        by_id.setdefault(i, []).append(n)
        by_name.setdefault(n, []).append(i)
    out = [f"class id {i} is used for different names {sorted(ns)!r}: kept apart" for i, ns in by_id.items() if len(ns) > 1]
    out += [f"class name {n!r} has different ids {sorted(ids)}: kept apart" for n, ids in by_name.items() if len(ids) > 1]
    return out


# --- device side ------------------------------------------------------------------------------------
@dataclass
class MergeResult:
    head: HeadSnapshot
    #: global classes not imported, each with the reason
    skipped: list[str] = field(default_factory=list)
    #: class keys that came from the global head only (new to this device)
    imported: list[ClassKey] = field(default_factory=list)
    #: the policy applied (``auto`` resolved)
    policy: str = ""


def merge_global(local: HeadSnapshot, global_: HeadSnapshot,
                 policy: Literal["replace", "blend"] = "blend") -> MergeResult:
    """Merge the fleet's global head into this device's head (policy: see module docstring).

    The extractor hash and feature count must match (else ExtractorMismatchError / InputError);
    the result keeps the local kind and version, local rows first then imported ones.
    """
    if policy not in POLICIES:
        raise InputError(f"merge: policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if local.extractor_hash and global_.extractor_hash != local.extractor_hash:
        raise ExtractorMismatchError(f"merge: global head was built on extractor {global_.extractor_hash[:12]}, "
                                     f"this device runs {local.extractor_hash[:12]}: refusing it")
    if local.n_classes and global_.n_classes and global_.n_features != local.n_features:
        raise InputError(f"merge: global head has {global_.n_features} features, local head {local.n_features}")
    if not (np.isfinite(global_.weights).all() and np.isfinite(global_.bias).all()):
        raise InputError("merge: global head contains NaN or inf")
    F = local.n_features if local.n_classes else global_.n_features
    W = [r for r in local.weights.reshape(-1, F)] if local.n_classes else []
    B = list(local.bias)
    N = [int(n) for n in local.counts]
    keys = list(local.keys)
    row_of = {k: i for i, k in enumerate(keys)}
    local_ids = {k[0]: k for k in keys}
    gid_count: dict[int, int] = {}
    for i in global_.class_ids.tolist():
        gid_count[i] = gid_count.get(i, 0) + 1
    skipped: list[str] = []
    imported: list[ClassKey] = []
    for g, key in enumerate(global_.keys):
        wg, bg, ng = global_.weights[g], float(global_.bias[g]), int(global_.counts[g])
        if key in row_of:
            r = row_of[key]
            if policy == "replace":
                W[r], B[r], N[r] = wg.copy(), bg, ng
            else:
                nl = N[r]
                tot = nl + ng
                a, c = (nl / tot, ng / tot) if tot else (0.5, 0.5)
                W[r] = (a * W[r].astype(np.float64) + c * wg).astype(np.float32)
                B[r] = a * B[r] + c * bg
                N[r] = max(nl, ng)
            continue
        if key[0] in local_ids:
            skipped.append(f"class {key[0]} {key[1]!r}: id {key[0]} is {local_ids[key[0]][1]!r} here: not merged")
            continue
        if gid_count[key[0]] > 1:
            skipped.append(f"class {key[0]} {key[1]!r}: id {key[0]} has several names in the global head: not imported")
            continue
        W.append(wg.copy())
        B.append(bg)
        N.append(ng)
        keys.append(key)
        imported.append(key)
    head = HeadSnapshot([k[0] for k in keys], [k[1] for k in keys], N,
                        np.asarray(W, np.float32).reshape(len(keys), F), np.asarray(B, np.float32),
                        local.kind or global_.kind, local.extractor_hash or global_.extractor_hash,
                        local.version, local.n_seen, local.device)
    return MergeResult(head, skipped, imported)


def mergeable(head: Any, policy: str = "blend") -> bool:
    """Whether :func:`merge_into_head` can merge into ``head`` by ``policy`` (CWR*; SLDA by ``add``)."""
    kind = getattr(type(head), "kind", "")
    return kind == "CWRStar" or (kind == SLDA_KIND and policy == "add")


def check_merge(head: Any, global_: HeadSnapshot, policy: str = "auto", *,
                max_norm: float | None = DEFAULT_MAX_NORM) -> str:
    """What :func:`merge_into_head` refuses, checked without touching anything: the policy as applied to ``head``."""
    policy = resolve_policy(policy, getattr(type(head), "kind", ""))
    if policy not in POLICIES:
        raise InputError(f"merge: policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if not mergeable(head, policy):
        raise InputError(f"merge: a {getattr(type(head), 'kind', type(head).__name__)} head cannot take a global "
                         f"head by {policy!r} (CWR* by any policy; streaming LDA by 'add', with the bridge's "
                         f"exact mode)")
    check_snapshot(global_, extractor_hash=head.extractor_hash or None,
                   max_norm=None if policy == "add" else max_norm,
                   n_features=head.n_features if global_.n_classes or global_.moments is not None else None,
                   kind=head.kind)
    return policy


def merge_into_head(head: Any, global_: HeadSnapshot, policy: Literal["auto", "replace", "blend", "add"] = "auto",
                    names: Mapping[int, str] | None = None, *,
                    max_norm: float | None = DEFAULT_MAX_NORM) -> MergeResult:
    """The device-side merge on a live head: check, consolidate, merge, load.

    ``global_`` is refused (:class:`RefusedHead`, one line; ``head`` untouched) if it is built on
    another extractor, has another kind or feature count, NaN/inf, an absurd norm or bad shapes.
    Otherwise a CWR* head's partial batch is consolidated (nothing learned is lost), its snapshot
    (``names``: class id → name, default ``str(id)``) is merged with ``global_`` under ``policy``
    and loaded back. ``add`` (CWR* and streaming LDA): ``global_`` holds statistics to *add* — what
    the bridge's :class:`FleetMember` hands over, the other devices' learning not yet in this head
    (see :meth:`FleetMember.delta`). Deterministic: the same head and global head always give the
    same result. ``auto``: :func:`fleet_policy` of the head's kind.
    """
    policy = check_merge(head, global_, policy, max_norm=max_norm)
    if hasattr(head, "flush"):
        head.flush()
    local = snapshot_from_head(head, names)
    if policy == "add":         # an exact addition's own statistics: samples that left the fleet are subtracted
        add = global_.moments if global_.moments is not None else Moments.of(global_)
        new = (Moments.of(local) + add).snapshot(local.kind, local.extractor_hash, local.version, local.n_seen,
                                                 local.device)
        names_of = dict(zip(global_.class_ids.tolist(), global_.class_names))
        res = MergeResult(new, [], [(c, names_of[c]) for c in global_.class_ids.tolist()
                                    if c not in set(local.class_ids.tolist())])
    else:
        res = merge_global(local, global_, policy)
    load_snapshot_into(head, res.head)
    res.policy = policy
    return res


def snapshot_from_state(state: Mapping[str, Any], names: Mapping[int, str] | None = None, version: int = 0,
                        device: str = "") -> HeadSnapshot:
    """The snapshot of a core head's state (``Head.state`` on the bus): for streaming LDA its
    statistics (means, counts, scatter), which its linear rows alone do not carry."""
    from .cwr import CWRStar
    from .slda import StreamingLDA

    kinds = {"CWRStar": CWRStar, SLDA_KIND: StreamingLDA}
    kind = state.get("kind") if isinstance(state, Mapping) else None
    meta = state.get("meta") if isinstance(state, Mapping) else None
    if kind not in kinds or not isinstance(meta, Mapping) or not isinstance(meta.get("n_features"), int):
        raise InputError(f"head state: kind {kind!r} cannot be shared (CWRStar, {SLDA_KIND})")
    head = kinds[kind](meta["n_features"], extractor_hash=str(meta.get("extractor_hash", "")))
    head.load_state_dict(dict(state))
    return snapshot_from_head(head, names, version, device)


# --- exact federation: additive sufficient statistics ---------------------------------------------
@dataclass
class Moments:
    """Additive statistics of a head's learning, keyed by class (id, name), float64.

    ``n`` per-class counts; ``s`` per-class sums (``n·row`` for a CWR* row, ``Σx`` = ``n·μ`` for
    SLDA); ``m`` (SLDA only) the raw second moment ``Σ xxᵀ`` = within-class scatter + ``Σ n μμᵀ``.
    Statistics of disjoint data add; adding every device's own statistics is the statistics of
    the union (for SLDA: exactly the head trained on the union). Subtraction undoes an addition.
    """

    keys: list[ClassKey]
    n: np.ndarray
    s: np.ndarray
    m: np.ndarray | None = None

    @classmethod
    def of(cls, snap: HeadSnapshot) -> "Moments":
        if snap.kind == SLDA_KIND and snap.shared is None:
            raise InputError(f"head from {snap.device or '?'}: a {SLDA_KIND} head without its statistics (linear "
                             f"rows only) cannot be merged exactly: send its state (learner with_state)")
        n = snap.counts.astype(np.float64)
        rows = snap.weights.astype(np.float64).reshape(snap.n_classes, -1)
        s = n[:, None] * rows
        m = None
        if snap.shared is not None:
            m = snap.shared + (s.T @ rows)
        return cls(list(snap.keys), n, s, m)

    @classmethod
    def of_samples(cls, X: np.ndarray, y: np.ndarray, names: Mapping[int, str] | None = None) -> "Moments":
        """The SLDA statistics of labelled samples ``X`` (n, F), ``y`` (n,) (classes named by ``names``, else by
        their id, as :func:`snapshot_from_head` names them)."""
        names = names or {}
        ids = sorted(set(int(v) for v in y))
        X64, y = np.asarray(X, np.float64), np.asarray(y)
        s = np.stack([X64[y == c].sum(0) for c in ids]) if ids else np.zeros((0, X64.shape[1]))
        return cls([(c, names.get(c, str(c))) for c in ids], np.array([np.sum(y == c) for c in ids], np.float64), s,
                   X64.T @ X64)

    def _aligned(self, other: "Moments", sign: float) -> "Moments":
        keys = list(dict.fromkeys([*self.keys, *other.keys]))
        idx = {k: i for i, k in enumerate(keys)}
        F = self.s.shape[1] if self.s.size else other.s.shape[1]
        n, s = np.zeros(len(keys)), np.zeros((len(keys), F))
        for mom, sg in ((self, 1.0), (other, sign)):
            if mom.keys:
                rows = [idx[k] for k in mom.keys]
                n[rows] += sg * mom.n
                s[rows] += sg * mom.s.reshape(len(rows), F)
        if (self.m is None) != (other.m is None) and self.keys and other.keys:
            raise InputError("moments: cannot combine SLDA statistics with linear rows")
        m = None
        if self.m is not None or other.m is not None:
            m = (self.m if self.m is not None else 0.0) + sign * (other.m if other.m is not None else 0.0)
        return Moments(keys, n, s, None if m is None else np.asarray(m, np.float64))

    def __add__(self, other: "Moments") -> "Moments":
        return self._aligned(other, 1.0)

    def finite(self) -> bool:
        """No NaN or inf anywhere (statistics received from another node are checked before any is added)."""
        return bool(np.isfinite(self.n).all() and np.isfinite(self.s).all()
                    and (self.m is None or np.isfinite(self.m).all()))

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The arrays of a state dict (``<prefix>n``, ``s`` and, SLDA, ``m``); the keys go in its meta."""
        out = {f"{prefix}n": self.n, f"{prefix}s": self.s}
        return out if self.m is None else {**out, f"{prefix}m": self.m}

    @classmethod
    def from_arrays(cls, keys: Iterable[Sequence[Any]], arrays: Mapping[str, np.ndarray],
                    prefix: str = "") -> "Moments":
        """Back from :meth:`arrays` and the keys; StateError (one line) if they do not fit."""
        from .errors import StateError

        what = repr(prefix.rstrip("/")) if prefix else "to add"
        try:
            k = [(int(i), str(n)) for i, n in keys]
            n, s = np.asarray(arrays[f"{prefix}n"], np.float64), np.asarray(arrays[f"{prefix}s"], np.float64)
            m = np.asarray(arrays[f"{prefix}m"], np.float64) if f"{prefix}m" in arrays else None
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"state: statistics {what} malformed ({type(exc).__name__})") from None
        if n.shape != (len(k),) or s.ndim != 2 or s.shape[0] != len(k) or (m is not None and m.shape !=
                                                                          (s.shape[1],) * 2):
            raise StateError(f"state: statistics {what} have inconsistent shapes")
        return cls(k, n, s, m)

    def state_dict(self) -> dict[str, Any]:
        """As a core state (what :func:`interfaces.heads.to_msg` puts in a ``Head`` that carries signed
        statistics: an exact-mode addition)."""
        from . import state as st

        return st.make_state(MOMENTS_KIND, 1, {}, self.arrays(), {"keys": [list(k) for k in self.keys]})

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> "Moments":
        from . import state as st

        st.check_state(state, MOMENTS_KIND, 1)
        return cls.from_arrays(state["meta"].get("keys", ()), state["arrays"])

    def __sub__(self, other: "Moments") -> "Moments":
        return self._aligned(other, -1.0)

    def same(self, other: "Moments | None", rtol: float = 1e-5) -> bool:
        """Equal up to float32 round-off, a class of count 0 being no class: a head that took a round in and is
        read back as float32 rows differs from the statistics it was given by that much, and learned nothing."""
        if other is None:
            return False
        d = self - other
        if np.abs(d.n).max(initial=0) >= 0.5:
            return False
        for diff, a, b in ((d.s, self.s, other.s), (d.m, self.m, other.m)):
            if diff is not None:
                scale = max(float(np.abs(x).max(initial=0)) for x in (a, b) if x is not None)
                if np.abs(diff).max(initial=0) > rtol * scale:
                    return False
        return True

    def without(self, class_ids: Iterable[int]) -> "Moments":
        drop = set(int(c) for c in class_ids)
        keep = [i for i, k in enumerate(self.keys) if k[0] not in drop]
        return Moments([self.keys[i] for i in keep], self.n[keep], self.s[keep], self.m)

    def snapshot(self, kind: str, extractor_hash: str, version: int = 0, n_seen: int = 0,
                 device: str = "") -> HeadSnapshot:
        """Back to a head snapshot (rows ``s/n``; SLDA: means and within-class scatter)."""
        n = np.rint(np.clip(self.n, 0, MAX_COUNT))
        keep = n > 0
        rows = np.zeros_like(self.s)
        rows[keep] = self.s[keep] / n[keep, None]
        shared = None
        if kind == SLDA_KIND:
            F = self.s.shape[1]
            m = self.m if self.m is not None else np.zeros((F, F))
            shared = _nearest_scatter(m - (self.s[keep].T @ rows[keep]))
        keys = [k for k, k_ok in zip(self.keys, keep) if k_ok]
        C, F = len(keys), self.s.shape[1]
        return HeadSnapshot([k[0] for k in keys], [k[1] for k in keys], n[keep].astype(np.int64),
                            rows[keep].astype(np.float32).reshape(C, F), np.zeros(C, np.float32), kind,
                            extractor_hash, version, min(int(n_seen), MAX_COUNT), device, shared)


def _nearest_scatter(a: np.ndarray) -> np.ndarray:
    """The within-class scatter of statistics added and subtracted (``Moments.snapshot``): a sum of outer products,
    positive semi-definite, but computed from means that travel as float32, so where it has fewer samples than
    features its null directions come out slightly negative. A robot that learned 20 samples in a fleet of 2,540 got
    a scatter with an eigenvalue of -0.00015 (its report, refused by the aggregator) and handed its peers one of
    -0.0003 (refused by their learners): those samples never reached the fleet. The negative part is cut off (the
    nearest positive semi-definite matrix); what is left is the statistics to float32 precision, and a scatter
    negative by more than that from outside is still refused (``check_snapshot``)."""
    a = 0.5 * (a + a.T)
    if not a.size:
        return a
    w, v = np.linalg.eigh(a)
    if w[0] >= 0:
        return a
    return (v * np.maximum(w, 0.0)) @ v.T


def aggregate_exact(snaps: Sequence[HeadSnapshot], version: int = 0) -> HeadSnapshot:
    """The sum of the devices' statistics as one snapshot (CWR*: fedavg by counts; SLDA: the head
    trained on the union of the devices' data, exactly)."""
    if not snaps:
        raise InputError("aggregate: no heads to aggregate")
    first = snaps[0]
    total = Moments.of(first)
    for snap in snaps[1:]:
        if snap.kind != first.kind or snap.extractor_hash != first.extractor_hash:
            raise InputError("aggregate: heads differ in kind or extractor")
        total = total + Moments.of(snap)
    return total.snapshot(first.kind, first.extractor_hash, version, sum(s.n_seen for s in snaps), "global")


class FleetMember:
    """A device's side of a fleet that learns for weeks: what it shares, how it takes a round in.

    The rule (why counts never dilute and nothing is counted twice): a device shares only its
    **own** learning — the statistics (:class:`Moments`) of the samples it learned itself,
    accumulated across rounds — never what it imported. The aggregator *adds* the devices' own
    statistics (:func:`aggregate_exact`), so a class learned once by one device keeps exactly the
    weight of its samples in every later round, however many rounds follow. Taking in a round,
    the device's head becomes ``global − (its own share in that global) + (its own statistics
    now)``: every other device's learning plus all of its own, including what it learned after
    reporting (nothing is lost). The global head's ``provenance`` says which report of each
    device it contains. Classes in ``opt_out`` are learned locally but never shared.

    ``baseline``: statistics every device's head started from and none learned — the frozen model's class
    statistics (``model_prior.py``), the same on every device of a fleet. They are not shared (summed over N
    devices they would count N times), and every head taken in gets them back.
    """

    def __init__(self, device: str, opt_out: Iterable[int] = (), keep_reports: int = 16,
                 baseline: Moments | None = None) -> None:
        self.device = device
        self.opt_out = frozenset(int(c) for c in opt_out)
        self.keep_reports = keep_reports
        self.baseline = baseline
        self.own: Moments | None = None
        self._last: Moments | None = None
        self.reported: dict[int, Moments] = {}

    # --- state (saved by the node that keeps the member: its bookkeeping must survive restarts) -----
    def state_dict(self) -> dict[str, Any]:
        """The bookkeeping as a core state dict (``core.state`` format)."""
        from . import state as st

        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {"device": self.device, "opt_out": sorted(self.opt_out), "moments": {}}
        named = {"own": self.own, "last": self._last, **{f"reported/{v}": m for v, m in self.reported.items()}}
        for name, mom in named.items():
            if mom is None:
                continue
            meta["moments"][name] = [list(k) for k in mom.keys]
            arrays.update(mom.arrays(f"{name}/"))
        return st.make_state("FleetMember", 1, {}, arrays, meta)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; raise StateError (nothing changed) if it does not fit."""
        from . import state as st
        from .errors import StateError

        st.check_state(state, "FleetMember", 1)
        meta, arrays = state["meta"], state["arrays"]
        if meta.get("device") != self.device:
            raise StateError(f"state: fleet bookkeeping of device {meta.get('device')!r}, this is {self.device!r}")
        try:
            loaded = {name: Moments.from_arrays(keys, arrays, f"{name}/")
                      for name, keys in dict(meta["moments"]).items()}
            reported = {int(name.split("/", 1)[1]): mom for name, mom in loaded.items() if name.startswith("reported/")}
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"state: fleet bookkeeping malformed ({type(exc).__name__})") from None
        self.own, self._last, self.reported = loaded.get("own"), loaded.get("last"), reported

    def observe(self, local: HeadSnapshot) -> None:
        """Account what the head learned since the last call (its statistics' change)."""
        now = Moments.of(local)
        start = self._last if self._last is not None else self.baseline
        delta = now if start is None else now - start
        self.own = delta if self.own is None else self.own + delta
        self._last = now

    def report(self, local: HeadSnapshot, version: int) -> HeadSnapshot:
        """The snapshot to share: this device's own statistics, without opted-out classes. If they did not change
        since the last report (the head only took a round in), that report again, with its version: a new
        version would count as a new head at the aggregator and start a round that brings nothing."""
        self.observe(local)
        assert self.own is not None
        mine = self.own.without(self.opt_out)
        last = max(self.reported) if self.reported else None
        if last is not None and last <= version and mine.same(self.reported[last]):
            return self.reported[last].snapshot(local.kind, local.extractor_hash, last, local.n_seen, self.device)
        self.reported[version] = mine
        for v in sorted(self.reported)[:-self.keep_reports]:
            del self.reported[v]
        return mine.snapshot(local.kind, local.extractor_hash, version, local.n_seen, self.device)

    def take(self, local: HeadSnapshot, global_: HeadSnapshot, used_version: int | None) -> HeadSnapshot:
        """The device's new head after a round (``used_version``: its report the global contains,
        from the global's provenance; None if it contains none of this device's)."""
        self.observe(local)
        assert self.own is not None
        target = self._target(global_, self._mine(used_version))
        snap = target.snapshot(local.kind, local.extractor_hash, local.version, local.n_seen, local.device)
        self._last = Moments.of(snap)
        return snap

    def _mine(self, used_version: int | None) -> Moments | None:
        """This device's share in a global head that contains its report ``used_version``. A version newer than
        every report held (none held: a device whose state was wiped) is an earlier lineage's of this name: learning
        this device does not hold, which the global head carries as the fleet's (the aggregator keeps it as a retired
        lineage), so it is taken in as the others' is. An older version not held any more cannot be subtracted."""
        if used_version is None:
            return None
        if used_version in self.reported:
            return self.reported[used_version]
        if not self.reported or used_version > max(self.reported):
            return None
        raise InputError(f"merge: the global head contains report v{used_version} of {self.device}, "
                         f"which this device no longer holds")

    def _target(self, global_: HeadSnapshot, mine: Moments | None) -> Moments:
        """The head a round makes: the others' learning in ``global_``, all of this device's, the baseline."""
        assert self.own is not None
        target = Moments.of(global_) - mine + self.own if mine is not None else Moments.of(global_) + self.own
        return target + self.baseline if self.baseline is not None else target

    def delta(self, local: HeadSnapshot, global_: HeadSnapshot, used_version: int | None) -> HeadSnapshot:
        """What to *add* to the device's head to take the round in (the ``add`` merge policy).

        ``local`` is the latest head seen, which may lag the live head: adding the difference
        instead of loading a target keeps whatever the head learned meanwhile. The difference is
        the statistics of the other devices' samples not in the head yet, less those the head holds that left the
        fleet (a removed device's, a peer's un-learned ones): carried exactly, of either sign, as the snapshot's
        ``moments`` (none when nothing changed: no classes, the round taken in by adding nothing).
        """
        self.observe(local)
        assert self.own is not None and self._last is not None
        target = self._target(global_, self._mine(used_version))
        diff, same = target - self._last, target.same(self._last)
        self._last = target
        snap = diff.snapshot(local.kind, local.extractor_hash, global_.version, 0, self.device)
        if same:                 # nothing new from the others (float32 round-off aside): no classes, nothing to add
            return snap
        # the difference's own statistics go with it: a removed device's or a peer's un-learned samples are negative
        # (the snapshot alone, counts clipped at 0, dropped them: the learner kept them, this side counted them gone)
        return replace(snap, moments=diff)
