"""Bring your own backbone: `tinycl model import --cut` and `tinycl model quantize` on models the
project makes itself (tests/models/nets.py), with the bad inputs the issue names."""

import json
import warnings

import cv2
import numpy as np
import pytest
import yaml

from tests.models.nets import mnist_classifier_rgb, mobilenet_like
from tinycl_nodes.cli import main
from tinycl_nodes.datasets import load_mnist
from tinycl_nodes.extractor import FrozenExtractor, model_path
from tinycl_nodes.model_tools import cosine

RGB64 = {"preprocessing": {"layout": "NCHW", "size": [64, 64], "color": "rgb", "resize": "stretch",
                           "scale": 1 / 255}, "dataset": "mnist", "class_names": ["0", "1", "2", "3", "4", "5"]}
MOBILE = {"preprocessing": {"layout": "NCHW", "size": [96, 96], "color": "rgb", "resize": "shorter_side_crop",
                            "scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
          "dataset": "random-init"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    clf, ext = mnist_classifier_rgb(d)
    mob = mobilenet_like(d / "mobilenet_like.onnx")
    for name, card in (("rgb64.yaml", RGB64), ("mobile.yaml", MOBILE)):
        (d / name).write_text(yaml.safe_dump(card))
    return d, clf, ext, mob


@pytest.fixture(scope="module")
def calib(tmp_path_factory, data_dir):
    """60 MNIST test digits as 64x64 RGB JPEGs (a camera's images of them), in class folders."""
    d = tmp_path_factory.mktemp("calib")
    X, y = load_mnist("test", data_dir)
    for i in range(60):
        sub = d / str(int(y[i]))
        sub.mkdir(exist_ok=True)
        big = cv2.resize(X[i], (64, 64), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(sub / f"{i}.jpg"), np.repeat(big[:, :, None], 3, 2), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return d


def test_import_cuts_the_classifier_back_to_its_features(models, calib, capsys):
    d, clf, ext, _ = models
    out = d / "imported.onnx"
    assert main(["model", "import", str(clf), "--cut", "features", "--card", str(d / "rgb64.yaml"),
                 "--out", str(out)]) == 0
    assert "64 features, runs in onnxruntime" in capsys.readouterr().out
    imported, original = FrozenExtractor(out), FrozenExtractor(ext)
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["cut"] == "features" and card["dataset"] == "mnist" and card["feature_output"] == "features_flat"
    frames = [cv2.imread(str(p))[:, :, ::-1] for p in sorted(calib.rglob("*.jpg"))[:8]]
    np.testing.assert_allclose(imported.extract(frames), original.extract(frames), rtol=1e-5, atol=1e-5)
    assert imported.hash != original.hash      # another file and card: another extractor


def test_import_takes_the_output_the_card_names(models, calib, capsys):
    """A model with its logits and its embedding as outputs, the card's feature_output naming the embedding: import
    took the first output (the logits) whatever the card said, and a feature_output that is no output passed."""
    import onnx
    from onnx import TensorProto, helper

    d, clf, ext, _ = models
    two = onnx.load(str(clf))
    two.graph.output.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 64]))
    onnx.save(two, str(d / "two_outputs.onnx"))
    for output, code in (("features", 0), ("embedding", 2)):
        (d / "two.yaml").write_text(yaml.safe_dump(dict(RGB64, feature_output=output)))
        out = d / f"two_{output}.onnx"
        assert main(["model", "import", str(d / "two_outputs.onnx"), "--card", str(d / "two.yaml"),
                     "--out", str(out)]) == code
    frames = [cv2.imread(str(p))[:, :, ::-1] for p in sorted(calib.rglob("*.jpg"))[:8]]
    np.testing.assert_allclose(FrozenExtractor(d / "two_features.onnx").extract(frames),
                               FrozenExtractor(ext).extract(frames), rtol=1e-5, atol=1e-5)
    err = capsys.readouterr().err.strip()
    assert "feature_output 'embedding' is not an output of the model (outputs: logits, features)" in err, err
    assert len(err.splitlines()) == 1 and not (d / "two_embedding.onnx").exists()


