from pathlib import Path

import numpy as np
import pytest

from tinycl_nodes.core import CWRStar, ExtractorMismatchError, InputError
from tinycl_nodes.datasets import load_mnist
from tinycl_nodes.extractor import MODELS_DIR, ExtractorError, FrozenExtractor, model_path


def test_shipped_models_run_one_and_batch(fp32_extractor, int8_extractor, data_dir):
    X, _ = load_mnist("test", data_dir)
    for ex in (fp32_extractor, int8_extractor):
        assert ex.n_features == 64 and ex.input_shape == (1, 28, 28)
        batch = ex.extract(X[:16])
        assert batch.shape == (16, 64) and batch.dtype == np.float32
        np.testing.assert_allclose(ex.extract_one(X[3]), batch[3], rtol=1e-4, atol=1e-4)
        assert np.isfinite(batch).all()


def test_int8_features_track_fp32(fp32_extractor, int8_extractor, data_dir):
    X, _ = load_mnist("test", data_dir)
    a, b = fp32_extractor.extract(X[:200]), int8_extractor.extract(X[:200])
    cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.mean() > 0.97, cos.mean()


def test_hash_covers_model_and_card(fp32_extractor, int8_extractor, tmp_path):
    import json

    copy = tmp_path / "copy.onnx"
    copy.write_bytes(model_path("mnist_0to5_fp32").read_bytes())
    no_card = FrozenExtractor(copy).hash
    card = json.loads((model_path("mnist_0to5_fp32").parent / "mnist_0to5.json").read_text())
    (tmp_path / "copy.json").write_text(json.dumps(card, indent=3))     # other whitespace: same card
    assert FrozenExtractor(copy).hash == fp32_extractor.hash != no_card
    card["preprocessing"]["resize"] = "shorter_side_crop"               # fed another way: another extractor
    (tmp_path / "copy.json").write_text(json.dumps(card))
    assert FrozenExtractor(copy).hash not in (fp32_extractor.hash, no_card)
    assert fp32_extractor.hash != int8_extractor.hash and len(fp32_extractor.hash) == 64


def test_head_from_other_extractor_is_refused(fp32_extractor, int8_extractor):
    head = CWRStar(64, extractor_hash=int8_extractor.hash)
    with pytest.raises(ExtractorMismatchError, match="extractor"):
        head.check_extractor(fp32_extractor.hash)
    other = CWRStar(64, extractor_hash=fp32_extractor.hash)
    other.learn_one(np.ones(64, np.float32), 1)
    with pytest.raises(ExtractorMismatchError):
        head.load_state_dict(other.state_dict())


def test_corrupt_and_missing_models(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(ExtractorError, match="cannot load ONNX model"):
        FrozenExtractor(bad)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(model_path("mnist_0to5_fp32").read_bytes()[:2000])
    with pytest.raises(ExtractorError, match="truncated.onnx"):
        FrozenExtractor(truncated)
    with pytest.raises(ExtractorError, match="not found"):
        FrozenExtractor(tmp_path / "nope.onnx")


def test_a_model_named_without_its_suffix_is_found_where_it_was_written(tmp_path, monkeypatch):
    """README: `tinycl model quantize … --out my_backbone_int8.onnx`, then `-p model:=my_backbone_int8`; the bare
    name was looked up among the shipped models only ("extractor model not found: …/models/my_backbone_int8.onnx")."""
    import shutil

    shipped = model_path("mnist_0to5_fp32")
    shutil.copy(shipped, tmp_path / "my_backbone_int8.onnx")
    shutil.copy(shipped.with_name("mnist_0to5.json"), tmp_path / "my_backbone_int8.json")
    monkeypatch.chdir(tmp_path)
    assert model_path("my_backbone_int8") == model_path("my_backbone_int8.onnx") == Path("my_backbone_int8.onnx")
    assert FrozenExtractor(model_path("my_backbone_int8")).n_features == 64
    assert model_path("mnist_0to5_fp32") == shipped           # not here: the package's
    assert model_path("sub/none.onnx") == Path("sub/none.onnx")   # a path is where it says, even when missing
    with pytest.raises(ExtractorError, match="not found") as missing:
        FrozenExtractor(model_path("my_backbone_fp16"))
    # where it was looked for, both places, and what ships (it named only …/models/my_backbone_fp16.onnx)
    assert str(missing.value) == (
        f"extractor model not found: my_backbone_fp16.onnx is neither in the working directory ({tmp_path}) nor a "
        f"shipped model ({', '.join(sorted(m.stem for m in MODELS_DIR.glob('*.onnx')))}): give the .onnx file's path")
    with pytest.raises(ExtractorError, match=r"mnist_0to5_fp3\.onnx is neither .* shipped model \(did you mean "
                                             r"'mnist_0to5_fp32'\?\): give"):
        FrozenExtractor(model_path("mnist_0to5_fp3"))


def test_bad_input_shapes(fp32_extractor):
    with pytest.raises(InputError, match="784"):
        fp32_extractor.extract_one(np.zeros((27, 28), np.float32))
    with pytest.raises(InputError, match="NaN"):
        fp32_extractor.extract_one(np.full((28, 28), np.nan, np.float32))
    assert fp32_extractor.extract(np.zeros((0, 28, 28), np.uint8)).shape == (0, 64)


def test_int8_runs_as_defined_unless_fast_is_asked(data_dir):
    X, _ = load_mnist("test", data_dir)
    fp32 = FrozenExtractor(model_path("mnist_0to5_fp32")).extract(X[:100])
    exact = FrozenExtractor(model_path("mnist_0to5_int8"))
    fast = FrozenExtractor(model_path("mnist_0to5_int8"), int8_fast=True)
    assert exact.quantized and not FrozenExtractor(model_path("mnist_0to5_fp32")).quantized
    cos = lambda a, b: np.mean(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))  # noqa: E731
    assert cos(exact.extract(X[:100]), fp32) > 0.999
    assert cos(fast.extract(X[:100]), fp32) > 0.95  # fused kernels: close, machine-dependent


