"""The state store's journal (journal.py): what a node learned since its last checkpoint comes back after a kill, in
order, exactly once; a kill's torn last record is dropped quietly, a damaged one is said; segments go once a checkpoint
holds them."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from tests.conftest import fill
from tinycl_nodes.core import state as st
from tinycl_nodes.journal import Journal
from tinycl_nodes.storage import StateStore

LOG = logging.getLogger("test_journal")


def _store(folder, learned: list[int]) -> StateStore:
    """A store whose state is the list of numbers learned (a node in miniature)."""
    return StateStore(folder, "node", LOG, lambda: {"n": st.make_state("N", 1, {}, {}, {"learned": list(learned)})},
                      every_n=10**6, every_s=1e9, journal=True)


def _restart(folder) -> tuple[list[int], int]:
    """What a node restarted on ``folder`` holds: its checkpoint, then its journal; and how many records it replayed."""
    learned: list[int] = []
    store = _store(folder, learned)
    store.load(lambda states: learned.extend(states["n"]["meta"]["learned"]))
    replayed = store.replay(lambda payload: learned.append(int(payload)))
    return learned, replayed


def _learn(store: StateStore, learned: list[int], numbers) -> None:
    for i in numbers:
        learned.append(i)
        store.record(str(i).encode())


def _run(folder, checkpointed: range, after: range) -> StateStore:
    """A fresh node learns ``checkpointed``, checkpoints them (none if empty), learns ``after``: its store."""
    learned: list[int] = []
    store = _store(folder, learned)
    store.load()
    _learn(store, learned, checkpointed)
    if checkpointed:
        assert store.save(wait=True)
    _learn(store, learned, after)
    return store


def test_a_kill_after_a_checkpoint_loses_nothing_learned_since(tmp_path):
    _run(tmp_path, range(5), range(5, 8))
    # a kill -9: nothing more is written; a new process restarts from the files
    assert _restart(tmp_path) == ([0, 1, 2, 3, 4, 5, 6, 7], 3)
    assert _restart(tmp_path) == ([0, 1, 2, 3, 4, 5, 6, 7], 3)     # killed again before a checkpoint: the same


def test_a_kill_before_the_first_checkpoint_replays_everything(tmp_path):
    _run(tmp_path, range(0), range(4))
    assert _restart(tmp_path) == ([0, 1, 2, 3], 4)


def test_records_learned_again_are_not_learned_twice_after_the_next_checkpoint(tmp_path):
    _run(tmp_path, range(3), range(3, 6))
    again: list[int] = []                               # restarted: 3, 4, 5 replayed, then 6, 7 learned, then a kill
    store = _store(tmp_path, again)
    store.load(lambda states: again.extend(states["n"]["meta"]["learned"]))
    assert store.replay(lambda payload: again.append(int(payload))) == 3
    _learn(store, again, range(6, 8))
    assert _restart(tmp_path) == (list(range(8)), 5)
    store.save(wait=True)                               # a checkpoint holds all: its segments are gone
    assert not list(tmp_path.glob("node.journal-*"))
    assert _restart(tmp_path) == (list(range(8)), 0)


def test_a_torn_last_record_is_dropped_quietly_and_a_damaged_one_is_said(tmp_path, caplog):
    _run(tmp_path, range(0), range(3))
    segment = next(tmp_path.glob("node.journal-*"))
    whole = segment.read_bytes()
    record = len(whole) // 3                                          # 8 bytes of frame + a 1-byte payload
    for torn in (whole[:5], whole[:record - 1]):        # a kill mid-write: the frame, the payload cut
        segment.write_bytes(whole + torn)
        with caplog.at_level(logging.ERROR):
            assert _restart(tmp_path) == ([0, 1, 2], 3)
    assert not caplog.records
    damaged = bytearray(whole)
    damaged[record + 8] ^= 0xFF                                       # the second record's payload
    segment.write_bytes(bytes(damaged))
    for _ in range(2):                                                # a restart before the next checkpoint: again
        with caplog.at_level(logging.ERROR):
            learned, replayed = _restart(tmp_path)
        assert learned == [0, 2] and replayed == 2                    # the record after it is learned again
        assert len(caplog.records) == 1 and "1 damaged stretch(es) (9 bytes) skipped" in caplog.text
        kept = list(tmp_path.glob("node.journal-*.bad-*"))           # the checkpoint deletes the segment: a copy stays
        assert len(kept) == 1 and kept[0].read_bytes() == bytes(damaged) and kept[0].name in caplog.text
        caplog.clear()


@pytest.mark.parametrize("length", [2, 0, 255, 2**31])
def test_a_damaged_length_costs_its_record_alone(tmp_path, caplog, length):
    """A wrong length field (2 for 1; 0; one past the end; absurd): the rest of the segment was not replayed, and one
    pointing past the end was taken for a kill's torn record, without a word. The next sound record is found."""
    _run(tmp_path, range(0), range(4))
    segment = next(tmp_path.glob("node.journal-*"))
    whole = bytearray(segment.read_bytes())
    whole[9:13] = length.to_bytes(4, "little")                       # the second record's length (9 bytes each)
    segment.write_bytes(bytes(whole))
    with caplog.at_level(logging.ERROR):
        assert _restart(tmp_path) == ([0, 2, 3], 3)
    assert len(caplog.records) == 1 and "1 damaged stretch(es) (9 bytes) skipped to the next sound record" in \
        caplog.text


