"""CWRU bearing faults, 12 kHz drive end, 0 HP: the drive-end vibration cut into windows.

Ten classes (normal, ball / inner race / outer race @6 faults of 0.007, 0.014, 0.021 in), one
MATLAB v5 file each, read with ``scipy.io.loadmat`` (the key ending ``_DE_time``). Checked
against ``cwru_12k_de/SHA256SUMS.all`` (it lists every file of the folder, with ``./0hp_10class/``
paths).

Train and test windows come from disjoint stretches of each record — the first
``train_fraction`` of the signal and the rest — so overlapping windows can never put the same
samples on both sides. Windows are raw accelerations in g, ``(n, 1, window)`` float32; the
scaling is inside the ELM graph (``cwru_elm.onnx``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .paths import DataError, data_root, verify_file

FILES: dict[str, str] = {
    "normal": "normal_0_97.mat",
    "B007": "12k_Drive_End_B007_0_118.mat",
    "B014": "12k_Drive_End_B014_0_185.mat",
    "B021": "12k_Drive_End_B021_0_222.mat",
    "IR007": "12k_Drive_End_IR007_0_105.mat",
    "IR014": "12k_Drive_End_IR014_0_169.mat",
    "IR021": "12k_Drive_End_IR021_0_209.mat",
    "OR007": "12k_Drive_End_OR007@6_0_130.mat",
    "OR014": "12k_Drive_End_OR014@6_0_197.mat",
    "OR021": "12k_Drive_End_OR021@6_0_234.mat",
}
CLASSES: tuple[str, ...] = tuple(FILES)
SUBDIR = "0hp_10class"
#: the drive end's sample rate (Hz)
RATE_HZ = 12000.0
SUMS_NAME = "SHA256SUMS.all"


@dataclass(frozen=True)
class CwruWindows:
    """``X`` (n, 1, window) float32 in g, ``y`` index into :data:`CLASSES`, ``start`` sample offset."""

    X: np.ndarray
    y: np.ndarray
    start: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])


def cwru_folder(data: str | os.PathLike[str] | None = None) -> Path:
    """The ``0hp_10class`` folder: ``data`` may be the data root, ``cwru_12k_de`` or that folder."""
    root = data_root(data)
    for cand in (root / "cwru_12k_de" / SUBDIR, root / SUBDIR, root):
        if (cand / FILES["normal"]).exists():
            return cand
    return root / "cwru_12k_de" / SUBDIR


def load_cwru_signals(data: str | os.PathLike[str] | None = None, verify: bool = True) -> dict[str, np.ndarray]:
    """The drive-end signal of every class, ``{class name: float32 (n,)}`` (read-only, cached)."""
    folder = cwru_folder(data)
    if not folder.is_dir():
        raise DataError(f"CWRU folder not found: {folder} (set the data_dir parameter, --data DIR on the command line, or TINYCL_DATA)")
    return dict(_signals(str(folder.resolve()), verify))


def load_cwru(data: str | os.PathLike[str] | None = None, *, split: str = "train", window: int = 1024,
              step: int | None = None, train_fraction: float = 0.7, verify: bool = True) -> CwruWindows:
    """Windows of ``split`` (``train``, ``test`` or ``all``), ``step`` = window/2 by default."""
    if split not in ("train", "test", "all"):
        raise DataError(f"CWRU split must be 'train', 'test' or 'all', got {split!r}")
    step = window // 2 if step is None else step
    if window < 8 or step < 1 or not 0.0 < train_fraction < 1.0:
        raise DataError(f"CWRU windows: bad window={window}, step={step}, train_fraction={train_fraction}")
    Xs, ys, starts = [], [], []
    for c, sig in enumerate(load_cwru_signals(data, verify).values()):
        cut = int(sig.size * train_fraction)
        lo, hi = {"train": (0, cut), "test": (cut, sig.size), "all": (0, sig.size)}[split]
        s = np.arange(lo, hi - window + 1, step)
        Xs.append(sig[s[:, None] + np.arange(window)][:, None, :])
        ys.append(np.full(s.size, c, np.int64))
        starts.append(s.astype(np.int64))
    return CwruWindows(np.concatenate(Xs).astype(np.float32), np.concatenate(ys), np.concatenate(starts))


@lru_cache(maxsize=2)
def _signals(folder_str: str, verify: bool) -> tuple[tuple[str, np.ndarray], ...]:
    import scipy.io as sio  # only where CWRU is actually read

    folder = Path(folder_str)
    sums = _read_sums(folder) if verify else {}
    out = []
    for name, fname in FILES.items():
        path = folder / fname
        if verify and fname not in sums:
            raise DataError(f"CWRU: {folder.parent / SUMS_NAME} has no checksum for {fname}")
        verify_file(path, sums.get(fname) if verify else None)
        try:
            m = sio.loadmat(str(path))
        except Exception as exc:  # scipy raises several types for a bad .mat
            raise DataError(f"cannot read {path}: {str(exc).splitlines()[0][:160]}") from None
        keys = [k for k in m if k.endswith("_DE_time")]
        if len(keys) != 1:
            raise DataError(f"{path}: expected one '*_DE_time' signal, found {keys}")
        sig = np.asarray(m[keys[0]], np.float32).ravel()
        if sig.size < 10000 or not np.isfinite(sig).all():
            raise DataError(f"{path}: drive-end signal too short or not finite ({sig.size} samples)")
        sig.setflags(write=False)
        out.append((name, sig))
    return tuple(out)


def _read_sums(folder: Path) -> dict[str, str]:
    """``{file name: sha256}`` of the ``0hp_10class`` entries of ``SHA256SUMS.all`` (or a local SHA256SUMS)."""
    for sums in (folder.parent / SUMS_NAME, folder / "SHA256SUMS"):
        if sums.is_file():
            out = {}
            try:
                text = sums.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise DataError(f"CWRU: checksum file {sums} cannot be read ({type(exc).__name__})") from None
            for line in text.splitlines():
                parts = line.split()
                if len(parts) == 2:
                    rel = parts[1].lstrip("*").removeprefix("./")
                    if rel.startswith(f"{SUBDIR}/") or "/" not in rel:
                        out[rel.rsplit("/", 1)[-1]] = parts[0].lower()
            return out
    raise DataError(f"CWRU: checksum file missing: {folder.parent / SUMS_NAME}")
