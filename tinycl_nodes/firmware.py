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

from .core.errors import DivergedError, InputError, StateError, TinyclError

ABI_VERSION = 9
DEFAULT_LIB = Path(__file__).resolve().parent.parent / "micro_ros_firmware" / "build" / "libtinycl.so"
_RAISES = {-1: InputError, -2: InputError, -4: StateError, -6: DivergedError}   # TINYCL_E*; the words: C's

_f32p = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
_i32p = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
_i8p = np.ctypeslib.ndpointer(np.int8, flags="C_CONTIGUOUS")
_u8p = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
_u32p = np.ctypeslib.ndpointer(np.uint32, flags="C_CONTIGUOUS")


class FirmwareError(TinyclError):
    """The C library is missing, of another ABI, or returned an error."""


class _Step(C.Structure):
    _fields_ = [("prediction", C.c_int32), ("pseudo_label", C.c_int32), ("confidence", C.c_float)]


class _Decision(C.Structure):
    _fields_ = [("label", C.c_int32), ("nearest", C.c_int32), ("reason", C.c_int32), ("novelty", C.c_float),
                ("distance", C.c_float), ("n_candidates", C.c_uint32), ("candidates", C.c_int32 * 64)]


REASONS = {0: "empty", 1: "unknown", 2: "ambiguous", 3: "covered"}
COUNTERS = ("committed", "grown", "shrunk", "pruned", "evicted", "dropped")


#: the image the C frozen model reads (height, width; uint8 grey)
IMAGE_SHAPE = (28, 28)


def _pixels(pixels: np.ndarray, what: str) -> np.ndarray:
    """One IMAGE_SHAPE uint8 image as the C frozen model reads it; InputError for another size."""
    px = np.ascontiguousarray(pixels, np.uint8).reshape(-1)
    if px.size != IMAGE_SHAPE[0] * IMAGE_SHAPE[1]:
        raise InputError(f"{what}: expected {IMAGE_SHAPE[0] * IMAGE_SHAPE[1]} pixels, got {px.size}")
    return px


