"""The one preprocessing function: an image → the model's input, as its model card says.

Used by the extractor node (camera frames), the experiments (datasets, image folders) and the C
model exporter (its pixel lookup table), so the same image gives the same features everywhere.

Steps, in this order: crop the centre to the model's aspect ratio (``shorter_side_crop`` only),
resize (OpenCV: when shrinking, halve with 2x2 area averaging while the image is at least twice
the target — 7x faster than one area resize of 640x480 to 28x28 — then area interpolation;
bilinear when enlarging), convert the colour
(grey ↔ RGB ↔ BGR), then :func:`normalize`: ``(pixel × scale − mean) / std`` per channel, in the
model's layout. An image already at the model's size and colour goes straight to normalize, so
MNIST's 28x28 digits give exactly the numbers they always did.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .core.errors import InputError
from .images import _cv2, halved
from .model_card import Preprocessing


def _fit(img: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Crop (``shorter_side_crop``) and resize to ``pre.size``."""
    th, tw = pre.size
    h, w = img.shape[:2]
    if pre.resize == "shorter_side_crop" and h * tw != w * th:
        if h * tw > w * th:     # too tall: keep the full width
            ch = max(1, round(w * th / tw))
            top = (h - ch) // 2
            img = img[top:top + ch]
        else:                   # too wide: keep the full height
            cw = max(1, round(h * tw / th))
            left = (w - cw) // 2
            img = img[:, left:left + cw]
        h, w = img.shape[:2]
    if (h, w) == (th, tw):
        return img
    cv2 = _cv2()
    img = np.ascontiguousarray(img)
    if h < th or w < tw:
        return cv2.resize(img, (tw, th), interpolation=cv2.INTER_LINEAR)
    img = halved(img, 2 * tw, 2 * th)           # halve first while at least twice the target, then one area resize
    return cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)


def _colour(img: np.ndarray, color: str) -> np.ndarray:
    """Grey ``(H, W)`` or RGB ``(H, W, 3)`` → the model's colour order."""
    grey = img.ndim == 2
    if color == "gray":
        return img if grey else _cv2().cvtColor(np.ascontiguousarray(img), _cv2().COLOR_RGB2GRAY)
    rgb = np.repeat(img[:, :, None], 3, axis=2) if grey else img
    return rgb if color == "rgb" else rgb[:, :, ::-1]


def _check(img: np.ndarray) -> None:
    if img.dtype != np.uint8:
        raise InputError(f"image: expected uint8 pixels, got {img.dtype}")
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)) or 0 in img.shape:
        raise InputError(f"image: expected (H, W) grey or (H, W, 3) RGB, got shape {img.shape}")


def normalize(pixels: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """uint8 pixels at the model's size and colour, ``(…, H, W)`` or ``(…, H, W, C)`` → float32
    ``(pixel × scale − mean) / std`` in the model's layout (the last, per-pixel step)."""
    x = pixels.astype(np.float32) * np.float32(pre.scale)
    grey = pre.channels == 1 and (pixels.ndim < 3 or pixels.shape[-1] != 1)
    if grey:
        x = x[..., None]
    mean, std = np.asarray(pre.mean, np.float32), np.asarray(pre.std, np.float32)
    if np.any(mean != 0):
        x = x - mean
    if np.any(std != 1):
        x = x / std
    if pre.layout == "NCHW":
        x = np.moveaxis(x, -1, -3)
    return np.ascontiguousarray(x, np.float32)


def preprocess(image: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """One image, ``(H, W)`` grey or ``(H, W, 3)`` RGB uint8 of any size → the model's float32
    input for one sample (no batch axis)."""
    _check(image)
    return normalize(_colour(_fit(image, pre), pre.color), pre)


def preprocess_batch(images: np.ndarray | Sequence[np.ndarray], pre: Preprocessing) -> np.ndarray:
    """Many images → ``(n, *input)`` float32; an array of images already at the model's size and
    colour is normalised in one go (a dataset of 28x28 digits for a 28x28 grey model)."""
    if isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim >= 3:
        at_size = images.shape[1:3] == tuple(pre.size)
        same_colour = (images.ndim == 3 and pre.channels == 1) or (images.ndim == 4 and images.shape[3] == 3
                                                                      and pre.color == "rgb")
        if at_size and same_colour:
            return normalize(images, pre)
    if len(images) == 0:
        return np.zeros((0, *pre.input_shape()), np.float32)
    return np.stack([preprocess(img, pre) for img in images])


def pixel_lut(pre: Preprocessing) -> np.ndarray:
    """float32 (256, channels): what each pixel byte becomes — the C model's input table."""
    levels = np.arange(256, dtype=np.uint8).reshape(1, 256)
    x = normalize(levels if pre.channels == 1 else np.repeat(levels[:, :, None], 3, axis=2), pre)
    return x.reshape(pre.channels, 256).T if pre.layout == "NCHW" else x.reshape(256, pre.channels)
