"""TinyRCE in C against the Python TinyRCE, on real HAR windows through har_elm.onnx.

The C core runs under ASan + UBSan (``tinycl_run --rce``) and through ctypes. Asserted, for three
configurations (l1 as the paper's experiment; l2 with r_min and a small budget, so shrinking,
growing, pruning and eviction all happen; l1 with a tiny budget and a wide grow margin):
* every decision made before learning each sample identical: label, nearest class, reason
  (unknown / ambiguous / covered), and the candidate classes;
* novelty (d/r) and distance within 1e-6 relative (measured: bit-identical on x86-64);
* prototype count, rows, hits, last use, counters and the learning-MAC count identical; radii and
  centers within 1e-6 relative (measured: bit-identical);
* a Python-written C blob loaded and re-saved by C is byte-identical; malformed blobs are refused.

The cheaper distances (int8 centers, the visit cap, both; HAR's chosen int8 ±8, cap 16, 8-feature
coarse pass, and l2 forms with eviction): every decision and the final prototypes (int8 codes,
radii, rows, counters, learning MACs) *identical*, not within a tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinycl_nodes.core.errors import InputError, StateError
from tinycl_nodes.export import c_state
from tinycl_nodes.export.c_vectors import cwru_features, har_features, make_rce_vectors
from tinycl_nodes.firmware import Library, TinyRCEC

from .conftest import SAN_ENV, run

CONFIGS = {
    "l1_paper": {"memory_bytes": 40 * 1024, "r_max": 24.0, "metric": "l1"},
    "l2_prune_evict": {"memory_bytes": 8 * 1024, "r_max": 6.0, "r_min": 3.0, "grow_margin": 0.25, "metric": "l2"},
    "l1_tiny_grow": {"memory_bytes": 4 * 1024, "r_max": 24.0, "grow_margin": 0.5, "metric": "l1"},
}
HAR_CHEAP = {"int8_range": 8.0, "max_visit": 16, "prefix_features": 8}   # experiments/tinyrce.py's HAR choice
CHEAP = {
    "int8_har": {"memory_bytes": 40 * 1024, "r_max": 12.0, "metric": "l1", "int8_range": 8.0},
    "cap_l2_evict": {"memory_bytes": 8 * 1024, "r_max": 6.0, "r_min": 3.0, "metric": "l2", "max_visit": 8,
                     "prefix_features": 8},
    "int8_cap_har": {"memory_bytes": 40 * 1024, "r_max": 12.0, "metric": "l1", **HAR_CHEAP},
    "int8_cap_cwru": {"memory_bytes": 40 * 1024, "r_max": 24.0, "metric": "l1", "int8_range": 12.0, "max_visit": 32,
                      "prefix_features": 4},   # CWRU's chosen settings (experiments/tinyrce.py), 10 classes
    "int8_cap_l2_evict": {"memory_bytes": 2 * 1024, "r_max": 8.0, "r_min": 2.0, "metric": "l2", "int8_range": 8.0,
                          "max_visit": 8, "prefix_features": 5},
}


@pytest.fixture(scope="module")
def har(data_dir):
    return har_features(str(data_dir))


@pytest.fixture(scope="module")
def cwru(data_dir):
    return cwru_features(str(data_dir))


@pytest.fixture(scope="module")
def lib(host_build):
    return Library(host_build / "libtinycl.so")


@pytest.mark.parametrize("name", [*CONFIGS, *CHEAP])
def test_rce_c_matches_python_on_har(name, request, host_build, tmp_path):
    x, y, sha = request.getfixturevalue("cwru" if "cwru" in name else "har")
    v = make_rce_vectors(tmp_path, x, y, sha, **{**CONFIGS, **CHEAP}[name])
    run([host_build / "tinycl_run", "--rce", tmp_path], env=SAN_ENV)
    c = np.fromfile(tmp_path / "c_rce_decisions.bin", np.int32).reshape(-1, 5)
    py = v.decisions
    np.testing.assert_array_equal(c[:, :3], py[:, :3].astype(np.int32))  # label, nearest, reason
    nov, dist = c[:, 3].view(np.float32), c[:, 4].view(np.float32)
    np.testing.assert_allclose(nov, py[:, 3], rtol=1e-6)
    np.testing.assert_allclose(dist, py[:, 4], rtol=1e-6)
    back = c_state.rce_from_bytes((tmp_path / "c_rce.bin").read_bytes())
    p = v.rce
    assert back.n_prototypes == p.n_prototypes and back.classes == p.classes
    assert back.counters == p.counters and back.learning_macs == p.learning_macs and back.n_seen == p.n_seen
    for a in ("rows", "hits", "last_used", "class_seen"):
        np.testing.assert_array_equal(getattr(back, a), getattr(p, a))
    np.testing.assert_allclose(back.radii, p.radii, rtol=1e-6)
    np.testing.assert_allclose(back.centers, p.centers, rtol=1e-6)
    exact = np.array_equal(back.radii, p.radii) and np.array_equal(nov, py[:, 3].astype(np.float32))
    reasons = {r: int((py[:, 2] == k).sum()) for r, k in (("unknown", 1), ("ambiguous", 2), ("covered", 3))}
    print(f"{name}: {len(y)} {'CWRU' if 'cwru' in name else 'HAR'} samples, decisions identical {reasons}, {p.n_prototypes} prototypes, "
          f"counters {p.counters}, radii/novelty bit-identical: {exact}")
    assert (tmp_path / "c_rce_roundtrip.bin").read_bytes() == (tmp_path / "py_rce.bin").read_bytes()
    if name == "l2_prune_evict":
        assert all(p.counters[k] > 0 for k in ("grown", "shrunk", "pruned", "evicted", "dropped"))
    if name in CHEAP:   # integer distances / the same visited set: identical, not close
        assert (tmp_path / "py_rce.bin").read_bytes() == (tmp_path / "c_rce.bin").read_bytes()
        np.testing.assert_array_equal(nov, py[:, 3].astype(np.float32))
        np.testing.assert_array_equal(dist, py[:, 4].astype(np.float32))
        assert back.centers.dtype == p.centers.dtype and np.array_equal(back.centers, p.centers)
        assert np.array_equal(back.radii, p.radii)
        if p.max_visit:
            assert p.n_prototypes >= 2 * p.max_visit   # the cap binds for most of the stream
        if "evict" in name:
            assert all(p.counters[k] > 0 for k in ("grown", "shrunk", "pruned", "evicted"))


def test_rce_through_ctypes_and_state_refusals(lib, har):
    x, y, sha = har
    cfg = CONFIGS["l2_prune_evict"]
    from tinycl_nodes.core.rce import TinyRCE

    py, c = TinyRCE(64, extractor_hash=sha, **cfg), TinyRCEC(lib, **cfg)
    c.set_extractor(sha)
    for xi, yi in zip(x[:300], y[:300]):
        assert py.decide_valid(xi) == c.decide(xi)
        py.learn_valid(xi, int(yi))
        c.learn_one(xi, int(yi))
    assert c.to_bytes() == c_state.rce_to_bytes(py)   # the whole state, byte for byte
    assert c.max_prototypes == py.max_prototypes
    good = c.to_bytes()
    for bad in (good[:-1], good[:50], b"XXXX" + good[4:], good[:200] + bytes([good[200] ^ 1]) + good[201:]):
        with pytest.raises(StateError):
            c.load_bytes(bad)
        with pytest.raises(StateError):
            c_state.rce_from_bytes(bad)
    other = TinyRCEC(lib, **cfg)           # model's own hash (MNIST int8): a HAR head is refused
    with pytest.raises(StateError):
        other.load_bytes(good)
    assert c.to_bytes() == good
    with pytest.raises(InputError):
        c.learn_one(np.full(64, np.nan, np.float32), 1)
    with pytest.raises(InputError):
        TinyRCEC(lib, memory_bytes=100)
    with pytest.raises(InputError):
        TinyRCEC(lib, memory_bytes=10**6)   # more than the static TINYCL_RCE_MAX_PROTOTYPES
    assert c.to_bytes() == good


def _refit_crc(b: bytearray) -> bytes:
    import struct
    import zlib

    b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[:-4])))
    return bytes(b)


@pytest.mark.parametrize("cheap", [{"int8_range": 8.0}, {"max_visit": 16, "prefix_features": 8}, HAR_CHEAP],
                         ids=["int8", "cap", "int8_cap"])
def test_cheap_rce_through_ctypes_state_both_ways_and_refusals(lib, har, cheap):
    """Python → C → Python: a numpy head half-way through the stream goes to C, both learn the rest
    alike, and C's state comes back to numpy equal; malformed blobs are refused on both sides."""
    x, y, sha = har
    from tinycl_nodes.core.rce import TinyRCE

    cfg = {"memory_bytes": 40 * 1024, "r_max": 12.0, "metric": "l1", **cheap}
    py = TinyRCE(64, extractor_hash=sha, **cfg)
    for xi, yi in zip(x[:250], y[:250]):
        py.learn_valid(xi, int(yi))
    blob = c_state.rce_to_bytes(py)
    assert blob[5] == 2                       # version 2: int8 centers and/or a visit cap
    c = TinyRCEC(lib, **cfg)
    c.set_extractor(sha)
    c.load_bytes(blob)
    assert c.to_bytes() == blob and c.max_prototypes == py.max_prototypes
    assert c.inference_macs == py.inference_macs
    for xi, yi in zip(x[250:], y[250:]):
        assert py.decide_valid(xi) == c.decide(xi)
        py.learn_valid(xi, int(yi))
        c.learn_one(xi, int(yi))
    good = c.to_bytes()
    assert good == c_state.rce_to_bytes(py)
    back = c.to_python()
    assert c_state.rce_to_bytes(back) == good and back.int8_range == py.int8_range and back.max_visit == py.max_visit
    F, C, P = 64, len(py.classes), py.n_prototypes
    assert len(good) == 12 + 120 + 8 * C + P * ((1 if py.int8_range else 4) * F + 14) + 4
    bad = [good[:-1], good[:140], good + b"\0", b"XXXX" + good[4:],
           good[:300] + bytes([good[300] ^ 1]) + good[301:],                   # CRC
           _refit_crc(bytearray(good[:5]) + b"\x01" + bytearray(good[6:])),    # read as version 1: sizes differ
           _refit_crc(bytearray(good[:5]) + b"\x03" + bytearray(good[6:]))]    # unknown version
    ex = bytearray(good)
    ex[116:132] = bytes(16)                    # version 2 with neither int8 nor cap (and prefix 0)
    bad.append(_refit_crc(ex))
    if py.int8_range:
        codes = bytearray(good)
        codes[132 + 8 * C] = 0x80              # a center code of -128: never written
        bad.append(_refit_crc(codes))
    else:
        visit = bytearray(good)
        visit[128:132] = (64).to_bytes(4, "little")   # prefix_features = F with a cap
        bad.append(_refit_crc(visit))
    for b in bad:
        with pytest.raises(StateError):
            c.load_bytes(b)
        with pytest.raises(StateError):
            c_state.rce_from_bytes(b)
    assert c.to_bytes() == good                # refusals leave the object unchanged
    with pytest.raises(InputError):
        c.learn_one(np.full(64, np.inf, np.float32), 1)
    with pytest.raises(InputError):
        TinyRCEC(lib, **{**cfg, "memory_bytes": (lib.rce_capacity_int8 + 1) * 78 + 8})
    for absurd in (float("nan"), 1e300, 1e-300):     # 1e300: an inf scale (every distance NaN); 1e-300: a scale of 0
        with pytest.raises(InputError):
            TinyRCEC(lib, **{**cfg, "int8_range": absurd})
        with pytest.raises(InputError, match="int8_range"):
            TinyRCE(64, **{**cfg, "int8_range": absurd})
    assert c.to_bytes() == good