def test_import_a_mobilenet_at_a_node_and_run_it_on_a_camera_frame(models, calib):
    d, _, _, mob = models
    out = d / "mobile_features.onnx"
    assert main(["model", "import", str(mob), "--cut", "gap", "--card", str(d / "mobile.yaml"),
                 "--out", str(out)]) == 0
    ex = FrozenExtractor(out)
    assert ex.input_shape == (3, 96, 96) and ex.n_features == 64
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    f = ex.extract([frame, frame[:, ::-1]])        # fixed batch of 1: run one at a time
    assert f.shape == (2, 64) and np.isfinite(f).all() and not np.allclose(f[0], f[1])
    assert main(["model", "quantize", str(out), "--calib", str(calib), "--out", str(d / "mobile_int8.onnx")]) == 0
    assert json.loads((d / "mobile_int8.json").read_text())["cosine_int8_fp32"]["mean"] > 0.98   # fixed batch: 1 at a time


@pytest.mark.parametrize("args, preprocessing, problem", [
    (["--cut", "gapp"], {}, "cut point 'gapp' is neither a node nor a tensor of the model (did you mean 'gap'"),
    (["--cut", "gap"], {"size": [64, 64]}, "the model card says input (3, 64, 64)"),
    # it printed NumPy's overflow warning, then "the cut model does not run"
    (["--cut", "gap"], {"scale": 1e38}, "(pixel × scale − mean) / std reaches 1.14e+41, beyond what float32 holds"),
    (["--cut", "gap"], {"std": [float("nan")] * 3}, "preprocessing.std.0: Input should be a finite number"),
])
def test_import_refuses_a_wrong_cut_or_card(models, capsys, args, preprocessing, problem):
    d, _, _, mob = models
    card = dict(MOBILE, preprocessing=dict(MOBILE["preprocessing"], **preprocessing))
    (d / "bad.yaml").write_text(yaml.safe_dump(card))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["model", "import", str(mob), *args, "--card", str(d / "bad.yaml"), "--out", str(d / "x.onnx")]) \
            == 2
    err = capsys.readouterr().err.strip()
    assert problem in err and len(err.splitlines()) == 1, err
    assert not (d / "x.onnx").exists()


