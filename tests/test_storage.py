"""Atomic, versioned state files: written whole or not at all, a bad file never overwritten."""

import logging
import os
import shutil
import subprocess
import threading

import numpy as np
import pytest

from tinycl_nodes import storage
from tinycl_nodes.core import CWRStar, StateError, TinyclError
from tinycl_nodes.core.errors import ExtractorMismatchError, OtherConfigError
from tinycl_nodes.core.state import make_state
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



def test_a_state_file_or_lock_that_is_a_symlink_loop_is_set_aside_not_a_traceback(tmp_path, caplog):
    """Path.resolve() raised RuntimeError('Symlink loop') in the store: the learner, labeler and exporter died."""
    (tmp_path / "learner.state").symlink_to("learner.state")
    (tmp_path / ".learner.state.lock").symlink_to(".learner.state.lock")
    counter = {"v": 3}
    with caplog.at_level(logging.WARNING):
        sf = _counter_store(tmp_path, counter)
        assert sf.load() is None
    assert "no lock on" in caplog.text and "cannot be loaded" in caplog.text
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("learner.state.bad-")]
    assert sf.save(wait=True) and load_states(tmp_path / "learner.state")["c"]["arrays"]["v"][0] == 3


def _counter_store(tmp_path, counter: dict) -> StateStore:
    """A store checkpointing after every sample, whose state is ``counter["v"]``."""
    return StateStore(tmp_path, "learner", logging.getLogger("t"), every_n=1,
                      snapshot=lambda: {"c": make_state("Counter", 1, {}, {"v": np.array([counter["v"]])}, {})})


def test_a_checkpoint_does_not_wait_for_the_disk(tmp_path, monkeypatch):
    """While the disk holds a checkpoint's fsync (an SD card can for hundreds of ms), the next samples' checkpoints
    return at once: the file's writer thread writes them, the newest replacing any still waiting, in order; save()
    returns once the newest is on disk. (Before, each checkpoint waited for its fsync on the node's message thread.)"""
    gate, at_disk, real_fsync = threading.Event(), threading.Event(), os.fsync
    fsyncs = []

    def held_fsync(fd: int) -> None:
        fsyncs.append(fd)
        at_disk.set()
        assert gate.wait(10), "the checkpoint waited for the disk"
        real_fsync(fd)

    monkeypatch.setattr(storage.os, "fsync", held_fsync)
    counter = {"v": 0}
    store = _counter_store(tmp_path, counter)
    for v in range(1, 21):
        counter["v"] = v
        assert store.learned()             # taken, not yet written: the gate is shut
    assert at_disk.wait(10) and not (tmp_path / "learner.state").exists()
    gate.set()
    assert store.save()                    # now, and on disk when it returns
    assert load_states(tmp_path / "learner.state")["c"]["arrays"]["v"].tolist() == [20]
    assert len(fsyncs) <= 3 * 2, fsyncs    # 21 asked for, at most 3 written (file and folder fsync each)


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_the_next_one_lands(tmp_path, caplog):
    counter = {"v": 1}
    folder = tmp_path / "s"
    store = _counter_store(folder, counter)
    assert store.save()
    shutil.rmtree(folder)
    folder.write_text("not a folder")      # the state folder replaced by a file: no write can land
    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "cannot save state" in r.getMessage()]

    with caplog.at_level(logging.ERROR):
        counter["v"] = 2
        assert store.learned()             # taken; the writer thread says why it could not write it
        for _ in range(500):
            if lines():
                break
            threading.Event().wait(0.01)
        assert len(lines()) == 1
        assert not store.save()            # waits for its write: not written
    assert len(lines()) == 2 and all(f"{folder / 'learner.state'}" in ln for ln in lines()), lines()
    folder.unlink()
    folder.mkdir()
    counter["v"] = 3
    assert store.save() and load_states(folder / "learner.state")["c"]["arrays"]["v"].tolist() == [3]


def test_a_file_that_keeps_failing_is_said_once_then_once_a_minute_and_its_recovery_once(tmp_path, caplog,
                                                                                           monkeypatch):
    counter = {"v": 1}
    folder = tmp_path / "s"
    store = _counter_store(folder, counter)
    assert store.save()
    shutil.rmtree(folder)
    folder.write_text("not a folder")      # every write fails with the same error, as on a full disk
    with caplog.at_level(logging.WARNING):
        for v in range(2, 40):             # 38 background checkpoints, each one failing
            counter["v"] = v
            store.learned()
            store.flush()
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "repeats are said once every 60 s" in errors[0], errors
        monkeypatch.setattr(storage, "REPEAT_FAILURE_S", 0.0)   # a minute later
        counter["v"] = 40
        store.learned()
        store.flush()
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 2 and "(39 failed writes in" in errors[1] and "37 not said" in errors[1], errors
        folder.unlink()
        folder.mkdir()
        counter["v"] = 41
        assert store.save()
    again = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(again) == 1 and "could save state to" in again[0], again
    assert "again, after 39 failed writes" in again[0], again
    assert load_states(folder / "learner.state")["c"]["arrays"]["v"].tolist() == [41]


def test_a_state_learned_on_another_model_stops_the_node_and_stays(tmp_path):
    """Restarted with another ``model:=``, the learner moved its state aside and started fresh: started again with the
    right model, it had lost what it learned. Now it stops with one line, and the file stays where it is."""
    from tinycl_nodes.core.ncm import StreamingNCM

    learned = StreamingNCM(4, extractor_hash="a" * 64)
    learned.learn_one(np.ones(4, np.float32), 1)
    store = StateStore(tmp_path, "learner", logging.getLogger("t"), snapshot=lambda: {"head": learned.state_dict()})
    store.save()
    saved = (tmp_path / "learner.state").read_bytes()
    other = StreamingNCM(4, extractor_hash="b" * 64)
    store = StateStore(tmp_path, "learner", logging.getLogger("t"))
    with pytest.raises(TinyclError) as err:
        store.load(lambda states: other.load_state_dict(states["head"]))
    said = str(err.value)
    assert "\n" not in said and "aaaaaaaaaaaa" in said and "bbbbbbbbbbbb" in said, said
    assert said.endswith("Nothing was moved: start the node with the model it was learned on, or learn afresh in "
                         "another state_dir"), said
    # one concept, one clause in StateStore.load: another extractor's head is a sound state of another configuration
    assert issubclass(ExtractorMismatchError, OtherConfigError)
    assert (tmp_path / "learner.state").read_bytes() == saved
    assert not [p for p in tmp_path.iterdir() if ".bad" in p.name]
    same = StreamingNCM(4, extractor_hash="a" * 64)          # the right model again: all of it back
    StateStore(tmp_path, "learner", logging.getLogger("t")).load(lambda states: same.load_state_dict(states["head"]))
    assert same.n_seen == 1


def test_a_state_dir_that_cannot_be_written_is_refused_at_start(tmp_path):
    """A read-only mount was taken: every checkpoint then failed, and the run exited 0 with nothing saved."""
    disk = tmp_path / "ro"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    assert mounted.returncode == 0, f"a read-only folder needs a tmpfs mount (make test runs as root): {mounted.stderr}"
    try:
        with pytest.raises(TinyclError, match=r"state_dir .*/ro cannot be written \(.*Read-only file system"):
            StateStore(disk, "learner", logging.getLogger("t"))
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
