"""The C latent replay head (``core/src/tinycl_latent.c`` in ``libtinycl``) from Python, via ctypes.

Same calls as :class:`~tinycl_nodes.core.latent.LatentUpperHead` (``learn_one``, ``flush``,
``predict_one``, scores) on C memory; the learned state is read through ``tinycl_latent_view``.
Its hyper-parameters default to those of the head the library was generated from
(``tinycl_nodes.export.c_latent``); :func:`params_of` gives them for any Python head.

On a board the head learns from the C CNN's own int8 activations at the cut (``Library.features_cut_q``):
:meth:`LatentUpperHeadC.use_grid` fixes its replay grid to theirs, ``learn_q`` / ``predict_q`` take the codes.
:func:`board_head` is the numpy head that does the same (``presets.latent_upper`` with the int8 model's cut
grid as its replay quantizer), fed onnxruntime's int8-model activations at the cut.
"""

from __future__ import annotations

import ctypes as C

import numpy as np

from .core.errors import InputError
from .core.latent import LatentUpperHead
from .core.quantize import Int8Quantizer
from .firmware import FirmwareError, Library, _f32p, _i8p

_PARAM_FIELDS = ("lr", "upper_lr_scale", "margin", "memory_size", "batch_size", "epochs", "replay",
                 "minibatch", "quantization", "seed")


class _Params(C.Structure):
    _fields_ = [("lr", C.c_double), ("upper_lr_scale", C.c_double), ("margin", C.c_double),
                *[(name, C.c_uint32) for name in _PARAM_FIELDS[3:]]]


class _View(C.Structure):
    _fields_ = [("fc_w", C.POINTER(C.c_float)), ("fc_b", C.POINTER(C.c_float)), ("cls_w", C.POINTER(C.c_float)),
                ("cls_b", C.POINTER(C.c_float)), ("classes", C.POINTER(C.c_int32)),
                ("class_seen", C.POINTER(C.c_uint32)), ("mem_x", C.POINTER(C.c_int8)),
                ("mem_row", C.POINTER(C.c_uint8)), ("q_scale", C.POINTER(C.c_float)), ("q_zp", C.POINTER(C.c_int32)),
                ("n_classes", C.c_uint32), ("n_seen", C.c_uint32), ("n_pending", C.c_uint32),
                ("mem_size", C.c_uint32), ("n_batches", C.c_uint32), ("n_grids", C.c_uint32)]


def params_of(head) -> dict[str, float | int]:
    """``tinycl_latent_params_t`` of a Python ``LatentUpperHead`` (ExportError if C cannot hold it)."""
    from .export.c_latent import c_params

    return c_params(head)


def cut_grid(model: str = "mnist_0to5_int8") -> Int8Quantizer:
    """The int8 grid of the int8 model's last conv block output (the board's cut), as the C CNN is generated."""
    from .export.c_model import parse
    from .extractor import model_path

    last = parse(model_path(model)).blocks[-1]
    return Int8Quantizer(float(last.out_scale), int(last.out_zp))


def board_head(model: str = "mnist_0to5_int8", **overrides) -> LatentUpperHead:
    """``presets.latent_upper`` whose replay memory keeps the int8 model's codes at the cut: its grid is the cut's
    from the start (no calibration on the first batch) and it queues new samples on it, as
    ``tinycl_latent_use_grid`` on the board (``LatentUpperHead.use_grid``)."""
    from .presets import latent_upper

    head = latent_upper(**overrides)
    if head.quantization != "tensor":
        raise InputError(f"board_head: the CNN's codes have one grid per tensor, not {head.quantization!r}")
    head.use_grid(cut_grid(model))
    return head


def _array(ptr, n: int, dtype) -> np.ndarray:
    return np.ctypeslib.as_array(ptr, (n,)).astype(dtype) if n else np.zeros(0, dtype)


