"""The board apps as built with their defaults, where a first version failed a firmware engineer trying them by hand
(real board on QEMU; the real MicroXRCEAgent where there is one).

- Without an agent the TinyNDC app learns on and keeps saving what it learns: the once-a-period save of a
  consolidated batch and the save when the stream ends used to wait for the agent, so a board that never connected,
  or lost the agent, kept nothing of what it learned meanwhile across a reset (the storage held 152 of 380 samples).
- The latent app with its default asking threshold (TINYCL_ASK_BELOW 0.5) asks for labels until its head has
  trained, and learns: it used to ask once, and then, a one-class softmax being 1 (and a head with zero rows 1/n),
  never again, predicting one class for ever.
- The latent app built with a learning rate far too high (TINYCL_APP_LATENT_LR) drops a diverging round and takes
  back the head it saved after the last one: it used to train on into NaN weights and save them, a state its next
  boot refused, so a reset lost everything it had learned.
- Through the real agent, the TinyNDC app whose head a fleet's global head filled with classes its clusterer lacks
  predicts and publishes every frame (a frame of a class without a row was dropped whole), and numbers a person's new
  class as the Python labeler does (after class 2^31 − 1 it overflowed, and the answer was learned as class 8).
"""

from __future__ import annotations

import re

import numpy as np

from .conftest import board_app, boot_alone, latent_host_replay, latent_memory, tool_module

N_OFFLINE = 160     # frames of 50 ms: 5 consolidated batches of 32, 8 s
SAVE_PERIOD_MS = 2000
N_ASKING = 240      # frames of 60 ms
ASK_GAP = 2         # the default threshold is what is under test; a shorter gap only shortens the run


def test_tinyndc_board_saves_what_it_learns_without_an_agent(data_dir, tmp_path):
    from tinycl_nodes.export import c_state

    demo = tool_module("demo_board")
    work, elf, bd, _ = board_app("build-uros-offline", N_OFFLINE, 5, "0-9", 50, data_dir,
                                 (f"-DTINYCL_SAVE_PERIOD_MS={SAVE_PERIOD_MS}",))
    state = demo.state_file(work)
    state.unlink(missing_ok=True)
    lines = boot_alone(elf, tmp_path / "board.log", lambda lines: any(   # no agent, ever
        ln.startswith("LOG stream ended") for ln in lines[-3:]) and lines[-1].startswith("LOG state saved"), 90)
    board = demo.parse_board_log(lines)
    saved = [ln for ln in board["log"] if ln.startswith("state saved")]
    assert not any(ln.startswith(("connected", "reconnected")) for ln in board["log"]), board["log"]
    # at boot, at least twice while the stream ran (5 batches, 1.6 s apart, saved at most every 2 s), at its end
    assert len(saved) >= 4, board["log"]
    learned = int(saved[-1].split()[2])
    assert learned > int(saved[0].split()[2]), saved      # what it learned after its boot is kept
    blob, record = demo.read_storage(state)
    _, head = c_state.ndc_from_bytes(blob)
    assert head.n_seen == learned and record["boot"] == 1
    preds = [board["predictions"][i] for i in range(N_OFFLINE)]
    assert preds == demo.host_replay(bd, [], None, N_OFFLINE)
    print(f"no agent: {len(saved)} saves, the last {saved[-1]!r}")


