"""Small numpy layers with forward and backward passes: what latent replay trains above the cut.

Each layer is a plain object: ``forward(X)`` keeps what ``backward`` needs; ``backward(dY)``
returns ``dX`` and stores ``dW``/``db`` for trainable layers. Batches are float32, ``(n, C, H, W)``
for convolutions (NCHW, the ONNX layout) and ``(n, F)`` after a flatten. Only what the frozen
models here use: 2-d convolution (stride, symmetric zero padding), ReLU, max pooling with
kernel = stride, flatten, fully connected. A layer is described by a JSON spec plus its arrays,
so a head's state can rebuild it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import InputError, StateError


class Layer:
    """Base: no parameters, shape bookkeeping, spec for state."""

    op = ""
    trainable = False

    def forward(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dY: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        return {"op": self.op}

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return in_shape

    def macs(self, in_shape: tuple[int, ...]) -> int:
        """Multiply-accumulates of one sample's forward pass (0 for parameter-free layers)."""
        return 0


class Conv2d(Layer):
    """``Y = W * X + b`` (cross-correlation, as ONNX Conv); W (O, C, k, k)."""

    op = "conv"
    trainable = True

    def __init__(self, W: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0) -> None:
        W = np.asarray(W, np.float32)
        if W.ndim != 4 or W.shape[2] != W.shape[3]:
            raise InputError(f"conv weights: expected (O, C, k, k), got {W.shape}")
        self.W, self.b = W.copy(), np.asarray(b, np.float32).reshape(W.shape[0]).copy()
        self.stride, self.pad = int(stride), int(pad)
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        C, H, W = in_shape
        k, s, p = self.W.shape[2], self.stride, self.pad
        return (self.W.shape[0], (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1)

    def macs(self, in_shape: tuple[int, ...]) -> int:
        O, Ho, Wo = self.out_shape(in_shape)
        return int(O * Ho * Wo * self.W[0].size)

    def _cols(self, X: np.ndarray) -> np.ndarray:
        p, s, k = self.pad, self.stride, self.W.shape[2]
        Xp = np.pad(X, ((0, 0), (0, 0), (p, p), (p, p))) if p else X
        win = sliding_window_view(Xp, (k, k), axis=(2, 3))[:, :, ::s, ::s]  # n, C, Ho, Wo, k, k
        self._xshape = X.shape
        self._hw = win.shape[2:4]
        return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(-1, self.W[0].size)

    def forward(self, X: np.ndarray) -> np.ndarray:
        self._x_cols = self._cols(X)
        n = X.shape[0]
        Ho, Wo = self._hw
        Y = self._x_cols @ self.W.reshape(self.W.shape[0], -1).T
        Y += self.b
        return Y.reshape(n, Ho, Wo, -1).transpose(0, 3, 1, 2)

    def backward(self, dY: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        O = self.W.shape[0]
        G = dY.transpose(0, 2, 3, 1).reshape(-1, O)
        self.dW = (G.T @ self._x_cols).reshape(self.W.shape)
        self.db = G.sum(axis=0)
        if not need_dx:
            return None
        n, C, H, W = self._xshape
        k, s, p = self.W.shape[2], self.stride, self.pad
        Ho, Wo = self._hw
        dcols = (G @ self.W.reshape(O, -1)).reshape(n, Ho, Wo, C, k, k)
        dXp = np.zeros((n, C, H + 2 * p, W + 2 * p), np.float32)
        for i in range(k):
            for j in range(k):
                dXp[:, :, i:i + s * Ho:s, j:j + s * Wo:s] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
        return dXp[:, :, p:p + H, p:p + W] if p else dXp

    def spec(self) -> dict[str, Any]:
        return {"op": self.op, "stride": self.stride, "pad": self.pad}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"W": self.W, "b": self.b}


class Linear(Layer):
    """``Y = X Wᵀ + b``; W (O, F) as a Gemm with transB = 1."""

    op = "linear"
    trainable = True

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        W = np.asarray(W, np.float32)
        if W.ndim != 2:
            raise InputError(f"linear weights: expected (out, in), got {W.shape}")
        self.W, self.b = W.copy(), np.asarray(b, np.float32).reshape(W.shape[0]).copy()
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.W.shape[0],)

    def macs(self, in_shape: tuple[int, ...]) -> int:
        return int(self.W.size)

    def forward(self, X: np.ndarray) -> np.ndarray:
        self._x = X
        Y = X @ self.W.T
        Y += self.b
        return Y

    def backward(self, dY: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        self.dW = dY.T @ self._x
        self.db = dY.sum(axis=0)
        return dY @ self.W if need_dx else None

    def arrays(self) -> dict[str, np.ndarray]:
        return {"W": self.W, "b": self.b}


class ReLU(Layer):
    op = "relu"

    def forward(self, X: np.ndarray) -> np.ndarray:
        self._mask = X > 0
        return X * self._mask

    def backward(self, dY: np.ndarray) -> np.ndarray:
        return dY * self._mask


class MaxPool2d(Layer):
    """Max pooling with kernel = stride, no padding (floor: a ragged edge is dropped, as ONNX)."""

    op = "maxpool"

    def __init__(self, k: int) -> None:
        self.k = int(k)

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        C, H, W = in_shape
        return (C, H // self.k, W // self.k)

    def forward(self, X: np.ndarray) -> np.ndarray:
        n, C, H, W = X.shape
        k = self.k
        Ho, Wo = H // k, W // k
        blocks = X[:, :, :Ho * k, :Wo * k].reshape(n, C, Ho, k, Wo, k).transpose(0, 1, 2, 4, 3, 5)
        blocks = blocks.reshape(n, C, Ho, Wo, k * k)
        self._arg = blocks.argmax(axis=4)
        self._xshape = X.shape
        return np.take_along_axis(blocks, self._arg[..., None], axis=4)[..., 0]

    def backward(self, dY: np.ndarray) -> np.ndarray:
        n, C, H, W = self._xshape
        k = self.k
        Ho, Wo = H // k, W // k
        blocks = np.zeros((n, C, Ho, Wo, k * k), np.float32)
        np.put_along_axis(blocks, self._arg[..., None], dY[..., None], axis=4)
        dX = np.zeros(self._xshape, np.float32)
        dX[:, :, :Ho * k, :Wo * k] = blocks.reshape(n, C, Ho, Wo, k, k).transpose(0, 1, 2, 4, 3, 5).reshape(n, C, Ho * k, Wo * k)
        return dX

    def spec(self) -> dict[str, Any]:
        return {"op": self.op, "k": self.k}


class Flatten(Layer):
    op = "flatten"

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (int(np.prod(in_shape)),)

    def forward(self, X: np.ndarray) -> np.ndarray:
        self._xshape = X.shape
        return X.reshape(X.shape[0], -1)

    def backward(self, dY: np.ndarray) -> np.ndarray:
        return dY.reshape(self._xshape)


def layer_from_spec(spec: Any, arrays: dict[str, np.ndarray]) -> Layer:
    """Rebuild a layer from :meth:`Layer.spec` and :meth:`Layer.arrays`; StateError if malformed."""
    if not isinstance(spec, dict):
        raise StateError(f"state: layer spec must be a mapping, got {spec!r}")
    op = spec.get("op")
    try:
        if op == "conv":
            return Conv2d(arrays["W"], arrays["b"], int(spec["stride"]), int(spec["pad"]))
        if op == "linear":
            return Linear(arrays["W"], arrays["b"])
        if op == "maxpool":
            return MaxPool2d(int(spec["k"]))
        if op == "relu":
            return ReLU()
        if op == "flatten":
            return Flatten()
    except (KeyError, TypeError, ValueError, InputError) as exc:
        raise StateError(f"state: bad {op} layer ({exc})") from None
    raise StateError(f"state: unknown layer op {op!r}")


def check_chain(layers: list[Layer], in_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Output shape of ``layers`` applied to one sample of ``in_shape``; InputError where they don't fit."""
    shape = tuple(int(d) for d in in_shape)
    for i, layer in enumerate(layers):
        if isinstance(layer, Conv2d):
            if len(shape) != 3 or shape[0] != layer.W.shape[1]:
                raise InputError(f"layer {i} (conv): expects {layer.W.shape[1]} input channels, gets shape {shape}")
        elif isinstance(layer, MaxPool2d):
            if len(shape) != 3 or min(shape[1:]) < layer.k:
                raise InputError(f"layer {i} (maxpool {layer.k}): gets shape {shape}")
        elif isinstance(layer, Linear):
            if len(shape) != 1 or shape[0] != layer.W.shape[1]:
                raise InputError(f"layer {i} (linear): expects {layer.W.shape[1]} inputs, gets shape {shape}")
        shape = layer.out_shape(shape)
        if min(shape) <= 0:
            raise InputError(f"layer {i} ({layer.op}): output shape {shape} is empty")
    return shape
