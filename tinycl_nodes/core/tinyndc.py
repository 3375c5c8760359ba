"""The TinyNDC loop: frozen features → pseudo-label by clustering → active head → centroids.

One object wires a clusterer (``clustering.py``) to an active head (``head.py``) as the paper's
figure does, and exposes the knobs that tinycl's variant turns:

* ``min_confidence`` — the head learns a pseudo-label only when the clusterer's confidence is at
  least this (0 = always, as the paper). Wrong pseudo-labels are what costs TinyNDC accuracy;
  skipping the few uncertain ones costs almost no signal.
* ``cluster_update`` — what moves the centroids: ``"head"`` (the active head's prediction, the
  paper), ``"self"`` (the clusterer's own pseudo-label: plain online clustering), or
  ``"agree"`` (only when head and clusterer agree, and the sample is confident).
* ``outlier_factor`` / ``repeat_factor`` — with a tied-Gaussian clusterer, a pseudo-label is not learned for a
  sample unlike every class (a grey wall) or for the view just learned again (a parked robot): ``learn_gate.py``.
  ``inf`` / ``0`` turn them off (the paper has neither).
* ``model_prior`` / ``prior_z`` — start from the frozen model's class statistics with the labelled samples, weighed
  by what those samples say they are worth on this data (``prior_worth.py``: a shift of ``prior_z`` standard
  deviations from chance lowers their weight; ``inf``: always at full weight).

With no head, the clusterer alone predicts and updates itself ("unsupervised CML" in the paper).
A true label given to :meth:`step` (supervised CML, or a person's answer) overrides everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .clustering import NearestCentroid
from .errors import InputError
from .federated import SLDA_KIND, HeadSnapshot, Moments, load_snapshot_into
from .head import Head
from .learn_gate import LearnGate
from .prior_worth import prior_worth, weighed
from .validation import check_batch, check_features, check_label

ClusterUpdate = Literal["head", "self", "agree"]


@dataclass(frozen=True)
class Step:
    """What one sample did: the system's prediction (made before learning) and what was learned."""

    prediction: int | None
    pseudo_label: int | None
    confidence: float
    learned: bool
    not_learned_because: str = ""   #: why a pseudo-label was not learned ("" if it was, or had a label)
    #: whether the learned state changed (the head or the clusters): a node journals and checkpoints only such steps
    #: (a parked camera's repeats, held back by the gate, change nothing: journaled, they were 0.66 MB a minute)
    changed: bool = True