def test_tinyndc_board_with_a_full_head_predicts_every_frame_and_numbers_a_new_class_as_the_labeler(data_dir,
                                                                                                        tmp_path):
    """Through the real agent, the same build: a fleet's global head holds ten classes, 0–8 and 2^31 − 1 (where the
    clusterer has 9), so the board's head is full and lacks the clusterer's class 9.

    - A frame the clusterer labels 9 was dropped whole ("core step failed (-2)"): no features, no prediction, until
      another global head. It is predicted and published now, not learned, and the board says so.
    - A person's new class took the highest known id + 1, which overflows after 2^31 − 1 (undefined behaviour: the
      old build learned the answer as class 8). It takes the id the Python labeler gives (``next_class_id``): here 9,
      which the full head has no row for, so the answer is refused, and the new class's name is not kept."""
    from dataclasses import replace

    from tinycl_nodes.bus import create_bus
    from tinycl_nodes.interfaces.heads import to_msg
    from tinycl_nodes.nodes.label_requests import next_class_id

    demo = tool_module("demo_board")
    work, elf, bd, uros = board_app("build-uros-offline", N_OFFLINE, 5, "0-9", 50, data_dir,
                                    (f"-DTINYCL_SAVE_PERIOD_MS={SAVE_PERIOD_MS}",))
    demo.state_file(work).unlink(missing_ok=True)
    model_hash = demo.model_sha(work)
    bus = create_bus("board_monitor", f"/{demo.DEVICE}/tinycl", backend="dds", dds_config="loopback")
    mon = demo.Monitor(bus, bd.labels, model_hash, knows=())      # answers nothing by itself
    requests: list[str] = []
    bus.create_subscription("label_request", "LabelRequest", lambda msg: requests.append(str(msg.request_id)),
                            "reliable")
    snap = demo.trained_head(str(data_dir), 5, range(10), model_hash)
    ids = np.where(snap.class_ids == 9, 2**31 - 1, snap.class_ids)
    snap = replace(snap, class_ids=ids, class_names=tuple("top" if i == 2**31 - 1 else n
                                                          for i, n in zip(ids.tolist(), snap.class_names)))
    mon.global_pub.publish(to_msg(snap, bus.msg("Head"), bus.msg("ClassInfo"), bus.stamp()))   # latched
    qemu = demo.Qemu(elf, tmp_path / "board.log")
    agent = demo.Agent(uros["AGENT"], qemu.pty, tmp_path / "agent.log")
    agent.start()
    asked: list[str] = []

    def answer_once_the_head_is_applied() -> None:
        if not asked and requests and re.search(r"^EV \d+ global ", qemu.text(), re.M):
            asked.append(requests[-1])         # a request the board keeps awaiting an answer
            A = bus.msg("LabelAnswer")
            mon.answer_pub.publish(A(header=type(A().header)(stamp=bus.stamp(), frame_id=""), request_id=asked[0],
                                     class_id=A.NEW_CLASS, new_class_name="cup", answered_by="test"))
    try:
        demo.spin_until_done(qemu, bus, 90, answer_once_the_head_is_applied)
    finally:
        agent.stop()
        qemu.stop()
        bus.shutdown()
    board = demo.parse_board_log(qemu.lines())
    applied_at = next(ev[0] for ev in board["events"] if ev[1] == "global")
    assert not any("core step failed" in ln for ln in board["log"]), board["log"]
    assert sorted(board["predictions"]) == list(range(N_OFFLINE)), len(board["predictions"])
    unlearned = [i for i, (_, pseudo) in board["predictions"].items() if i >= applied_at and pseudo == 9]
    said = [ln for ln in board["log"] if "(10 classes each at most): predicted, not learned (1 such frame(s))" in ln]
    assert unlearned and len(said) == 1 and "no row for pseudo-label 9 in the head" in said[0], (unlearned, said)
    assert {i + 1 for i in unlearned} & mon.ids["features"] & mon.ids["predictions"], (unlearned, mon.ids)
    assert asked, "no label request came after the global head"
    expected = next_class_id(set(ids.tolist()))
    refused = [ln for ln in board["log"] if asked[0] in ln]
    assert expected == 9 and len(refused) == 1 and f"(class {expected}) refused by the core (no room for another " \
        "class)" in refused[0], refused
    assert b"cup" not in demo.state_file(work).read_bytes()         # a refused answer's name is not kept
    print(f"full head: {len(unlearned)} frames predicted, not learned; the new class numbered {expected}")


