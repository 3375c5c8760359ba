"""A robot parked in front of a grey wall, then in front of one digit, with tinycl's labeler (presets.TINYCL) on the
real frozen model: what it knew is kept (the learning gate holds the frames back); the paper's loop without the gate
files every frame under some class and forgets."""

import numpy as np
import pytest

from tinycl_nodes import presets
from tinycl_nodes.core.learn_gate import LearnGate
from tinycl_nodes.datasets import load_mnist
from tinycl_nodes.experiments.tinyndc import split_indices
from tinycl_nodes.model_prior import load_prior

UNGATED = {k: v for k, v in presets.TINYCL.items() if k not in ("outlier_factor", "repeat_factor")}


@pytest.fixture(scope="module")
def parked(fp32_extractor, data_dir):
    Xtr, ytr = load_mnist("train", data_dir)
    Xte, yte = load_mnist("test", data_dir)
    init, stream, held = split_indices(0, ytr, yte, 2000, 10)
    rng = np.random.default_rng(0)
    wall = np.clip(rng.normal(128, 6, (3000, 28, 28)), 0, 255).astype(np.uint8)      # 100 s at 30 frames/s
    seven = Xte[0]                                                                      # a 7, held in view
    poster = np.clip(seven + rng.normal(0, 6, (3000, 28, 28)), 0, 255).astype(np.uint8)
    ex = fp32_extractor
    return {"init": (ex.extract(Xtr[init]), ytr[init]), "stream": ex.extract(Xte[stream]),
            "held": (ex.extract(Xte[held[:1500]]), yte[held[:1500]]), "wall": ex.extract(wall),
            "poster": ex.extract(poster), "prior": load_prior(ex.path, ex.hash), "hash": ex.hash}


def _after(parked, constants: dict, scene: str):
    system = presets.tinycl_with(**constants)(64, parked["hash"])
    system.init_from_labelled(*parked["init"], parked["prior"])
    for x in parked["stream"]:
        system.step(x)
    X, y = parked["held"]

    def accuracy() -> float:
        return 100.0 * float(np.mean([system.head.predict_one(x) == t for x, t in zip(X, y)]))

    before = accuracy()
    steps = [system.step(x) for x in parked[scene]]
    return before, accuracy(), steps, system


@pytest.mark.parametrize("scene, why, learned", [("wall", LearnGate.OUTLIER, 0), ("poster", LearnGate.REPEAT, 1)])
def test_what_a_parked_camera_sees_for_100_s_costs_nothing(parked, scene, why, learned):
    before, after, steps, system = _after(parked, presets.TINYCL, scene)
    assert sum(s.learned for s in steps) == learned
    assert system.gate.counts[why] == len(steps) - learned
    assert abs(after - before) <= 0.1, (before, after)
    # the same stream without the gate: every frame learned, and accuracy lost
    before_plain, after_plain, steps, _ = _after(parked, UNGATED, scene)
    assert before_plain == before and all(s.learned for s in steps)
    assert after_plain < before - 0.5, (before, after_plain)
