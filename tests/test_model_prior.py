"""The class statistics shipped beside the frozen models (model_prior.py): each is what its model was trained on,
of its own features; a missing one is None, a corrupt or foreign one one error naming the file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tinycl_nodes.core.errors import TinyclError
from tinycl_nodes.extractor import MODELS_DIR, FrozenExtractor
from tinycl_nodes.cli import main
from tinycl_nodes.model_prior import load_prior, prior_path

SHIPPED = sorted(p.with_suffix(".onnx").name for p in MODELS_DIR.glob("*.classes"))


def test_the_fp32_and_int8_models_ship_their_class_statistics():
    assert {f"{stem}_{kind}.onnx" for stem in ("mnist_0to5", "mnist_0to5_trainsplit", "fashion_mnist_0to5_trainsplit")
            for kind in ("fp32", "int8")} <= set(SHIPPED), SHIPPED


@pytest.mark.parametrize("model", SHIPPED)
def test_a_shipped_prior_is_its_models_training_classes(model):
    ext = FrozenExtractor(MODELS_DIR / model)
    prior = load_prior(ext.path, ext.hash)
    card = json.loads((MODELS_DIR / (model.rsplit("_", 1)[0] + ".json")).read_text())
    assert sorted(prior.class_ids.tolist()) == card["train_classes"]
    if "images" in card:                            # the backbone part it was trained on, every image of it
        assert int(prior.counts.sum()) == card["images"]
    assert prior.n_features == ext.n_features and prior.extractor_hash == ext.hash
    assert np.linalg.eigvalsh(prior.shared)[0] > 0   # a within-class scatter of many samples: positive definite


def test_a_missing_corrupt_or_foreign_prior(tmp_path, data_dir, capsys):
    for f in ("mnist_0to5_trainsplit_fp32.onnx", "mnist_0to5_trainsplit.json"):
        shutil.copy(MODELS_DIR / f, tmp_path / f)
    model = tmp_path / "mnist_0to5_trainsplit_fp32.onnx"
    ext = FrozenExtractor(model)
    assert load_prior(model, ext.hash) is None      # a model without one: the labelled samples alone
    assert main(["model", "classes", str(model), "--data", str(data_dir)]) == 0   # the project's command writes it
    prior = load_prior(model, ext.hash)
    shipped = load_prior(MODELS_DIR / model.name, ext.hash)
    np.testing.assert_allclose(prior.weights, shipped.weights, rtol=1e-5, atol=1e-6)   # and reproduces the shipped
    with pytest.raises(TinyclError, match=r"model prior .*\.classes: .*extractor"):
        load_prior(model, "0" * 64)                 # the features of another extractor
    card = tmp_path / "mnist_0to5_trainsplit.json"       # a card that does not say what the model learned from
    card.write_text(json.dumps({k: v for k, v in json.loads(card.read_text()).items() if k != "train_classes"}))
    assert main(["model", "classes", str(model), "--data", str(data_dir)]) == 2
    assert "no train_classes: which images mnist_0to5_trainsplit_fp32.onnx was trained on is unknown" in \
        capsys.readouterr().err
    assert main(["model", "classes", "mnist_0to5_fp3", "--data", str(data_dir)]) == 2   # a misspelt name
    assert "extractor model not found" in (err := capsys.readouterr().err) and "did you mean 'mnist_0to5_fp32'" in err
    card.unlink()
    assert main(["model", "classes", str(model), "--data", str(data_dir)]) == 2
    assert "has no model card" in capsys.readouterr().err
    prior_path(model).write_bytes(b"PK\x03\x04 not a state")
    with pytest.raises(TinyclError, match=r"model prior .*\.classes: state: payload is not a tinycl state file"):
        load_prior(model, ext.hash)
    prior_path(model).unlink()
    prior_path(model).mkdir()                       # a folder or a symlink loop was taken for no statistics
    with pytest.raises(TinyclError, match=r"model prior .*\.classes: cannot be read \(Is a directory\)"):
        load_prior(model, ext.hash)
    prior_path(model).rmdir()
    prior_path(model).symlink_to(prior_path(model).name)
    with pytest.raises(TinyclError, match=r"model prior .*\.classes: cannot be read \(Too many levels"):
        load_prior(model, ext.hash)
