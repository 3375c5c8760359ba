"""The TinyNDC protocol on a user's images: an image folder (``root/<class name>/*.png|jpg``) or
a rosbag2 of labelled camera images.

Neither has a train/test split, so one is drawn (seeded, per class): ``test_fraction`` of
each class is the test part — the stream and the held-out images come from it — and the rest the
training part the labelled samples are drawn from. Images go through the extractor's card (the
one preprocessing function), any size and colour; an unreadable file is one line and left out.
"""

from __future__ import annotations

import numpy as np

from ..datasets import ImageFolder, load_image_folder, read_images
from ..extractor import FrozenExtractor
from .tinyndc import Features


def folder_features(extractor: FrozenExtractor, root: str, test_fraction: float = 0.5,
                    seed: int = 0) -> tuple[Features, ImageFolder]:
    """Features of the folder's test part (all) and of its training part (on demand)."""
    ds = load_image_folder(root)
    at_least = extractor.preprocessing.size if extractor.preprocessing is not None else None
    images, kept = read_images(ds, None, at_least)
    return split_features(extractor, images, ds.y[kept], test_fraction, seed), ds


def split_features(extractor: FrozenExtractor, images: list[np.ndarray], y: np.ndarray, test_fraction: float = 0.5,
                   seed: int = 0) -> Features:
    """A seeded per-class split of labelled images into the protocol's training and test parts."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction {test_fraction} must be between 0 and 1")
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(len(images), bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        test_mask[rng.choice(idx, max(1, int(round(test_fraction * idx.size))), replace=False)] = True
    test_pos, train_pos = np.flatnonzero(test_mask), np.flatnonzero(~test_mask)
    test = extractor.extract([images[i] for i in test_pos])
    train_imgs = [images[i] for i in train_pos]
    return Features(y[train_pos].astype(np.int64), test, y[test_pos].astype(np.int64), extractor.hash,
                    train_source=lambda idx: extractor.extract([train_imgs[int(i)] for i in idx]))