def test_card_that_does_not_match_the_model_is_one_line(tmp_path):
    import json

    from tinycl_nodes.model_card import CardError

    copy = tmp_path / "m.onnx"
    copy.write_bytes(model_path("mnist_0to5_fp32").read_bytes())
    card = json.loads((model_path("mnist_0to5_fp32").parent / "mnist_0to5.json").read_text())
    card["preprocessing"]["color"] = "rgb"
    (tmp_path / "m.json").write_text(json.dumps(card))
    with pytest.raises(CardError, match=r"card says input \(3, 28, 28\).*takes \(1, 28, 28\)") as err:
        FrozenExtractor(copy)
    assert "\n" not in str(err.value)
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(CardError, match="cannot read it as JSON"):
        FrozenExtractor(copy)


def test_latent_cut_gives_the_lower_models_activations_from_the_same_pass(fp32_extractor, data_dir, tmp_path):
    """latent_head's extractor: one forward pass gives the features and the activations at the cut,
    equal to the model split there (export/latent_onnx.py) and to the plain extractor's features."""
    from tinycl_nodes.export.latent_onnx import split_model
    from tinycl_nodes.model_tools import ModelToolError
    from tinycl_nodes.presets import LATENT

    both = FrozenExtractor(model_path("mnist_0to5_fp32"), latent_cut=LATENT["cut"])
    lower = FrozenExtractor(split_model(model_path("mnist_0to5_fp32"), LATENT["cut"], tmp_path).lower_path)
    X, _ = load_mnist("test", data_dir)
    for img in X[:5]:
        feats, latent = both.extract_one_with_latent(img)
        assert latent.shape == (1152,) and np.array_equal(latent, lower.extract_one(img))
        assert np.array_equal(feats, fp32_extractor.extract_one(img))
    assert both.hash == fp32_extractor.hash
    with pytest.raises(ModelToolError, match="cut point 'nope'"):
        FrozenExtractor(model_path("mnist_0to5_fp32"), latent_cut="nope")
    with pytest.raises(ExtractorError, match="without a latent cut"):
        fp32_extractor.extract_one_with_latent(X[0])


def test_a_saved_head_of_another_extractor_names_both_hashes_the_right_way_round():
    """Restarted with another model:=, the learner said 'head was trained on extractor <the new model>,
    features come from <the one the state was learned on>': the two hashes swapped."""
    saved = CWRStar(64, extractor_hash="a" * 64)
    saved.learn_one(np.ones(64, np.float32), 1)
    now = CWRStar(64, extractor_hash="b" * 64)
    with pytest.raises(ExtractorMismatchError) as exc:
        now.load_state_dict(saved.state_dict())
    assert f"learned on extractor {'a' * 12}, this node's model is {'b' * 12}" in str(exc.value)


@pytest.mark.parametrize("damage", [b"", b"{\"files\": [\"mnist_0to5_fp32.onnx\"", b"[" * 100_000])
def test_a_shared_card_that_cannot_be_read_is_said_not_skipped(tmp_path, damage):
    """`mnist_0to5.json` is the card of two models (its ``files``). Empty, cut short or nested too deep, it was
    skipped: the model ran on the default card, with another hash and, for Fashion-MNIST, another preprocessing."""
    import shutil

    from tinycl_nodes.extractor import FrozenExtractor, model_path
    from tinycl_nodes.model_card import CardError

    src = tmp_path / "mnist_0to5_fp32.onnx"
    shutil.copy(model_path("mnist_0to5_fp32"), src)
    shutil.copy(model_path("mnist_0to5_fp32").with_name("mnist_0to5.json"), tmp_path / "mnist_0to5.json")
    (tmp_path / "mnist_0to5_fp32.range.json").write_bytes(b"not json")      # a range file is never a card
    shipped = FrozenExtractor(src).hash
    assert shipped == FrozenExtractor(model_path("mnist_0to5_fp32")).hash
    (tmp_path / "mnist_0to5.json").write_bytes(damage)
    with pytest.raises(CardError) as err:
        FrozenExtractor(src)
    assert "mnist_0to5_fp32.onnx has no card of its own (mnist_0to5_fp32.json) and mnist_0to5.json" in str(err.value)
    assert "range" not in str(err.value)
