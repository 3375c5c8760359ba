"""CWR* and NearestCentroid state in the C core's binary format (``micro_ros_firmware/core``), both ways.

Format (little-endian; the C side is ``tinycl_state.c``)::

    header  "TCLS" | u8 kind (1 CWRStar, 2 NearestCentroid) | u8 version (1)
            | u16 n_features | u16 n_classes (C) | u16 reserved (0)
    CWRStar f32 lr | u32 batch_size | u32 n_seen | u32 n_batch | 32 B sha256 of the frozen
            extractor (all zero: unknown) | i32 classes[C] | u32 past[C] | u32 cur[C]
            | f32 cw[C][F] | f32 tw[C][F]
    NearestCentroid  u32 max_count (0: none) | i32 classes[C] | u32 counts[C] | f32 centroids[C][F]
    TinyRCE u32 memory_bytes | f64 r_max | f64 r_min | f64 grow_margin | u32 metric (0 l2, 1 l1)
            | u32 n_seen | u64 learning_macs | u32 counters[6] (committed, grown, shrunk, pruned,
            evicted, dropped) | 32 B sha256 | u32 P | i32 classes[C] | u32 class_seen[C]
            | f32 centers[P][F] | f32 radii[P] | u16 rows[P] | u32 hits[P] | u32 last_used[P]
            Version 2 (only for int8_range > 0 or max_visit > 0; the plain form stays version 1):
            after P, f64 int8_range | u32 max_visit | u32 prefix_features, and the centers are
            i8 codes [P][F] when int8_range > 0 (a prototype then costs F + 14 bytes)
    latent  kind 4, version 2, the latent replay head's C form (layout in core/include/tinycl_latent.h):
            hyper-parameters, PCG32 states, upper + classifier weights, pending batch (int8 codes on the
            replay grid for a head with a fixed grid, ``use_grid``; else f32), int8 memory. Version 1 (the
            pending batch always f32, no flags) is refused.
    trailer u32 CRC-32 (IEEE, as zlib.crc32) of every byte before it

The TinyNDC loop (the micro-ROS board's default learner) is stored as its clusterer's blob followed
by its head's (``ndc_to_bytes``; ``tinycl_ndc_save`` in C), each whole with its own CRC.

A CWR* head in the middle of a batch keeps its training weights and per-class batch counts, so a
board can be restarted mid-batch. Only ``epochs = 1`` heads (the streaming case) have a C form.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from ..core import state as st
from ..core.clustering import NearestCentroid
from ..core.cwr import CWRStar
from ..core.errors import InputError, StateError
from ..core.quantize import Int8Quantizer
from ..core.rce import TinyRCE

MAGIC = b"TCLS"
KIND_CWR = 1
KIND_NCM = 2
KIND_RCE = 3
RCE_COUNTERS = ("committed", "grown", "shrunk", "pruned", "evicted", "dropped")
_RCE_FIXED = struct.Struct("<IdddIIQ6I32sI")
_RCE_EX = struct.Struct("<dII")   # version 2: int8_range, max_visit, prefix_features
VERSION = 1
RCE_VERSION_EX = 2
_HEADER = struct.Struct("<4sBBHHH")
_CWR_FIXED = struct.Struct("<fIII32s")


def _finish(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def _u32(values, name: str) -> bytes:
    arr = np.asarray(values)
    if arr.size and (arr.min() < 0 or arr.max() > 0xFFFFFFFF or not np.all(arr == np.floor(arr))):
        raise StateError(f"{name}: values do not fit the C format's u32")
    return arr.astype("<u4").tobytes()


def _i32_classes(classes) -> bytes:
    arr = np.asarray(classes, np.int64)
    if arr.size and (arr.min() < 0 or arr.max() > 2**31 - 1):
        raise StateError("classes: ids must fit an int32")
    return arr.astype("<i4").tobytes()


def _parse_header(payload: bytes, kind: int, versions: tuple[int, ...] = (VERSION,)) -> tuple[int, int, memoryview]:
    if not isinstance(payload, (bytes, bytearray, memoryview)) or len(payload) < _HEADER.size + 4:
        raise StateError("C state: payload too short")
    payload = bytes(payload)
    magic, k, version, F, C, reserved = _HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise StateError("C state: not a tinycl C state (bad magic)")
    if k != kind:
        raise StateError(f"C state: holds kind {k}, expected {kind}")
    if version not in versions:
        raise StateError(f"C state: version {version} is not supported (this reads {', '.join(map(str, versions))})")
    if reserved != 0 or F == 0:
        raise StateError("C state: malformed header")
    (crc,) = struct.unpack_from("<I", payload, len(payload) - 4)
    if crc != zlib.crc32(payload[:-4]) & 0xFFFFFFFF:
        raise StateError("C state: CRC mismatch (corrupt or truncated)")
    return F, C, memoryview(payload)[_HEADER.size:-4]


class _Reader:
    def __init__(self, body: memoryview) -> None:
        self.body, self.pos = body, 0

    def take(self, dtype: str, count: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        if self.pos + size > len(self.body):
            raise StateError("C state: payload too short for its header")
        arr = np.frombuffer(self.body[self.pos:self.pos + size], dtype, count)
        self.pos += size
        return arr

    def done(self) -> None:
        if self.pos != len(self.body):
            raise StateError("C state: trailing bytes")


def cwr_to_bytes(head: CWRStar) -> bytes:
    """The C blob of a CWR* head (state included: consolidated and training weights, counts)."""
    if not isinstance(head, CWRStar) or head.epochs != 1:
        raise StateError("C state: only CWRStar heads with epochs=1 have a C form")
    C, F = head.cw.shape
    sha = bytes.fromhex(head.extractor_hash) if head.extractor_hash else bytes(32)
    if len(sha) != 32:
        raise StateError("C state: extractor_hash must be a sha256 hex digest")
    body = (_HEADER.pack(MAGIC, KIND_CWR, VERSION, F, C, 0)
            + _CWR_FIXED.pack(np.float32(head.lr), head.batch_size, head.n_seen, head.n_batch, sha)
            + _i32_classes(head.classes) + _u32(head.past, "past") + _u32(head.cur, "cur")
            + np.ascontiguousarray(head.cw, "<f4").tobytes() + np.ascontiguousarray(head.tw, "<f4").tobytes())
    return _finish(body)


def cwr_from_bytes(payload: bytes) -> CWRStar:
    """A CWR* head from a C blob (raises StateError on anything malformed)."""
    F, C, body = _parse_header(payload, KIND_CWR)
    r = _Reader(body)
    if len(body) < _CWR_FIXED.size:
        raise StateError("C state: payload too short")
    lr, batch_size, n_seen, n_batch, sha = _CWR_FIXED.unpack_from(body)
    r.pos = _CWR_FIXED.size
    classes = r.take("<i4", C).astype(np.int64)
    past, cur = r.take("<u4", C).astype(np.int64), r.take("<u4", C).astype(np.int64)
    cw = r.take("<f4", C * F).reshape(C, F).astype(np.float32)
    tw = r.take("<f4", C * F).reshape(C, F).astype(np.float32)
    r.done()
    if not np.isfinite(lr) or lr <= 0 or batch_size < 1:
        raise StateError("C state: bad CWR* hyper-parameters")
    extractor_hash = "" if sha == bytes(32) else sha.hex()
    head = CWRStar(F, lr=float(lr), batch_size=int(batch_size), extractor_hash=extractor_hash)
    arrays = {"classes": classes, "cw": cw, "tw": tw, "past": past, "cur": cur,
              "n_batch": np.asarray(n_batch, np.int64), "batch_x": np.zeros((0, F), np.float32),
              "batch_rows": np.zeros(0, np.int64)}
    # Arrays a newer Python head keeps besides these are derived: samples learned per class is
    # past + cur for a streaming (epochs = 1) CWR* head.
    template = head.state_dict()
    derived = {"class_seen": past + cur}
    for name in template["arrays"]:
        if name not in arrays:
            if name not in derived:
                raise StateError(f"C state: the Python CWRStar needs {name!r}, which the C format lacks")
            arrays[name] = derived[name]
    meta = {**template["meta"], "extractor_hash": extractor_hash, "n_seen": int(n_seen), "n_features": F}
    head.load_state_dict(st.make_state(CWRStar.kind, CWRStar.version, template["params"], arrays, meta))
    return head


def ncm_to_bytes(clusterer: NearestCentroid) -> bytes:
    """The C blob of a NearestCentroid clusterer (not of its subclasses: they hold more state)."""
    if type(clusterer) is not NearestCentroid:
        raise StateError("C state: only NearestCentroid has a C form")
    C, F = clusterer.centroids.shape
    mc = 0 if clusterer.max_count is None else clusterer.max_count
    if mc != int(mc) or not 0 <= mc <= 0xFFFFFFFF:
        raise StateError("C state: max_count must be an integer for the C form")
    body = (_HEADER.pack(MAGIC, KIND_NCM, VERSION, F, C, 0) + struct.pack("<I", int(mc))
            + _i32_classes(clusterer.classes) + _u32(clusterer.counts, "counts")
            + np.ascontiguousarray(clusterer.centroids, "<f4").tobytes())
    return _finish(body)


def ncm_from_bytes(payload: bytes) -> NearestCentroid:
    """A NearestCentroid clusterer from a C blob (raises StateError on anything malformed)."""
    F, C, body = _parse_header(payload, KIND_NCM)
    r = _Reader(body)
    (mc,) = r.take("<u4", 1).tolist()
    classes = r.take("<i4", C).astype(np.int64)
    counts = r.take("<u4", C).astype(np.float64)
    cent = r.take("<f4", C * F).reshape(C, F).astype(np.float32)
    r.done()
    if len(set(classes.tolist())) != C or (C and counts.min() < 1):
        raise StateError("C state: duplicate classes or zero counts")
    c = NearestCentroid(F, max_count=None if mc == 0 else int(mc))
    c.load_state_dict(st.make_state(c.kind, c.version, c._params(),
                                    {"classes": classes, "centroids": cent, "counts": counts},
                                    {"n_features": F}))
    return c


def ndc_to_bytes(clusterer: NearestCentroid, head: CWRStar) -> bytes:
    """The C TinyNDC state: the clusterer's blob, then the head's."""
    return ncm_to_bytes(clusterer) + cwr_to_bytes(head)


def _ncm_length(F: int, C: int) -> int:
    return _HEADER.size + 4 + C * 8 + C * F * 4 + 4          # TINYCL_NCM_STATE_BYTES


def ndc_from_bytes(payload: bytes) -> tuple[NearestCentroid, CWRStar]:
    """(clusterer, head) from a C TinyNDC state (exactly: no bytes after it)."""
    payload = bytes(payload)
    if len(payload) < _HEADER.size:
        raise StateError(f"C state: {len(payload)} bytes is too short for a TinyNDC state")
    n_ncm = _ncm_length(*_HEADER.unpack_from(payload)[3:5])
    return ncm_from_bytes(payload[:n_ncm]), cwr_from_bytes(payload[n_ncm:])


def rce_to_bytes(rce: TinyRCE) -> bytes:
    """The C blob of a TinyRCE (every prototype costs 4F + 14 bytes, F + 14 with int8 centers, and
    every class 8, as its budget); version 1 for the plain form, 2 with int8 centers or a visit cap."""
    if not isinstance(rce, TinyRCE):
        raise StateError("C state: not a TinyRCE")
    P, F = rce.centers.shape
    sha = bytes.fromhex(rce.extractor_hash) if rce.extractor_hash else bytes(32)
    if len(sha) != 32:
        raise StateError("C state: extractor_hash must be a sha256 hex digest")
    if not 0 <= rce.memory_bytes <= 0xFFFFFFFF or rce.n_seen > 0xFFFFFFFF or rce.learning_macs >= 2**64:
        raise StateError("C state: memory_bytes / n_seen / learning_macs do not fit the C format")
    if rce.max_visit > 0xFFFFFFFF or rce.prefix_features > 0xFFFFFFFF:
        raise StateError("C state: max_visit / prefix_features do not fit the C format's u32")
    ex = bool(rce.int8_range or rce.max_visit)
    counters = [rce.counters[k] for k in RCE_COUNTERS]
    centers = np.ascontiguousarray(rce.centers, "i1" if rce.int8_range else "<f4")
    body = (_HEADER.pack(MAGIC, KIND_RCE, RCE_VERSION_EX if ex else VERSION, F, len(rce.classes), 0)
            + _RCE_FIXED.pack(rce.memory_bytes, rce.r_max, rce.r_min, rce.grow_margin, 1 if rce.metric == "l1" else 0,
                              rce.n_seen, rce.learning_macs, *[min(int(c), 0xFFFFFFFF) for c in counters], sha, P)
            + (_RCE_EX.pack(rce.int8_range, rce.max_visit, rce.prefix_features) if ex else b"")
            + _i32_classes(rce.classes) + _u32(rce.class_seen, "class_seen")
            + centers.tobytes() + np.ascontiguousarray(rce.radii, "<f4").tobytes()
            + np.ascontiguousarray(rce.rows, "<u2").tobytes() + _u32(rce.hits, "hits") + _u32(rce.last_used, "last_used"))
    return _finish(body)


def rce_from_bytes(payload: bytes) -> TinyRCE:
    """A TinyRCE from a C blob (raises StateError on anything malformed; the Python object validates too)."""
    F, C, body = _parse_header(payload, KIND_RCE, (VERSION, RCE_VERSION_EX))
    ex = bytes(payload)[5] == RCE_VERSION_EX
    if len(body) < _RCE_FIXED.size + (_RCE_EX.size if ex else 0):
        raise StateError("C state: payload too short")
    mem, r_max, r_min, grow, metric, n_seen, macs, *rest = _RCE_FIXED.unpack_from(body)
    counters, sha, P = rest[:6], rest[6], rest[7]
    int8_range, max_visit, prefix = _RCE_EX.unpack_from(body, _RCE_FIXED.size) if ex else (0.0, 0, 8)
    if ex and not (int8_range or max_visit):
        raise StateError("C state: a version 2 TinyRCE blob without int8 centers or a visit cap")
    r = _Reader(body)
    r.pos = _RCE_FIXED.size + (_RCE_EX.size if ex else 0)
    classes = r.take("<i4", C).astype(np.int64)
    class_seen = r.take("<u4", C).astype(np.int64)
    if int8_range:
        centers = r.take("i1", P * F).reshape(P, F).astype(np.int8)
        if P and centers.min() < -127:
            raise StateError("C state: int8 center code -128 (codes are clipped to ±127)")
    else:
        centers = r.take("<f4", P * F).reshape(P, F).astype(np.float32)
    radii = r.take("<f4", P).astype(np.float32)
    rows = r.take("<u2", P).astype(np.uint16)
    hits = r.take("<u4", P).astype(np.uint32)
    last_used = r.take("<u4", P).astype(np.uint32)
    r.done()
    if metric not in (0, 1):
        raise StateError(f"C state: TinyRCE metric {metric} unknown")
    extractor_hash = "" if sha == bytes(32) else sha.hex()
    try:
        rce = TinyRCE(F, memory_bytes=int(mem), r_max=float(r_max), r_min=float(r_min), grow_margin=float(grow),
                      metric="l1" if metric else "l2", int8_range=float(int8_range), max_visit=int(max_visit),
                      prefix_features=int(prefix), extractor_hash=extractor_hash)
    except InputError as exc:  # a blob with hyper-parameters the constructor refuses
        raise StateError(f"C state: TinyRCE hyper-parameters refused: {exc}") from None
    arrays = {"classes": classes, "class_seen": class_seen, "centers": centers, "radii": radii, "rows": rows,
              "hits": hits, "last_used": last_used}
    meta = {"extractor_hash": extractor_hash, "n_seen": int(n_seen), "n_features": F, "learning_macs": int(macs),
            "counters": dict(zip(RCE_COUNTERS, (int(c) for c in counters)))}
    rce.load_state_dict(st.make_state(rce.kind, rce.version, rce._params(), arrays, meta))
    return rce


# --- latent replay head (core/src/tinycl_latent.c; format in tinycl_latent.h) -------------------
KIND_LATENT = 4
LATENT_VERSION = 2
LATENT_CODED = 1   # flags bit: the pending batch is int8 codes on the (one) replay grid
_LATENT_FIXED = struct.Struct("<ddd16I4Q")


def latent_to_bytes(head) -> bytes:
    """The C blob of a ``LatentUpperHead`` with PCG32 draws, an int8 memory and FC upper layers."""
    from ..core.draws import Pcg32
    from .c_latent import c_params, fc_layers

    fcs = fc_layers(head)
    p = c_params(head)
    if not isinstance(head._rng, Pcg32) or not isinstance(head.buffer.rng, Pcg32):
        raise StateError("C state: only a LatentUpperHead with draws='pcg32' has a C form")
    buf, F, C = head.buffer, head.n_features, len(head.classes)
    q = buf.quantizer.to_dict() if buf.quantizer is not None else None
    scales = [] if q is None else q.get("scales", [q.get("scale")])
    zps = [] if q is None else q.get("zero_points", [q.get("zero_point")])
    fc_w = np.concatenate([fc.W.ravel() for fc, _ in fcs]).astype("<f4")
    fc_b = np.concatenate([fc.b.ravel() for fc, _ in fcs]).astype("<f4")
    P, coded = head.n_pending, head.pending_codes
    pending = (buf.quantizer.quantize(head._px[:P]).astype("i1") if coded    # on the grid: the very codes
               else np.ascontiguousarray(head._px[:P], "<f4"))
    body = (_HEADER.pack(MAGIC, KIND_LATENT, LATENT_VERSION, F, C, 0)
            + _LATENT_FIXED.pack(p["lr"], p["upper_lr_scale"], p["margin"], p["memory_size"], p["batch_size"],
                                 p["epochs"], p["replay"], p["minibatch"], p["quantization"], p["seed"], fc_w.size,
                                 fc_b.size, head.embed_dim, head.n_seen, buf.n_batches, buf.size, P,
                                 len(scales), LATENT_CODED if coded else 0, buf.rng.state, buf.rng.inc,
                                 head._rng.state, head._rng.inc)
            + _i32_classes(head.classes) + _u32(head.class_seen, "class_seen") + fc_w.tobytes() + fc_b.tobytes()
            + np.ascontiguousarray(head.classifier.W, "<f4").tobytes() + np.ascontiguousarray(head.classifier.b, "<f4").tobytes()
            + np.asarray(scales, "<f4").tobytes() + np.asarray(zps, "<i4").tobytes()
            + pending.tobytes() + head._prow[:P].astype("u1").tobytes()
            + np.ascontiguousarray(buf._x[:buf.size], "i1").tobytes() + buf.rows().astype("u1").tobytes())
    return _finish(body)


def latent_from_bytes(payload: bytes, like):
    """A ``LatentUpperHead`` from a C blob; ``like`` gives the architecture (upper layers, latent shape)."""
    from ..core.latent import LatentUpperHead
    from ..core.layers import Linear, layer_from_spec
    from .c_latent import QUANT_CODES, REPLAY_ALL

    F, C, body = _parse_header(payload, KIND_LATENT, (LATENT_VERSION,))
    if F != like.n_features or len(body) < _LATENT_FIXED.size:
        raise StateError(f"C state: latent head of {F} features, expected {like.n_features}")
    (lr, uls, margin, memory, batch, epochs, replay, minibatch, quant, seed, n_w, n_b, embed, n_seen,
     n_batches, M, P, G, flags, ms, mi, ss, si) = _LATENT_FIXED.unpack_from(body)
    fcs = [layer for layer in like.upper if isinstance(layer, Linear)]
    if n_w != sum(fc.W.size for fc in fcs) or n_b != sum(fc.b.size for fc in fcs) or embed != like.embed_dim:
        raise StateError("C state: the blob's upper layers differ from this head's (another cut or model)")
    quantization = {v: k for k, v in QUANT_CODES.items()}.get(quant)
    if quantization is None:
        raise StateError(f"C state: latent quantization code {quant} unknown")
    coded = flags == LATENT_CODED
    if flags not in (0, LATENT_CODED) or (coded and (quantization != "tensor" or G != 1)):
        raise StateError(f"C state: latent flags {flags} (codes need one per-tensor grid; quantization "
                         f"{quantization}, {G} grids)")
    r = _Reader(body)
    r.pos = _LATENT_FIXED.size
    classes, class_seen = r.take("<i4", C).astype(np.int64), r.take("<u4", C).astype(np.int64)
    fc_w, fc_b = r.take("<f4", n_w).astype(np.float32), r.take("<f4", n_b).astype(np.float32)
    head_W, head_b = r.take("<f4", C * embed).reshape(C, embed).astype(np.float32), r.take("<f4", C).astype(np.float32)
    scales, zps = r.take("<f4", G).astype(np.float64), r.take("<i4", G).astype(np.int64)
    if coded:
        try:
            px = Int8Quantizer(float(scales[0]), int(zps[0])).dequantize(r.take("i1", P * F).reshape(P, F))
        except InputError as exc:
            raise StateError(f"C state: latent grid refused: {exc}") from None
    else:
        px = r.take("<f4", P * F).reshape(P, F).astype(np.float32)
    prow = r.take("u1", P).astype(np.int64)
    mx, mrow = r.take("i1", M * F).reshape(M, F).astype(np.int8), r.take("u1", M).astype(np.uint8)
    r.done()
    try:
        head = LatentUpperHead(like.latent_shape, [layer_from_spec(layer.spec(), layer.arrays()) for layer in like.upper],
                               memory_size=int(memory), batch_size=int(batch), epochs=int(epochs), lr=float(lr),
                               upper_lr_scale=float(uls), replay=None if replay == REPLAY_ALL else int(replay),
                               minibatch=int(minibatch), quantization=quantization, calibration_margin=float(margin),
                               seed=int(seed), draws="pcg32", extractor_hash=like.extractor_hash)
    except InputError as exc:
        raise StateError(f"C state: latent hyper-parameters refused: {exc}") from None
    arrays = {"classes": classes, "class_seen": class_seen, "head_W": head_W, "head_b": head_b,
              "pending_x": px, "pending_rows": prow, "replay_x": mx, "replay_rows": mrow}
    w_off = b_off = 0
    for i, layer in enumerate(head.upper):
        for k, v in layer.arrays().items():
            if k == "W":
                arrays[f"upper{i}_W"], w_off = fc_w[w_off:w_off + v.size].reshape(v.shape), w_off + v.size
            else:
                arrays[f"upper{i}_b"], b_off = fc_b[b_off:b_off + v.size], b_off + v.size
    S = F // max(G, 1)
    quantizer = (None if G == 0 else {"scale": float(scales[0]), "zero_point": int(zps[0])} if quantization == "tensor"
                 else {"scales": scales.tolist(), "zero_points": zps.tolist(), "channel_size": S})
    meta = {"extractor_hash": like.extractor_hash, "n_seen": int(n_seen), "n_features": F,
            "rng_state": {"bit_generator": "pcg32", "state": int(ss), "inc": int(si)}, "pending_codes": coded,
            "replay": {"n_batches": int(n_batches), "n_classes": C, "quantizer": quantizer,
                       "rng_state": {"bit_generator": "pcg32", "state": int(ms), "inc": int(mi)}}}
    head.load_state_dict(st.make_state(head.kind, head.version, head._params(), arrays, meta))
    return head
