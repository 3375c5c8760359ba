"""MNIST from the idx files (gzip), checked against the folder's SHA256SUMS."""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from .paths import DataError, data_root, read_sha256sums, unverified_note, verify_file

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_MAGIC = {3: 2051, 1: 2049}


def load_mnist(split: str = "train", data: str | os.PathLike[str] | None = None,
               verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 (n, 28, 28), labels uint8 (n,))`` of MNIST ``split``.

    ``data`` is the data root (holding ``mnist/``) or the ``mnist`` folder itself.
    Read-only arrays are cached per (split, folder): the experiment asks for them many times.
    """
    if split not in FILES:
        raise DataError(f"MNIST split must be 'train' or 'test', got {split!r}")
    root = data_root(data)
    folder = root if (root / FILES[split][0]).exists() else root / "mnist"
    return _load(split, str(folder.resolve()), verify)


def load_fashion_mnist(split: str = "train", data: str | os.PathLike[str] | None = None,
                       verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST (same idx layout as MNIST); only the training split is provided here."""
    if split != "train":
        raise DataError(f"Fashion-MNIST: only the 'train' split is available, got {split!r}")
    root = data_root(data)
    folder = root if (root / FILES[split][0]).exists() and root.name == "fashion_mnist" else root / "fashion_mnist"
    return _load(split, str(folder.resolve()), verify)


@lru_cache(maxsize=4)
def _load(split: str, folder_str: str, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    folder = Path(folder_str)
    if not folder.is_dir():
        raise DataError(f"MNIST folder not found: {folder} (set the data_dir parameter, --data DIR on the command line, or TINYCL_DATA)")
    sums = read_sha256sums(folder) if verify else {}
    if verify and not (folder / "SHA256SUMS").is_file():   # a user's own folder: accepted, said once
        unverified_note(folder)
        verify = False
    img_name, lbl_name = FILES[split]
    for name in (img_name, lbl_name):
        if verify and name not in sums:
            raise DataError(f"MNIST: {folder / 'SHA256SUMS'} has no checksum for {name}")
        verify_file(folder / name, sums[name] if verify else None)
    images = _read_idx(folder / img_name, ndim=3)
    labels = _read_idx(folder / lbl_name, ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"MNIST {split}: {images.shape[0]} images but {labels.shape[0]} labels")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    try:
        raw = gzip.open(path).read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if len(raw) < 4 * (1 + ndim):       # an empty or cut-short file: frombuffer raised "buffer is smaller"
        raise DataError(f"{path}: not an idx{ndim} file ({len(raw)} bytes, shorter than its header)")
    header = np.frombuffer(raw, ">i4", count=1 + ndim)
    if header[0] != _MAGIC[ndim]:
        raise DataError(f"{path}: not an idx{ndim} file (magic {header[0]})")
    dims = tuple(int(d) for d in header[1:])
    data = np.frombuffer(raw, np.uint8, offset=4 * (1 + ndim))
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims}, file holds {data.size} bytes of data")
    return data.reshape(dims).copy()