class LatentUpperHeadC:
    """A ``tinycl_latent_t`` in memory owned by this object."""

    def __init__(self, lib: Library, **params) -> None:
        self.lib = lib
        f = lib.lib
        sig = {"tinycl_sizeof_latent": (C.c_size_t, []), "tinycl_latent_default_params": (None, [C.c_void_p]),
               "tinycl_latent_init": (C.c_int, [C.c_void_p, C.c_void_p]),
               "tinycl_latent_learn": (C.c_int, [C.c_void_p, _f32p, C.c_int32]),
               "tinycl_latent_flush": (C.c_int, [C.c_void_p]),
               "tinycl_latent_scores": (C.c_int, [C.c_void_p, _f32p, _f32p]),
               "tinycl_latent_predict": (C.c_int, [C.c_void_p, _f32p, C.POINTER(C.c_int32)]),
               "tinycl_latent_view": (None, [C.c_void_p, C.c_void_p]),
               "tinycl_latent_build": (None, [C.c_void_p]),
               "tinycl_latent_use_grid": (C.c_int, [C.c_void_p, C.c_float, C.c_int32]),
               "tinycl_latent_learn_q": (C.c_int, [C.c_void_p, _i8p, C.c_int32]),
               "tinycl_latent_predict_q": (C.c_int, [C.c_void_p, _i8p, C.POINTER(C.c_int32)])}
        for name, (res, args) in sig.items():
            fn = getattr(f, name)
            fn.restype, fn.argtypes = res, args
        build = (C.c_uint32 * 12)()
        f.tinycl_latent_build(build)
        (self.n_features, self.channels, _, _, self.n_fc, self.embed, self.n_fc_weights, self.n_fc_biases,
         self.capacity, self.max_batch, self.max_minibatch, self.max_replay) = list(build)
        p = _Params()
        f.tinycl_latent_default_params(C.byref(p))
        unknown = set(params) - set(_PARAM_FIELDS)
        if unknown:
            raise InputError(f"LatentUpperHeadC: unknown parameters {sorted(unknown)}")
        for k, v in params.items():
            setattr(p, k, v)
        self.params = {k: getattr(p, k) for k in _PARAM_FIELDS}
        self._mem = (C.c_uint8 * f.tinycl_sizeof_latent())()
        self._ptr = C.cast(self._mem, C.c_void_p)
        if f.tinycl_latent_init(self._ptr, C.byref(p)) != 0:
            raise FirmwareError(f"tinycl_latent_init refused {self.params} (this build holds memory ≤ {self.capacity}, "
                                f"batch ≤ {self.max_batch}, minibatch ≤ {self.max_minibatch}, replay ≤ {self.max_replay})")

    def learn_one(self, x, y: int) -> None:
        self.lib.check(self.lib.lib.tinycl_latent_learn(self._ptr, self._vec(x), int(y)), "latent learn")

    def flush(self) -> None:
        self.lib.check(self.lib.lib.tinycl_latent_flush(self._ptr), "latent flush")

    def scores(self, x) -> np.ndarray:
        out = np.zeros(max(self.view().n_classes, 1), np.float32)
        self.lib.check(self.lib.lib.tinycl_latent_scores(self._ptr, self._vec(x), out), "latent scores")
        return out[:self.view().n_classes]

    def predict_one(self, x) -> int | None:
        return self._predict(self.lib.lib.tinycl_latent_predict, self._vec(x), "latent predict")

    def _predict(self, fn, arg: np.ndarray, what: str) -> int | None:
        """The class id ``fn`` (a tinycl_latent_predict*) gives, None before any class."""
        y = C.c_int32()
        rc = fn(self._ptr, arg, C.byref(y))
        if rc == -3:
            return None
        self.lib.check(rc, what)
        return int(y.value)

    # --- int8 latents on the head's own grid (the board's CNN cut) --------------------------------
    def use_grid(self, scale: float, zero_point: int) -> None:
        """Fix the replay grid (before learning; a per-tensor head): int8 latents on it are stored as they are."""
        self.lib.check(self.lib.lib.tinycl_latent_use_grid(self._ptr, float(scale), int(zero_point)), "latent use_grid")

    def learn_q(self, q, y: int) -> None:
        self.lib.check(self.lib.lib.tinycl_latent_learn_q(self._ptr, self._codes(q), int(y)), "latent learn_q")

    def predict_q(self, q) -> int | None:
        return self._predict(self.lib.lib.tinycl_latent_predict_q, self._codes(q), "latent predict_q")

    def _codes(self, q) -> np.ndarray:
        v = np.ascontiguousarray(q, np.int8).reshape(-1)
        if v.size != self.n_features:
            raise InputError(f"latent: expected {self.n_features} int8 codes, got {v.size}")
        return v

    def _vec(self, x) -> np.ndarray:
        v = np.ascontiguousarray(x, np.float32).reshape(-1)
        if v.size != self.n_features:
            raise InputError(f"latent: expected {self.n_features} values, got {v.size}")
        return v

    def view(self) -> _View:
        v = _View()
        self.lib.lib.tinycl_latent_view(self._ptr, C.byref(v))
        return v

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the learned arrays, named as the Python head's state arrays."""
        v = self.view()
        C_, F = v.n_classes, self.n_features
        return {"fc_W": _array(v.fc_w, self.n_fc_weights, np.float32), "fc_b": _array(v.fc_b, self.n_fc_biases, np.float32),
                "head_W": _array(v.cls_w, C_ * self.embed, np.float32).reshape(C_, self.embed),
                "head_b": _array(v.cls_b, C_, np.float32), "classes": _array(v.classes, C_, np.int64),
                "class_seen": _array(v.class_seen, C_, np.int64),
                "replay_x": _array(v.mem_x, v.mem_size * F, np.int8).reshape(v.mem_size, F),
                "replay_rows": _array(v.mem_row, v.mem_size, np.int64),
                "scales": _array(v.q_scale, v.n_grids, np.float32), "zero_points": _array(v.q_zp, v.n_grids, np.int64),
                "counts": np.array([v.n_seen, v.n_pending, v.mem_size, v.n_batches], np.int64)}

    # --- state blob (export/c_state.py latent_to_bytes / latent_from_bytes) -------------------------
    def to_bytes(self) -> bytes:
        f = self.lib.lib
        f.tinycl_latent_state_size.restype, f.tinycl_latent_state_size.argtypes = C.c_size_t, [C.c_void_p]
        f.tinycl_latent_save.restype = C.c_int
        f.tinycl_latent_save.argtypes = [C.c_void_p, C.c_char_p, C.c_size_t, C.POINTER(C.c_size_t)]
        size = f.tinycl_latent_state_size(self._ptr)
        buf, n = C.create_string_buffer(size), C.c_size_t()
        self.lib.check(f.tinycl_latent_save(self._ptr, buf, size, C.byref(n)), "latent save")
        return buf.raw[:n.value]

    def load_bytes(self, payload: bytes) -> None:
        f = self.lib.lib
        f.tinycl_latent_load.restype, f.tinycl_latent_load.argtypes = C.c_int, [C.c_void_p, C.c_char_p, C.c_size_t]
        self.lib.check(f.tinycl_latent_load(self._ptr, bytes(payload), len(payload)), "latent load")
