"""Versioned state of core objects, as plain dicts and as bytes.

Every learner (head, clusterer, RCE) describes itself as a *state dict*:

    {"format": "tinycl.state", "kind": "CWRStar", "version": 1,
     "params": {...json hyper-parameters...}, "meta": {...json...},
     "arrays": {"name": np.ndarray, ...}}

``to_bytes`` / ``from_bytes`` turn it into one self-describing ``.npz`` payload (no pickle), so
the same bytes can be written atomically to disk by a node or sent over a topic. Loading checks
format, kind and version before anything is touched, so a bad file never costs learned state.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from .errors import StateError

FORMAT = "tinycl.state"
_HEADER = "__header__"


def make_state(kind: str, version: int, params: dict[str, Any], arrays: dict[str, np.ndarray],
               meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build a state dict; arrays are copied so later learning does not change a snapshot."""
    return {"format": FORMAT, "kind": kind, "version": int(version), "params": dict(params),
            "meta": dict(meta or {}), "arrays": {k: np.array(v, copy=True) for k, v in arrays.items()}}


def check_state(state: Any, kind: str, version: int, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Raise StateError unless ``state`` is a state dict of ``kind`` at ``version`` with ``required`` arrays."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise StateError("state: not a tinycl state (missing or wrong 'format')")
    if state.get("kind") != kind:
        raise StateError(f"state: holds a {state.get('kind')!r}, cannot load it into a {kind!r}")
    if state.get("version") != version:
        raise StateError(f"state: {kind} state version {state.get('version')!r} is not supported "
                         f"(this build reads version {version})")
    arrays = state.get("arrays")
    if not isinstance(arrays, dict):
        raise StateError("state: 'arrays' missing")
    missing = [name for name in required if name not in arrays]
    if missing:
        raise StateError(f"state: {kind} state lacks array(s) {', '.join(missing)}")
    return state


def expect_shape(state: dict[str, Any], name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Return array ``name`` of a state, raising StateError when it is missing or not of ``shape``."""
    if name not in state["arrays"]:
        raise StateError(f"state: array {name!r} is missing")
    arr = np.asarray(state["arrays"][name])
    if arr.shape != tuple(shape):
        raise StateError(f"state: array {name!r} has shape {arr.shape}, expected {tuple(shape)}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise StateError(f"state: array {name!r} contains NaN or inf")
    return arr


def to_bytes(state: dict[str, Any], compress: bool = True) -> bytes:
    """Serialise a state dict to an ``.npz`` payload with a JSON header (no pickle); compressed
    unless ``compress=False`` (a local checkpoint: zlib costs more there than the bytes it saves)."""
    header = {k: state[k] for k in ("format", "kind", "version", "params", "meta")}
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(
        buf, **{_HEADER: np.frombuffer(json.dumps(header).encode(), np.uint8)}, **state["arrays"])
    return buf.getvalue()


def kind_of(payload: bytes) -> str | None:
    """The ``kind`` a :func:`to_bytes` payload holds, its header alone read (None: not a tinycl state): what a reader
    of a message that may carry one of several kinds of state decides by, without decompressing every array."""
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            header = json.loads(bytes(npz[_HEADER]).decode())
    except Exception:  # noqa: BLE001 - as from_bytes: anything unreadable is "not a state"
        return None
    kind = header.get("kind") if isinstance(header, dict) and header.get("format") == FORMAT else None
    return kind if isinstance(kind, str) else None


def from_bytes(payload: bytes) -> dict[str, Any]:
    """Parse what :func:`to_bytes` wrote; raise StateError on anything else."""
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            header = json.loads(bytes(npz[_HEADER]).decode())
            arrays = {k: npz[k] for k in npz.files if k != _HEADER}
    except Exception as exc:  # noqa: BLE001 - zlib.error, EOFError, RecursionError…: all "not a state"
        raise StateError(f"state: payload is not a tinycl state file ({type(exc).__name__})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise StateError("state: payload is not a tinycl state file (bad header)")
    header["arrays"] = arrays
    return header
