"""The learner node starts its head from the model's class statistics (model_prior.py) under the tinycl preset,
weighed by the labelled samples that come first (core/prior_worth.py), not with ``model_prior:=false``, and a corrupt
statistics file is one error line: the node runs on without it. (That the labeler's clusters and replica start from
them too, the same way, is test_graph.py's in-process equality: the in-process loop takes the prior in.)"""

from __future__ import annotations

import logging
import re
import shutil
import time

import numpy as np
import pytest

from tests.nodes.conftest import spin_until
from tests.nodes.test_bad_input import _sample
from tinycl_nodes.bus import create_bus
from tinycl_nodes.datasets import load_mnist
from tinycl_nodes.experiments.shift import shifted
from tinycl_nodes.extractor import MODELS_DIR, FrozenExtractor, model_path
from tinycl_nodes.journal import Journal
from tinycl_nodes.storage import load_states

from .conftest import node

pytestmark = pytest.mark.waits      # what make test does with it: pyproject.toml

WAITS = "the head will start from the model's class statistics, weighed by the labelled samples that come first"
STARTS = "the head starts from the model's class statistics (36017 training images of classes [0, 1, 2, 3, 4, 5]; "


def _saved_counts(state_dir) -> dict[int, int]:
    """Class id → samples of the head the learner saved when it stopped."""
    arrays = load_states(state_dir / "learner.state")["head"]["arrays"]
    return dict(zip(arrays["classes"].tolist(), arrays["counts"].tolist()))


def test_learner_starts_from_the_models_class_statistics_unless_told_not_to(domain, tmp_path):
    with node("learner", domain, f"state_dir:={tmp_path / 'a'}") as learner:
        learner.wait_for_line(WAITS)
    # no labelled sample came: nothing says the statistics do not fit, all of them are taken at the stop
    assert learner.wait_for_line(STARTS).endswith("all of them)"), learner.lines
    assert learner.proc.returncode == 0 and sum(_saved_counts(tmp_path / "a").values()) == 36017
    with node("learner", domain, f"state_dir:={tmp_path / 'b'}", "model_prior:=false") as learner:
        time.sleep(4)                                   # started and saved nothing learned yet at its stop
    assert learner.proc.returncode == 0 and _saved_counts(tmp_path / "b") == {}, learner.lines
    assert not any("class statistics" in ln for ln in learner.lines), learner.lines


def test_a_corrupt_class_statistics_file_is_one_error_line_and_the_learner_runs_on(domain, tmp_path):
    for f in ("mnist_0to5_fp32.onnx", "mnist_0to5_fp32.range.json", "mnist_0to5.json"):
        shutil.copy(MODELS_DIR / f, tmp_path / f)
    (tmp_path / "mnist_0to5_fp32.classes").write_bytes(b"\x00" * 100)
    with node("learner", domain, f"state_dir:={tmp_path / 's'}", f"model:={tmp_path / 'mnist_0to5_fp32.onnx'}") as n:
        line = n.wait_for_line("mnist_0to5_fp32.classes: state: payload is not a tinycl state file")
        assert "[ERROR]" in line and line.endswith("not used, learning starts from the labelled samples alone"), line
        time.sleep(1)
        assert n.proc.poll() is None, n.lines
    assert n.proc.returncode == 0 and _saved_counts(tmp_path / "s") == {}, n.lines   # ran on from nothing
    assert not any("Traceback" in ln for ln in n.lines), n.lines


