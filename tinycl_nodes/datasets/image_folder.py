"""A user's own images: ``root/<class name>/**/*.png|jpg`` (the torchvision ImageFolder layout).

Classes are the sub-folders holding at least one image at any depth, sorted by name (class id = position).
A ``SHA256SUMS`` at the root (``<hex>  <class>/<file>`` lines, as ``sha256sum */*`` writes) is
verified — a listed file missing or changed is an error; a folder without one is accepted with a
one-line note. A file that does not decode is one line and skipped (``read_images``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from .paths import DataError, read_sha256sums, unverified_note, verify_file

SUFFIXES = (".png", ".jpg", ".jpeg")
log = logging.getLogger("tinycl.datasets")


@dataclass(frozen=True)
class ImageFolder:
    """The files of an image folder and their class ids; pixels are read on demand."""

    root: Path
    classes: tuple[str, ...]
    files: tuple[Path, ...]
    y: np.ndarray            # int64 class id of each file

    @property
    def name(self) -> str:
        """The dataset's name in tables and plots: the folder's name."""
        return self.root.name

    def __len__(self) -> int:
        return len(self.files)


def load_image_folder(root: str | os.PathLike[str], verify: bool = True) -> ImageFolder:
    """List ``root``'s classes and images (checked against its SHA256SUMS when there is one)."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    classes, files, ys = [], [], []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        imgs = sorted(p for p in sub.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)   # any depth
        if imgs:
            ys += [len(classes)] * len(imgs)
            classes.append(sub.name)
            files += imgs
    if len(classes) < 2:
        raise DataError(f"image folder {folder} has {len(classes)} class(es) "
                        f"({', '.join(classes) or 'no sub-folder with .png/.jpg files'}): at least 2 are needed "
                        f"(root/<class name>/*.png|jpg)")
    if verify:
        sums = read_sha256sums(folder)
        if not sums:
            unverified_note(folder)
        for rel, digest in sums.items():
            verify_file(folder / rel, digest)
        unlisted = [f for f in files if f.relative_to(folder).as_posix() not in sums]
        if sums and unlisted:
            log.warning("note: %d image(s) of %s are not in its SHA256SUMS (%s%s): used without a checksum check",
                        len(unlisted), folder, unlisted[0].relative_to(folder), ", …" if len(unlisted) > 1 else "")
    return ImageFolder(folder, tuple(classes), tuple(files), np.asarray(ys, np.int64))


def read_images(folder: ImageFolder, idx: np.ndarray | None = None,
                at_least: tuple[int, int] | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Decoded images (grey or RGB uint8) of ``idx`` and the positions read; a file that does not
    decode is one warning line and left out."""
    from ..images import read_image_file

    idx = np.arange(len(folder)) if idx is None else np.asarray(idx)
    images, kept = [], []
    for i in idx:
        try:
            images.append(read_image_file(str(folder.files[int(i)]), at_least))
            kept.append(int(i))
        except (InputError, OSError) as exc:
            log.warning("skipped %s: %s", folder.files[int(i)], str(exc).splitlines()[0])
    return images, np.asarray(kept, np.int64)


def class_ids(given: str, names: list[str] | tuple[str, ...], option: str) -> tuple[int, ...]:
    """``0,1,2`` or ``cup,ball`` (a command-line option) → sorted class ids of ``names``; an unknown
    one is an error naming the option and the classes there are."""
    out = []
    for tok in (t.strip() for t in given.split(",") if t.strip()):
        if tok in names:
            out.append(list(names).index(tok))
        elif tok.isdigit() and int(tok) < len(names):
            out.append(int(tok))
        else:
            raise DataError(f"{option}: {tok!r} is not a class of the dataset ({', '.join(names)})")
    return tuple(sorted(set(out)))
