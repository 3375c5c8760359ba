"""The TinyNDC experiment on real MNIST, one seed: the issue's accuracy targets as regression guards.

Full 5-seed figures come from `make demo` (docs/results.md); one seed here keeps CI fast while
still failing if a change to the core, the model or the protocol costs accuracy.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from tinycl_nodes.core.errors import InputError
from tinycl_nodes.experiments import tinyndc as exp


@pytest.fixture(scope="module")
def feats(fp32_extractor, data_dir):
    return exp.extract_features(fp32_extractor, data_dir)


@pytest.fixture(scope="module")
def result(feats):
    return exp.run_experiment(feats, seeds=1, sweep=(1,), heads={
        "latent_replay_fp32": exp.HEADS["latent_replay_fp32"],
        "latent_replay_int8": exp.HEADS["latent_replay_int8"]})


def test_protocol_split_follows_the_paper(feats):
    init, stream, held = exp.split(0, feats, exp.Protocol(), 10)
    assert init.size == 100 and np.bincount(feats.train_y[init]).tolist() == [10] * 10
    assert stream.size == 8000 and held.size == 2000
    assert np.intersect1d(stream, held).size == 0


@pytest.mark.parametrize("pool, asked, said", [
    ((10000, 8000, 1000), (8000, 1000), None),                    # the paper's protocol: as asked
    ((80, 79, 10), (79, 10), None),
    ((80, 8000, 1000), (64, 64), "the stream is 64 of them, not 8000, and 16 are held out"),   # none was held out
    ((80, 80, 10), (64, 10), "the stream is 64 of them, not 80"),
    ((80, 50, 1000), (50, 50), "scores on all 50 predictions of the stream (--score-last 1000)"),
])
def test_the_stream_leaves_images_held_out_and_the_window_is_within_it(pool, asked, said):
    *stream_and_window, note = exp.fit_stream(*pool, "my_digits")
    assert tuple(stream_and_window) == asked
    assert note == said if said is None else said in note and note.count("\n") == 0


def test_a_pool_with_nothing_to_hold_out_is_refused():
    with pytest.raises(InputError, match="my_digits has 1 image.*at least 2 are needed"):
        exp.fit_stream(1, 8000, 1000, "my_digits")


def test_results_json_has_null_for_a_score_that_is_not_finite(tmp_path):
    """A NaN forgetting was written as a bare NaN, which is not JSON."""
    exp.write_json({"forgetting_old": {"mean": float("nan"), "std": np.float64("inf")}, "curve": [50.0, float("nan")]},
                   tmp_path / "r.json")
    text = (tmp_path / "r.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in {text}")) == \
        {"forgetting_old": {"mean": None, "std": None}, "curve": [50.0, None]}


def test_json_shape(result):
    for name in ("supervised", "clustering", "tinyndc", "tinycl"):
        for score in ("accuracy", "precision", "recall", "f1"):
            cell = result["methods"][name][score]
            assert set(cell) == {"mean", "std"} and 0 <= cell["mean"] <= 100
    assert set(result["sweep"]) == {"1"}
    assert len(result["curves"]["tinycl"]) == 8000
    json.dumps(result)  # serialisable as written


def test_targets_one_seed(result):
    m = result["methods"]
    acc = {k: v["accuracy"]["mean"] for k, v in m.items()}
    assert acc["tinyndc"] >= 92.3, acc            # the paper's TinyNDC
    assert acc["supervised"] >= 94.3, acc         # the paper's supervised CML
    assert acc["tinycl"] >= 95.0, acc             # tinycl, 10 labels per class
    assert acc["tinycl"] >= acc["supervised"] - 1.5, acc
    assert acc["tinycl"] > acc["clustering"], acc
    assert result["sweep"]["1"]["tinycl"]["mean"] >= 85.0, result["sweep"]
    assert m["tinycl"]["labels_used"]["mean"] == 100
    assert m["tinycl"]["forgetting_old"]["mean"] < 2.0


def test_quantized_latent_replay(result):
    q = result["qlr"]
    assert q["features_ratio"] >= 4.0
    assert q["accuracy_loss"] <= 0.3, q


def test_cli_bad_data_path_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tinycl_nodes.cli", "experiment", "tinyndc",
                           "--data", str(tmp_path / "missing"), "--seeds", "1", "--sweep", ""],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: MNIST folder not found")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_cli_bad_model_is_one_line(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x00garbage")
    proc = subprocess.run([sys.executable, "-m", "tinycl_nodes.cli", "experiment", "tinyndc",
                           "--model", str(bad), "--seeds", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "cannot load ONNX model" in proc.stderr
    assert "Traceback" not in proc.stderr