def test_latent_board_with_its_default_threshold_asks_and_learns(data_dir, host_build, tmp_path):
    from tinycl_nodes.firmware import Library

    work, bd, board = latent_board_answered("build-uros-latent-asks", N_ASKING, data_dir, tmp_path,
                                            (f"-DTINYCL_ASK_GAP={ASK_GAP}",))
    answers = sorted(ev[0] for ev in board["events"] if ev[1] == "answer")
    rounds = [ln for ln in board["log"] if ln.startswith("state saved")][1:]   # after each training round, at the end
    # it asks until its head has trained (32 answers: one round), then when its softmax is unsure
    assert len(answers) >= 48 and len(rounds) >= 2, (len(answers), board["log"])
    preds = np.array([board["predictions"][i][0] for i in range(N_ASKING)])
    host = latent_host_replay(Library(host_build / "libtinycl.so"), work, bd.images, board["events"], N_ASKING)
    assert preds.tolist() == host
    after = slice(answers[31] + 1, N_ASKING)             # the frames after its first training round
    acc = float(np.mean(preds[after] == bd.labels[after]))
    print(f"latent, default threshold: {len(answers)} answers in {N_ASKING} frames; after the first round "
          f"{acc:.1%} right on {N_ASKING - answers[31] - 1} frames")
    assert len(set(preds[after].tolist())) >= 5 and acc >= 0.4


N_DIVERGE = 160     # frames of 60 ms, a question each: five training rounds of 32 answers
DIVERGE_LR = 10     # 1,000× the preset's 0.01: on real MNIST cut codes the C head diverges in its second round


def test_latent_board_with_a_learning_rate_too_high_takes_its_saved_head_back(data_dir, tmp_path):
    from tinycl_nodes.export.c_state import latent_from_bytes
    from tinycl_nodes.firmware_latent import board_head

    demo = tool_module("demo_board")
    work, _, board = latent_board_answered("build-uros-latent-diverge", N_DIVERGE, data_dir, tmp_path,
                                           ("-DTINYCL_ASK_GAP=1", "-DTINYCL_ASK_BELOW=2",
                                            f"-DTINYCL_APP_LATENT_LR={DIVERGE_LR}"))
    log = board["log"]
    undone = [i for i, ln in enumerate(log) if "training diverged" in ln]   # one line each, naming the answer
    assert undone and not any("refused by the core" in ln for ln in log), log
    for i in undone:          # each time, the head saved after the round before (its samples) is taken back
        saved = [ln for ln in log[:i] if ln.startswith("state saved")][-1]
        assert "taken back" in log[i] and f"({saved.split()[2]} samples)" in log[i], (saved, log[i])
    answers = [ev[0] for ev in board["events"] if ev[1] == "answer"]
    assert len(answers) >= 96 and any(ln.startswith("stream ended") for ln in log), log  # it went on to the end
    blob, _ = demo.read_storage(demo.state_file(work))
    head = latent_from_bytes(blob, like=board_head(memory_size=latent_memory(work)))   # what a reset starts from
    assert all(np.isfinite(a).all() for a in (head.classifier.W, head.classifier.b, *[
        arr for layer in head.upper if layer.trainable for arr in (layer.W, layer.b)]))
    print(f"lr {DIVERGE_LR}: {len(answers)} answers, {len(undone)} rounds dropped; {log[undone[0]]!r}")


def latent_board_answered(work_name: str, n_frames: int, data_dir, tmp_path, options: tuple[str, ...]):
    """The latent app (built in ``work_name`` with ``options``, its storage emptied) run on QEMU through the real
    agent, a person answering every label request with the true digit: (work folder, board data, parsed log)."""
    from tinycl_nodes.bus import create_bus

    demo = tool_module("demo_board")
    work, elf, bd, uros = board_app(work_name, n_frames, 3, "0-9", 60, data_dir, ("-DTINYCL_APP_HEAD=latent", *options))
    demo.state_file(work).unlink(missing_ok=True)
    bus = create_bus("board_monitor", f"/{demo.DEVICE}/tinycl", backend="dds", dds_config="loopback")
    _person = demo.Monitor(bus, bd.labels, demo.model_sha(work))
    qemu = demo.Qemu(elf, tmp_path / "board.log")
    agent = demo.Agent(uros["AGENT"], qemu.pty, tmp_path / "agent.log")
    agent.start()
    try:
        demo.spin_until_done(qemu, bus, 150)
    finally:
        agent.stop()
        qemu.stop()
        bus.shutdown()
    return work, bd, demo.parse_board_log(qemu.lines())