class TinyNDC:
    """Clusterer + optional active head, run one sample at a time (predict, then learn)."""

    def __init__(self, clusterer: NearestCentroid | None, head: Head | None = None,
                 min_confidence: float = 0.0, cluster_update: ClusterUpdate = "head",
                 model_prior: bool = False, prior_z: float = math.inf, outlier_factor: float = math.inf,
                 repeat_factor: float = 0.0) -> None:
        if clusterer is None and head is None:
            raise InputError("TinyNDC needs a clusterer, a head, or both")
        if not 0.0 <= float(min_confidence) <= 1.0:
            raise InputError(f"min_confidence: must be in [0, 1], got {min_confidence}")
        if cluster_update not in ("head", "self", "agree"):
            raise InputError(f"cluster_update: must be 'head', 'self' or 'agree', got {cluster_update!r}")
        if cluster_update in ("head", "agree") and head is None:
            cluster_update = "self"
        self.clusterer = clusterer
        self.head = head
        self.min_confidence = float(min_confidence)
        self.cluster_update = cluster_update
        self.model_prior = bool(model_prior)
        if not float(prior_z) >= 0.0:
            raise InputError(f"prior_z: must be ≥ 0 (inf: the model prior always at full weight), got {prior_z}")
        self.prior_z = float(prior_z)
        self.outlier_factor, self.repeat_factor = float(outlier_factor), float(repeat_factor)
        gated = self.outlier_factor != math.inf or self.repeat_factor != 0.0
        if gated and not hasattr(clusterer, "mahalanobis"):
            raise InputError("outlier_factor / repeat_factor: need a clusterer with a covariance "
                             "(TiedGaussianClusterer)")
        self.gate = LearnGate(clusterer.n_features, self.outlier_factor, self.repeat_factor) if gated else None
        self.prior_samples = math.inf   # what the model prior was worth, per class, when last weighed
        self.n_features = (head or clusterer).n_features  # type: ignore[union-attr]
        self.n_pseudo = 0
        self.n_skipped = 0
        self.n_labels = 0

    def init_from_labelled(self, X: Any, y: Any, prior: HeadSnapshot | None = None) -> None:
        """Initialise centroids (and teach the head) from a few labelled samples per class.

        ``prior``: the frozen model's class statistics (``model_prior.load_prior``: a streaming-LDA snapshot of
        the classes the model was trained on, with their scatter), taken in with the labelled samples when this
        system was made with ``model_prior=True`` (ignored otherwise): the clusterer starts from both together,
        and a streaming-LDA head from the prior, then learns the labelled samples — exactly as if it had learned
        the model's training features and them. The prior counts as much as the labelled samples say it is worth
        (:meth:`weigh_prior`)."""
        Xv, yv = self._checked_labelled(X, y)
        prior = self.weigh_prior(prior, Xv, yv)
        self._init_clusters(Xv, yv, prior)
        if self.head is not None:
            self.take_prior(prior)
            for x, label in zip(Xv, yv):
                self.head.learn_one(x, label)

    def init_clusters(self, X: Any, y: Any, prior: HeadSnapshot | None = None) -> tuple[np.ndarray, list[int]]:
        """The clusterer's part of :meth:`init_from_labelled` (a labeler whose head replica came from the learner
        initialises only its clusters); returns the checked samples and labels."""
        Xv, yv = self._checked_labelled(X, y)
        self._init_clusters(Xv, yv, self.weigh_prior(prior, Xv, yv))
        return Xv, yv

    def _checked_labelled(self, X: Any, y: Any) -> tuple[np.ndarray, list[int]]:
        Xv = check_batch(X, self.n_features, "init features")
        yv = [check_label(v, "init label") for v in np.asarray(y).ravel()]
        if len(yv) != Xv.shape[0]:
            raise InputError(f"init: {Xv.shape[0]} samples but {len(yv)} labels")
        return Xv, yv

    def _init_clusters(self, Xv: np.ndarray, yv: list[int], prior: HeadSnapshot | None) -> None:
        """The clusterer from the checked labelled samples and the (weighed) prior."""
        if self.clusterer is not None and prior is not None and self._check_prior(prior):
            names = dict(zip(prior.class_ids.tolist(), prior.class_names))
            labelled = Moments.of_samples(Xv, np.asarray(yv, np.int64), names)
            both = (Moments.of(prior) + labelled).snapshot(SLDA_KIND, prior.extractor_hash)
            self.clusterer.init_from_statistics(both.class_ids, both.weights, both.counts, both.shared)
        elif self.clusterer is not None:
            self.clusterer.init_from_labelled(Xv, yv)
        self.n_labels += len(yv)

    def weigh_prior(self, prior: HeadSnapshot | None, X: np.ndarray, y: Any) -> HeadSnapshot | None:
        """``prior`` counting as many samples per class as the labelled samples ``X``, ``y`` say it is worth on this
        data (``prior_worth.py``, ``prior_z``; recorded in ``prior_samples``); None or not taken: as given."""
        if prior is None or not self._check_prior(prior):
            return prior
        self.prior_samples = prior_worth(prior, X, np.asarray(y, np.int64), self.prior_z)
        return weighed(prior, self.prior_samples)

    def take_prior(self, prior: HeadSnapshot | None) -> bool:
        """Start the head from ``prior`` (with ``model_prior=True``; what a learner owning the head does at a fresh
        start, with the prior :meth:`weigh_prior` weighed by the labelled samples): True if it did."""
        if self.head is None or prior is None or not self._check_prior(prior):
            return False
        load_snapshot_into(self.head, prior)
        return True

    def _check_prior(self, prior: HeadSnapshot) -> bool:
        """Whether ``prior`` is to be taken in (``model_prior``); one that cannot be is an InputError."""
        if not self.model_prior:
            return False
        if prior.kind != SLDA_KIND or prior.shared is None:
            raise InputError(f"init: a model prior must be a {SLDA_KIND} snapshot with its scatter, got a {prior.kind}")
        if prior.n_features != self.n_features:
            raise InputError(f"init: the model prior has {prior.n_features} features, the system {self.n_features}")
        if self.head is not None and type(self.head).kind != SLDA_KIND:
            raise InputError(f"init: a model prior starts a {SLDA_KIND} head, not a {type(self.head).kind}")
        return True

    def take_classes(self, snap: HeadSnapshot) -> list[int]:
        """Give the clusterer a centroid, at the class mean, for each class of streaming-LDA snapshot ``snap`` (a
        fleet round's merged head) that it has none of; returns those classes. With ``cluster_update="head"`` the
        centroids would follow the merged head's predictions; with ``"self"`` nothing else ever gives an imported
        class a centroid, and the labeler would pseudo-label its samples as some other class."""
        if self.clusterer is None or snap.kind != SLDA_KIND:
            return []
        new = [c for c in snap.class_ids.tolist() if c not in self.clusterer.classes]
        for c in new:
            self.clusterer.update_valid(snap.weights[snap.class_ids.tolist().index(c)].astype(np.float32), c)
        return new

    def drop_classes(self, classes: Any) -> list[int]:
        """The clusterer forgets ``classes``: those a fleet round took out of the head (its samples left the fleet: a
        device removed, a peer's un-learning, and this device has none of them); returns those it had. Kept, a
        class the fleet had brought (its centroid at the fleet's class mean, :meth:`take_classes`) went on
        pseudo-labelling new samples as it, which the head learned as this device's own and shared again."""
        return [] if self.clusterer is None else self.clusterer.drop_classes(classes)

    def step(self, x: Any, label: int | None = None) -> Step:
        """Predict ``x``, then learn from it: from ``label`` if given, else from a pseudo-label."""
        xv = check_features(x, self.n_features)
        head, clusterer = self.head, self.clusterer
        if clusterer is not None:
            pseudo, conf = clusterer.pseudo_label_valid(xv)
        else:
            pseudo, conf = None, 0.0
        prediction = head.predict_valid(xv) if head is not None else pseudo

        if label is not None:
            label = check_label(label)
            if head is not None:
                head.learn_valid(xv, label)
            if clusterer is not None:
                clusterer.update_valid(xv, label)
            if self.gate is not None:       # the camera staying on what a person just named is that view again
                self.gate.remember(xv, clusterer.mahalanobis(xv)[0])  # type: ignore[union-attr]
            self.n_labels += 1
            return Step(prediction, pseudo, conf, True)

        if pseudo is None:
            raise InputError("TinyNDC without a clusterer learns only from labels: step(x, label)")
        Px = None
        if self.gate is not None:
            Px, nearest = clusterer.mahalanobis(xv)  # type: ignore[union-attr]
            why = self.gate.reason(xv, Px, nearest)
            if why:
                self.n_skipped += 1
                return Step(prediction, pseudo, conf, False, why, changed=False)
        confident = conf >= self.min_confidence
        learned = head is not None and confident
        if learned:
            head.learn_valid(xv, pseudo)  # type: ignore[union-attr]
            self.n_pseudo += 1
        else:
            self.n_skipped += 1
        if self.cluster_update == "head":
            target = prediction
        elif self.cluster_update == "self":
            target = pseudo if confident else None
        else:
            target = pseudo if (confident and prediction == pseudo) else None
        if target is not None:
            clusterer.update_valid(xv, target)  # type: ignore[union-attr]
        if Px is not None and (learned or target is not None):
            self.gate.remember(xv, Px)  # type: ignore[union-attr]
        return Step(prediction, pseudo, conf, learned, "" if confident else "below min_confidence",
                    changed=learned or target is not None)
