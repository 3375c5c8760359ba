"""Pairing labelled samples with their latents (either order, bounded, bad latents refused)."""

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from tinycl_nodes.core.errors import ExtractorMismatchError, InputError
from tinycl_nodes.nodes.latent_join import LatentJoin


def _features(i: int, data, h: str = "abc") -> SimpleNamespace:
    stamp = SimpleNamespace(sec=1000 + i, nanosec=0)
    return SimpleNamespace(header=SimpleNamespace(stamp=stamp), sample_id=i, data=np.asarray(data, np.float32),
                           extractor_hash=h)


def _labeled(i: int) -> SimpleNamespace:
    return SimpleNamespace(features=_features(i, np.zeros(2)), label=i % 3)


def test_pairs_in_either_order_and_expires(caplog):
    used = []
    join = LatentJoin(lambda m, x: used.append((m.features.sample_id, x[0])), 4, "abc", 0.05,
                      logging.getLogger("t"), max_bytes=3 * (4 * 4 + 64))
    join.add_latent(_features(0, [0, 1, 2, 3]))
    join.add_labeled(_labeled(0))                 # latent first
    join.add_labeled(_labeled(1))                 # labelled first: waits
    assert used == [(0, 0.0)]
    join.add_latent(_features(1, [1, 1, 1, 1]))
    assert used == [(0, 0.0), (1, 1.0)]
    assert join.latent_of(_features(1, [])).tolist() == [1, 1, 1, 1]   # kept for a take-back
    for i in range(2, 6):                         # bounded: the oldest latents are forgotten
        join.add_latent(_features(i, [i] * 4))
    with pytest.raises(InputError, match="no latent kept for sample 0"):
        join.latent_of(_features(0, []))
    join.add_labeled(_labeled(9))                 # its latent never comes
    import time
    time.sleep(0.1)
    with caplog.at_level(logging.WARNING):
        join.expire()
    assert "1 labelled sample(s) dropped" in caplog.text
    join.add_latent(_features(9, [9] * 4))
    assert len(used) == 2


def test_bad_latents_are_refused():
    join = LatentJoin(lambda m, x: None, 4, "abc", 1.0, logging.getLogger("t"))
    with pytest.raises(InputError):
        join.add_latent(_features(0, [0, 1, 2]))          # wrong size
    with pytest.raises(InputError):
        join.add_latent(_features(0, [0, np.nan, 2, 3]))  # NaN
    with pytest.raises(ExtractorMismatchError):
        join.add_latent(_features(0, [0, 1, 2, 3], h="other"))


def test_latents_beyond_the_extractors_calibrated_range_are_refused():
    """One latent of 1e5 (within MAX_ABS_FEATURE) took an MNIST latent head from 98.9 % to 35 %."""
    from tinycl_nodes.datasets import load_mnist
    from tinycl_nodes.extractor import FrozenExtractor, model_path
    from tinycl_nodes.presets import LATENT

    ex = FrozenExtractor(model_path("mnist_0to5_fp32"), latent_cut=LATENT["cut"])
    bound = ex.latent_bound(LATENT["cut"])
    assert bound is not None and 8 < bound < 100
    _, latent = ex.extract_one_with_latent(load_mnist("test")[0][0])
    used = []
    join = LatentJoin(lambda m, x: used.append(x), latent.size, ex.hash, 1.0, logging.getLogger("t"), bound=bound)
    join.add_latent(_features(0, latent, h=ex.hash))
    join.add_labeled(_labeled(0))
    assert len(used) == 1 and np.array_equal(used[0], latent)
    with pytest.raises(InputError, match="beyond the extractor's range"):
        join.add_latent(_features(1, np.full(latent.size, 1e5), h=ex.hash))
    join.add_labeled(_labeled(1))                 # its poisoned latent was never kept: it waits, unused
    assert len(used) == 1


def test_switching_to_the_latent_head_over_a_state_dir_explains(tmp_path, caplog):
    """A preset's head in state_dir, then the learner starts with latent_head: one line, a fresh latent head."""
    from tinycl_nodes.bus import create_bus
    from tinycl_nodes.bus.local import LocalGraph
    from tinycl_nodes.nodes.learner import Learner, LearnerParams

    first = Learner(create_bus("learner", "/", backend="local", graph=LocalGraph()),
                    LearnerParams(state_dir=str(tmp_path), preset="tinycl"))
    first.configure()
    first.head.learn_one(np.ones(64, np.float32), 1)
    first.close()
    with caplog.at_level(logging.ERROR):
        second = Learner(create_bus("learner", "/", backend="local", graph=LocalGraph()),
                         LearnerParams(state_dir=str(tmp_path), latent_head=True))
        second.configure()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == "learner"]
    assert len(errors) == 1 and all(w in errors[0] for w in ("StreamingLDA", "LatentUpperHead", "latent_head:=false"))
    assert second.head.kind == "LatentUpperHead" and second.head.n_features == 1152 and second.head.n_seen == 0
    assert len(list(tmp_path.glob("learner.state.bad-*"))) == 1


def test_the_extractor_waits_for_a_reader_of_latents_before_its_first_image():
    """A fresh-clone run lost 180 of 300 samples: the learner restoring a large latent head subscribed to
    ``latents`` after the stream began, and the extractor (which waited for ``features`` only) sent them."""
    import threading

    from tinycl_nodes.bus import create_bus
    from tinycl_nodes.bus.local import LocalGraph
    from tinycl_nodes.nodes.extractor import Extractor, ExtractorParams

    graph = LocalGraph()
    peer = create_bus("learner", "/", backend="local", graph=graph)
    peer.create_subscription("features", "Features", lambda m: None)
    ex = Extractor(create_bus("extractor", "/", backend="local", graph=graph), ExtractorParams(latent_head=True))
    up = threading.Thread(target=ex.bring_up, daemon=True)
    up.start()
    up.join(0.5)
    assert up.is_alive() and not ex.active          # features has its reader, latents not yet
    peer.create_subscription("latents", "Features", lambda m: None)
    up.join(5)
    assert not up.is_alive() and ex.active
    ex.bus.shutdown()
