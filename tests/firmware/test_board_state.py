"""The TinyNDC board app keeps what it learned across a reset (real board on QEMU, real MicroXRCEAgent).

Run 1: the board (initial labelled digits 0–8) learns the graph side's answers (a person's, with the true digit) and
a fleet global head (version 5, which names class 9 "nine"); it saves its state (the TinyNDC blobs of
``c_state.ndc_to_bytes`` + the app's record: the global head applied, the class names) to its storage after each
answer and global head, and is reset (killed) right after saving the global head. Run 2, the same board booted
again (the stream restarts at its first frame) and run to the stream's end: it restores that state — the Python side reads the same file — and
the latched global head, re-sent as the aggregator's writer does after a restart, is not applied over what it
learned since; its predictions of class 9 still carry the name "nine"; every prediction equals the host build of
the same C core loaded from the saved state and replaying the same frames and answers. Request ids carry the boot
number (``<device>-<boot>.<sample id>``; a board with empty storage numbers its boot by the agent's clock, so that an
erased board never repeats an earlier life's ids): an answer to run 1's request for a sample id that run 2 has just
asked about again (on a camera another image) is refused with one line, never learned for the new sample. A
storage file that is corrupt (the learner's blob, or the app's record) is refused with one line naming which and
kept aside (a save no longer overwrites it), and the board starts from its initial labelled samples; storage that cannot take a save (a directory at the file's path) gives one line and no leftover
``<file>.tmp``. The label request run 1 left unanswered at its reset is saved with
the state and restored, and its answer, given after the reset with run 1's id, is learned for the image it was asked
about. A record in the layout boards wrote before a class name could be as long as the graph's (32 bytes a name) is
restored with its names and saved again in today's.
"""

from __future__ import annotations

import logging
import re
import struct
import time
import zlib

import numpy as np
import pytest

from tinycl_nodes.core.names import MAX_NAME_BYTES

from .conftest import board_app, boot_alone, predicted, tool_module

N_FRAMES = 80
GLOBAL_VERSION = 5
KEEP_FROM = 10   # run 1 leaves its first label request from this sample id on unanswered until after the reset


@pytest.fixture(scope="module")
def demo():
    return tool_module("demo_board")


@pytest.fixture(scope="module")
def app(data_dir):
    return board_app("build-uros-state", N_FRAMES, 4, "0-8", 100, data_dir,
                     ("-DTINYCL_ASK_GAP=8", "-DTINYCL_ASK_BELOW=2"))


class _Reset(Exception):
    """The board is reset (QEMU killed) where the test says."""


