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
"""

from __future__ import annotations

import numpy as np
import pytest

from tinycl_nodes.core.errors import InputError, StateError
from tinycl_nodes.export import c_state
from tinycl_nodes.export.c_vectors import har_features, make_rce_vectors
from tinycl_nodes.firmware import Library, TinyRCEC

from .conftest import SAN_ENV, run

CONFIGS = {
    "l1_paper": {"memory_bytes": 40 * 1024, "r_max": 24.0, "metric": "l1"},
    "l2_prune_evict": {"memory_bytes": 8 * 1024, "r_max": 6.0, "r_min": 3.0, "grow_margin": 0.25, "metric": "l2"},
    "l1_tiny_grow": {"memory_bytes": 4 * 1024, "r_max": 24.0, "grow_margin": 0.5, "metric": "l1"},
}


@pytest.fixture(scope="module")
def har(data_dir):
    return har_features(str(data_dir))


@pytest.fixture(scope="module")
def lib(host_build):
    return Library(host_build / "libtinycl.so")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_rce_c_matches_python_on_har(name, har, host_build, tmp_path):
    x, y, sha = har
    v = make_rce_vectors(tmp_path, x, y, sha, **CONFIGS[name])
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
    print(f"{name}: {len(y)} HAR samples, decisions identical {reasons}, {p.n_prototypes} prototypes, "
          f"counters {p.counters}, radii/novelty bit-identical: {exact}")
    assert (tmp_path / "c_rce_roundtrip.bin").read_bytes() == (tmp_path / "py_rce.bin").read_bytes()
    if name == "l2_prune_evict":
        assert all(p.counters[k] > 0 for k in ("grown", "shrunk", "pruned", "evicted", "dropped"))


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
