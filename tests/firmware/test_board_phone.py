"""A person answers a micro-ROS board's questions on a phone: the real label app (its HTTP API, as the page calls it)
in the board's namespace, the board on QEMU mps2-an500 joined through the real MicroXRCEAgent.

The board asks about the digits it has no labelled sample of (it starts with 0-7); the label app shows each question
with the board's picture and its classes as the buttons. The person comes late: by then the board has asked more than
its ring of 8 holds, so it forgot the first question, and answering it is refused with the board's reason. The
next question is answered as a new class with a name as long as a name can be (64 characters), one more with a class
the board knows, and one is skipped. The board says its verdict on each on ``label_status``, as the labeler does, so
the phone shows "learned" (with the class id the board gave the new class and the name it keeps), "refused" and why,
or takes the skipped question away; a skip is no bad input on the board. The board's classes, with the new one's
name and the samples each holds, are on the page too (``classes``, latched, as the labeler's). A Rename on the phone
renames the class on the board, and one to a name another class has is refused. Change answer and Withdraw, tapped
on the page in Chromium, reach the board (``label_correction``): it replays what it learned since (``tinycl_undo``),
says its verdict, and a class that came with a withdrawn answer only leaves its classes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.label_page import page_state
from tinycl_nodes.bus import LATCHED, create_bus
from tinycl_nodes.core.names import MAX_NAME_CHARS, check_class_name

from .conftest import need, tool_module

TOKEN = "pytest-board-phone-token-0123"
#: 64 characters, quotes and backslashes among them (the board's JSON verdict escapes them)
NAME = 'Neun "vom Telefon" \\\\ eine Ziffer, die das Board nie gesehen hat'
REPO = Path(__file__).resolve().parents[2]
NO_CHANGE = "this robot cannot change or withdraw an answer it was given: nothing was sent"
QUOTED_ID = 'rename "from a peer" \\ 1'    # a rename's id is any peer's


def _post(base: str, payload: dict) -> dict:
    req = urllib.request.Request(f"{base}/api/answer", data=json.dumps(payload).encode(), method="POST",
                                 headers={"X-Tinycl-Token": TOKEN, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:   # a refusal: 400, with the app's words
        return json.loads(exc.read())


def _wait(what: str, fn, timeout_s: float, qemu) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (got := fn()) is not None and got is not False:
            return got
        time.sleep(0.2)
    raise AssertionError(f"no {what} in {timeout_s:.0f} s; the board's last lines:\n" + "\n".join(qemu.lines()[-15:]))


def _board_and_app(tmp_path: Path, data_dir, classes: str, options: tuple[str, ...] = (), meta: Path | None = None):
    """The board app built for QEMU (600 frames, 100 ms each: still streaming and asking when the late person
    answers; against a libmicroros.a built with ``meta``, else app/tinycl.meta), the label app in its namespace, the
    board, and the agent: (demo_board, app, qemu, agent)."""
    need("cmake", "arm-none-eabi-gcc", "qemu-system-arm")
    demo = tool_module("demo_board")
    from tinycl_nodes.bus.dds_config import domain_id

    uros = demo.build_uros(meta)
    elf, _ = demo.build_firmware(tmp_path, uros["LIBMICROROS"], 600, 2, classes, 100, domain_id(None), str(data_dir),
                                 options)
    app = subprocess.Popen([sys.executable, "-m", "tinycl_nodes.nodes.label_app", "--ros-args",
                            "-r", f"__ns:=/{demo.DEVICE}/tinycl", "-p", "host:=127.0.0.1", "-p", "port:=0",
                            "-p", f"token:={TOKEN}", "-p", "qr:=false", "-p", f"state_dir:={tmp_path / 'label_app'}"],
                           cwd=REPO, stdout=open(tmp_path / "label_app.log", "wb"), stderr=subprocess.STDOUT)
    qemu = demo.Qemu(elf, tmp_path / "board.log")
    return demo, app, qemu, demo.Agent(uros["AGENT"], qemu.pty, tmp_path / "agent.log")


def _app_base(tmp_path: Path, qemu) -> str:
    """The label app's http://host:port, once it wrote its pairing file."""
    pairing = tmp_path / "label_app" / "pairing.json"
    url = _wait("label app URL", lambda: pairing.is_file() and json.loads(pairing.read_text())["info"].get("url"),
                30, qemu)
    return re.match(r"https?://[^/]+", url)[0]


