"""A shifted validation protocol: the stream's images are not the images the frozen model was trained on.

A robot's camera, like a new writer's hand, changes what the frozen model sees: strokes thicker or thinner, a
slant, focus, exposure. The training-split protocol cannot show what that does to a method that trusts the model's
own training statistics (``model_prior.py``): its stream comes from the same writers and the same scanner. Here every
labelled and stream image is changed once, at random per image, by what differs between such sources:

* stroke width: dilated or eroded by a 2×2 kernel (a third each; a third unchanged);
* slant: a horizontal shear of up to ±0.3 about the image centre;
* focus: a Gaussian blur of σ up to 0.8 pixel;
* exposure: intensities scaled by 0.6–1.0.

The ranges are set by what the stream should still be: learnable without the statistics (MNIST at 10 labels per
class: 89.4 %, against 97.5 % unchanged). The backbone part of the split is never changed: the model and its
statistics stay what they were. Used by ``select.py`` for the grids that decide how far to trust the statistics.
"""

from __future__ import annotations

import cv2
import numpy as np

STROKE = np.ones((2, 2), np.uint8)


def shifted(images: np.ndarray, seed: int) -> np.ndarray:
    """``images`` (n, H, W) uint8, each changed at random (module doc) by a generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    for i, img in enumerate(images):
        h, w = img.shape
        stroke = rng.random()
        if stroke < 1 / 3:
            img = cv2.dilate(img, STROKE)
        elif stroke < 2 / 3:
            img = cv2.erode(img, STROKE)
        shear = rng.uniform(-0.3, 0.3)
        img = cv2.warpAffine(img, np.float32([[1, shear, -shear * h / 2], [0, 1, 0]]), (w, h))
        sigma = rng.uniform(0.0, 0.8)
        if sigma > 0.1:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
        out[i] = (img.astype(np.float32) * rng.uniform(0.6, 1.0)).astype(np.uint8)
    return out
