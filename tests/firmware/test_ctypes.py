"""libtinycl through ctypes (tinycl_nodes.firmware): same predictions as the Python core."""

from __future__ import annotations

import numpy as np
import pytest

from tinycl_nodes.core.clustering import NearestCentroid
from tinycl_nodes.core.cwr import CWRStar
from tinycl_nodes.core.errors import InputError, StateError
from tinycl_nodes.core.tinyndc import TinyNDC
from tinycl_nodes.export import c_state
from tinycl_nodes.firmware import CWRStarC, FirmwareError, Library, NearestCentroidC, TinyNDCC, UndoC


@pytest.fixture(scope="module")
def lib(host_build):
    return Library(host_build / "libtinycl.so")


def test_library_abi(lib, int8_extractor):
    assert lib.n_features == 64 and lib.max_classes == 10
    assert lib.model_sha256 == int8_extractor.hash  # generated from the same ONNX file


def test_missing_library_is_a_clear_error(tmp_path):
    with pytest.raises(FirmwareError, match="not found"):
        Library(tmp_path / "nope.so")


def test_cwr_and_clustering_predict_like_python(lib, vectors):
    X, Xs = vectors.init_x, vectors.stream_x[:400]
    py_h, c_h = CWRStar(64, lr=0.02, batch_size=32), CWRStarC(lib, lr=0.02, batch_size=32)
    py_c, c_c = NearestCentroid(64), NearestCentroidC(lib)
    py_c.init_from_labelled(X, vectors.init_y)
    c_c.init_from_labelled(X, vectors.init_y)
    for x, y in zip(X, vectors.init_y):
        py_h.learn_one(x, int(y))
        c_h.learn_one(x, int(y))
    for x in Xs:
        yp, yc = py_c.pseudo_label(x), c_c.pseudo_label(x)
        assert yp[0] == yc[0] and abs(yp[1] - yc[1]) < 1e-5
        assert py_h.predict_one(x) == c_h.predict_one(x)
        py_h.learn_one(x, yp[0])
        c_h.learn_one(x, yc[0])
        py_c.update(x, yp[0])
        c_c.update(x, yc[0])
    # the C head's state, read by Python, predicts what the Python head predicts
    back = c_state.cwr_from_bytes(c_h.to_bytes())
    assert [back.predict_one(x) for x in Xs[:50]] == [py_h.predict_one(x) for x in Xs[:50]]
    assert c_state.ncm_from_bytes(c_c.to_bytes()).classes == py_c.classes


def test_tinyndc_and_features_through_ctypes(lib, vectors):
    sysc = TinyNDCC(lib, lr=0.02, batch_size=32)
    sysp = TinyNDC(NearestCentroid(64), CWRStar(64, lr=0.02, batch_size=32), cluster_update="head")
    sysc.init_from_labelled(vectors.init_x, vectors.init_y)
    sysp.init_from_labelled(vectors.init_x, vectors.init_y)
    for x in vectors.stream_x[:300]:
        p, c = sysp.step(x), sysc.step(x)
        assert (p.prediction, p.pseudo_label) == c[:2]
    q = np.stack([lib.features_q(img) for img in vectors.images[:16]])
    np.testing.assert_array_equal(q, np.fromfile(vectors.dir / "c_features.i8", np.int8).reshape(-1, 64)[:16])


def test_tinyndc_state_round_trip_and_refusals(lib, vectors):
    """The board's learned state (clusterer blob + head blob): Python reads it, a fresh system restored from it
    goes on exactly as the original, and a damaged one is refused with the system unchanged."""
    sysc = TinyNDCC(lib, lr=0.02, batch_size=32)
    sysc.init_from_labelled(vectors.init_x, vectors.init_y)
    for x in vectors.stream_x[:150]:
        sysc.step(x)
    sysc.learn_label(vectors.stream_x[0], 9)
    blob = sysc.to_bytes()
    ncm, head = c_state.ndc_from_bytes(blob)
    assert c_state.ndc_to_bytes(ncm, head) == blob
    assert head.n_batch == (len(vectors.init_y) + 151) % 32 and 9 in head.classes and 9 in ncm.classes
    restored = TinyNDCC(lib, lr=0.5, batch_size=4)   # its own hyper-parameters give way to the blob's
    restored.load_bytes(blob)
    assert restored.to_bytes() == blob
    later = vectors.stream_x[150:300]
    expected = [sysc.step(x)[:2] for x in later]
    assert [restored.step(x)[:2] for x in later] == expected
    # the Python loop on the state Python read goes on as the C one does
    sysp = TinyNDC(ncm, head, cluster_update="head")
    assert [(p.prediction, p.pseudo_label) for p in map(sysp.step, later)] == expected
    good = restored.to_bytes()
    n_ncm = len(c_state.ncm_to_bytes(ncm))
    flipped = bytearray(blob)
    flipped[n_ncm + 40] ^= 1                                    # in the head's blob: its CRC fails
    for bad in (blob[:-1], blob + b"\0", bytes(flipped), blob[n_ncm:] + blob[:n_ncm], blob[:n_ncm]):
        with pytest.raises(StateError):
            restored.load_bytes(bad)
        assert restored.to_bytes() == good
    with pytest.raises(StateError):
        c_state.ndc_from_bytes(bytes(flipped))