def test_zeros_in_the_middle_of_a_segment_cost_no_record(tmp_path, caplog):
    """A power cut can leave a block of zeros with sound blocks after it (written back out of order): the records after
    the zeros were not replayed."""
    _run(tmp_path, range(0), range(4))
    segment = next(tmp_path.glob("node.journal-*"))
    whole = segment.read_bytes()
    segment.write_bytes(whole[:18] + bytes(4096) + whole[18:])
    with caplog.at_level(logging.ERROR):
        assert _restart(tmp_path) == ([0, 1, 2, 3], 4)
    assert len(caplog.records) == 1 and "(4096 bytes) skipped" in caplog.text


def test_a_damaged_sector_in_a_large_segment_costs_its_records_alone(tmp_path, caplog):
    """40 KB of random bytes in the middle of a 16 MB segment of 64 KB records: the two records it touches are lost,
    the rest is replayed, in a bounded time."""
    learned: list[int] = []
    store = _store(tmp_path, learned)
    store.load()
    for i in range(256):
        store.record(str(i).encode().rjust(64 << 10))
    segment = next(tmp_path.glob("node.journal-*"))
    whole = bytearray(segment.read_bytes())
    at = 100 * ((64 << 10) + 8) + 30_000                               # inside record 100, into record 101
    whole[at:at + 40_000] = np.random.default_rng(1).bytes(40_000)
    segment.write_bytes(bytes(whole))
    started = time.monotonic()
    with caplog.at_level(logging.ERROR):
        learned, replayed = _restart(tmp_path)
    assert time.monotonic() - started < 10
    assert learned == [i for i in range(256) if i not in (100, 101)] and replayed == 254
    assert len(caplog.records) == 1 and "1 damaged stretch(es)" in caplog.text


def test_garbage_after_the_records_is_given_up_on_in_a_bounded_time(tmp_path, caplog):
    """16 MB of random bytes after the records: the search for a sound record stops after RESYNC_BYTES of looking."""
    _run(tmp_path, range(0), range(3))
    segment = next(tmp_path.glob("node.journal-*"))
    with open(segment, "ab") as fh:
        fh.write(np.random.default_rng(0).bytes(16 << 20))
    started = time.monotonic()
    with caplog.at_level(logging.ERROR):
        assert _restart(tmp_path) == ([0, 1, 2], 3)
    took = time.monotonic() - started
    assert took < 10, took
    assert len(caplog.records) == 1 and "no sound record after it: the rest of the segment" in caplog.text


def test_zeros_a_power_cut_left_end_the_replay_at_once(tmp_path, caplog):
    """Each 8 zero bytes framed an empty record whose CRC-32 (0) held: 300 MB of them replayed for minutes, deaf to
    Ctrl-C, and the line named no file."""
    _run(tmp_path, range(0), range(3))
    segment = next(tmp_path.glob("node.journal-*"))
    with open(segment, "ab") as fh:
        fh.truncate(segment.stat().st_size + (64 << 20))              # 64 MB of zeros, sparse
    started = time.monotonic()
    with caplog.at_level(logging.ERROR):
        assert _restart(tmp_path) == ([0, 1, 2], 3)
    assert time.monotonic() - started < 5
    assert len(caplog.records) == 1 and f"journal {segment.name}: a record of 0 bytes at byte 27" in caplog.text


