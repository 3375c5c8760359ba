"""Poisoned features: values far outside the extractor's calibrated range are refused in one line
before they reach a head, and every head's update is all-or-nothing."""

from __future__ import annotations

import numpy as np
import pytest

from tinycl_nodes.core.errors import InputError
from tinycl_nodes.core.slda import StreamingLDA
from tinycl_nodes.core.validation import check_features
from tinycl_nodes.extractor import MODELS_DIR, FrozenExtractor, model_path
from tinycl_nodes.presets import HEADS, LATENT


def blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (4, 16))
    y = rng.integers(0, 4, n)
    return (centers[y] + rng.normal(0, 1, (n, 16))).astype(np.float32), y


def same_state(a: dict, b: dict) -> bool:
    return (a["meta"] == b["meta"] and a["arrays"].keys() == b["arrays"].keys()
            and all(np.array_equal(a["arrays"][k], b["arrays"][k]) for k in a["arrays"]))


@pytest.mark.parametrize("value", [1e20, 1e10, -1e7])
def test_huge_features_never_reach_a_head(value):
    """Today one 1e20 sample made SLDA singular for ever (LinAlgError on every later sample)."""
    X, y = blobs(300)
    head = StreamingLDA(16, refresh_every=25)
    for x, t in zip(X[:200], y[:200]):
        head.learn_one(x, int(t))
    before = head.state_dict()
    with pytest.raises(InputError, match="range|at most"):
        head.learn_one(np.full(16, value, np.float32), 1)
    assert same_state(head.state_dict(), before)
    for x, t in zip(X[200:], y[200:]):      # learning goes on
        head.learn_one(x, int(t))
    assert np.mean([head.predict_one(x) == t for x, t in zip(X, y)]) > 0.9


def test_extractor_range_is_calibrated_and_checked():
    ex = FrozenExtractor(model_path("mnist_0to5_fp32"))
    assert ex.feature_bound is not None and 5 < ex.feature_bound < 100
    ok = np.full(ex.n_features, ex.feature_bound / 2, np.float32)
    assert check_features(ok, ex.n_features, bound=ex.feature_bound) is not None
    with pytest.raises(InputError, match="beyond the extractor's range"):
        check_features(ok * 3, ex.n_features, bound=ex.feature_bound)


@pytest.mark.parametrize("path", sorted(MODELS_DIR.glob("*.onnx")), ids=lambda p: p.stem)
def test_every_shipped_model_has_its_range_calibrated(path):
    """A model retrained or re-carded without `python -m tinycl_nodes.training.feature_range` would lose
    its bound silently (the trainsplit models had none); fp32 image models also bound their latents."""
    ex = FrozenExtractor(path)
    assert ex.feature_bound is not None, f"{path.name}: no calibrated range for its hash"
    if path.stem.endswith("_fp32"):
        assert ex.latent_bound(LATENT["cut"]) is not None, f"{path.name}: no calibrated latent range"
        assert ex.latent_bound("/some/other/layer") is None


def test_slda_update_is_all_or_nothing_when_the_solve_fails(monkeypatch):
    X, y = blobs(160)
    head, ref = StreamingLDA(16, refresh_every=25), StreamingLDA(16, refresh_every=25)
    for x, t in zip(X[:90], y[:90]):
        head.learn_one(x, int(t))
        ref.learn_one(x, int(t))

    def singular(*a, **k):
        raise np.linalg.LinAlgError("Singular matrix")

    failed = None
    for i in range(90, 120):                          # the next refresh's solve fails
        before = head.state_dict()
        ref.state_dict()                              # (a snapshot flushes pending sums: the same in both)
        monkeypatch.setattr(np.linalg, "solve", singular)
        try:
            head.learn_one(X[i], int(y[i]))
        except InputError as exc:
            failed = i
            assert "head unchanged" in str(exc)
            assert same_state(head.state_dict(), before)
            break
        finally:
            monkeypatch.undo()
        ref.learn_one(X[i], int(y[i]))
    assert failed is not None, "no refresh within 30 samples"
    for x, t in zip(X[failed:], y[failed:]):          # afterwards it learns exactly as if nothing happened
        head.learn_one(x, int(t))
        ref.learn_one(x, int(t))
    assert same_state(head.state_dict(), ref.state_dict())


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_a_failed_new_class_leaves_every_head_kind_unchanged(kind, monkeypatch):
    X, y = blobs(60)
    head = HEADS[kind](16, "")
    for x, t in zip(X, y):
        head.learn_one(x, int(t))
    before = head.state_dict()
    real = head._learn

    def fails_after_changing(x, idx):
        real(x, idx)
        raise FloatingPointError("overflow")

    monkeypatch.setattr(head, "_learn", fails_after_changing)
    with pytest.raises(InputError, match="head unchanged"):
        head.learn_one(X[0], 7)
    assert same_state(head.state_dict(), before) and 7 not in head.classes
