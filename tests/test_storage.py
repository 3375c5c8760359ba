"""Atomic, versioned state files: written whole or not at all, a bad file never overwritten."""

import logging

import numpy as np
import pytest

from tinycl_nodes.core import CWRStar, StateError
from tinycl_nodes.storage import StateStore, load_states, save_states, write_atomic


def test_write_atomic_gives_readable_files(tmp_path):
    write_atomic(tmp_path / "a" / "head.h", b"x")
    assert (tmp_path / "a" / "head.h").read_bytes() == b"x"
    assert (tmp_path / "a" / "head.h").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["head.h"]  # no temp file left behind


def test_named_states_round_trip(tmp_path):
    head = CWRStar(4, batch_size=1)
    head.learn_one(np.ones(4, np.float32), 3)
    save_states(tmp_path / "s.state", {"head": head.state_dict()})
    back = load_states(tmp_path / "s.state")
    other = CWRStar(4, batch_size=1)
    other.load_state_dict(back["head"])
    assert other.classes == [3] and other.predict_one(np.ones(4)) == 3
    assert load_states(tmp_path / "none.state") is None


def test_bad_state_file_is_kept_aside_not_overwritten(tmp_path, caplog):
    (tmp_path / "learner.state").write_bytes(b"garbage")
    with pytest.raises(StateError):
        load_states(tmp_path / "learner.state")
    sf = StateStore(tmp_path, "learner", logging.getLogger("t"))
    with caplog.at_level(logging.ERROR):
        assert sf.load() is None
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("learner.state.bad-")]
    assert len(aside) == 1 and aside[0].read_bytes() == b"garbage"
    assert "cannot be loaded" in caplog.text
