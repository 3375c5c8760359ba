"""Which images a protocol uses: the dataset option and the training-split parts.

Model selection must never look at the scored stream. With ``--split train`` the whole protocol
comes from a dataset's *training* split, cut once (fixed ``PARTS_SEED``, independent of the run
seeds) into three disjoint parts per class:

* ``labels``   — the first ``LABEL_POOL`` images of every class: the labelled samples that
  initialise the clusters and the head are drawn from here (the test protocol draws them from
  the training set the same way);
* ``stream``   — the next ``STREAM_POOL`` images of every class (10,000 in all, like the MNIST
  test set): the 8,000-sample stream and the held-out forgetting set are drawn from here. Model
  selection (``tinycl experiment select``) scores on this part (``--split train``);
* ``holdout``  — the next ``STREAM_POOL`` images of every class: a second stream pool, never
  used for selection, for reporting on a dataset without a test split (``--split holdout``:
  Fashion-MNIST);
* ``backbone`` — every remaining image of the old classes 0–5: the only images the frozen model
  is trained on (``python -m tinycl_nodes.training.train_frozen --split train``).

New-class images outside ``labels``/``stream`` are never used. The test protocol (``--split
test``, MNIST only) keeps the paper's layout: the frozen model trained on all training images of
0–5, labels from the training set, stream from the test set.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from ..core.errors import InputError

OLD_CLASSES = (0, 1, 2, 3, 4, 5)
NEW_CLASSES = (6, 7, 8, 9)
PARTS_SEED = 20261130
LABEL_POOL = 100
STREAM_POOL = 1000
DATASETS = ("mnist", "fashion_mnist")


_test_split_forbidden = 0


@contextmanager
def forbid_test_split() -> Iterator[None]:
    """While held, :func:`load_images` refuses the test split (model selection holds it)."""
    global _test_split_forbidden
    _test_split_forbidden += 1
    try:
        yield
    finally:
        _test_split_forbidden -= 1


def load_images(dataset: str, split: str, data: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (n, 28, 28), labels (n,))`` of ``dataset`` (a name or an image folder)."""
    from ..datasets import load_fashion_mnist, load_mnist

    if split != "train" and _test_split_forbidden:
        raise AssertionError(f"model selection tried to read the {split} split of {dataset}")

    if dataset == "mnist":
        return load_mnist(split, data)
    if dataset == "fashion_mnist":
        return load_fashion_mnist(split, data)
    if Path(dataset).expanduser().is_dir():
        if split != "train":
            raise InputError(f"--dataset {dataset}: an image folder has no {split} split; its protocol comes from "
                             "its images alone (--split train or holdout)")
        from ..training.train_frozen import as_pixels, load_training_set   # as the folder's backbone read them

        X, y, _, _ = load_training_set(dataset, None)
        return as_pixels(X), y
    raise InputError(f"--dataset: expected one of {', '.join(DATASETS)} or an image folder, got {dataset!r}")


def train_parts(y: np.ndarray, label_pool: int = LABEL_POOL, stream_pool: int = STREAM_POOL,
                seed: int = PARTS_SEED) -> dict[str, np.ndarray]:
    """Disjoint index arrays ``labels``, ``stream``, ``holdout``, ``backbone`` of the training split (see module doc)."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"labels": [], "stream": [], "holdout": [], "backbone": []}
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        end = label_pool + 2 * stream_pool
        if idx.size < end:
            raise InputError(f"class {int(c)} has {idx.size} images, the protocol needs {end} (fewer images: "
                             "tinycl experiment tinyndc --folder)")
        parts["labels"].append(idx[:label_pool])
        parts["stream"].append(idx[label_pool:label_pool + stream_pool])
        parts["holdout"].append(idx[label_pool + stream_pool:end])
        if int(c) in OLD_CLASSES:
            parts["backbone"].append(idx[end:])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


SPLITS = ("test", "train", "holdout")  # where the stream comes from (``--split``)
