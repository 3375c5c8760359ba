"""The baseline the TinyRCE paper used: a CNN trained end to end by backpropagation (PyTorch).

Same architecture as the ELM extractor (``training/make_elm.py`` SPECS: the same input scaling,
the same conv stack, ReLU, global average ‖ max pooling) plus a softmax layer, but every weight
is trained — Adam, ``epochs`` passes over the stored training windows, mini-batch 32. PyTorch is
needed only here, at experiment time (``pip install 'tinycl_nodes[train]'``).

Learning MACs are exact, from the layer shapes: per sample and epoch, each conv / linear layer
costs its forward MACs, the same again for its weight gradient, and the same again for its input
gradient except the first layer (no gradient w.r.t. the input). Pooling, ReLU and the optimiser's
element-wise update are not MACs (the optimiser adds one pass over the weights per step, counted
as ``params`` MACs per mini-batch for symmetry with the SGD head's count).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..training.make_elm import SPECS, ElmSpec


def layer_macs(spec: ElmSpec, n_classes: int) -> list[int]:
    """Forward MACs of each trainable layer of the CNN, input to output."""
    out, c_in, length = [], spec.channels, spec.length
    for c_out, k, stride in spec.convs:
        length = (length + 2 * (k // 2) - k) // stride + 1
        out.append(length * c_out * c_in * k)
        c_in = c_out
    out.append(2 * c_in * n_classes)
    return out


def n_params(spec: ElmSpec, n_classes: int) -> int:
    c_in, total = spec.channels, 0
    for c_out, k, _ in spec.convs:
        total += c_out * c_in * k + c_out
        c_in = c_out
    return total + 2 * c_in * n_classes + n_classes


def learning_macs(spec: ElmSpec, n_classes: int, n_train: int, epochs: int, minibatch: int) -> int:
    """Exact training MACs: ``epochs·n·(Σ 3·fwd_l − fwd_first) + epochs·⌈n/B⌉·params``."""
    per = layer_macs(spec, n_classes)
    per_sample = 3 * sum(per) - per[0]
    return int(epochs * n_train * per_sample + epochs * math.ceil(n_train / minibatch) * n_params(spec, n_classes))


def network(spec: ElmSpec, n_classes: int, in_mean, in_std) -> tuple[Any, list[Any]]:
    """The CNN (PyTorch, freshly initialised): its forward function on raw windows ``(n, channels, length)`` and its
    trainable parameters."""
    import torch
    import torch.nn as nn

    layers: list[nn.Module] = []
    c_in = spec.channels
    for c_out, k, stride in spec.convs:
        layers += [nn.Conv1d(c_in, c_out, k, stride=stride, padding=k // 2), nn.ReLU()]
        c_in = c_out
    body = nn.Sequential(*layers)
    head = nn.Linear(2 * c_in, n_classes)
    mean = torch.tensor(np.asarray(in_mean, np.float32)).reshape(1, -1, 1)
    std = torch.tensor(np.asarray(in_std, np.float32)).reshape(1, -1, 1)

    def forward(x: "torch.Tensor") -> "torch.Tensor":
        h = body((x - mean) / std)
        return head(torch.cat([h.mean(2), h.amax(2)], 1))

    return forward, list(body.parameters()) + list(head.parameters())


def train_and_test(dataset: str, in_mean, in_std, Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray,
                   yte: np.ndarray, n_classes: int, epochs: int = 30, lr: float = 3e-3,
                   minibatch: int = 32, seed: int = 0) -> dict:
    """Train the CNN on (Xtr, ytr) windows, test on (Xte, yte); accuracy and exact learning MACs."""
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    spec = SPECS[dataset]
    forward, params = network(spec, n_classes, in_mean, in_std)
    opt = torch.optim.Adam(params, lr)
    X = torch.tensor(np.asarray(Xtr, np.float32))
    y = torch.tensor(np.asarray(ytr, np.int64))
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), minibatch):
            idx = perm[i:i + minibatch]
            loss = nn.functional.cross_entropy(forward(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = forward(torch.tensor(np.asarray(Xte, np.float32))).argmax(1).numpy()
    P = n_params(spec, n_classes)
    return {"accuracy": 100.0 * float(np.mean(pred == np.asarray(yte))),
            "learning_macs": learning_macs(spec, n_classes, len(ytr), epochs, minibatch),
            "forward_macs": int(sum(layer_macs(spec, n_classes))), "params": P, "epochs": epochs,
            "n_train": int(len(ytr)), "labels_used": int(len(ytr)),
            # weights + gradients + Adam's two moments + the stored training windows (float32)
            "training_ram_bytes": int(4 * 4 * P + len(ytr) * (4 * spec.channels * spec.length + 1))}
