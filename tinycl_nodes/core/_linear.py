"""The softmax linear layer used by the buffer-based heads: vectorised mini-batch SGD, in place.

Shared by :class:`~.replay.LatentReplayHead` and :class:`~.tybox.TyBoxHead` so both train the
same layer the same way (mean cross-entropy gradient per mini-batch).
"""

from __future__ import annotations

import numpy as np


def logits(W: np.ndarray, b: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``X @ W.T + b`` for a batch ``X`` (n, F)."""
    Z = X @ W.T
    Z += b
    return Z


def softmax_rows_(Z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``Z``, computed in place (and returned)."""
    Z -= Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=1, keepdims=True)
    return Z


def sgd_pass_(W: np.ndarray, b: np.ndarray, X: np.ndarray, rows: np.ndarray, lr: float,
              minibatch: int, order: np.ndarray) -> None:
    """One pass of mini-batch SGD on softmax cross-entropy over ``X[order]``; updates W, b in place.

    ``rows`` are class-row indices (any integer dtype). Gradient = mean over the mini-batch.
    """
    n = order.shape[0]
    for start in range(0, n, minibatch):
        sel = order[start:start + minibatch]
        Xb = X[sel]
        k = Xb.shape[0]
        G = softmax_rows_(logits(W, b, Xb))
        G[np.arange(k), rows[sel].astype(np.intp)] -= 1.0
        G *= np.float32(lr / k)
        W -= G.T @ Xb
        b -= G.sum(axis=0)


def sgd_step_(W: np.ndarray, b: np.ndarray | None, x: np.ndarray, idx: int, lr: np.float32,
              ones: np.ndarray) -> None:
    """One SGD step of softmax cross-entropy on a single sample, in place (the per-sample hot path).

    ``W -= lr·(softmax − onehot_idx)⊗x`` (and ``b`` likewise when given). ``ones`` is a float32
    vector of length ``W.shape[0]``: ``z.dot(ones)`` and ``z[z.argmax()]`` are several times
    cheaper than ``z.sum()`` / ``z.max()`` on 10-element arrays, which is what this path is about.
    """
    z = W.dot(x)
    if b is not None:
        z += b
    z -= z[z.argmax()]
    np.exp(z, out=z)
    z *= lr / z.dot(ones)            # lr·softmax
    z[idx] -= lr                     # lr·(softmax − onehot)
    W -= np.multiply.outer(z, x)
    if b is not None:
        b -= z