def test_plain_blob_stays_version_1_byte_for_byte(har):
    """The plain form (fp32, no cap) keeps the version 1 layout: no version 2 fields, f32 centers."""
    import struct

    x, y, sha = har
    from tinycl_nodes.core.rce import TinyRCE

    py = TinyRCE(64, extractor_hash=sha, **CONFIGS["l1_paper"])
    for xi, yi in zip(x[:200], y[:200]):
        py.learn_valid(xi, int(yi))
    blob = c_state.rce_to_bytes(py)
    C, P = len(py.classes), py.n_prototypes
    fixed = struct.pack("<4sBBHHHIdddIIQ6I32sI", b"TCLS", 3, 1, 64, C, 0, py.memory_bytes, py.r_max, py.r_min,
                        py.grow_margin, 1, py.n_seen, py.learning_macs,
                        *(py.counters[k] for k in c_state.RCE_COUNTERS), bytes.fromhex(sha), P)
    body = (fixed + np.asarray(py.classes, "<i4").tobytes() + py.class_seen.astype("<u4").tobytes()
            + py.centers.astype("<f4").tobytes() + py.radii.astype("<f4").tobytes() + py.rows.astype("<u2").tobytes()
            + py.hits.astype("<u4").tobytes() + py.last_used.astype("<u4").tobytes())
    import zlib

    assert blob == body + struct.pack("<I", zlib.crc32(body))