def test_a_state_file_that_cannot_be_used_takes_its_journal_aside_with_it(tmp_path, caplog):
    _run(tmp_path, range(2), range(2, 4))
    (tmp_path / "node.state").write_bytes(b"not a state")
    with caplog.at_level(logging.ERROR):
        assert _restart(tmp_path) == ([], 0)          # no base for the records: none learned onto a fresh state
    assert not list(tmp_path.glob("node.journal-?")) and len(list(tmp_path.glob("node.journal-*.bad-*"))) == 1
    assert any("its journal (1 segments) moved aside" in r.getMessage() for r in caplog.records)


def test_a_journal_whose_state_file_was_deleted_is_moved_aside_not_learned_onto_a_fresh_start(tmp_path, caplog):
    _run(tmp_path, range(3), range(3, 5))
    (tmp_path / "node.state").unlink()                 # someone starting over: the journal's base is gone
    with caplog.at_level(logging.ERROR):
        assert _restart(tmp_path) == ([], 0)
    assert any("without its state file" in r.getMessage() for r in caplog.records)
    assert not list(tmp_path.glob("node.journal-?")) and list(tmp_path.glob("node.journal-*.orphan-*"))
    # the fresh start journals from segment 1 again: killed before its first checkpoint, it loses nothing
    learned: list[int] = []
    store = _store(tmp_path, learned)
    store.load()
    store.replay(lambda payload: None)
    _learn(store, learned, range(10, 12))
    assert _restart(tmp_path) == ([10, 11], 2)


def test_a_record_a_full_disk_cut_short_costs_that_record_alone(small_disk, caplog):
    """On a real file system that runs out of space mid-record (a tmpfs): the torn record ends its segment, and what
    is learned once there is room again comes back after a kill."""
    learned: list[int] = []
    store = _store(small_disk, learned)
    store.load()
    _learn(store, learned, range(3))
    assert store.save(wait=True)
    _learn(store, learned, range(3, 5))
    fill(small_disk)
    learned.append(99)
    with caplog.at_level(logging.ERROR):
        store.record(b" " * 6000 + b"99")              # larger than a page: part of it fits in the last one
    assert [r.getMessage() for r in caplog.records if "bytes written" in r.getMessage()], caplog.records
    (small_disk / "filler").unlink()
    _learn(store, learned, range(5, 8))
    assert _restart(small_disk) == ([0, 1, 2, 3, 4, 5, 6, 7], 5)


def test_a_journal_beside_a_checkpoint_of_a_build_without_journals_is_moved_aside_and_said(tmp_path, caplog):
    """Killed, then run by an older build (it knows no journal: its checkpoint names none), then by this one again:
    the journal, whose records that checkpoint may or may not hold, was deleted without a word."""
    _run(tmp_path, range(3), range(3, 6))
    from tinycl_nodes.storage import JOURNAL_ENTRY, load_states, save_states
    saved = load_states(tmp_path / "node.state")
    del saved[JOURNAL_ENTRY]                                      # the checkpoint an older build writes
    save_states(tmp_path / "node.state", saved)
    with caplog.at_level(logging.ERROR):
        assert _restart(tmp_path) == ([0, 1, 2], 0)
    said = [r.getMessage() for r in caplog.records if "does not know it" in r.getMessage()]
    assert len(said) == 1 and "1 segments are moved aside" in said[0], said
    assert not list(tmp_path.glob("node.journal-?")) and len(list(tmp_path.glob("node.journal-*.orphan-*"))) == 1


def test_records_the_node_refuses_to_learn_again_are_kept_aside(tmp_path, caplog):
    """A replay whose records the node now refuses (a changed parameter: a range file that bounds every feature at 0
    refused all 300 of a learner's) deleted them with their segment at the next checkpoint: they are kept aside."""
    _run(tmp_path, range(2), range(2, 5))
    learned: list[int] = []
    store = _store(tmp_path, learned)
    store.load(lambda states: learned.extend(states["n"]["meta"]["learned"]))

    def refuse(payload: bytes) -> None:
        raise ValueError(f"beyond the range: {int(payload)}")
    with caplog.at_level(logging.ERROR):
        assert store.replay(refuse) == 0
    assert "3 of 3 records could not be learned again (the first: ValueError: beyond the range: 2)" in caplog.text
    kept = list(tmp_path.glob("node.journal-*.bad-*"))
    assert len(kept) == 1 and kept[0].name in caplog.text
    assert store.save(wait=True) and not list(tmp_path.glob("node.journal-?"))     # the checkpoint deleted the segment
    aside = Journal(tmp_path, "node", LOG)._read(kept[0])                          # the copy holds every record
    assert [int(p) for p in aside] == [2, 3, 4]