def _labelled_start(learner_dir, domain, X: np.ndarray, y: np.ndarray, xhash: str,
                    pseudo: bool, held_all: bool = True) -> tuple[float, dict, list]:
    """Run a learner on ground-truth ``X``, ``y``, then one pseudo-label (the stream's start) or nothing (the wait
    ends after PRIOR_QUIET_S): the samples per class its log says the statistics counted as (inf: all), its saved
    counts, and the predictions it published. ``held_all``: the wait holds all of ``X``, so nothing is predicted
    before it ends."""
    bus = create_bus("tester", backend="dds", dds_config="loopback", domain=domain)
    preds: list = []
    bus.create_subscription("predictions", "Prediction", preds.append, "reliable")
    pub = bus.create_publisher("labeled", "LabeledFeatures", "reliable")
    try:
        with node("learner", domain, f"state_dir:={learner_dir}") as learner:
            learner.wait_for_line(WAITS)
            assert spin_until(bus, lambda: pub.get_subscription_count() > 0, 20), learner.lines
            stamp = time.time_ns()
            for i, (x, label) in enumerate(zip(X, y)):
                pub.publish(_sample(bus, x, int(label), xhash, stamp + i))
            assert not (held_all and spin_until(bus, lambda: preds, 1.0)), "predicted while the statistics wait"
            if pseudo:
                first = _sample(bus, X[0], int(y[0]), xhash, stamp + len(y))
                first.source, first.confidence = 0, 0.99
                pub.publish(first)
            assert spin_until(bus, lambda: len(preds) == len(y) + pseudo, 20), learner.lines[-10:]
            line = learner.wait_for_line(STARTS)
    finally:
        bus.shutdown()
    found = re.search(r"counted as (\d+) per class", line)
    return float(found.group(1)) if found else float("inf"), _saved_counts(learner_dir), preds


def test_labelled_samples_of_another_camera_weigh_the_class_statistics_down(domain, tmp_path):
    """Ten labelled MNIST training images per class: as they are, the statistics keep (nearly) their weight; with
    strokes, slant, focus and exposure changed (experiments/shift.py, the shifted validation protocol), they lie far
    from the statistics, which then count as a few samples per class, and the labelled samples lead the head."""
    X, y = load_mnist("train")
    rng = np.random.default_rng(0)      # drawn at random: MNIST's consecutive images often share a writer
    pick = np.concatenate([rng.choice(np.flatnonzero(y == c), 10, replace=False) for c in range(10)])
    ext = FrozenExtractor(model_path("mnist_0to5_fp32"))
    prior_counts = dict(zip(*np.unique(y[np.isin(y, range(6))], return_counts=True)))
    worth = {}
    # plain: ground truth alone, the wait ends when it stops coming; shifted: the stream's first pseudo-label ends it
    for name, images, pseudo in (("plain", X[pick], False), ("shifted", shifted(X[pick], 0), True)):
        worth[name], counts, preds = _labelled_start(tmp_path / name, domain, ext.extract(images), y[pick], ext.hash,
                                                     pseudo)
        cap = max(1, int(round(worth[name]))) if worth[name] < 1e9 else 10**9
        assert counts == {c: int(min(prior_counts.get(c, 0), cap)) + 10 + (pseudo and c == y[pick][0])
                          for c in range(10)}
        assert len(preds) == 100 + pseudo and {p.class_id for p in preds} <= set(range(10))
    assert worth["plain"] >= 30 and worth["shifted"] <= 10, worth


