"""Model selection: the training-split protocol's parts are disjoint and the test split is never read."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from tinycl_nodes.experiments import select
from tinycl_nodes.experiments.protocol import OLD_CLASSES, forbid_test_split, load_images, train_parts


def parse(*argv: str) -> argparse.Namespace:
    """``tinycl experiment select``'s arguments, parsed as the command line parses them."""
    p = argparse.ArgumentParser(prog="select", exit_on_error=False)
    select.add_arguments(p)
    return p.parse_args(argv)


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
    args = parse("--dataset", "mnist", "--model", "mnist_0to5_fp32", "--data", str(data_dir), "--seeds", "1",
                 "--stream", "300", "--grids", "tinyol.lr", "--out", str(out))
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
    args = parse("--dataset", "mnist,fashion_mnist", "--data", str(data_dir), "--seeds", "1", "--stream", "300",
                 "--grids", "tinyol.lr", "--out", str(out))
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
        select.main(argparse.Namespace(**{**vars(args), "model": "mnist_0to5_fp32"}))


def test_the_model_prior_grid_is_scored_on_the_shifted_protocol_too(data_dir, tmp_path):
    """How far to trust the model's class statistics is chosen where the stream's images are not the model's
    (experiments/shift.py): the grid scores each value on the plain and the shifted protocol, and ``--rows`` re-scores
    only the values asked for."""
    out = tmp_path / "select.json"
    args = parse("--dataset", "mnist", "--data", str(data_dir), "--seeds", "1", "--stream", "300",
                 "--grids", "tinycl.model_prior", "--rows", "1,2", "--out", str(out))
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
        select.main(argparse.Namespace(**{**vars(args), "rows": (0, 9)}))


@pytest.mark.parametrize("option, value, words", [("--grids", "tinyol.lrr", ["unknown 'tinyol.lrr'", "tinyol.lr"]),
                                                  ("--rows", "1,x", ["whole number", "'x'"]),
                                                  ("--seeds", "0", ["at least 1"])])
def test_a_bad_value_stops_the_selection_before_it_runs_or_writes(tmp_path, capsys, option, value, words):
    """A misspelt grid name ran no grid and overwrote the record of the last real selection with an empty one."""
    from tinycl_nodes.cli import main

    out = tmp_path / "select.json"
    with pytest.raises(SystemExit) as stop:
        main(["experiment", "select", option, value, "--out", str(out)])
    assert stop.value.code == 2 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {option}" in err and all(w in err for w in words), err
