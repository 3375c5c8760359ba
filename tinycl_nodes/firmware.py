"""The C core (``micro_ros_firmware/core``, host build ``libtinycl.so``) from Python, via ctypes.

This is what a "board" node without hardware runs: the same C code as the firmware, behind the
small C ABI of ``tinycl.h`` (plain functions on caller-owned memory, sizes from the library).
Build the library with ``cmake -S micro_ros_firmware -B micro_ros_firmware/build && cmake
--build micro_ros_firmware/build`` or point ``TINYCL_LIB`` at it.
"""

from __future__ import annotations

import ctypes as C
import os
from pathlib import Path

import numpy as np

from .core.errors import InputError, StateError, TinyclError

ABI_VERSION = 1
DEFAULT_LIB = Path(__file__).resolve().parent.parent / "micro_ros_firmware" / "build" / "libtinycl.so"
_ERRORS = {-1: "invalid argument", -2: "too many classes", -3: "no class known yet",
           -4: "state blob malformed or for another model", -5: "buffer too small"}

_f32p = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
_i32p = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
_i8p = np.ctypeslib.ndpointer(np.int8, flags="C_CONTIGUOUS")
_u8p = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")


class FirmwareError(TinyclError):
    """The C library is missing, of another ABI, or returned an error."""


class _Step(C.Structure):
    _fields_ = [("prediction", C.c_int32), ("pseudo_label", C.c_int32), ("confidence", C.c_float)]