def test_a_cards_class_names_as_a_mapping_is_refused_saying_the_form(models, capsys):
    """``class_names: {0: cup, 1: ball}`` (the form the nodes' class_names parameter takes) said only "class_names:
    Input should be a valid list"; the line now says what the card's class_names hold."""
    d, _, _, mob = models
    (d / "names.yaml").write_text(yaml.safe_dump(dict(MOBILE, class_names={0: "cup", 1: "ball"})))
    assert main(["model", "import", str(mob), "--cut", "gap", "--card", str(d / "names.yaml"), "--out",
                 str(d / "n.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("names.yaml: class_names: Input should be a valid list (class_names: the classes the "
                        "backbone was made on, by name: a list in class-id order, e.g. [cup, ball])"), err
    assert len(err.splitlines()) == 1 and not (d / "n.onnx").exists(), err


def test_import_refuses_a_card_that_is_not_text(models, capsys):
    """A binary file given as the card was a UnicodeDecodeError traceback."""
    d, clf, _, _ = models
    (d / "binary.card").write_bytes(bytes(range(256)))
    assert main(["model", "import", str(clf), "--card", str(d / "binary.card"), "--out", str(d / "b.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "binary.card: cannot read it" in err and len(err.splitlines()) == 1, err
    assert not (d / "b.onnx").exists()


def test_quantize_refuses_a_model_that_is_already_int8(models, calib, capsys):
    """It was onnxruntime's warnings, then "cannot load ONNX model … two nodes with same node name"."""
    d = models[0]
    int8 = model_path("mnist_0to5_int8")
    assert main(["model", "quantize", str(int8), "--calib", str(calib), "--out", str(d / "twice.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "mnist_0to5_int8.onnx is already quantized" in err and len(err.splitlines()) == 1, err
    assert not (d / "twice.onnx").exists()


def test_quantize_calibrates_on_a_folder_and_reports_cosine(models, calib, capsys):
    d, clf, ext, _ = models
    src = d / "imported_q.onnx"
    assert main(["model", "import", str(clf), "--cut", "features", "--card", str(d / "rgb64.yaml"),
                 "--out", str(src)]) == 0
    out = d / "imported_int8.onnx"
    assert main(["model", "quantize", str(src), "--calib", str(calib), "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    card = json.loads(out.with_suffix(".json").read_text())
    cos = card["cosine_int8_fp32"]
    assert cos["held_out_images"] == 12 and card["calibration"]["images"] == 48, card
    assert cos["mean"] > 0.99, line
    int8 = FrozenExtractor(out)
    assert int8.quantized and int8.hash != FrozenExtractor(src).hash
    frames = [cv2.imread(str(p))[:, :, ::-1] for p in sorted(calib.rglob("*.jpg"))[:20]]
    assert cosine(int8.extract(frames), FrozenExtractor(src).extract(frames)).mean() > 0.99
    print(line)
    assert main(["model", "quantize", str(src), "--calib", str(d / "nowhere"), "--out", str(d / "y.onnx")]) == 2
    assert f"image folder not found: {d / 'nowhere'}" in capsys.readouterr().err
    # all 60 images held out: onnxruntime's "No data is collected", naming no option
    assert main(["model", "quantize", str(src), "--calib", str(calib), "--held-out", "0.995",
                 "--out", str(d / "z.onnx")]) == 2
    assert "--held-out 0.995: of 60 images none is left to calibrate on" in capsys.readouterr().err


def test_quantize_and_range_give_a_users_model_a_feature_bound(models, calib, capsys):
    """A user's model had no range, so only |x| ≤ 1e6 was refused: 1e5 features poison a head.
    quantize measures both models on its images; `model range` measures any model; a changed card voids it."""
    from tinycl_nodes.core.errors import InputError
    from tinycl_nodes.core.validation import check_features
    from tinycl_nodes.model_range import MARGIN, range_path

    d, clf, _, _ = models
    src = d / "ranged.onnx"
    assert main(["model", "import", str(clf), "--cut", "features", "--card", str(d / "rgb64.yaml"),
                 "--out", str(src)]) == 0
    assert FrozenExtractor(src).feature_bound is None                 # imported: not calibrated yet
    out = d / "ranged_int8.onnx"
    assert main(["model", "quantize", str(src), "--calib", str(calib), "--out", str(out)]) == 0
    assert "feature ranges" in capsys.readouterr().out
    frames = [cv2.imread(str(p))[:, :, ::-1] for p in sorted(calib.rglob("*.jpg"))]
    for model in (src, out):
        ex = FrozenExtractor(model)
        peak = float(np.abs(ex.extract(frames)).max())                 # every calibration image, as measured
        assert ex.feature_bound == pytest.approx(MARGIN * peak, rel=1e-5)
        assert json.loads(range_path(model).read_text())["samples"] == 60
        with pytest.raises(InputError, match="beyond the extractor's range"):
            check_features(np.full(ex.n_features, 1e5, np.float32), ex.n_features, bound=ex.feature_bound)
    range_path(src).unlink()
    assert main(["model", "range", str(src), "--images", str(calib), "--max-images", "20"]) == 0
    line = capsys.readouterr().out.strip()
    assert "over 20 images" in line and "refused" in line, line
    assert FrozenExtractor(src).feature_bound is not None
    card = json.loads(src.with_suffix(".json").read_text())          # another card: another extractor, no range
    card["preprocessing"]["scale"] = 1 / 127.5
    src.with_suffix(".json").write_text(json.dumps(card))
    assert FrozenExtractor(src).feature_bound is None
    assert main(["model", "range", str(src), "--images", str(d / "nowhere")]) == 2
    assert "folder not found" in capsys.readouterr().err


def test_range_of_an_imu_model_is_measured_on_a_file_of_windows(tmp_path, data_dir, capsys):
    """An IMU model has no image preprocessing: `model range --windows` measures it on the windows its
    sensor node hands over, and refuses a file it cannot use with one line."""
    import shutil

    from tinycl_nodes.datasets import load_har
    from tinycl_nodes.model_range import MARGIN, range_path
    from tinycl_nodes.extractor import model_path

    src = tmp_path / "imu.onnx"
    shutil.copy(model_path("har_elm.onnx"), src)
    shutil.copy(model_path("har_elm").with_suffix(".json"), src.with_suffix(".json"))
    assert FrozenExtractor(src).feature_bound is None
    X = load_har(data_dir, subjects=[1]).X
    np.save(tmp_path / "w.npy", X)
    assert main(["model", "range", str(src), "--images", str(tmp_path)]) == 2
    assert "not an image model" in capsys.readouterr().err
    assert main(["model", "range", str(src), "--windows", str(tmp_path / "w.npy"), "--max-samples", "100000"]) == 0
    line = capsys.readouterr().out.strip()
    assert f"over {len(X)} windows" in line, line
    peak = float(np.abs(FrozenExtractor(src).extract(X)).max())
    assert FrozenExtractor(src).feature_bound == pytest.approx(MARGIN * peak, rel=1e-5)
    assert json.loads(range_path(src).read_text())["samples"] == len(X)
    bad = X[:20].copy()
    bad[3, 0, 0] = np.nan
    for name, arr, problem in (("short.npy", X[:5], "at least 10"), ("shape.npy", X[:, :, :40], "the model takes"),
                               ("nan.npy", bad, "NaN"), ("text.npy", np.array(["a"] * 20), "not numbers"),
                               # finite windows whose features overflow: "abs_max": Infinity was written, exit 0
                               ("huge.npy", np.full_like(X[:20], 1e38), "peak at inf")):
        np.save(tmp_path / name, arr)
        assert main(["model", "range", str(src), "--windows", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip()
        assert problem in err and len(err.splitlines()) == 1, err
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    assert main(["model", "range", str(src), "--windows", str(tmp_path / "junk.npy")]) == 2
    assert "not a readable .npy" in capsys.readouterr().err


def test_an_existing_model_is_replaced_only_when_asked_and_only_by_one_that_works(models, calib, capsys):
    """`--out` over a model that nodes use changes its extractor hash: their heads are then refused. It used to be
    replaced silently, and a replacement that failed its check deleted the model that was there."""
    from tinycl_nodes.model_prior import prior_path
    from tinycl_nodes.model_range import range_path

    d, clf, _, mob = models
    out, int8 = d / "in_use.onnx", d / "in_use_int8.onnx"
    base = ["model", "import", str(clf), "--cut", "features", "--card", str(d / "rgb64.yaml"), "--out", str(out)]
    assert main(base) == 0
    assert main(["model", "quantize", str(out), "--calib", str(calib), "--out", str(int8)]) == 0
    capsys.readouterr()
    kept = {p: p.read_bytes() for p in (out, out.with_suffix(".json"), range_path(out), int8, int8.with_suffix(".json"))}

    assert main(base) == 2
    assert main(["model", "quantize", str(out), "--calib", str(calib), "--out", str(int8)]) == 2
    errs = capsys.readouterr().err.strip().splitlines()
    assert len(errs) == 2 and all("exists" in e and "--overwrite" in e for e in errs), errs

    (d / "broken.yaml").write_text(yaml.safe_dump(dict(RGB64, preprocessing=dict(RGB64["preprocessing"], scale=1e36))))
    assert main([*base[:5], "--card", str(d / "broken.yaml"), "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert "the cut model does not run" in err and len(err.splitlines()) == 1, err
    assert {p: p.read_bytes() for p in kept} == kept                  # the model in use, its card and range: as they were
    assert not [p for p in d.iterdir() if p.name.startswith(".tinycl-")]

    prior_path(out).write_bytes(b"statistics of the model replaced")
    assert main(["model", "import", str(mob), "--cut", "gap", "--card", str(d / "mobile.yaml"), "--out", str(out),
                 "--overwrite"]) == 0
    assert FrozenExtractor(out).input_shape == (3, 96, 96)
    assert not range_path(out).exists() and not prior_path(out).exists()   # they described the model replaced
    assert main(["model", "quantize", str(out), "--calib", str(calib), "--out", str(int8), "--overwrite"]) == 0
    assert FrozenExtractor(int8).quantized and int8.read_bytes() != kept[int8]
    assert json.loads(int8.with_suffix(".json").read_text())["quantized_from"] == out.name
    assert range_path(out).exists() and range_path(int8).exists()


def test_cosine_does_not_depend_on_the_features_scale():
    """A randomly initialised torchvision MobileNetV3's logits are about 1e-10: its int8 version was reported as
    'cosine mean 0.0000' against fp32 when the two agreed (2026-12-04)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 64)).astype(np.float32)
    b = a + 0.1 * rng.normal(size=a.shape).astype(np.float32)
    want = cosine(a, b)
    assert 0.9 < want.min() < 1.0
    for scale in (1e-12, 1e-6, 1e6):
        np.testing.assert_allclose(cosine(a * scale, b * scale), want, rtol=1e-5)
    np.testing.assert_allclose(cosine(a, -a), -1.0, rtol=1e-6)
    assert np.all(cosine(np.zeros((2, 8)), np.ones((2, 8))) == 0.0)


def test_a_shipped_model_by_name_and_a_cut_too_wide_for_the_covariance_heads(tmp_path, capsys):
    """`tinycl model layers/import mnist_0to5_fp32` said "model not found" (a path only, unlike every node's `model`
    parameter); a cut before the pooling imported 3,136 features without a word, and the graph then stalled."""
    from tinycl_nodes.extractor import MODELS_DIR

    assert main(["model", "layers", "mnist_0to5_fp32"]) == 0
    assert "/features/features.7/MaxPool" in capsys.readouterr().out
    assert main(["model", "import", "mnist_0to5_fp32", "--cut", "/features/features.7/MaxPool", "--card",
                 str(MODELS_DIR / "mnist_0to5.json"), "--out", str(tmp_path / "wide.onnx")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "3136 features" in out and "warning: tinycl's clusterer and streaming-LDA head: 3136 features, at most " \
        "2048" in out, out


@pytest.mark.parametrize("content, words", [
    (None, "no imu.range.json"),
    (b"\x00\xff garbage", "imu.range.json cannot be read"),
    (b"[" * 100_000 + b"]" * 100_000, "imu.range.json cannot be read (RecursionError"),   # was a traceback
    (b"[1, 2]", "imu.range.json is not a JSON object"),
    (b'{"extractor_hash": "other", "abs_max": 1.0}', "measured for another model or card"),
    (b'{"extractor_hash": "HASH", "abs_max": 0}', "abs_max must be a number above 0, got 0"),     # refused every
    (b'{"extractor_hash": "HASH", "abs_max": true}', "abs_max must be a number above 0, got True"),  # feature
    (b'{"extractor_hash": "HASH", "abs_max": Infinity}', "abs_max must be a number above 0, got inf"),
])
def test_a_range_file_that_cannot_be_used_bounds_nothing_and_says_why(tmp_path, content, words):
    """A corrupt sidecar read as missing, without a word of why; a peak of 0 was taken, and the learner then refused
    every record of its journal and every sample."""
    import shutil

    from tinycl_nodes.extractor import model_path
    from tinycl_nodes.model_range import bound, missing_words, range_path

    src = tmp_path / "imu.onnx"
    shutil.copy(model_path("har_elm.onnx"), src)
    shutil.copy(model_path("har_elm").with_suffix(".json"), src.with_suffix(".json"))
    h = FrozenExtractor(src).hash
    if content is not None:
        range_path(src).write_bytes(content.replace(b"HASH", h.encode()))
    assert bound(src, h) is None and FrozenExtractor(src).feature_bound is None
    assert words in missing_words(src, h)
    range_path(src).write_text(json.dumps({"extractor_hash": h, "abs_max": 2.5}))
    assert bound(src, h) == 2.5 * 4 and missing_words(src, h) == ""


def test_a_model_path_that_is_a_folder_is_said_so_not_missing(tmp_path, monkeypatch, capsys):
    """`model layers dir.onnx` (a folder of that name here) said "model not found: …/tinycl_nodes/models/dir.onnx"."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.onnx").mkdir()
    assert main(["model", "layers", "x.onnx"]) == 2
    assert capsys.readouterr().err.strip() == "error: model x.onnx is not a file"
    from tinycl_nodes.extractor import ExtractorError, model_path

    with pytest.raises(ExtractorError, match="extractor model x.onnx is not a file"):
        FrozenExtractor(model_path("x"))


def _small_convnet(path, *, opset: int = 17, input_type: int = 1, label_first: bool = False,
                   external: bool = False) -> None:
    """A user's model as onnx.helper writes it: conv, ReLU, global pooling to 8 features for 3×64×64 input (an input
    of another type is cast first; ``label_first``: an int64 argmax is the first output, the features the second)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, x = [], "x"
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT, name="cast"))
        x = "xf"
    nodes += [helper.make_node("Conv", [x, "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv"),
              helper.make_node("Relu", ["c"], ["r"], name="relu"),
              helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
              helper.make_node("Flatten", ["g"], ["features"], axis=1, name="flatten")]
    outputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 8])]
    if label_first:
        nodes.append(helper.make_node("ArgMax", ["features"], ["label"], axis=1, keepdims=0, name="argmax"))
        outputs.insert(0, helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]))
    weights = [numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "w"),
               numpy_helper.from_array(np.zeros(8, np.float32), "b")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", input_type, ["N", 3, 64, 64])],
                              outputs, weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path), save_as_external_data=external, location=f"{path.name}.data", size_threshold=0)


def test_a_model_of_opset_11_is_quantized_at_opset_13(models, calib, capsys, tmp_path):
    """int8 per-channel weights need opset 13's DequantizeLinear: a model exported at opset 11 was quantized as it
    was, and the int8 model it wrote could not be loaded ("Unrecognized attribute: axis"), the error naming a deleted
    temporary file."""
    _small_convnet(tmp_path / "op11.onnx", opset=11)
    src, out = tmp_path / "op11_fp32.onnx", tmp_path / "op11_int8.onnx"
    assert main(["model", "import", str(tmp_path / "op11.onnx"), "--card", str(models[0] / "rgb64.yaml"),
                 "--out", str(src)]) == 0
    assert main(["model", "quantize", str(src), "--calib", str(calib), "--out", str(out)]) == 0, \
        capsys.readouterr().err
    int8 = FrozenExtractor(out)
    assert int8.quantized and int8.n_features == 8
    frames = [cv2.imread(str(p))[:, :, ::-1] for p in sorted(calib.rglob("*.jpg"))[:10]]
    assert cosine(int8.extract(frames), FrozenExtractor(src).extract(frames)).mean() > 0.99


@pytest.mark.parametrize("kind, words", [
    ("uint8 input", "input 'x' is tensor(uint8); tinycl feeds tensor(float)"),
    ("float16 input", "input 'x' is tensor(float16); tinycl feeds tensor(float)"),
    ("label first", "output 'label' is tensor(int64), not float32 features: name a float output (features)"),
    ("external data", "its weights are in a separate file (ONNX external data): `tinycl model import "),
])
def test_a_model_the_extractor_cannot_use_is_refused_in_one_line(tmp_path, kind, words):
    """Each was taken: an integer or float16 input made every frame fail in onnxruntime (one error per frame, the
    node's graph fed nothing); an int64 class label as the first output was read as one feature; weights kept beside
    the model (external data) failed to load with onnxruntime's "escapes working directory", and the extractor's hash
    would not have covered them."""
    from onnx import TensorProto

    from tinycl_nodes.extractor import ExtractorError

    path = tmp_path / "m.onnx"
    _small_convnet(path, input_type={"uint8 input": TensorProto.UINT8, "float16 input": TensorProto.FLOAT16}.get(
        kind, TensorProto.FLOAT), label_first=kind == "label first", external=kind == "external data")
    with pytest.raises(ExtractorError) as err:
        FrozenExtractor(path)
    assert words in str(err.value) and "\n" not in str(err.value), err.value


def test_import_embeds_a_models_external_weights(models, tmp_path):
    """What the external-data refusal tells the user to run: the imported model is one self-contained file."""
    _small_convnet(tmp_path / "ext.onnx", external=True)
    out = tmp_path / "own.onnx"
    assert main(["model", "import", str(tmp_path / "ext.onnx"), "--card", str(models[0] / "rgb64.yaml"),
                 "--out", str(out)]) == 0
    (tmp_path / "ext.onnx.data").unlink()
    assert FrozenExtractor(out).n_features == 8


def test_layers_lists_nodes_without_names_by_their_output(capsys):
    """The shipped ELMs name no node: `tinycl model layers har_elm` listed "0 nodes", and a wrong cut's hint named
    none, though a cut at an output tensor works."""
    assert main(["model", "layers", "har_elm"]) == 0
    out = capsys.readouterr().out
    assert "har_elm: 12 nodes" in out and "GlobalAveragePool" in out and " gap " in out, out


def test_an_empty_model_file_is_said_to_be_empty(tmp_path, capsys):
    """A zero-byte .onnx (a copy cut short) was "does not have an ir_version set properly"."""
    from tinycl_nodes.extractor import ExtractorError

    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ExtractorError, match=r"empty\.onnx is empty \(0 bytes\)"):
        FrozenExtractor(empty)
    assert main(["model", "layers", str(empty)]) == 2
    assert f"{empty} is empty (0 bytes)" in capsys.readouterr().err