class Library:
    """A loaded ``libtinycl``: checks the ABI version and exposes typed functions."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        path = Path(path or os.environ.get("TINYCL_LIB") or DEFAULT_LIB)
        if not path.is_file():
            raise FirmwareError(f"libtinycl not found at {path} (build micro_ros_firmware with CMake or set TINYCL_LIB)")
        self.path = path
        lib = self.lib = C.CDLL(str(path))
        lib.tinycl_abi_version.restype, lib.tinycl_abi_version.argtypes = C.c_uint32, []
        if lib.tinycl_abi_version() != ABI_VERSION:    # before binding: an old build lacks newer functions
            raise FirmwareError(f"{path}: ABI version {lib.tinycl_abi_version()}, this wrapper speaks {ABI_VERSION} "
                                "(rebuild micro_ros_firmware with CMake)")
        sig = {
            "tinycl_abi_version": (C.c_uint32, []), "tinycl_n_features": (C.c_uint32, []),
            "tinycl_max_classes": (C.c_uint32, []), "tinycl_sizeof_cwr": (C.c_size_t, []),
            "tinycl_sizeof_ncm": (C.c_size_t, []), "tinycl_sizeof_ndc": (C.c_size_t, []),
            "tinycl_model_sha256": (C.c_char_p, []), "tinycl_error_name": (C.c_char_p, [C.c_int]),
            "tinycl_features_q": (None, [_u8p, _i8p]), "tinycl_dequantize": (None, [_i8p, _f32p]),
            "tinycl_features_cut_q": (None, [_u8p, _i8p, _i8p]),
            "tinycl_cut_grid": (None, [C.POINTER(C.c_uint32), C.POINTER(C.c_float), C.POINTER(C.c_int32)]),
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
            "tinycl_ndc_state_size": (C.c_size_t, [C.c_void_p]),
            "tinycl_ndc_save": (C.c_int, [C.c_void_p, C.c_char_p, C.c_size_t, C.POINTER(C.c_size_t)]),
            "tinycl_ndc_load": (C.c_int, [C.c_void_p, C.c_char_p, C.c_size_t]),
            "tinycl_ndc_init": (C.c_int, [C.c_void_p, C.c_float, C.c_uint32, C.c_uint32]),
            "tinycl_ndc_init_from_labelled": (C.c_int, [C.c_void_p, _f32p, _i32p, C.c_uint32]),
            "tinycl_ndc_step": (C.c_int, [C.c_void_p, _f32p, C.c_int32, C.POINTER(_Step)]),
            "tinycl_cwr_set_extractor": (C.c_int, [C.c_void_p, C.c_char_p]),
            "tinycl_cwr_scores": (C.c_int, [C.c_void_p, _f32p, _f32p]),
            "tinycl_cwr_load_linear": (C.c_int, [C.c_void_p, C.c_uint32, _i32p, _u32p, _f32p, C.c_char_p]),
            "tinycl_ndc_learn_label": (C.c_int, [C.c_void_p, _f32p, C.c_int32]),
            "tinycl_ndc_cwr": (C.c_void_p, [C.c_void_p]),
            "tinycl_sizeof_undo": (C.c_size_t, []),
            "tinycl_undo_init": (C.c_int, [C.c_void_p, C.c_void_p]),
            "tinycl_undo_step": (C.c_int, [C.c_void_p, C.c_void_p, _f32p, C.POINTER(_Step)]),
            "tinycl_undo_learn_label": (C.c_int, [C.c_void_p, C.c_void_p, _f32p, C.c_int32, C.c_uint32]),
            "tinycl_undo_relabel": (C.c_int, [C.c_void_p, C.c_void_p, C.c_uint32, C.c_int32]),
            "tinycl_next_class_id": (C.c_int32, [_i32p, C.c_uint32]),
            "tinycl_sizeof_rce": (C.c_size_t, []), "tinycl_rce_capacity": (C.c_uint32, []),
            "tinycl_rce_budget_bytes": (C.c_uint32, [C.c_uint32]),
            "tinycl_rce_init": (C.c_int, [C.c_void_p, C.c_uint32, C.c_double, C.c_double, C.c_double, C.c_uint32]),
            "tinycl_rce_init_ex": (C.c_int, [C.c_void_p, C.c_uint32, C.c_double, C.c_double, C.c_double, C.c_uint32,
                                             C.c_double, C.c_uint32, C.c_uint32]),
            "tinycl_rce_capacity_int8": (C.c_uint32, []),
            "tinycl_rce_inference_macs": (C.c_uint64, [C.c_void_p]),
            "tinycl_rce_learn": (C.c_int, [C.c_void_p, _f32p, C.c_int32]),
            "tinycl_rce_decide": (C.c_int, [C.c_void_p, _f32p, C.c_void_p]),
            "tinycl_rce_max_prototypes": (C.c_int32, [C.c_void_p]),
            "tinycl_rce_set_extractor": (C.c_int, [C.c_void_p, C.c_char_p]),
            "tinycl_rce_state_size": (C.c_size_t, [C.c_void_p]),
            "tinycl_rce_save": (C.c_int, [C.c_void_p, C.c_char_p, C.c_size_t, C.POINTER(C.c_size_t)]),
            "tinycl_rce_load": (C.c_int, [C.c_void_p, C.c_char_p, C.c_size_t]),
        }
        for name, (res, args) in sig.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        self.n_features = int(lib.tinycl_n_features())
        self.max_classes = int(lib.tinycl_max_classes())
        self.model_sha256 = lib.tinycl_model_sha256().decode()
        self.rce_capacity = int(lib.tinycl_rce_capacity())
        n, scale, zp = C.c_uint32(), C.c_float(), C.c_int32()
        lib.tinycl_cut_grid(C.byref(n), C.byref(scale), C.byref(zp))
        #: the latent cut the C CNN exposes (its last conv block's int8 output): size, scale, zero point
        self.cut_size, self.cut_scale, self.cut_zero_point = int(n.value), np.float32(scale.value), int(zp.value)
        self.rce_capacity_int8 = int(lib.tinycl_rce_capacity_int8())
        if self.max_classes > 64:
            raise FirmwareError(f"{path}: built with TINYCL_MAX_CLASSES={self.max_classes}, this wrapper handles ≤ 64")

    def features_q(self, pixels: np.ndarray) -> np.ndarray:
        """int8 features of one 28×28 uint8 image, computed by the C frozen model."""
        out = np.zeros(self.n_features, np.int8)
        self.lib.tinycl_features_q(_pixels(pixels, "features_q"), out)
        return out

    def features_cut_q(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """int8 features and the int8 activations at the cut (grid ``cut_scale`` / ``cut_zero_point``) of one
        28×28 uint8 image, from one forward pass of the C frozen model."""
        feats, cut = np.zeros(self.n_features, np.int8), np.zeros(self.cut_size, np.int8)
        self.lib.tinycl_features_cut_q(_pixels(pixels, "features_cut_q"), feats, cut)
        return feats, cut

    def features(self, pixels: np.ndarray) -> np.ndarray:
        """Dequantised float32 features of one image (what the heads learn from)."""
        out = np.zeros(self.n_features, np.float32)
        self.lib.tinycl_dequantize(self.features_q(pixels), out)
        return out

    def check(self, rc: int, what: str) -> None:
        if rc:
            raise _RAISES.get(rc, FirmwareError)(f"{what}: {self.lib.tinycl_error_name(rc).decode()}")

    def vec(self, x) -> np.ndarray:
        arr = np.ascontiguousarray(x, np.float32)
        if arr.shape != (self.n_features,):
            raise InputError(f"features: expected shape ({self.n_features},), got {arr.shape}")
        return arr


class _Obj:
    """Caller-owned, 8-byte aligned memory for one C struct; ``STATE`` names its C state functions
    (``tinycl_<STATE>_state_size`` / ``_save`` / ``_load``)."""

    STATE = ""

    def __init__(self, lib: Library, size: int) -> None:
        self._mem = (C.c_uint64 * ((size + 7) // 8))()
        self.ptr = C.cast(self._mem, C.c_void_p)
        self.core = lib

    def to_bytes(self) -> bytes:
        """The C state blob (``export/c_state.py`` layout)."""
        lib = self.core.lib
        n = getattr(lib, f"tinycl_{self.STATE}_state_size")(self.ptr)
        buf, written = C.create_string_buffer(n), C.c_size_t()
        self.core.check(getattr(lib, f"tinycl_{self.STATE}_save")(self.ptr, buf, n, C.byref(written)),
                        f"{self.STATE} save")
        return buf.raw[:written.value]

    def load_bytes(self, payload: bytes) -> None:
        """Load a C state blob (refused, object unchanged, by the C core's checks)."""
        self.core.check(getattr(self.core.lib, f"tinycl_{self.STATE}_load")(self.ptr, payload, len(payload)),
                        f"{self.STATE} load")


class CWRStarC(_Obj):
    """The C CWR* head (epochs = 1), same semantics as ``core.cwr.CWRStar``."""

    STATE = "cwr"

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

    def set_extractor(self, sha256_hex: str) -> None:
        """The head learns features of this extractor (default: the C model's)."""
        self.core.check(self.core.lib.tinycl_cwr_set_extractor(self.ptr, _sha_bytes(sha256_hex)), "cwr set_extractor")

    def scores(self, x) -> np.ndarray:
        """``cw·x`` per class row (rows in order of appearance, as the Python head's ``classes``)."""
        out = np.zeros(self.core.max_classes, np.float32)
        rc = self.core.lib.tinycl_cwr_scores(self.ptr, self.core.vec(x), out)
        if rc == -3:
            return np.zeros(0, np.float32)
        self.core.check(rc, "cwr scores")
        return out[:self.n_classes]

    @property
    def n_classes(self) -> int:
        # state size = 64 + C·(12 + 8F) bytes (TINYCL_CWR_STATE_BYTES)
        return (int(self.core.lib.tinycl_cwr_state_size(self.ptr)) - 64) // (12 + 8 * self.core.n_features)


class NearestCentroidC(_Obj):
    """The C NearestCentroid clusterer, same semantics as ``core.clustering.NearestCentroid``."""

    STATE = "ncm"

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

    def n_classes(self) -> int:
        # state size = 20 + C·(8 + 4F) bytes (TINYCL_NCM_STATE_BYTES)
        return (int(self.core.lib.tinycl_ncm_state_size(self.ptr)) - 20) // (8 + 4 * self.core.n_features)


class TinyNDCC(_Obj):
    """The C TinyNDC loop (paper configuration), same semantics as ``core.tinyndc.TinyNDC``."""

    STATE = "ndc"   # the clusterer's blob, then the head's (``c_state.ndc_to_bytes``)

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

    def learn_label(self, x, label: int) -> None:
        """A true label for a sample seen earlier (a person's answer), as the board applies it."""
        self.core.check(self.core.lib.tinycl_ndc_learn_label(self.ptr, self.core.vec(x), int(label)), "ndc learn_label")

    def load_linear(self, class_ids, counts, weights, extractor_hash: str) -> None:
        """Replace the CWR* head by a linear one (a fleet's global head), as the board does."""
        ids = np.ascontiguousarray(class_ids, np.int32).ravel()
        W = np.ascontiguousarray(weights, np.float32)
        if W.shape != (ids.size, self.core.n_features):
            raise InputError(f"load_linear: weights {W.shape} for {ids.size} classes x {self.core.n_features} features")
        cnt = np.ascontiguousarray(np.minimum(np.asarray(counts, np.int64), 2**32 - 1), np.uint32).ravel()
        cwr = self.core.lib.tinycl_ndc_cwr(self.ptr)
        self.core.check(self.core.lib.tinycl_cwr_load_linear(cwr, ids.size, ids, cnt, W, _sha_bytes(extractor_hash)),
                        "cwr load_linear")


class UndoC(_Obj):
    """The board's undo of a person's answers (``tinycl_undo_*``): ``ndc`` learns through it, and an answer kept
    (tagged) can be changed or withdrawn, the system replayed as if it had been given so (``core/undo.py``)."""

    def __init__(self, lib: Library, ndc: TinyNDCC) -> None:
        super().__init__(lib, lib.lib.tinycl_sizeof_undo())
        self.ndc = ndc
        lib.check(lib.lib.tinycl_undo_init(self.ptr, ndc.ptr), "undo init")

    def step(self, x) -> tuple[int | None, int, float]:
        """``ndc.step(x)``, the frame kept (x on the features' grid)."""
        st = _Step()
        rc = self.core.lib.tinycl_undo_step(self.ptr, self.ndc.ptr, self.core.vec(x), C.byref(st))
        if rc not in (0, -2):       # TINYCL_EFULL: predicted, not learned, as the board goes on
            self.core.check(rc, "undo step")
        return (None if st.prediction < 0 else int(st.prediction)), int(st.pseudo_label), float(st.confidence)

    def learn_label(self, x, label: int, tag: int) -> None:
        self.core.check(self.core.lib.tinycl_undo_learn_label(self.ptr, self.ndc.ptr, self.core.vec(x), int(label),
                                                              int(tag)), "undo learn_label")

    def relabel(self, tag: int, label: int | None) -> None:
        """The answer under ``tag`` learned as ``label`` instead (None: withdrawn); FirmwareError "no longer kept"."""
        self.core.check(self.core.lib.tinycl_undo_relabel(self.ptr, self.ndc.ptr, int(tag),
                                                          -1 if label is None else int(label)), "undo relabel")


def _sha_bytes(sha256_hex: str) -> bytes:
    try:
        raw = bytes.fromhex(sha256_hex) if sha256_hex else bytes(32)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise InputError(f"extractor hash: expected a sha256 hex digest, got {sha256_hex!r}")
    return raw


class TinyRCEC(_Obj):
    """The C TinyRCE, same semantics as ``core.rce.TinyRCE`` (``decide`` returns the same ``Decision``).

    ``memory_bytes`` must hold at most ``lib.rce_capacity`` prototypes (``lib.rce_capacity_int8``
    with ``int8_range > 0``: the static arrays of this build); None: exactly that many.
    ``int8_range``, ``max_visit``, ``prefix_features``: the cheaper distances, as in ``TinyRCE``.
    """

    STATE = "rce"

    def __init__(self, lib: Library, memory_bytes: int | None = None, r_max: float = 8.0, r_min: float = 0.0,
                 grow_margin: float = 0.25, metric: str = "l2", int8_range: float = 0.0, max_visit: int = 0,
                 prefix_features: int = 8) -> None:
        super().__init__(lib, lib.lib.tinycl_sizeof_rce())
        if metric not in ("l2", "l1"):
            raise InputError(f"metric: must be 'l2' or 'l1', got {metric!r}")
        proto = (1 if int8_range else 4) * lib.n_features + 14
        capacity = lib.rce_capacity_int8 if int8_range else lib.rce_capacity
        if memory_bytes is None:
            memory_bytes = capacity * proto + 8
        for name, v in (("memory_bytes", memory_bytes), ("max_visit", max_visit), ("prefix_features", prefix_features)):
            if not 0 <= int(v) <= 0xFFFFFFFF:
                raise InputError(f"{name}: out of range: {v}")
        self.memory_bytes, self.metric = int(memory_bytes), metric
        rc = lib.lib.tinycl_rce_init_ex(self.ptr, self.memory_bytes, float(r_max), float(r_min), float(grow_margin),
                                        1 if metric == "l1" else 0, float(int8_range), int(max_visit),
                                        int(prefix_features))
        if rc:
            raise InputError(f"TinyRCE (C): bad parameters memory_bytes={memory_bytes} r_max={r_max} r_min={r_min} "
                             f"grow_margin={grow_margin} int8_range={int8_range} max_visit={max_visit} "
                             f"prefix_features={prefix_features} (the budget must hold 1..{capacity} prototypes "
                             f"of {proto} B; prefix_features < {lib.n_features} with a visit cap)")

    def learn_one(self, x, y: int) -> None:
        self.core.check(self.core.lib.tinycl_rce_learn(self.ptr, self.core.vec(x), int(y)), "rce learn")

    def decide(self, x):
        from .core.rce import Decision

        d = _Decision()
        self.core.check(self.core.lib.tinycl_rce_decide(self.ptr, self.core.vec(x), C.byref(d)), "rce decide")
        return Decision(None if d.label < 0 else int(d.label), None if d.nearest < 0 else int(d.nearest),
                        REASONS[d.reason], float(d.novelty), float(d.distance),
                        tuple(int(c) for c in d.candidates[:d.n_candidates]))

    def predict_one(self, x) -> int | None:
        dec = self.decide(x)
        return dec.label if dec.label is not None else dec.nearest

    @property
    def max_prototypes(self) -> int:
        return int(self.core.lib.tinycl_rce_max_prototypes(self.ptr))

    @property
    def inference_macs(self) -> int:
        """Distance MACs one decide costs now (``TinyRCE.inference_macs``)."""
        return int(self.core.lib.tinycl_rce_inference_macs(self.ptr))

    def set_extractor(self, sha256_hex: str) -> None:
        self.core.check(self.core.lib.tinycl_rce_set_extractor(self.ptr, _sha_bytes(sha256_hex)), "rce set_extractor")

    def to_python(self):
        """This state as a Python ``TinyRCE`` (through the C blob)."""
        from .export.c_state import rce_from_bytes

        return rce_from_bytes(self.to_bytes())
