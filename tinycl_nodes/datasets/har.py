"""HAR smartphone + smartwatch IMU (Matey-Sanz et al., Data in Brief 2023) as 6-axis windows.

The data: ``har_sp_sw/DATA/sXX/sXX_YY_{sp,sw}.csv`` with columns
``x_acc,y_acc,z_acc,x_gyro,y_gyro,z_gyro,timestamp,label`` (m/s², rad/s, ms). The shared copy
holds subjects s01–s16 of the 23; its ``SHA256SUMS`` lists every public file, so only the files
present are checked (a listed file that is missing is simply a subject not copied here, but a
present file with another digest is corrupt).

Sampling: the timestamps say about 102 Hz (the data article says 100 Hz; the folder's MANIFEST
says "about 50 Hz", which the files do not bear out). ``decimate=2`` (the default) keeps every
other sample, so a 50-sample window is one second at ~51 Hz: the TinyRCE "1 s frame" at the
issue's 50 Hz. Windows are returned raw (m/s², rad/s, channels first ``(n, 6, window)``
float32); the per-channel normalisation is inside the ELM graph (``har_elm.onnx``), so the
extractor node can feed sensor values as they come.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .paths import DataError, data_root, read_sha256sums, verify_file

CLASSES: tuple[str, ...] = ("WALKING", "TURNING", "SEATED", "SITTING_DOWN", "STANDING_UP")
DEVICES = ("sp", "sw")
CHANNELS = ("x_acc", "y_acc", "z_acc", "x_gyro", "y_gyro", "z_gyro")
_HEADER = "x_acc,y_acc,z_acc,x_gyro,y_gyro,z_gyro,timestamp,label"
#: the windows the shipped HAR model takes: every DECIMATE-th sample of the ~102 Hz recordings, so RATE_HZ, WINDOW
#: samples (one second) each, a new one every STEP samples; a live IMU is resampled to the same (``imu_windows``)
DECIMATE, WINDOW, STEP = 2, 50, 25
RATE_HZ = 51.0


@dataclass(frozen=True)
class HarWindows:
    """Windows of one device: ``X`` (n, 6, window) float32 raw units, ``y`` class index into
    :data:`CLASSES`, and where each window came from (subject number, execution number, start)."""

    X: np.ndarray
    y: np.ndarray
    subject: np.ndarray
    execution: np.ndarray
    start: np.ndarray
    device: str

    def select(self, mask: np.ndarray) -> "HarWindows":
        """The windows where ``mask`` is true (same device)."""
        return HarWindows(self.X[mask], self.y[mask], self.subject[mask], self.execution[mask],
                          self.start[mask], self.device)

    def __len__(self) -> int:
        return int(self.y.shape[0])


def har_folder(data: str | os.PathLike[str] | None = None) -> Path:
    """The ``har_sp_sw`` folder: ``data`` may be the data root or that folder itself."""
    root = data_root(data)
    return root if (root / "DATA").is_dir() else root / "har_sp_sw"


def har_subjects(data: str | os.PathLike[str] | None = None) -> list[int]:
    """Subject numbers present (1 for ``s01`` …), sorted."""
    folder = har_folder(data)
    if not (folder / "DATA").is_dir():
        raise DataError(f"HAR folder not found: {folder / 'DATA'} (set the data_dir parameter, --data DIR on the command line, or TINYCL_DATA)")
    return sorted(int(p.name[1:]) for p in (folder / "DATA").iterdir()
                  if p.is_dir() and p.name.startswith("s") and p.name[1:].isdigit())


def load_har(data: str | os.PathLike[str] | None = None, *, device: str = "sp",
             subjects: list[int] | tuple[int, ...] | None = None, window: int = WINDOW, step: int = STEP,
             decimate: int = DECIMATE, purity: float = 0.8, verify: bool = True) -> HarWindows:
    """Sliding windows of ``device`` for ``subjects`` (default: all present).

    A window is labelled with its most frequent activity and kept only when that activity covers
    at least ``purity`` of it (transitions — sitting down, standing up — last 1–2 s, so a strict
    purity would drop most of them). Windows never cross an execution boundary.
    """
    if device not in DEVICES:
        raise DataError(f"HAR device must be one of {DEVICES}, got {device!r}")
    if window < 2 or step < 1 or decimate < 1 or not 0.0 < purity <= 1.0:
        raise DataError(f"HAR windows: bad window={window}, step={step}, decimate={decimate}, purity={purity}")
    folder = har_folder(data)
    present = har_subjects(data)
    wanted = present if subjects is None else [int(s) for s in subjects]
    missing = [s for s in wanted if s not in present]
    if missing:
        raise DataError(f"HAR: subject(s) {missing} not found under {folder / 'DATA'}")
    parts = []
    for s in wanted:
        for ex, rec, lab in _subject(str(folder.resolve()), s, device, verify):
            rec, lab = rec[::decimate], lab[::decimate]
            parts.append(_windows(rec, lab, window, step, purity, s, ex))
    if not parts:
        raise DataError(f"HAR: no recordings for device {device!r} under {folder / 'DATA'}")
    X, y, sub, exe, start = (np.concatenate(a) for a in zip(*parts))
    return HarWindows(X, y, sub, exe, start, device)


def _windows(rec: np.ndarray, lab: np.ndarray, window: int, step: int, purity: float,
             subject: int, execution: int):
    n = rec.shape[0]
    starts = np.arange(0, max(n - window + 1, 0), step)
    if starts.size == 0:
        empty = np.zeros(0, np.int64)
        return np.zeros((0, len(CHANNELS), window), np.float32), empty, empty, empty, empty
    idx = starts[:, None] + np.arange(window)
    counts = np.stack([(lab[idx] == c).sum(1) for c in range(len(CLASSES))], 1)
    y = counts.argmax(1)
    keep = counts.max(1) >= purity * window
    X = rec[idx[keep]].transpose(0, 2, 1).astype(np.float32)
    k = int(keep.sum())
    return (X, y[keep].astype(np.int64), np.full(k, subject, np.int64), np.full(k, execution, np.int64),
            starts[keep].astype(np.int64))


@lru_cache(maxsize=64)
def _subject(folder_str: str, subject: int, device: str, verify: bool):
    """All executions of one subject and device: [(execution, samples (n, 6) float32, labels)]."""
    folder = Path(folder_str)
    sums = _sums(folder_str) if verify else {}
    sdir = folder / "DATA" / f"s{subject:02d}"
    files = sorted(sdir.glob(f"s{subject:02d}_*_{device}.csv"))
    if not files:
        raise DataError(f"HAR: no {device} recordings in {sdir}")
    out = []
    for path in files:
        rel = f"DATA/{sdir.name}/{path.name}"
        if verify and rel not in sums:
            raise DataError(f"HAR: {folder / 'SHA256SUMS'} has no checksum for {rel}")
        verify_file(path, sums.get(rel) if verify else None)
        rec, lab = _read_csv(path)
        rec.setflags(write=False)
        lab.setflags(write=False)
        out.append((int(path.name.split("_")[1]), rec, lab))
    return tuple(out)


@lru_cache(maxsize=4)
def _sums(folder_str: str) -> dict[str, str]:
    sums = read_sha256sums(Path(folder_str))
    if not sums:
        raise DataError(f"HAR: checksum file missing: {Path(folder_str) / 'SHA256SUMS'}")
    return sums


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not lines or lines[0].strip() != _HEADER:
        raise DataError(f"{path}: unexpected header (want {_HEADER})")
    code = {name: i for i, name in enumerate(CLASSES)}
    rows = [ln.rsplit(",", 2) for ln in lines[1:] if ln]
    try:
        values = np.array([r[0].split(",") for r in rows], np.float64)
        labels = np.array([code[r[2].strip()] for r in rows], np.int64)
    except (KeyError, ValueError, IndexError) as exc:
        raise DataError(f"{path}: malformed row ({type(exc).__name__}: {exc})") from None
    if values.ndim != 2 or values.shape[1] != len(CHANNELS) or not np.isfinite(values).all():
        raise DataError(f"{path}: expected {len(CHANNELS)} finite IMU columns")
    return values.astype(np.float32), labels