def _first_question(base: str, qemu) -> dict:
    """The board's first question on the page, once the app matched the board's label_answer reader: the question
    can come before, and an answer is then refused ("the robot is unreachable"), as the page refuses it."""
    asked = _wait("a question of the board on the page",
                  lambda: p[0] if (p := page_state(base, TOKEN)["pending"]) else None, 60, qemu)
    _wait("the board's answer reader", lambda: page_state(base, TOKEN)["robot"]["online"] or None, 20, qemu)
    return asked


def _open_page(phone, base: str):
    """The paired page in Chromium, live."""
    page = phone.new_page()
    page.goto(f"{base}/?token={TOKEN}")
    page.wait_for_selector("#status.live")
    return page


def test_a_person_answers_the_boards_questions_on_the_label_app(tmp_path, data_dir, phone):
    assert check_class_name(NAME) == NAME and len(NAME) == MAX_NAME_CHARS
    demo, app, qemu, agent = _board_and_app(tmp_path, data_dir, "0-7")
    try:
        agent.start()
        base = _app_base(tmp_path, qemu)
        # the board's questions on the page, with its picture and its classes as the buttons; wait until it asked
        # more than its ring holds
        pending = _wait("9 questions of the board on the page",
                        lambda: p if len(p := page_state(base, TOKEN)["pending"]) >= 9 else None, 120, qemu)
        assert all(q["id"].startswith(f"{demo.DEVICE}-") for q in pending), [q["id"] for q in pending]
        first, new, known, skipped = pending[:4]
        assert (first["width"], first["height"]) == (28, 28) and first["image"], first
        assert {c["id"] for c in first["candidates"]} <= set(range(8)) and first["candidates"], first
        sid = {q["id"]: int(q["id"].rsplit(".", 1)[1]) for q in pending}

        assert _post(base, {"type": "answer", "request_id": first["id"], "class_id": first["candidates"][0]["id"]}
                     )["type"] == "ok"
        assert _post(base, {"type": "answer", "request_id": new["id"], "new_class_name": NAME})["type"] == "ok"
        pick = known["candidates"][0]["id"]
        other = (pick + 1) % 8                          # what the person changes that answer to, later
        assert _post(base, {"type": "answer", "request_id": known["id"], "class_id": pick})["type"] == "ok"
        assert _post(base, {"type": "skip", "request_id": skipped["id"], "why": "unsure"})["type"] == "ok"

        def verdicts():
            h = {a["id"]: a for a in page_state(base, TOKEN)["history"]}
            said = [h.get(q["id"], {}).get("status") for q in (first, new, known)]
            return h if "sent" not in said and None not in said else None
        history = _wait("the board's verdicts on the page", verdicts, 30, qemu)
        # the first question: forgotten by the board (its ring holds the last 8), refused with its words
        assert history[first["id"]]["status"] == "refused", history[first["id"]]
        assert history[first["id"]]["message"] == "the board is not asking this question (any more)"
        # the new class: the board's next class id, the name as the person typed it
        assert {k: history[new["id"]][k] for k in ("status", "class_id", "class_name", "new")} == \
            {"status": "learned", "class_id": 8, "class_name": NAME, "new": True}, history[new["id"]]
        assert {k: history[known["id"]][k] for k in ("status", "class_id", "class_name", "new")} == \
            {"status": "learned", "class_id": pick, "class_name": str(pick), "new": False}, history[known["id"]]
        # the skipped one left the page, and the board dropped it (the last answer sent: awaited before the board stops)
        _wait("the skipped question gone", lambda: skipped["id"] not in
              {q["id"] for q in page_state(base, TOKEN)["pending"]} or None, 10, qemu)
        _wait("the board's line for the skip", lambda: f"label answer '{skipped['id']}': skipped" in qemu.text(), 30,
              qemu)
        # what the robot knows: the board's classes (latched on `classes`, with its head), the new one by its name
        classes = _wait("the board's class 8 on the page", lambda: c if 8 in (c := {k["id"]: k for k in page_state(
            base, TOKEN)["classes"]}) else None, 20, qemu)
        assert set(classes) == set(range(9)), classes
        assert classes[8]["name"] == NAME and classes[8]["count"] >= 1, classes[8]
        assert all(classes[c]["name"] == str(c) and classes[c]["count"] >= 10 for c in range(8)), classes
        # …which the board published on `classes`, latched: a reader that joins now gets the list (the page could also
        # have taken class 8 from a later question's buttons)
        lists: list = []
        # and a rename from any peer, whose id holds quotes and a backslash: the board's verdict is JSON still
        said: list = []
        bus = create_bus("phone_test", f"/{demo.DEVICE}/tinycl", backend="dds", dds_config="loopback")
        try:
            bus.create_subscription("classes", "ClassList", lists.append, LATCHED)
            bus.create_subscription("label_status", "std_msgs/msg/String", lambda m: said.append(str(m.data)),
                                    "reliable")
            renames = bus.create_publisher("rename_class", "LabelAnswer", "reliable")
            deadline = time.monotonic() + 20
            while not (lists and renames.get_subscription_count() and bus.count_publishers("label_status")) and \
                    time.monotonic() < deadline:    # the board's rename reader, and its verdicts' writer, matched
                bus.spin_once(0.1)
            # sent again every 2 s until a verdict comes (a refused rename changes nothing): the board's verdict writer
            # may match this reader after the reader saw it, and a verdict written before is not this reader's
            resend = time.monotonic()
            while not any("no such class" in s for s in said) and time.monotonic() < deadline + 30:
                if time.monotonic() >= resend:
                    renames.publish(bus.msg("LabelAnswer")(request_id=QUOTED_ID, class_id=99, new_class_name="x",
                                                           answered_by="phone_test"))
                    resend += 2.0
                bus.spin_once(0.1)
        finally:
            bus.shutdown()
        assert lists and {int(c.id): str(c.name) for c in lists[-1].classes} == \
            {**{c: str(c) for c in range(8)}, 8: NAME}, lists[-1:]
        verdict = json.loads(next(s for s in said if "no such class" in s))
        assert (verdict["request_id"], verdict["status"], verdict["message"]) == \
            (QUOTED_ID, "refused", "cannot rename class 99: no such class"), verdict
        # Rename on the phone: class 8 gets a short name, and the page's list follows the board's; another class
        # renamed to that name (case aside) is refused, in the board's words, as the labeler refuses it
        assert _post(base, {"type": "rename", "class_id": 8, "name": "neun"})["type"] == "ok"
        _wait("class 8 renamed on the page", lambda: {k["id"]: k["name"] for k in page_state(base, TOKEN)["classes"]}
              .get(8) == "neun" or None, 20, qemu)
        assert _post(base, {"type": "rename", "class_id": 3, "name": "Neun"})["type"] == "ok"
        _wait("the board's refusal of the second rename",
              lambda: "cannot rename class 3 to 'Neun': class 8 has that name" in qemu.text() or None, 20, qemu)
        # Change answer and Withdraw, tapped on the page in Chromium: the board takes them (label_correction) and
        # replays what it learned since, as if the answer had been given so; its verdicts come on label_status
        assert page_state(base, TOKEN)["robot"] == {"online": True, "changes": True, "verdicts": True}
        page = _open_page(phone, base)
        changed = page.locator(f'#history li[data-request-id="{known["id"]}"]')
        changed.locator("button.change").wait_for()
        time.sleep(0.8)                         # a button that just appeared ignores taps (the page's SETTLE_MS)
        changed.locator("button.change").tap()
        changed.locator(f'.picker button.cls[data-class-id="{other}"]').tap()
        _wait("the board's verdict on the change", lambda: (h := {a["id"]: a for a in page_state(base, TOKEN)[
            "history"]}[known["id"]])["status"] == "learned" and h["class_id"] == other or None, 30, qemu)
        withdrawn = page.locator(f'#history li[data-request-id="{new["id"]}"]')
        withdrawn.locator("button.undo").wait_for()
        time.sleep(0.8)
        withdrawn.locator("button.undo").tap()
        withdrawn.locator(".state", has_text="withdrawn").wait_for(timeout=30_000)
        # class 8 came with that answer only: it leaves the board's classes, and the page's
        _wait("class 8 gone from the page", lambda: set(k["id"] for k in page_state(base, TOKEN)["classes"]) ==
              set(range(8)) or None, 20, qemu)
    finally:
        agent.stop()
        qemu.stop()
        app.terminate()
        code = app.wait(30)
    log = qemu.lines()
    answers = [ln.split() for ln in log if ln.startswith("EV ") and " answer " in ln]
    assert [(int(f[3]), int(f[4])) for f in answers] == [(sid[new["id"]], 8), (sid[known["id"]], pick)], answers
    assert any(f"label answer for unknown request '{first['id']}'" in ln for ln in log), log
    app_log = (tmp_path / "label_app.log").read_text(errors="replace")
    assert code == 0, app_log[-2000:]
    # the app had the board's verdict on each rename (label_status): the page says it
    assert "renamed (class 8 'neun')" in app_log, app_log[-2000:]
    assert "refused: cannot rename class 3 to 'Neun': class 8 has that name" in app_log, app_log[-2000:]
    corrections = [ln.split() for ln in log if ln.startswith("EV ") and " correct " in ln]
    assert [(int(f[3]), int(f[4])) for f in corrections] == [(sid[known["id"]], other), (sid[new["id"]], -1)], \
        corrections


