"""The C state format from the Python side: round trips, and refusal of anything malformed."""

from __future__ import annotations

import numpy as np
import pytest

from tinycl_nodes.core.clustering import NearestCentroid, TiedGaussianClusterer
from tinycl_nodes.core.cwr import CWRStar
from tinycl_nodes.core.errors import StateError
from tinycl_nodes.export import c_state


def _trained(n=37):
    rng = np.random.default_rng(0)
    h = CWRStar(8, lr=0.1, batch_size=16, extractor_hash="ab" * 32)
    ncm = NearestCentroid(8)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    y = rng.integers(0, 4, n)
    ncm.init_from_labelled(X[:8], y[:8])
    for x, c in zip(X, y):
        h.learn_one(x, int(c))
        ncm.update(x, int(c))
    return h, ncm, X


def test_cwr_roundtrip_keeps_predictions_and_partial_batch():
    h, _, X = _trained()
    blob = c_state.cwr_to_bytes(h)
    h2 = c_state.cwr_from_bytes(blob)
    assert c_state.cwr_to_bytes(h2) == blob
    assert h2.n_batch == h.n_batch == 37 % 16 and h2.classes == h.classes
    assert [h2.predict_one(x) for x in X] == [h.predict_one(x) for x in X]
    h.learn_one(X[0], 1), h2.learn_one(X[0], 1)   # learning continues identically
    np.testing.assert_array_equal(h.tw, h2.tw)


def test_ncm_roundtrip():
    _, ncm, X = _trained()
    blob = c_state.ncm_to_bytes(ncm)
    c2 = c_state.ncm_from_bytes(blob)
    assert c_state.ncm_to_bytes(c2) == blob
    assert [c2.pseudo_label(x) for x in X] == [ncm.pseudo_label(x) for x in X]


@pytest.mark.parametrize("mutate", ["crc", "truncate", "magic", "kind", "version", "features"])
def test_malformed_blobs_are_refused(mutate):
    h, _, _ = _trained()
    b = bytearray(c_state.cwr_to_bytes(h))
    if mutate == "crc":
        b[30] ^= 1
    elif mutate == "truncate":
        b = b[:-9]
    elif mutate == "magic":
        b[0:4] = b"XXXX"
    elif mutate == "kind":
        b[4] = 2
    elif mutate == "version":
        b[5] = 9
    else:
        b[6] = 9
    if mutate in ("magic", "kind", "version", "features"):  # keep the CRC valid: the header check must refuse
        import struct
        import zlib
        b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[:-4])))
    with pytest.raises(StateError):
        c_state.cwr_from_bytes(bytes(b))


def test_unsupported_objects_are_refused():
    with pytest.raises(StateError):
        c_state.cwr_to_bytes(CWRStar(4, epochs=2))
    with pytest.raises(StateError):
        c_state.ncm_to_bytes(TiedGaussianClusterer(4))
    with pytest.raises(StateError):
        c_state.ncm_from_bytes(c_state.cwr_to_bytes(CWRStar(4)))