class Library:
    """A loaded ``libtinycl``: checks the ABI version and exposes typed functions."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        path = Path(path or os.environ.get("TINYCL_LIB") or DEFAULT_LIB)
        if not path.is_file():
            raise FirmwareError(f"libtinycl not found at {path} (build micro_ros_firmware with CMake or set TINYCL_LIB)")
        self.path = path
        lib = self.lib = C.CDLL(str(path))
        sig = {
            "tinycl_abi_version": (C.c_uint32, []), "tinycl_n_features": (C.c_uint32, []),
            "tinycl_max_classes": (C.c_uint32, []), "tinycl_sizeof_cwr": (C.c_size_t, []),
            "tinycl_sizeof_ncm": (C.c_size_t, []), "tinycl_sizeof_ndc": (C.c_size_t, []),
            "tinycl_model_sha256": (C.c_char_p, []),
            "tinycl_features_q": (None, [_u8p, _i8p]), "tinycl_dequantize": (None, [_i8p, _f32p]),
            "tinycl_cwr_init": (C.c_int, [C.c_void_p, C.c_float, C.c_uint32]),
            "tinycl_cwr_learn": (C.c_int, [C.c_void_p, _f32p, C.c_int32]),
            "tinycl_cwr_predict": (C.c_int, [C.c_void_p, _f32p, C.POINTER(C.c_int32)]),
            "tinycl_cwr_flush": (None, [C.c_void_p]),
            "tinycl_cwr_state_size": (C.c_size_t, [C.c_void_p]),
            "tinycl_cwr_save": (C.c_int, [C.c_void_p, C.c_char_p, C.c_size_t, C.POINTER(C.c_size_t)]),
            "tinycl_cwr_load": (C.c_int, [C.c_void_p, C.c_char_p, C.c_size_t]),
            "tinycl_ncm_init": (C.c_int, [C.c_void_p, C.c_uint32]),
            "tinycl_ncm_init_from_labelled": (C.c_int, [C.c_void_p, _f32p, _i32p, C.c_uint32]),
            "tinycl_ncm_pseudo_label": (C.c_int, [C.c_void_p, _f32p, C.POINTER(C.c_int32), C.POINTER(C.c_float)]),
            "tinycl_ncm_update": (C.c_int, [C.c_void_p, _f32p, C.c_int32]),
            "tinycl_ncm_state_size": (C.c_size_t, [C.c_void_p]),
            "tinycl_ncm_save": (C.c_int, [C.c_void_p, C.c_char_p, C.c_size_t, C.POINTER(C.c_size_t)]),
            "tinycl_ncm_load": (C.c_int, [C.c_void_p, C.c_char_p, C.c_size_t]),
            "tinycl_ndc_init": (C.c_int, [C.c_void_p, C.c_float, C.c_uint32, C.c_uint32]),
            "tinycl_ndc_init_from_labelled": (C.c_int, [C.c_void_p, _f32p, _i32p, C.c_uint32]),
            "tinycl_ndc_step": (C.c_int, [C.c_void_p, _f32p, C.c_int32, C.POINTER(_Step)]),
        }
        for name, (res, args) in sig.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        if lib.tinycl_abi_version() != ABI_VERSION:
            raise FirmwareError(f"{path}: ABI version {lib.tinycl_abi_version()}, this wrapper speaks {ABI_VERSION}")
        self.n_features = int(lib.tinycl_n_features())
        self.max_classes = int(lib.tinycl_max_classes())
        self.model_sha256 = lib.tinycl_model_sha256().decode()

    def features_q(self, pixels: np.ndarray) -> np.ndarray:
        """int8 features of one 28×28 uint8 image, computed by the C frozen model."""
        px = np.ascontiguousarray(pixels, np.uint8).reshape(-1)
        if px.size != 784:
            raise InputError(f"features_q: expected 784 pixels, got {px.size}")
        out = np.zeros(self.n_features, np.int8)
        self.lib.tinycl_features_q(px, out)
        return out

    def features(self, pixels: np.ndarray) -> np.ndarray:
        """Dequantised float32 features of one image (what the heads learn from)."""
        out = np.zeros(self.n_features, np.float32)
        self.lib.tinycl_dequantize(self.features_q(pixels), out)
        return out

    def check(self, rc: int, what: str) -> None:
        if rc:
            err = StateError if rc == -4 else InputError if rc in (-1, -2) else FirmwareError
            raise err(f"{what}: {_ERRORS.get(rc, f'error {rc}')}")

    def vec(self, x) -> np.ndarray:
        arr = np.ascontiguousarray(x, np.float32)
        if arr.shape != (self.n_features,):
            raise InputError(f"features: expected shape ({self.n_features},), got {arr.shape}")
        return arr


class _Obj:
    """Caller-owned, 8-byte aligned memory for one C struct."""

    def __init__(self, lib: Library, size: int) -> None:
        self._mem = (C.c_uint64 * ((size + 7) // 8))()
        self.ptr = C.cast(self._mem, C.c_void_p)
        self.core = lib


class CWRStarC(_Obj):
    """The C CWR* head (epochs = 1), same semantics as ``core.cwr.CWRStar``."""

    def __init__(self, lib: Library, lr: float = 1.0, batch_size: int = 16) -> None:
        super().__init__(lib, lib.lib.tinycl_sizeof_cwr())
        lib.check(lib.lib.tinycl_cwr_init(self.ptr, lr, batch_size), "cwr init")

    def learn_one(self, x, y: int) -> None:
        self.core.check(self.core.lib.tinycl_cwr_learn(self.ptr, self.core.vec(x), int(y)), "cwr learn")

    def predict_one(self, x) -> int | None:
        y = C.c_int32()
        rc = self.core.lib.tinycl_cwr_predict(self.ptr, self.core.vec(x), C.byref(y))
        if rc == -3:
            return None
        self.core.check(rc, "cwr predict")
        return int(y.value)

    def flush(self) -> None:
        self.core.lib.tinycl_cwr_flush(self.ptr)

    def to_bytes(self) -> bytes:
        n = self.core.lib.tinycl_cwr_state_size(self.ptr)
        buf, written = C.create_string_buffer(n), C.c_size_t()
        self.core.check(self.core.lib.tinycl_cwr_save(self.ptr, buf, n, C.byref(written)), "cwr save")
        return buf.raw[:written.value]

    def load_bytes(self, payload: bytes) -> None:
        self.core.check(self.core.lib.tinycl_cwr_load(self.ptr, payload, len(payload)), "cwr load")


class NearestCentroidC(_Obj):
    """The C NearestCentroid clusterer, same semantics as ``core.clustering.NearestCentroid``."""

    def __init__(self, lib: Library, max_count: int | None = None) -> None:
        super().__init__(lib, lib.lib.tinycl_sizeof_ncm())
        lib.check(lib.lib.tinycl_ncm_init(self.ptr, max_count or 0), "ncm init")

    def init_from_labelled(self, X, y) -> None:
        Xv = np.ascontiguousarray(X, np.float32)
        yv = np.ascontiguousarray(y, np.int32).ravel()
        if Xv.ndim != 2 or Xv.shape[1] != self.core.n_features or Xv.shape[0] != yv.size:
            raise InputError(f"init: bad shapes {Xv.shape} / {yv.shape}")
        self.core.check(self.core.lib.tinycl_ncm_init_from_labelled(self.ptr, Xv, yv, yv.size), "ncm init")

    def pseudo_label(self, x) -> tuple[int, float]:
        y, conf = C.c_int32(), C.c_float()
        self.core.check(self.core.lib.tinycl_ncm_pseudo_label(self.ptr, self.core.vec(x), C.byref(y), C.byref(conf)),
                        "ncm pseudo_label")
        return int(y.value), float(conf.value)

    def update(self, x, y: int) -> None:
        self.core.check(self.core.lib.tinycl_ncm_update(self.ptr, self.core.vec(x), int(y)), "ncm update")

    def to_bytes(self) -> bytes:
        n = self.core.lib.tinycl_ncm_state_size(self.ptr)
        buf, written = C.create_string_buffer(n), C.c_size_t()
        self.core.check(self.core.lib.tinycl_ncm_save(self.ptr, buf, n, C.byref(written)), "ncm save")
        return buf.raw[:written.value]


class TinyNDCC(_Obj):
    """The C TinyNDC loop (paper configuration), same semantics as ``core.tinyndc.TinyNDC``."""

    def __init__(self, lib: Library, lr: float = 0.02, batch_size: int = 32, max_count: int | None = None) -> None:
        super().__init__(lib, lib.lib.tinycl_sizeof_ndc())
        lib.check(lib.lib.tinycl_ndc_init(self.ptr, lr, batch_size, max_count or 0), "ndc init")

    def init_from_labelled(self, X, y) -> None:
        Xv = np.ascontiguousarray(X, np.float32)
        yv = np.ascontiguousarray(y, np.int32).ravel()
        if Xv.ndim != 2 or Xv.shape[1] != self.core.n_features or Xv.shape[0] != yv.size:
            raise InputError(f"init: bad shapes {Xv.shape} / {yv.shape}")
        self.core.check(self.core.lib.tinycl_ndc_init_from_labelled(self.ptr, Xv, yv, yv.size), "ndc init")

    def step(self, x, label: int | None = None) -> tuple[int | None, int, float]:
        """(prediction made before learning, pseudo-label, confidence)."""
        st = _Step()
        self.core.check(self.core.lib.tinycl_ndc_step(self.ptr, self.core.vec(x), -1 if label is None else int(label),
                                                      C.byref(st)), "ndc step")
        return (None if st.prediction < 0 else int(st.prediction)), int(st.pseudo_label), float(st.confidence)