def _boot(demo, app, data: str, log, global_at: int, reset_after_global: bool = False,
          stale_boot: int | None = None, keep: bool = False,
          late: tuple[str, int] | None = None, kept_ids: frozenset[str] = frozenset()) -> tuple[dict, object]:
    """One run of the board with the agent and the graph side answering every label request with the true digit; a
    fleet global head (version 5, class 9 named "nine") is published, latched, once the board has reached frame
    ``global_at`` (0: from the start, as a writer that outlived the board's reset). ``reset_after_global``: the
    board is killed as soon as it has saved its state after applying the global head, else the stream runs out.
    ``stale_boot``: when the board first asks for a label, the request of boot ``stale_boot`` for the same sample id
    is answered too, first and with class 0 — what a label app still showing that request from before the reset
    would send; not for a request the board kept across the reset (``kept_ids``: it is still pending, and its answer
    learned). ``keep``: the first request for a sample id from KEEP_FROM on is left unanswered (a person who has
    not answered yet). ``late``: (request id, class) answered as soon as the board is heard from — that person's
    answer, after the reset — and again each second until the board has taken it (an answer sent before the agent's
    reader was matched is lost); the board's own request for that sample id is left unanswered, so that an answer event
    for the sample id is the late answer's. Sent at once: the board asks new questions from its first frames, and a
    request that waits while RING newer ones are asked is forgotten (a slow discovery had it forgotten)."""
    from dataclasses import replace

    from tinycl_nodes.bus import create_bus
    from tinycl_nodes.interfaces.heads import to_msg

    work, elf, bd, uros = app
    model_hash = demo.model_sha(work)
    bus = create_bus("board_monitor", f"/{demo.DEVICE}/tinycl", backend="dds", dds_config="loopback")

    class Person(demo.Monitor):
        """Answers with the true digit; first, once, the earlier boot's request for the same sample id; leaves one
        request unanswered if asked to, and the board's own request for the late answer's sample id."""

        stale: str | None = None
        kept: tuple[str, int] | None = None
        late: tuple[str, int] | None = None

        def on_request(self, msg) -> None:
            sid = int(msg.features.sample_id)
            stale = f"{demo.DEVICE}-{stale_boot}.{sid}"
            if stale_boot is not None and self.stale is None and stale not in kept_ids:
                self.stale = stale   # while the board holds its own request for that id
                self.answer(self.stale, 0)
            if late is not None and sid == int(late[0].rsplit(".", 1)[1]):
                return   # the late answer is this sample's
            if keep and self.kept is None and sid >= KEEP_FROM:
                self.kept = (msg.request_id, int(self.labels[sid - 1]))
                return
            super().on_request(msg)

    mon = Person(bus, bd.labels, model_hash)
    snap = demo.trained_head(data, 4, range(10), model_hash, GLOBAL_VERSION)
    snap = replace(snap, class_names=["nine" if c == 9 else str(c) for c in snap.class_ids])
    gmsg = to_msg(snap, bus.msg("Head"), bus.msg("ClassInfo"), bus.stamp())
    qemu = demo.Qemu(elf, log)
    agent = demo.Agent(uros["AGENT"], qemu.pty, log.with_suffix(".agent.log"))
    agent.start()
    sent = False

    late_sent_at = -1.0

    def send_late(lines: list[str]) -> None:
        nonlocal late_sent_at
        heard = sum(mon.received.values()) > 0
        if late is None or not heard or time.monotonic() - late_sent_at < 1.0:
            return
        sid = late[0].rsplit(".", 1)[1]
        if any(re.match(rf"EV \d+ answer {sid} ", ln) or f"'{late[0]}'" in ln for ln in lines):
            return   # taken (or refused: the test says which)
        mon.late, late_sent_at = late, time.monotonic()
        mon.answer(*late)

    def publish_global() -> None:
        nonlocal sent
        if not sent and max(mon.predictions, default=0) >= global_at:
            mon.global_pub.publish(gmsg)
            sent = True
        lines = qemu.lines()
        send_late(lines)
        at = next((k for k, ln in enumerate(lines) if re.match(r"EV \d+ global", ln)), None)
        if reset_after_global and at is not None and any(ln.startswith("LOG state saved") for ln in lines[at:]):
            raise _Reset

    try:
        demo.spin_until_done(qemu, bus, 120, publish_global)
    except _Reset:
        pass
    finally:
        agent.stop()
        qemu.stop()
        bus.shutdown()
    assert sent, "the global head was never published"
    assert stale_boot is None or mon.stale, "the board never asked for a label"
    board = demo.parse_board_log(qemu.lines())
    board["names"], board["answered"], board["stale"] = dict(mon.names), [rid for rid, _ in mon.answered], mon.stale
    board["kept"], board["late"] = mon.kept, mon.late
    return board, snap


