"""Model selection: the training-split protocol's parts are disjoint and the test split is never read."""

from __future__ import annotations

import json
from argparse import Namespace

import numpy as np
import pytest

from tinycl_nodes.experiments import select
from tinycl_nodes.experiments.protocol import OLD_CLASSES, forbid_test_split, load_images, train_parts


def test_training_split_parts_are_disjoint_and_balanced(data_dir):
    _, y = load_images("mnist", "train", data_dir)
    parts = train_parts(y)
    every = np.concatenate(list(parts.values()))
    assert np.unique(every).size == every.size                     # disjoint
    assert np.bincount(y[parts["labels"]]).tolist() == [100] * 10
    assert np.bincount(y[parts["stream"]]).tolist() == [1000] * 10
    assert np.bincount(y[parts["holdout"]]).tolist() == [1000] * 10
    assert set(np.unique(y[parts["backbone"]]).tolist()) == set(OLD_CLASSES)
    assert np.array_equal(train_parts(y)["stream"], parts["stream"])  # fixed: same parts every time


def test_selection_never_reads_the_test_split(mnist_splits_read, data_dir, tmp_path):
    seen = mnist_splits_read
    out = tmp_path / "select.json"
    args = Namespace(dataset="mnist", model="mnist_0to5_fp32", data=str(data_dir), seeds=1, stream=300,
                     grids="tinyol.lr", rows="", out=str(out))
    assert select.main(args) == 0
    assert seen and set(seen) == {"train"}
    result = json.loads(out.read_text())
    grid = result["grids"]["tinyol.lr"]
    assert result["protocol"]["split"] == "train"
    assert [r["value"] for r in grid["rows"]] == list(next(g for g in select.GRIDS if g.name == "tinyol.lr").values)
    assert grid["chosen"] == max(grid["rows"], key=lambda r: r["objective"])["value"]
    with forbid_test_split(), pytest.raises(AssertionError, match="test split"):
        load_images("mnist", "test", data_dir)


def test_selection_over_two_datasets_averages_their_protocols(data_dir, tmp_path):
    """presets.py holds one value per constant: chosen on MNIST's and Fashion-MNIST's validation protocols together."""
    out = tmp_path / "select.json"
    args = Namespace(dataset="mnist,fashion_mnist", model=None, data=str(data_dir), seeds=1, stream=300,
                     grids="tinyol.lr", rows="", out=str(out))
    with forbid_test_split():                 # neither dataset's test split is read
        assert select.main(args) == 0
    result = json.loads(out.read_text())
    assert result["protocol"]["model"] == "mnist_0to5_trainsplit_fp32.onnx,fashion_mnist_0to5_trainsplit_fp32.onnx"
    rows = result["grids"]["tinyol.lr"]["rows"]
    for r in rows:
        per = r["datasets"]
        assert set(per) == {"mnist", "fashion_mnist"}
        assert r["objective"] == pytest.approx((per["mnist"]["10"] + per["fashion_mnist"]["10"]) / 2, abs=1e-3)
    assert rows[0]["datasets"]["mnist"]["10"] > rows[0]["datasets"]["fashion_mnist"]["10"]   # two real, different protocols
    with pytest.raises(Exception, match="one frozen model"):
        select.main(Namespace(**{**vars(args), "model": "mnist_0to5_fp32"}))


def test_the_model_prior_grid_is_scored_on_the_shifted_protocol_too(data_dir, tmp_path):
    """How far to trust the model's class statistics is chosen where the stream's images are not the model's
    (experiments/shift.py): the grid scores each value on the plain and the shifted protocol, and ``--rows`` re-scores
    only the values asked for."""
    out = tmp_path / "select.json"
    args = Namespace(dataset="mnist", model=None, data=str(data_dir), seeds=1, stream=300,
                     grids="tinycl.model_prior", rows="1,2", out=str(out))
    with forbid_test_split():
        assert select.main(args) == 0
    rows = json.loads(out.read_text())["grids"]["tinycl.model_prior"]["rows"]
    assert [r["value"] for r in rows] == [[True, float("inf")], [True, 0.0]]
    for r in rows:
        assert set(r["datasets"]) == {"mnist", "mnist (shifted)"}
    full, weighed = rows
    # the statistics at full weight pin the head to means the shifted images do not have; weighed, they do not
    assert weighed["datasets"]["mnist (shifted)"]["10"] > full["datasets"]["mnist (shifted)"]["10"] + 10
    with pytest.raises(Exception, match="--rows"):
        select.main(Namespace(**{**vars(args), "rows": "0,9"}))