def test_bad_input_is_refused_and_state_kept(lib):
    h = CWRStarC(lib, lr=0.1, batch_size=4)
    h.learn_one(np.ones(64, np.float32), 3)
    before = h.to_bytes()
    bad = np.ones(64, np.float32)
    bad[5] = np.nan
    with pytest.raises(InputError):
        h.learn_one(bad, 3)
    with pytest.raises(InputError):
        h.learn_one(np.ones(63, np.float32), 3)
    with pytest.raises(StateError):
        h.load_bytes(before[:-1])
    assert h.to_bytes() == before


def test_board_loads_a_global_head_and_late_answers_like_python(lib, vectors):
    """What the board does with a fleet's global head (its linear form) and a person's late answer:
    the same as the Python learner's load_snapshot_into / learn_one; bad heads refused, head unchanged."""
    from tinycl_nodes.core.federated import load_snapshot_into, snapshot_from_head

    donor = CWRStar(64, lr=0.02, batch_size=8, extractor_hash=lib.model_sha256)
    for x, y in zip(vectors.stream_x[:200], vectors.stream_y[:200]):
        donor.learn_one(x, int(y))
    donor.flush()
    snap = snapshot_from_head(donor)
    sysc = TinyNDCC(lib, lr=0.02, batch_size=32)
    sysp = TinyNDC(NearestCentroid(64), CWRStar(64, lr=0.02, batch_size=32, extractor_hash=lib.model_sha256),
                   cluster_update="head")
    sysc.init_from_labelled(vectors.init_x[:30], vectors.init_y[:30])
    sysp.init_from_labelled(vectors.init_x[:30], vectors.init_y[:30])
    for x in vectors.stream_x[200:240]:
        assert sysp.step(x).prediction == sysc.step(x)[0]
    for bad_hash, W in (("ab" * 32, snap.weights), (lib.model_sha256, np.where(snap.weights == snap.weights[0, 0],
                                                                                np.nan, snap.weights))):
        with pytest.raises(InputError):
            sysc.load_linear(snap.class_ids, snap.counts, W, bad_hash)
    sysc.load_linear(snap.class_ids, snap.counts, snap.weights, snap.extractor_hash)
    load_snapshot_into(sysp.head, snap)
    sysc.learn_label(vectors.stream_x[240], 9)          # a late answer, a class the board may not know
    sysp.head.learn_one(vectors.stream_x[240], 9)
    sysp.clusterer.update(vectors.stream_x[240], 9)
    for x in vectors.stream_x[241:400]:
        p, c = sysp.step(x), sysc.step(x)
        assert (p.prediction, p.pseudo_label) == c[:2]


def test_a_count_at_the_u32_limit_stays_there(lib):
    """A clusterer blob whose count is 2^32 − 1 (any u32 is a valid blob): the next sample wrapped the count to 0, the
    centroid became inf (÷ 0), and the blob the board then saved was refused at its next boot. The count now stops
    there, the centroid moves by the sample's share, and the blob loads again."""
    py = NearestCentroid(64)
    py.init_from_labelled(np.stack([np.zeros(64, np.float32), np.ones(64, np.float32)]), np.array([0, 1]))
    py.counts[0] = 2**32 - 1
    c = NearestCentroidC(lib)
    c.load_bytes(c_state.ncm_to_bytes(py))
    c.update(np.full(64, 2.0**32, np.float32), 0)      # moves the centroid by about 1 in each feature
    back = c_state.ncm_from_bytes(c.to_bytes())
    assert back.counts[0] == 2**32 - 1 and np.all(np.isfinite(back.centroids)), back.centroids[0, :4]
    assert np.allclose(back.centroids[0], 1.0, atol=1e-3) and np.array_equal(back.centroids[1], py.centroids[1])
    NearestCentroidC(lib).load_bytes(c.to_bytes())     # the board's next boot takes it


def _full_tables(lib, vectors) -> tuple[TinyNDCC, np.ndarray]:
    """A board's TinyNDC with both tables full: the clusterer holds 0–9 (one labelled sample each), the head a fleet's
    global head of 0–8 and 11 (made of the same samples, 9 named 11); and a sample of 9."""
    from tinycl_nodes.core.federated import snapshot_from_head

    x, y = vectors.init_x, vectors.init_y
    firsts = [int(np.flatnonzero(y == k)[0]) for k in range(10)]
    sysc = TinyNDCC(lib, lr=0.02, batch_size=32)
    sysc.init_from_labelled(x[firsts], y[firsts])
    donor = CWRStar(64, lr=0.02, batch_size=8, extractor_hash=lib.model_sha256)
    for i in firsts:
        donor.learn_one(x[i], 11 if int(y[i]) == 9 else int(y[i]))
    donor.flush()
    snap = snapshot_from_head(donor)
    sysc.load_linear(snap.class_ids, snap.counts, snap.weights, snap.extractor_hash)
    return sysc, x[firsts[9]]