def test_board_keeps_what_it_learned_across_a_reset(demo, app, data_dir, tmp_path):
    from tinycl_nodes.export import c_state
    from tinycl_nodes.nodes.board import ensure_library

    work, elf, bd, uros = app
    state = demo.state_file(work)
    state.unlink(missing_ok=True)
    t0 = time.time()
    # run 1 is reset right after the board saved the global head it applied: the worst moment for its record
    first, gsnap = _boot(demo, app, str(data_dir), tmp_path / "first.log", global_at=60, reset_after_global=True,
                         keep=True)
    answers = [e for e in first["events"] if e[1] == "answer"]
    assert [e[2] for e in first["events"] if e[1] == "global"] == [GLOBAL_VERSION] and len(answers) >= 2
    assert not first["applied"], "the board was to be reset before its stream ended (APPLIED is its last line)"
    saved = [ln for ln in first["log"] if ln.startswith("state saved")]
    # at boot, once numbered by the agent's clock, after each answer and after the global head (the reset may fall
    # between an answer's line and its save)
    assert len(answers) + 2 <= len(saved) <= len(answers) + 3, first["log"]
    n_saved = int(re.match(r"state saved: (\d+) samples", saved[-1])[1])
    # empty storage: the boot is numbered by the agent's clock (Unix seconds), so that a board whose storage was
    # erased never asks with an earlier life's request ids (a label app remembers their answers)
    boot = first["boot"]
    assert boot is not None and t0 - 2 <= boot <= time.time() + 2, first["log"][:8]
    assert first["answered"] and all(rid.startswith(f"{demo.DEVICE}-{boot}.") for rid in first["answered"]), \
        first["answered"][:3]
    # the Python side reads the board's storage: the TinyNDC state, then the app's record
    blob, record = demo.read_storage(state)
    ncm, head = c_state.ndc_from_bytes(blob)
    assert head.n_seen == n_saved and 9 in head.classes and len(ncm.classes) >= 9   # 9: from the global head
    assert (record["boot"], record["global_applied"], record["global_version"]) == (boot, 1, GLOBAL_VERSION)
    assert record["names"] >= 1
    # the request left unanswered is in the record, with the features the board computed for its image
    assert first["kept"], "the board asked for no label from sample id KEEP_FROM on before its reset"
    kept_sid = int(first["kept"][0].rsplit(".", 1)[1])
    pending = {(b, sid): data for b, sid, data in record["pending"]}
    assert (boot, kept_sid) in pending, record["pending"]
    lib = ensure_library(None, True, logging.getLogger("test_board_state"))
    assert np.frombuffer(pending[boot, kept_sid], "<f4").tolist() == lib.features(bd.images[kept_sid - 1]).tolist()

    size = state.stat().st_size
    print(f"run 1: {len(answers)} answers, global head applied, {len(saved)} saves, last {saved[-1]!r}; storage "
          f"{size} B (TinyNDC state {len(blob)} B); reset")
    # run 2: the same latched global head; and an answer to run 1's request for the first sample id run 2 asks about
    second, _ = _boot(demo, app, str(data_dir), tmp_path / "second.log", global_at=0, stale_boot=boot,
                      late=first["kept"], kept_ids=frozenset(f"{demo.DEVICE}-{b}.{sid}" for b, sid in pending))
    stale = second["stale"]
    restored = [ln for ln in second["log"] if ln.startswith("state restored")]
    assert restored and restored[0].startswith(f"state restored: {n_saved} samples"), second["log"][:5]
    assert restored[0].endswith(f"{size} bytes, boot {boot}, label requests awaiting an answer: {len(pending)}"), \
        restored
    assert second["boot"] is None                                   # a saved count goes on from it
    assert any(ln.startswith(f"tinycl board {demo.DEVICE}: restored learner, {n_saved} samples learned, ")
               for ln in second["log"]), second["log"][:5]
    assert demo.read_storage(state)[1]["boot"] == boot + 1
    assert any(ln.startswith(f"label answer '{stale}': asked before the board restarted (now boot {boot + 1}), not "
                             "pending")
               for ln in second["log"]), second["log"]
    # the answer to the request run 1 kept is learned after the reset, for the image it was asked about
    assert second["late"] == first["kept"]
    assert (kept_sid, first["kept"][1]) in [(e[2], e[3]) for e in second["events"] if e[1] == "answer"], second["log"]
    assert all(rid.startswith(f"{demo.DEVICE}-{boot + 1}.") for rid in second["answered"]), second["answered"][:3]
    assert second["applied"]["global"] == 0 and not [e for e in second["events"] if e[1] == "global"]
    assert second["names"].get(9) == "nine", second["names"]     # the fleet's name survives (else "9", the id)
    print(f"run 2: {restored[0]!r}; {second['applied']['answers']} answers (run 1's request for sample {kept_sid} "
          "among them); global head not applied again")
    preds = [second["predictions"][i] for i in range(N_FRAMES)]
    assert preds == demo.host_replay(bd, second["events"], gsnap, N_FRAMES, state=blob)   # the stale answer: not learned

    # a corrupt storage: one line naming why, and the initial labelled samples
    saved_bytes = state.read_bytes()
    broken = bytearray(saved_bytes)
    broken[len(blob) // 2] ^= 0xFF
    state.write_bytes(bytes(broken))
    third = demo.parse_board_log(_boot_alone(elf, tmp_path / "corrupt.log", 20))
    assert f"state: the saved state ({len(broken)} bytes) was refused: state blob malformed (kind, version, sizes or " \
           "CRC): the learner starts afresh" in third["log"], third["log"][:5]
    assert any(ln.startswith(f"tinycl board {demo.DEVICE}: initial learner, {len(bd.init_y)} samples learned, ")
               for ln in third["log"]), third["log"][:5]
    assert [third["predictions"][i] for i in range(20)] == demo.host_replay(bd, [], gsnap, 20)
    # kept aside, not overwritten by the boot's save (what was learned may still be recovered from it)
    assert "state: the refused state is kept aside, not overwritten" in third["log"], third["log"][:5]
    assert state.with_name(state.name + ".bad").read_bytes() == bytes(broken) != state.read_bytes()
    # the app's record damaged (its CRC): said so
    broken = bytearray(saved_bytes)
    broken[-20] ^= 0xFF
    state.write_bytes(bytes(broken))
    log = demo.parse_board_log(_boot_alone(elf, tmp_path / "record.log", 1))["log"]
    assert f"state: the saved state ({len(broken)} bytes) was refused: the app's record at its end is damaged (size, " \
           "CRC or layout): the learner starts afresh" in log, log[:5]
    # the record as boards wrote it before a name could be as long as the graph's (32 bytes each): restored with its
    # names, and saved again in this layout (a board flashed with this firmware keeps what it learned)
    state.write_bytes(saved_bytes)
    blob2, record2 = demo.read_storage(state)
    assert record2["name_cap"] == MAX_NAME_BYTES + 1 and record2["class_names"].get(9) == "nine", record2
    state.write_bytes(_names_in(saved_bytes, len(blob2), 32))
    assert demo.read_storage(state) == (blob2, {**record2, "name_cap": 32})
    log = demo.parse_board_log(_boot_alone(elf, tmp_path / "names32.log", 1))["log"]
    n_seen = c_state.ndc_from_bytes(blob2)[1].n_seen
    assert any(ln.startswith(f"state restored: {n_seen} samples") for ln in log), log[:5]
    after = demo.read_storage(state)[1]
    assert (after["name_cap"], after["class_names"], after["boot"]) == (MAX_NAME_BYTES + 1, record2["class_names"],
                                                                        record2["boot"] + 1), after
    # storage that cannot take the state (a directory where the file goes): the save says the commit failed, and no
    # <file>.tmp is left behind
    state.unlink()
    state.mkdir()
    try:
        log = demo.parse_board_log(_boot_alone(elf, tmp_path / "directory.log", 1))["log"]
    finally:
        state.rmdir()
    # QEMU's semihosting opens a directory for reading: its size (the file system's: 4096 here), none of it readable
    assert any(re.fullmatch(r"state: the saved state \(\d+ bytes\) was refused: (the storage could not be read|shorter "
                            r"than the app's record): the learner starts afresh", ln) for ln in log), log[:5]
    assert "state: the storage refused to commit the written state: not saved, it keeps what it held" in log, log[:5]
    assert "state: the refused state is kept aside, not overwritten" not in log     # nothing of it could be read
    assert not any(ln.startswith("state saved") for ln in log) and not state.with_name(state.name + ".tmp").exists()


def _names_in(storage: bytes, blob_bytes: int, name_cap: int) -> bytes:
    """The board's storage with its record's names kept in ``name_cap`` bytes each (app/src/main.c write_record: the
    layout, then MAXC × (id, name), then the requests, the size and a CRC-32 of all before it)."""
    record = storage[blob_bytes:-8]
    fixed = list(struct.unpack_from("<8I", record))
    max_classes, cap = fixed[4], fixed[5]
    rows = [record[32 + k * (4 + cap):32 + (k + 1) * (4 + cap)] for k in range(max_classes)]
    assert all(row[4:].index(b"\0") < name_cap for row in rows), "a name longer than the layout holds"
    fixed[5] = name_cap
    body = (struct.pack("<8I", *fixed) + b"".join(row[:4] + row[4:4 + name_cap].ljust(name_cap, b"\0") for row in rows)
            + record[32 + max_classes * (4 + cap):])
    size = struct.pack("<I", len(body) + 8)
    return storage[:blob_bytes] + body + size + struct.pack("<I", zlib.crc32(body + size))


def _boot_alone(elf, log, n_frames: int) -> list[str]:
    """The board booted without an agent until it has predicted ``n_frames`` frames: its log lines."""
    return boot_alone(elf, log, lambda lines: predicted(lines) >= n_frames)
