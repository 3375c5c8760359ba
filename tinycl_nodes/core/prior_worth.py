"""What a frozen model's class statistics are worth on this robot's data, judged by its labelled samples.

The class statistics (``model_prior.py``: per class mean ``μ_c`` and count, shared within-class covariance ``Σ``)
were measured on the images the model was trained on. A robot's camera does not see those images. Under a shift
(validation protocols with stroke width, slant, blur and contrast changed: ``experiments/shift.py``) the statistics
at full weight — thousands of samples per class — pinned the head to means the robot's features no longer have:
MNIST at 10 labels per class fell from 89.4 % without them to 51.3 % with them.

The labelled samples say how far to trust them. Model the robot's class means as ``μ'_c ~ N(μ_c, Σ/N0)``: the
statistics are worth ``N0`` of the robot's samples. The mean ``m_c`` of the ``n_c`` labelled samples of class ``c``
then scatters around ``μ_c`` with covariance ``Σ/n_c + Σ/N0``, so ``T = Σ_c n_c (m_c − μ_c)ᵀ Σ⁻¹ (m_c − μ_c) / F``
(``k`` classes labelled, ``F`` features) has mean ``k + n/N0`` (``n = Σ n_c``) and, with no shift, standard
deviation ``√(2k/F)``. Solving for ``N0`` (empirical Bayes, method of moments) once the excess ``T − k`` is more than
``z`` standard deviations (below that the labelled samples cannot tell the difference from chance, and the
statistics keep their full weight): ``N0 = n / (T − k − z√(2k/F))``. The statistics then count as at most ``N0``
samples per class (:func:`weighed`): their means are kept, their counts capped, their scatter scaled alike.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .federated import HeadSnapshot


def prior_worth(prior: HeadSnapshot, X: np.ndarray, y: np.ndarray, z: float) -> float:
    """Samples per class the statistics ``prior`` (an SLDA snapshot with its scatter) are worth, given labelled
    samples ``X`` (n, F), ``y`` (n,) (only those of the prior's classes count); ``math.inf`` when they do not show
    a shift (``z`` standard deviations; ``z = inf``: never), or when none is of the prior's classes."""
    if math.isinf(z) or prior.shared is None:
        return math.inf
    F = prior.weights.shape[1]
    cov = prior.shared / max(1.0, float(prior.counts.sum()))
    cov = cov + 1e-6 * float(np.trace(cov)) / F * np.eye(F)     # a feature the training images never varied
    means = prior.weights.astype(np.float64)
    X, y = np.asarray(X, np.float64), np.asarray(y)
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
    excess = T - k - z * math.sqrt(2.0 * k / F)
    return math.inf if excess <= 0 else n / excess


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
