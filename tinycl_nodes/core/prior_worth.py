"""What a frozen model's class statistics are worth on this robot's data, judged by its labelled samples.

The class statistics (``model_prior.py``: per class mean ``μ_c`` and count, shared within-class covariance ``Σ``)
were measured on the images the model was trained on. A robot's camera does not see those images. Under a shift
(validation protocols with stroke width, slant, blur and contrast changed: ``experiments/shift.py``) the statistics
at full weight — thousands of samples per class — pinned the head to means the robot's features no longer have:
MNIST at 10 labels per class fell from 89.4 % without them to 51.3 % with them.

The labelled samples say how far to trust them. Model the robot's class means as ``μ'_c ~ N(μ_c, Σ/N0)``: the
statistics are worth ``N0`` of the robot's samples. With ``d_c = √n_c (m_c − μ_c)`` (``m_c`` the mean of the ``n_c``
labelled samples of class ``c``; ``k`` classes labelled, ``n = Σ n_c``, ``F`` features), two statistics measure the
distance:

* ``T = Σ_c d_cᵀ Σ⁻¹ d_c / F`` — mean ``k + n/N0``; with no shift its standard deviation is ``√(2k/F)``;
* ``Tc = k d̄ᵀ Σ⁻¹ d̄ / F`` with ``d̄`` the mean of the ``d_c`` — the part of the distance every class shares, as a
  camera's exposure, focus or stroke width moves all classes alike. With no shift its mean is 1 and its standard
  deviation ``√(2/F)``, ``√k`` times less than ``T``'s, while a shared shift moves it as much: ``1 + n/N0``.

A shift is taken as shown when either lies more than ``z`` of its standard deviations above its mean (below that the
statistics keep their full weight). With one label per class the shared part is what tells a camera change from
chance (validation protocols, 20 draws of 1 label per class, ``z = 3``: the shifted draws are shown by T alone in 16
of 20 on MNIST and 17 on Fashion-MNIST, by T or Tc in 19 and 20; on the plain draws, 0 and 1 false alarms either way).
Once shown, ``N0 = n / max(T − k, Tc − 1)`` (empirical Bayes, method of moments). The statistics then count
as at most ``N0`` samples per class (:func:`weighed`): their means are kept, their counts capped, their scatter scaled
alike.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .federated import HeadSnapshot

WEIGH_MAX = 1000   # the labelled samples that weigh the statistics: the first ones only, so that every node that
#                    weighs them (labeler, learner, the in-process loop) takes the same, and a learner can hold and
#                    keep them all through its wait (its labelled set keeps 1,000 by default); far more than the
#                    estimate needs


def prior_worth(prior: HeadSnapshot, X: np.ndarray, y: np.ndarray, z: float) -> float:
    """Samples per class the statistics ``prior`` (an SLDA snapshot with its scatter) are worth, given labelled
    samples ``X`` (n, F), ``y`` (n,) (the first WEIGH_MAX of them; only those of the prior's classes count);
    ``math.inf`` when they do not show a shift (neither statistic ``z`` standard deviations above chance; ``z =
    inf``: never), or when none is of the prior's classes."""
    if math.isinf(z) or prior.shared is None:
        return math.inf
    F = prior.weights.shape[1]
    cov = prior.shared / max(1.0, float(prior.counts.sum()))
    cov = cov + 1e-6 * float(np.trace(cov)) / F * np.eye(F)     # a feature the training images never varied
    means = prior.weights.astype(np.float64)
    X, y = np.asarray(X, np.float64)[:WEIGH_MAX], np.asarray(y)[:WEIGH_MAX]
    d, n = [], 0
    for c, mu in zip(prior.class_ids.tolist(), means):
        sel = y == c
        if sel.any():
            d.append(np.sqrt(sel.sum()) * (X[sel].mean(0) - mu))
            n += int(sel.sum())
    if not d:
        return math.inf
    D = np.stack(d)
    k = len(d)
    T = float(np.sum(D * np.linalg.solve(cov, D.T).T)) / F
    shared = D.mean(0)
    Tc = k * float(shared @ np.linalg.solve(cov, shared)) / F
    if T - k <= z * math.sqrt(2.0 * k / F) and Tc - 1.0 <= z * math.sqrt(2.0 / F):
        return math.inf
    return n / max(T - k, Tc - 1.0)


def weighed(prior: HeadSnapshot, samples: float) -> HeadSnapshot:
    """``prior`` counting as at most ``samples`` per class (``prior_worth``'s): means kept, counts capped (at least 1),
    the shared scatter scaled by the same share of samples."""
    if math.isinf(samples) or prior.shared is None:
        return prior
    counts = np.minimum(prior.counts, max(1, int(round(samples))))
    return replace(prior, counts=counts, n_seen=int(counts.sum()),
                   shared=prior.shared * (float(counts.sum()) / max(1.0, float(prior.counts.sum()))))


def prior_meta(taken: bool | float) -> bool | float:
    """How a head's state says what it took of the statistics (its meta's ``model_prior``, which the fleet bridge
    reads to subtract them again): False (none), True (all of them) or the samples per class they counted as."""
    if taken is False:
        return False
    return True if math.isinf(float(taken)) else float(taken)


def prior_taken(meta: object) -> bool | float:
    """:func:`prior_meta`'s value read back: False, or the samples per class (``math.inf``: all of them)."""
    if meta is True:
        return math.inf
    if isinstance(meta, (int, float)) and not isinstance(meta, bool) and meta > 0:
        return float(meta)
    return False


def worth_words(prior: HeadSnapshot, samples: float) -> str:
    """What the statistics were taken as, for a node's log line."""
    return "all of them" if samples >= prior.counts.max() else \
        f"counted as {max(1, int(round(samples)))} per class: the labelled samples lie that far from them"