def test_a_board_that_cannot_change_answers_offers_no_change_on_the_page(tmp_path, data_dir, phone):
    """The latent app learns in training rounds and cannot replay, so it reads no ``label_correction``. The label app
    sees no reader of it while the board is online: the page in Chromium shows the board's answers without Change
    answer and Withdraw and says why, and a change sent anyway is refused in those words, nothing sent (before, it got
    no verdict and the page waited for one). The board lists its classes on ``classes`` though it has no head."""
    demo, app, qemu, agent = _board_and_app(tmp_path, data_dir, "0-9", ("-DTINYCL_APP_HEAD=latent",
                                                                        "-DTINYCL_RAM_RESERVE=65536"))
    try:
        agent.start()
        base = _app_base(tmp_path, qemu)
        asked = _first_question(base, qemu)
        assert _post(base, {"type": "answer", "request_id": asked["id"], "new_class_name": "sieben"})["type"] == "ok"
        item = _wait("the board's verdict", lambda: h if (h := {a["id"]: a for a in page_state(base, TOKEN)[
            "history"]}.get(asked["id"], {})).get("status", "sent") != "sent" else None, 30, qemu)
        assert {k: item[k] for k in ("status", "class_name", "new")} == \
            {"status": "learned", "class_name": "sieben", "new": True}, item
        # the latent app's class list (latched on `classes`): the page lists the new class by its name
        _wait("the class on the page", lambda: [(c["id"], c["name"]) for c in page_state(base, TOKEN)["classes"]] ==
              [(item["class_id"], "sieben")] or None, 20, qemu)
        # the app looks once the board was online for CHANGES_SETTLE_S (its readers match one by one)
        _wait("the app's look at the board's readers", lambda: page_state(base, TOKEN)["robot"] ==
              {"online": True, "changes": False, "verdicts": True} or None, 10, qemu)
        for undo in ({"type": "undo", "request_id": asked["id"], "new_class_name": "acht"},
                     {"type": "undo", "request_id": asked["id"]}):
            assert _post(base, undo) == {"type": "error", "message": NO_CHANGE, "request_id": asked["id"]}
        page = _open_page(phone, base)
        answered = page.locator(f'#history li[data-request-id="{asked["id"]}"]')
        answered.locator(".state", has_text="learned").wait_for()
        assert answered.locator(".acts").inner_text() == "this robot cannot change an answer"
        assert answered.locator("button.change, button.undo").count() == 0
    finally:
        agent.stop()
        qemu.stop()
        app.terminate()
        code = app.wait(30)
    app_log = (tmp_path / "label_app.log").read_text(errors="replace")
    assert code == 0, app_log[-2000:]
    assert app_log.count(NO_CHANGE) == 2 and "reads no label_correction" in app_log, app_log[-2000:]
    assert [ln.split()[2] for ln in qemu.lines() if ln.startswith("EV ")] == ["answer"]


