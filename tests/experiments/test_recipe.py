"""Frozen-model recipe selection: scored on the validation protocol only, best knob values combined,
a candidate already trained is reused (its card names the same recipe)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

from tinycl_nodes.experiments import recipe
from tinycl_nodes.experiments.protocol import forbid_test_split
from tinycl_nodes.extractor import model_path


def test_scored_on_the_training_split_only(mnist_splits_read, data_dir):
    seen = mnist_splits_read
    with forbid_test_split():
        score = recipe.score_model(model_path("mnist_0to5_fp32"), "mnist", str(data_dir), seeds=1, stream=300)
    assert set(seen) == {"train"}
    assert score["objective"] == round((score["tinycl_1"]["mean"] + score["tinycl_10"]["mean"]) / 2, 3)
    assert 50 < score["slda_10"]["mean"] <= 100 and 0 <= score["tinycl_1"]["new"] <= 100


def test_combined_takes_each_knobs_best():
    rows = [{"recipe": asdict(r), "objective": o} for r, o in
            zip(recipe.RECIPE_GRID, (70, 72, 71, 69, 73, 68, 70, 74, 60, 72))]
    want = replace(recipe.BASE, epochs=12, instance_weight=1.5, augment=1.5)   # embed 128 scored below the base
    assert recipe.combined(rows) == want


def test_a_trained_candidate_is_reused(tmp_path):
    r = recipe.RECIPE_GRID[1]
    stem = recipe.recipe_name("fashion_mnist", r)
    (tmp_path / f"{stem}_fp32.onnx").write_bytes(b"model")
    (tmp_path / f"{stem}.json").write_text(json.dumps({"recipe": asdict(r)}))
    got = recipe.candidate("fashion_mnist", None, r, tmp_path, 1, print)
    assert got == tmp_path / f"{stem}_fp32.onnx" and got.read_bytes() == b"model"


def test_install_copies_the_chosen_candidate_under_the_protocols_name(tmp_path):
    import pytest

    from tinycl_nodes.core.errors import InputError

    r = recipe.RECIPE_GRID[4]
    stem, work, models = recipe.recipe_name("fashion_mnist", r), tmp_path / "work", tmp_path / "models"
    work.mkdir()
    models.mkdir()
    for kind in ("fp32", "int8"):
        (work / f"{stem}_{kind}.onnx").write_bytes(kind.encode())
    (work / f"{stem}.json").write_text(json.dumps({"recipe": asdict(r), "files": ["x", "y"]}))
    written = recipe.install("fashion_mnist", r, work, models)
    assert [p.name for p in written] == ["fashion_mnist_0to5_trainsplit_fp32.onnx", "fashion_mnist_0to5_trainsplit_int8.onnx",
                                         "fashion_mnist_0to5_trainsplit.json"]
    assert (models / "fashion_mnist_0to5_trainsplit_int8.onnx").read_bytes() == b"int8"
    assert json.loads(written[2].read_text())["files"] == [p.name for p in written[:2]]
    # the candidate's class statistics (model_prior.py) go with it, stamped with the installed model's hash
    import numpy as np

    from tinycl_nodes.extractor import extractor_hash
    from tinycl_nodes.model_prior import fit_prior, load_prior, write_prior

    src = work / f"{stem}_fp32.onnx"
    rng = np.random.default_rng(0)
    write_prior(src, fit_prior(rng.normal(size=(60, 4)).astype(np.float32), np.arange(60) % 3, extractor_hash(src)))
    written = recipe.install("fashion_mnist", r, work, models)
    dst = models / "fashion_mnist_0to5_trainsplit_fp32.onnx"
    assert written[-1] == dst.with_suffix(".classes") and extractor_hash(dst) != extractor_hash(src)
    assert load_prior(dst, extractor_hash(dst)).counts.tolist() == [20, 20, 20]
    with pytest.raises(InputError, match="not the card"):
        recipe.install("fashion_mnist", recipe.BASE, work, models)


def test_bad_rows_are_one_line(capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_:
        recipe.main(["--recipes", "1,99"])
    assert exit_.value.code == 2
    assert f"--recipes '1,99': row numbers 0–{len(recipe.RECIPE_GRID) - 1}" in capsys.readouterr().err
    assert recipe.combined([]) == recipe.BASE   # nothing scored yet: the default recipe