def test_a_learner_killed_while_it_holds_the_labelled_samples_takes_them_up_again(domain, tmp_path):
    """kill -9 while the learner holds the ground truth that starts the stream (its wait for the statistics): all it
    held is in its journal (no checkpoint came: one every 1,000 samples), so the restarted learner weighs the
    statistics with those samples and learns them — its head ends equal to that of a learner never killed, even one
    that keeps only 10 of them for a labeler (keep_labelled). (Before, the held samples beyond keep_labelled were lost:
    with none kept, the restarted learner took the statistics at full weight and never learned the labelled
    samples.)"""
    X, y = load_mnist("train")
    rng = np.random.default_rng(1)
    pick = np.concatenate([rng.choice(np.flatnonzero(y == c), 10, replace=False) for c in range(10)])
    ext = FrozenExtractor(model_path("mnist_0to5_fp32"))
    F, Y = ext.extract(shifted(X[pick], 1)), y[pick]          # shifted: the statistics are weighed down, visibly
    # first (a killed reader stays matched until its DDS lease ends: a publisher after it would wait for it)
    worth, counts, _ = _labelled_start(tmp_path / "never_killed", domain, F, Y, ext.hash, pseudo=False)
    state = tmp_path / "killed"
    bus = create_bus("tester", backend="dds", dds_config="loopback", domain=domain)
    pub = bus.create_publisher("labeled", "LabeledFeatures", "reliable")

    def held() -> int:
        """Samples the learner has journaled (one record each, as it holds them)."""
        return sum(1 for _ in Journal(state, "learner", logging.getLogger("test")).records(0)) if state.is_dir() else 0

    try:
        with node("learner", domain, f"state_dir:={state}", "keep_labelled:=10") as learner:
            learner.wait_for_line(WAITS)
            assert spin_until(bus, lambda: pub.get_subscription_count() > 0, 20), learner.lines
            stamp = time.time_ns()
            for i, (x, label) in enumerate(zip(F, Y)):
                pub.publish(_sample(bus, x, int(label), ext.hash, stamp + i))
            # the wait ends PRIOR_QUIET_S (2 s) after the last one came: killed well before that
            assert spin_until(bus, lambda: held() == 100, 1.5), learner.lines[-10:]
            learner.proc.kill()
            learner.proc.wait()
        assert not any(STARTS in ln for ln in learner.lines), learner.lines     # killed while it waited
        with node("learner", domain, f"state_dir:={state}", "keep_labelled:=10") as learner:
            learner.wait_for_line("and its journal (100 messages learned again)")
            line = learner.wait_for_line(STARTS)                              # PRIOR_QUIET_S later
    finally:
        bus.shutdown()
    assert re.search(r"counted as (\d+) per class", line) and f"counted as {int(worth)} per class" in line, line
    assert _saved_counts(state) == counts and sum(counts.values()) < 36017 + 100, counts
    saved = load_states(state / "learner.state")
    assert "held" not in saved and saved["labelled"]["arrays"]["y"].tolist() == Y[:10].tolist()


def test_the_wait_ends_with_the_labelled_samples_that_weigh_the_statistics(domain, tmp_path, monkeypatch):
    """1,100 ground-truth samples: the wait ends at the WEIGH_MAX-th (1,000), the saved labelled set keeps the first
    1,000 learned, the statistics are weighed by those 1,000 exactly as
    prior_worth weighs them in process (and the labeler and the in-process loop: the same first 1,000), and the other
    100 are predicted and learned at once. The first 1,000 are the model's own training images, the last 100 come
    from another camera (shift.py): weighed by all 1,100, the statistics would count for fewer samples."""
    from tinycl_nodes import presets
    from tinycl_nodes.core import prior_worth as pw
    from tinycl_nodes.model_prior import load_prior

    assert pw.WEIGH_MAX == 1000
    X, y = load_mnist("train")
    pick = np.random.default_rng(2).choice(y.size, 1100, replace=False)
    ext = FrozenExtractor(model_path("mnist_0to5_fp32"))
    F, Y = np.concatenate([ext.extract(X[pick[:1000]]), ext.extract(shifted(X[pick[1000:]], 1))]), y[pick]
    prior = load_prior(model_path("mnist_0to5_fp32"), ext.hash)
    z = presets.TINYCL["prior_z"]
    assert pw.prior_worth(prior, F, Y, z) == pw.prior_worth(prior, F[:1000], Y[:1000], z) == float("inf")
    with monkeypatch.context() as mp:
        mp.setattr(pw, "WEIGH_MAX", 10**6)
        assert pw.prior_worth(prior, F, Y, z) < 1000, "weighed by all 1,100 they must count less, or this tells nothing"
    worth, counts, preds = _labelled_start(tmp_path, domain, F, Y, ext.hash, pseudo=False, held_all=False)
    assert worth == float("inf") and len(preds) == 1100
    assert load_states(tmp_path / "learner.state")["labelled"]["arrays"]["y"].tolist() == Y[:1000].tolist()
    assert sum(counts.values()) == int(prior.counts.sum()) + 1100
