"""The C core against the Python core: unit tests under sanitizers, and parity on real MNIST.

Tolerances (what is asserted):
* features: int8 codes vs onnxruntime on the int8 ONNX (reference = graph optimisations off, the
  QDQ definition): ≥ 99.9% identical, ≥ 99.95% within one int8 step, never more than 2 steps;
* TinyNDC on identical features: every prediction and pseudo-label identical over 1,000 stream
  samples, confidences within 1e-5, CWR* weights within 1e-6 (absolute), counts identical,
  centroids within 1e-6;
* states: a Python state written in the C format, loaded and re-saved by C, is byte-identical.
"""

from __future__ import annotations

import numpy as np

from tinycl_nodes.export import c_state

from .conftest import SAN_ENV, run


def test_c_unit_tests_pass_under_asan_and_ubsan(host_build):
    p = run([host_build / "tinycl_test"], env=SAN_ENV)
    assert "all checks passed" in p.stdout
    flags = (host_build / "CMakeCache.txt").read_text()
    assert "TINYCL_SANITIZE:BOOL=ON" in flags


def test_features_match_onnxruntime_int8(vectors):
    c = np.fromfile(vectors.dir / "c_features.i8", np.int8).reshape(vectors.features_q.shape)
    diff = np.abs(c.astype(np.int32) - vectors.features_q.astype(np.int32))
    exact, within1 = float((diff == 0).mean()), float((diff <= 1).mean())
    print(f"features: {exact:.4%} identical, {within1:.4%} within 1 step, max {diff.max()} steps "
          f"({diff.size} values, {c.shape[0]} MNIST test images)")
    assert exact >= 0.999 and within1 >= 0.9995 and diff.max() <= 2
    # the samples' decisions on C features = on onnxruntime features (clusterer after init)
    ncm = vectors.system.clusterer.__class__(c.shape[1])
    ncm.init_from_labelled(vectors.init_x, vectors.init_y)
    deq = lambda q: ((q.astype(np.float32) - vectors.feat_zp) * np.float32(vectors.feat_scale))  # noqa: E731
    same = np.mean([ncm.pseudo_label(a)[0] == ncm.pseudo_label(b)[0]
                    for a, b in zip(deq(c), deq(vectors.features_q))])
    assert same >= 0.99


def test_features_equal_the_plain_integer_definition(vectors):
    """The C kernels (Winograd tiles, packed channel orders, SMLAD on the M7) compute the int8 model's sums in
    another form; they must equal the direct convolution's exactly, on every image (test_arm_qemu: the M7 = host)."""
    from tinycl_nodes.export.c_model import integer_reference, parse
    from tinycl_nodes.export.c_vectors import MODEL
    from tinycl_nodes.extractor import model_path

    c = np.fromfile(vectors.dir / "c_features.i8", np.int8).reshape(vectors.features_q.shape)
    ref = integer_reference(parse(model_path(MODEL)), vectors.images)
    assert ref.shape == c.shape
    assert np.array_equal(c, ref), f"{int((c != ref).sum())} of {c.size} features differ from the direct convolution"


def test_tinyndc_steps_identical_to_python(vectors):
    steps = np.fromfile(vectors.dir / "c_steps.bin", np.int32).reshape(-1, 3)
    assert steps.shape[0] == vectors.steps.shape[0] == 1000
    np.testing.assert_array_equal(steps[:, 0], vectors.steps[:, 0].astype(np.int32))
    np.testing.assert_array_equal(steps[:, 1], vectors.steps[:, 1].astype(np.int32))
    np.testing.assert_allclose(steps[:, 2].view(np.float32), vectors.steps[:, 2], atol=1e-5)
    assert (steps[:, 0] == vectors.stream_y).mean() > 0.9  # it really learned 0–9 from 0–5 features


def test_cwr_and_centroids_after_stream_match_python(vectors):
    py, c = vectors.system.head, c_state.cwr_from_bytes((vectors.dir / "c_cwr.bin").read_bytes())
    assert c.classes == py.classes and c.n_seen == py.n_seen and c.n_batch == py.n_batch
    np.testing.assert_array_equal(c.past, py.past)
    np.testing.assert_array_equal(c.cur, py.cur)
    np.testing.assert_allclose(c.cw, py.cw, atol=1e-6, rtol=0)
    np.testing.assert_allclose(c.tw, py.tw, atol=1e-6, rtol=0)
    assert c.extractor_hash == py.extractor_hash
    pyc, cc = vectors.system.clusterer, c_state.ncm_from_bytes((vectors.dir / "c_ncm.bin").read_bytes())
    assert cc.classes == pyc.classes
    np.testing.assert_array_equal(cc.counts, pyc.counts)
    np.testing.assert_allclose(cc.centroids, pyc.centroids, atol=1e-6, rtol=0)


def test_python_written_states_roundtrip_through_c_byte_identical(vectors):
    for kind in ("cwr", "ncm"):
        assert (vectors.dir / f"c_{kind}_roundtrip.bin").read_bytes() == (vectors.dir / f"py_{kind}.bin").read_bytes()


def test_the_model_generator_refuses_in_one_line(tmp_path, capsys):
    """`python -m tinycl_nodes.export.c_model` (micro_ros_firmware/README.md) ended in a traceback for a missing
    file, a file that is not ONNX and a float model ("image: expected exactly one QuantizeLinear consumer")."""
    from tinycl_nodes.export.c_model import main

    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    for model, problem in ((str(tmp_path / "none.onnx"), "model not found"),
                           (str(tmp_path / "junk.onnx"), "is not a valid ONNX model"),
                           ("mnist_0to5_fp32", "mnist_0to5_fp32.onnx: a float model; the C generator takes its int8")):
        assert main([model, "--out", str(tmp_path / "gen")]) == 2
        err = capsys.readouterr().err.strip()
        assert problem in err and len(err.splitlines()) == 1, err
    assert main(["mnist_0to5_int8", "--out", str(tmp_path / "gen")]) == 0
    assert (tmp_path / "gen" / "tinycl_model.c").is_file()