def test_an_answer_neither_table_can_hold_changes_nothing(lib, vectors):
    """TinyNDC learns a person's label in the head and the clusterer, both or neither: with the clusterer full (10
    classes) and a fleet's global head holding a class it lacks (11), an answer of class 11 was learned by the head
    and then refused by the clusterer, and the call said it failed (the board left it pending, learned)."""
    sysc, x9 = _full_tables(lib, vectors)
    before = sysc.to_bytes()
    for label in (11, 9, 12):      # 11: the clusterer has no row; 9: the head has none; 12: neither
        with pytest.raises(InputError, match="no room for another class"):
            sysc.learn_label(x9, label)
        assert sysc.to_bytes() == before, label
    sysc.learn_label(x9, 3)                            # a class both hold: learned
    assert sysc.to_bytes() != before


@pytest.mark.parametrize("known", [[], [0, 1, 2], [7], [3, 3], [2**31 - 1], [2**31 - 1, 0, 1, 3], [2**31 - 1, 0, 1, 2],
                                   [5, 2**31 - 2]])
def test_the_boards_new_class_id_is_the_labelers(lib, known):
    """A person's new class on the board gets the id the Python labeler gives it (``next_class_id``): the board took
    the highest id + 1, which overflowed after class 2^31 − 1 (then every new class was refused)."""
    from tinycl_nodes.nodes.label_requests import next_class_id

    ids = np.asarray(known, np.int32)
    assert lib.lib.tinycl_next_class_id(ids, ids.size) == next_class_id(known)


def test_a_frame_whose_class_has_no_row_is_predicted_and_learned_by_neither(lib, vectors):
    """The same full tables, unlabelled frames: a step whose pseudo-label the head lacks, or whose prediction the
    clusterer lacks, learns nothing (the head learned the pseudo-label, then the clusterer refused the prediction's
    class, and the step said it failed) and still gives its prediction."""
    sysc, _ = _full_tables(lib, vectors)
    refused = 0
    for xi in vectors.stream_x[:300]:
        before = sysc.to_bytes()
        try:
            sysc.step(xi)
        except InputError as exc:
            assert "no room for another class" in str(exc)
            assert sysc.to_bytes() == before
            refused += 1
    assert refused > 0


def test_a_changed_or_withdrawn_answer_is_replayed_as_if_given_so(lib, vectors):
    """A person changes or withdraws an answer the board learned (``tinycl_undo_*``): the board replays the samples
    it kept since, so its system is then exactly (state blob for state blob) that of a board given the answer so from
    the start: later frames' pseudo-labels follow too. An answer older than the samples kept is refused, nothing
    changed, and the log's oldest samples rolled into its base stay learned."""
    X, n_keep = vectors.stream_x, 600              # TINYCL_UNDO_MAX of the host build

    def board(answers: dict[int, int], frames: int = 300) -> tuple[TinyNDCC, UndoC]:
        """Frames 0..frames-1; after frame i, the answer ``answers[i]`` about frame i - 3, tagged i."""
        s = TinyNDCC(lib, lr=0.02, batch_size=8)
        s.init_from_labelled(vectors.init_x[:30], vectors.init_y[:30])
        u = UndoC(lib, s)
        for i in range(frames):
            u.step(X[i])
            if i in answers:
                u.learn_label(X[i - 3], answers[i], tag=i)
        return s, u

    s, u = board({50: 9, 120: 2, 200: 11})
    given_so = board({50: 9, 120: 4, 200: 11})[0].to_bytes()
    assert s.to_bytes() != given_so
    u.relabel(120, 4)                               # changed: 2 → 4
    assert s.to_bytes() == given_so
    u.relabel(200, None)                            # withdrawn: class 11 came with it, and goes with it
    assert s.to_bytes() == board({50: 9, 120: 4})[0].to_bytes()
    before = s.to_bytes()
    with pytest.raises(FirmwareError, match="no longer kept"):
        u.relabel(200, 3)                           # withdrawn already
    with pytest.raises(InputError):
        u.step(X[300] + np.float32(1e-3))           # not on the features' grid: it could not be replayed
    assert s.to_bytes() == before

    # the log rolls: an answer more than n_keep samples back is gone, a newer one still changes exactly
    s, u = board({10: 9, n_keep + 100: 2}, n_keep + 150)
    before = s.to_bytes()
    with pytest.raises(FirmwareError, match="no longer kept"):
        u.relabel(10, None)
    assert s.to_bytes() == before
    u.relabel(n_keep + 100, 5)
    assert s.to_bytes() == board({10: 9, n_keep + 100: 5}, n_keep + 150)[0].to_bytes()
