"""A late time-sync reply must not cost the board a label answer (real board on QEMU, real MicroXRCEAgent).

The board syncs its session clock with the agent when it connects and goes on with board time if no reply comes
within 1 s. The XRCE client accepts the reply whenever it comes; it then steps the session's epoch clock from board
time (seconds since boot) to the Unix epoch. rmw_microxrcedds stamps each received message with that clock and, at
each wait and take, discards one older than its subscription's lifespan (30 s by default): a message received
before the step and taken after it would be dropped without a word. The app gives its subscriptions a lifespan that
outlasts the step (app/src/main.c, ``kept``).

Between the board's pty and the agent, a relay (micro_ros_firmware/tools/xrce_relay.py) holds the agent's time reply
until the first label answer for the board has come too, and delivers both while the board waits for the agent to
confirm its next publish: the board stamps the answer, then its clock steps, then it takes the answer. Checked: the
sync failed; the relay delivered the answer(s) and then the reply; the board's stamps went from board time to the
epoch; every answer the graph side sent was applied (or refused/lost with the board's log line and counter). With
rmw_microxrcedds' default lifespan the answers delivered with the reply are missing from that account.
"""

from __future__ import annotations

import time

import pytest

from .conftest import board_app, tool_module

N_FRAMES = 100
EPOCH_2020 = 1_577_836_800


@pytest.fixture(scope="module")
def relay_module():
    return tool_module("xrce_relay")


def test_frame_splitter_and_submessage_ids(relay_module):
    """The relay's reading of the client's framing: escapes undone, frames cut where they end, noise passed on."""
    r = relay_module
    message = bytes([0x81, 0x00, 0x00, 0x00, r.TIMESTAMP_REPLY, 0x01, 0x03, 0x00, 0x7E, 0x7D, 0x05, 0x00,
                     r.DATA, 0x00, 0x01, 0x00, 0xAA])
    body = bytes([0x00, 0x00]) + len(message).to_bytes(2, "little") + message + b"\x12\x34"
    raw = bytes([0x7E]) + b"".join(bytes([0x7D, b ^ 0x20]) if b in (0x7E, 0x7D) else bytes([b]) for b in body)
    split = r.FrameSplitter()
    out = split.feed(b"\x01\x02" + raw[:7]) + split.feed(raw[7:] + raw[:3])
    assert out == [(b"\x01\x02", None), (raw, message)]
    assert split.feed(raw[3:]) == [(raw, message)]
    assert r.submessage_ids(message) == [r.TIMESTAMP_REPLY, r.DATA]
    assert r.submessage_ids(bytes([0x01, 0, 0, 0, 1, 2, 3, 4, r.WRITE_DATA, 0, 0, 0])) == [r.WRITE_DATA]   # client key


def test_late_time_reply_costs_no_answer(relay_module, data_dir, tmp_path):
    from tinycl_nodes.bus import create_bus

    work, elf, bd, uros = board_app("build-uros-clock", N_FRAMES, 2, "0-7", 100, data_dir,
                                    ("-DTINYCL_ASK_GAP=4", "-DTINYCL_ASK_BELOW=2"))
    demo = tool_module("demo_board")
    model_hash = demo.model_sha(work)
    demo.state_file(work).unlink(missing_ok=True)   # the board starts from its initial labelled samples

    bus = create_bus("board_monitor", f"/{demo.DEVICE}/tinycl", backend="dds", dds_config="loopback")
    mon = demo.Monitor(bus, bd.labels, model_hash)
    qemu = demo.Qemu(elf, tmp_path / "board.log")
    policy = relay_module.LateTimeReply()
    relay = relay_module.XrceRelay(qemu.pty, policy)
    relay.start()
    agent = demo.Agent(uros["AGENT"], relay.agent_pty, tmp_path / "agent.log")
    agent.start()
    def relay_alive() -> None:
        assert relay.is_alive(), relay.error

    try:
        demo.spin_until_done(qemu, bus, 120, relay_alive)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            bus.spin_once(0.05)
    finally:
        agent.stop()
        relay.stop()
        qemu.stop()
        bus.shutdown()
    board = demo.parse_board_log(qemu.lines())
    applied = board["applied"]
    assert any(ln.startswith("time sync with the agent failed") for ln in board["log"]), board["log"][:8]
    assert policy.released and policy.released_data >= 1, (len(policy.reply), len(policy.data))
    # the reply was processed: the board's stamps went from board time (seconds since boot) to the Unix epoch and
    # stayed there (the graph may discover the board's writers only after the step: its first stamps may be epoch)
    stamps = [mon.stamps[i] for i in sorted(mon.stamps)]
    epoch = [s > EPOCH_2020 for s in stamps]
    assert epoch[-1] and epoch == sorted(epoch) and all(e or s < 3600 for s, e in zip(stamps, epoch)), stamps
    # every answer the graph side sent is accounted for: none vanished at the step
    answers = [ev for ev in board["events"] if ev[1] == "answer"]
    print(f"late time reply: {policy.released_data} held DATA frame(s) delivered before it; answers sent "
          f"{len(mon.answered)}, applied {applied['answers']}, refused {applied['refused']}, lost {applied['lost']}")
    assert len(mon.answered) >= 5 and len(answers) == applied["answers"], applied
    assert applied["answers"] + applied["refused"] + applied["lost"] == len(mon.answered), (applied, len(mon.answered))
    assert mon.errors == []