def _meta_for(path: Path, publishers: int, subscriptions: int) -> Path:
    """app/tinycl.meta with rmw_microxrcedds built for ``publishers`` and ``subscriptions`` (the library's cache key is
    its content: the same numbers reuse one build)."""
    doc = json.loads((REPO / "micro_ros_firmware" / "app" / "tinycl.meta").read_text())
    want = {"RMW_UXRCE_MAX_PUBLISHERS": publishers, "RMW_UXRCE_MAX_SUBSCRIPTIONS": subscriptions}
    args = doc["names"]["rmw_microxrcedds"]["cmake-args"]
    doc["names"]["rmw_microxrcedds"]["cmake-args"] = [
        re.sub(r"-D(\w+)=(\d+)", lambda m: f"-D{m[1]}={want.get(m[1], m[2])}", a) for a in args]
    assert sum(f"{k}={v}" in a for a in doc["names"]["rmw_microxrcedds"]["cmake-args"] for k, v in want.items()) == 2
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def test_a_board_linked_to_a_library_for_fewer_entities_runs_on_without_its_optional_ones(tmp_path, data_dir, phone):
    """micro_ros_platformio keeps the libmicroros.a it built when the firmware's meta changes (until ``pio run -t
    clean_microros``): a firmware engineer who updates the app can link it to an older library, built for the first
    board's 4 publishers and 2 subscriptions. The board then starts without its optional ones (verdicts, classes,
    /diagnostics; renames, changes of answers), says so, and still learns from a person's answers through the real
    agent; the label app sees no reader of label_correction and no writer of label_status: the page, in Chromium,
    offers no changes, and says that no verdict will come rather than "waiting for the robot"."""
    demo, app, qemu, agent = _board_and_app(tmp_path, data_dir, "0-7", meta=_meta_for(tmp_path / "fewer.meta", 4, 2))
    try:
        agent.start()
        base = _app_base(tmp_path, qemu)
        asked = _first_question(base, qemu)
        page = _open_page(phone, base)      # before the app's look: its `robot` message redraws the answer
        pick = asked["candidates"][0]["id"]
        assert _post(base, {"type": "answer", "request_id": asked["id"], "class_id": pick})["type"] == "ok"
        learned = f"answer {asked['id'].rsplit('.', 1)[1]} {pick}"
        line = _wait("the board's line for the answer", lambda: next((ln for ln in qemu.lines()
                                                                      if ln.startswith("EV ") and learned in ln), None),
                     30, qemu)
        _wait("the app's look at the board's readers and writers", lambda: page_state(base, TOKEN)["robot"] ==
              {"online": True, "changes": False, "verdicts": False} or None, 10, qemu)
        assert _post(base, {"type": "undo", "request_id": asked["id"]}) == \
            {"type": "error", "message": NO_CHANGE, "request_id": asked["id"]}
        answered = page.locator(f'#history li[data-request-id="{asked["id"]}"]')
        answered.locator(".state", has_text="sent; this robot says no verdict").wait_for(timeout=5_000)
        assert answered.locator(".state").inner_text() == "sent; this robot says no verdict"
        assert answered.locator(".acts").inner_text() == "this robot cannot change an answer"
        at = int(line.split()[1])                       # and it runs on: 10 frames more, each predicted
        _wait("10 frames after the answer", lambda: sum(ln.startswith("P ") and int(ln.split()[1]) > at
                                                        for ln in qemu.lines()) >= 10 or None, 30, qemu)
    finally:
        agent.stop()
        qemu.stop()
        app.terminate()
        code = app.wait(30)
    said = [ln for ln in qemu.lines() if ln.startswith("LOG no ") and "refused" in ln]
    assert code == 0 and len(said) == 2, said
    assert said[0].startswith("LOG no verdicts on label_status, nor what follows: its publisher was refused (rcl ")
    assert said[0].endswith("a libmicroros built for RMW_UXRCE_MAX_PUBLISHERS=4?)"), said
    assert said[1].startswith("LOG no renames, nor changes of answers: the subscription to rename_class was refused")
    assert said[1].endswith("a libmicroros built for RMW_UXRCE_MAX_SUBSCRIPTIONS=2?)"), said
    assert [ln.split()[2] for ln in qemu.lines() if ln.startswith("EV ")] == ["answer"]
    app_log = (tmp_path / "label_app.log").read_text()
    assert "LOG connected" in qemu.lines() and "Traceback" not in app_log
    assert "the robot writes no label_status (nor label_closed): the pages cannot say whether it learned an answer" in app_log
