"""The TinyRCE graph under ``ros2 launch``: the phone page, a label request, an answer from ROS 2.

``ros2 launch tinycl_nodes tinyrce.launch.py namespace:=/rce port:=<free port> params_file:=…``
with the shipped parameter file (config/tinyrce.yaml) made fit for a test: the label app on
127.0.0.1 with a fixed pairing token, a fast MNIST replay, a small question budget (so the app
never has to drop a pending request) and a metrics node that does not end the graph when the
replay is scored. Then, as a person (or another robot's software) would:

- every node of the graph runs in /rce; the label page answers on 127.0.0.1:<port> only with the
  pairing token (the ?token= URL, kept in the state folder and never logged → cookie → the page);
- a label request arrives on /rce/label_request (``ros2 topic echo``) and on the app's JSON API,
  with its picture;
- it is answered with a real ``ros2 topic pub … tinycl_nodes/msg/LabelAnswer`` naming a new
  class 'seven': the labeler reports it learned (label_status), the learner's latched head lists
  the class, and later predictions carry its name;
- the asked sample's features, published again (``ros2 topic pub … features``), are covered by the answer's
  prototypes: a pseudo-label the learner learns as 'seven';
- the answer is withdrawn with ``ros2 topic pub … label_correction``: its samples and the pseudo-labels its
  prototypes gave since (that one at least) are taken back, and the latched head no longer lists the class;
- SIGINT (Ctrl-C) ends the launch and every node process in it;
- ``log_level:=debug`` shows the nodes' own debug lines, not rcl's and rmw's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import yaml

from tests.label_page import page_state
from tests.ros2.conftest import params_file
from tinycl_nodes.fleet.broker import free_port
from tinycl_nodes.graphs import GRAPHS

ROOT = Path(__file__).resolve().parents[2]
NS = "/rce"
TOKEN = "pytest-pairing-token-0123"
NEW_CLASS = "seven"
AGAIN_ID = 4_000_000_001                   # the asked sample's features published again, under this sample id
KNOWN = {i: str(i) for i in range(6)}      # config/tinyrce.yaml: digits 0-5 labelled, named "0".."5"


def _params_file(tmp: Path) -> Path:
    """config/tinyrce.yaml with the test's overrides."""
    return params_file(
        tmp, "tinyrce", label_app={"host": "127.0.0.1", "token": TOKEN, "qr": False},
        # 50 s of stream at most: still running when the answer is sent, even on a loaded machine
        sensor={"rate_hz": 20.0, "stream_length": 1000},
        # at most 20 questions: the app (max_pending 50) never drops the one the test answers
        labeler={"max_requests_per_hour": 20},
        metrics={"exit_when_done": False})


def _get(url: str, headers: dict[str, str] | None = None, opener=None) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET; HTTP errors are answers too."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with (opener.open if opener else urllib.request.urlopen)(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def _subscriptions(ros, topic: str) -> int:
    out = ros.run("ros2", "topic", "info", "--no-daemon", "--spin-time", "1", topic, timeout_s=30, check=False).stdout
    m = re.search(r"Subscription count: (\d+)", out)
    return int(m.group(1)) if m else -1


def _echo_blocks(lines: list[str]) -> list[str]:
    """``ros2 topic echo`` output → one text per message (messages end with a ``---`` line)."""
    blocks, cur = [], []
    for line in list(lines):
        if line.strip() == "---":
            blocks.append("\n".join(cur))
            cur = []
        else:
            cur.append(line)
    return blocks


def answer_new_class(ros, ns: str, request_id: str, name: str, status_echo) -> dict:
    """Answer ``request_id`` with a new class ``name`` by ``ros2 topic pub``; its outcome on ``label_status`` (read by
    ``status_echo``, a ``ros2 topic echo --full-length`` of it started before)."""
    ros.run("ros2", "topic", "pub", "--once", f"{ns}/label_answer", "tinycl_nodes/msg/LabelAnswer",
            f"{{request_id: '{request_id}', class_id: -1, new_class_name: '{name}'}}", timeout_s=45)

    def outcome():
        for block in _echo_blocks(status_echo.lines):
            data = json.loads(yaml.safe_load(block)["data"])
            if data["request_id"] == request_id:
                return data
        return None
    return ros.wait_until(f"label_status of {request_id}", outcome, timeout_s=30)


def test_tinyrce_launch_label_page_request_and_ros2_answer(ros):
    port = free_port()
    params = _params_file(ros.tmp)
    # ros2cli processes below use --no-daemon: no ros2 daemon is left behind on the shared machine
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyrce.launch.py", f"namespace:={NS}", f"port:={port}",
                       f"params_file:={params}", "log_level:=debug", name="ros2 launch tinyrce")

    # --- the label page: the pairing URL is kept in the state folder (0600), never printed to the log ----
    base = f"http://127.0.0.1:{port}"
    launch.wait_for_line(f"label app on http://127.0.0.1:{port}", timeout_s=90)          # port:= reached it
    pairing = Path(ros.env["ROS_HOME"]) / "tinycl" / NS.strip("/") / "pairing.json"
    info = ros.wait_until("the pairing file", lambda: pairing.is_file() and json.loads(pairing.read_text()),
                          timeout_s=20)
    assert info["info"]["url"] == f"{base}/?token={TOKEN}" and pairing.stat().st_mode & 0o777 == 0o600
    status, ctype, body = _get(f"{base}/")
    assert status == 403 and b"not paired" in body, (status, body[:300])
    status, _, _ = _get(f"{base}/", {"X-Tinycl-Token": TOKEN + "x"})
    assert status == 403
    status, _, _ = _get(f"{base}/api/state")
    assert status == 403
    # as the phone does: the URL with ?token= → 303 to / with the cookie → the page
    phone = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    status, ctype, body = _get(f"{base}/?token={TOKEN}", opener=phone)
    assert status == 200 and ctype.startswith("text/html"), (status, ctype)
    page = body.decode()
    assert page.lstrip().lower().startswith("<!doctype html") and "label requests" in page, page[:300]
    status, ctype, _ = _get(f"{base}/", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and ctype.startswith("text/html"), (status, ctype)

    # every node of the graph, in the namespace given
    expected = {f"{NS}/{name}" for name in GRAPHS["tinyrce"]}
    ros.wait_until("all tinyrce nodes in `ros2 node list`", lambda: expected <= ros.node_list(), timeout_s=45)

    # --- a label request on /rce/label_request (a new reader gets the pending ones re-sent) ------------
    out = ros.run("ros2", "topic", "echo", "--once", "--no-daemon", "--full-length", f"{NS}/label_request",
                  timeout_s=90).stdout
    asked = yaml.safe_load(out.split("\n---")[0])
    request_id = asked["request_id"]
    assert re.fullmatch(r"[0-9a-f-]{36}", request_id), out      # a uuid4, as the labeler makes them
    launch.wait_for_line(f"label request {request_id}: ", timeout_s=10)   # the labeler's log line
    # …and on the app's JSON API (the phone's view), with its picture
    def app_pending():
        return next((p for p in page_state(base, opener=phone)["pending"] if p["id"] == request_id), None)
    pending = ros.wait_until(f"request {request_id} pending in the label app", app_pending, timeout_s=20)
    assert pending["image"] and (pending["width"], pending["height"]) == (28, 28), pending   # the MNIST frame
    assert pending["candidates"] and {c["name"] for c in pending["candidates"]} <= set(KNOWN.values()), pending
    status, ctype, png = _get(f"{base}/{pending['image']}", opener=phone)
    assert status == 200 and ctype == "image/png" and png.startswith(b"\x89PNG"), (status, ctype, png[:16])

    # --- readers of the outcome, subscribed before the answer is sent ----------------------------------
    status_echo = ros.start("ros2", "topic", "echo", "--no-daemon", "--full-length", f"{NS}/label_status",
                            name="echo label_status")
    preds = ros.start("ros2", "topic", "echo", "--no-daemon", f"{NS}/predictions", "--field", "class_name",
                      name="echo predictions")
    ros.wait_until("the echo of label_status subscribed", lambda: _subscriptions(ros, f"{NS}/label_status") >= 1,
                   timeout_s=30)
    ros.wait_until("the echo of predictions subscribed (besides metrics)",
                   lambda: _subscriptions(ros, f"{NS}/predictions") >= 2, timeout_s=30)
    ros.wait_until("predictions flowing", lambda: _echo_blocks(preds.lines), timeout_s=30)
    assert NEW_CLASS not in {b.strip() for b in _echo_blocks(preds.lines)}

    # --- the answer, from ROS 2 itself ---------------------------------------------------------------
    outcome = answer_new_class(ros, NS, request_id, NEW_CLASS, status_echo)
    assert outcome["status"] == "learned", outcome
    assert outcome["class_name"] == NEW_CLASS and outcome["class_id"] == len(KNOWN), outcome  # the next free id
    line = launch.wait_for_line(f"label request {request_id} answered", timeout_s=10)
    assert f"class {len(KNOWN)} '{NEW_CLASS}' (new class)" in line, line

    # the learner's latched head names the new class (a late reader gets the last head)
    def head_classes(any_classes: bool = False):
        out = ros.run("ros2", "topic", "echo", "--once", "--no-daemon", f"{NS}/head", "--field", "classes",
                      timeout_s=30, check=False).stdout
        found = {int(i): n for i, n in re.findall(r"id=(\d+), name='([^']*)'", out)}
        return found if any_classes or found.get(len(KNOWN)) == NEW_CLASS else None
    classes = ros.wait_until(f"class {NEW_CLASS!r} in the latched head", head_classes, timeout_s=40, every_s=1.0)
    assert classes == {**KNOWN, len(KNOWN): NEW_CLASS}, classes

    # later predictions carry the new class's name
    ros.wait_until(f"a prediction named {NEW_CLASS!r}",
                   lambda: NEW_CLASS in {b.strip() for b in _echo_blocks(preds.lines)}, timeout_s=40)

    # --- the asked sample seen again: the answer's prototypes cover it, a pseudo-label the learner learns ---------
    now = time.time_ns()
    again = {**asked["features"], "sample_id": AGAIN_ID, "true_label": -1, "labelled": False,
             "header": {"stamp": {"sec": now // 10**9, "nanosec": now % 10**9}, "frame_id": "again"}}
    ros.run("ros2", "topic", "pub", "--once", f"{NS}/features", "tinycl_nodes/msg/Features", json.dumps(again),
            timeout_s=45)
    line = launch.wait_for_line(f"sample {AGAIN_ID}: predicted", timeout_s=30)       # the learner's debug line
    assert f"learned as {len(KNOWN)} (pseudo-label" in line, line

    # --- Undo, from ROS 2: the answer withdrawn takes back its samples and the pseudo-labels its prototypes gave
    # since (that one, and any later 7 of the stream they covered) ------------------------------------------------
    ros.run("ros2", "topic", "pub", "--once", f"{NS}/label_correction", "tinycl_nodes/msg/LabelAnswer",
            f"{{request_id: '{request_id}', class_id: -2}}", timeout_s=45)
    line = launch.wait_for_line(f"answer to {request_id} withdrawn", timeout_s=30)
    taken = re.search(rf"(\d+) sample\(s\) taken back from class {len(KNOWN)}, and (\d+) pseudo-label\(s\)", line)
    assert taken and int(taken.group(1)) >= 1 and int(taken.group(2)) >= 1, line
    learner_took = lambda: launch.text.count(f"one sample of class {len(KNOWN)} taken back")  # noqa: E731
    ros.wait_until("the learner taking back the answered samples and the pseudo-label it learned",
                   lambda: learner_took() >= int(taken.group(1)) + 1, timeout_s=20)
    ros.wait_until(f"class {NEW_CLASS!r} gone from the latched head",
                   lambda: (c := head_classes(any_classes=True)) and NEW_CLASS not in c.values() and c,
                   timeout_s=40, every_s=1.0)

    # --- Ctrl-C ends the launch and every node process in it -----------------------------------------
    for p in (status_echo, preds):
        p.stop(signal.SIGINT)
    started = {m.group(1): int(m.group(2)) for m in
               re.finditer(r"\[INFO\] \[(\w+)-\d+\]: process started with pid \[(\d+)\]", launch.text)}
    assert set(started) == set(GRAPHS["tinyrce"]), started
    assert not re.search(r"\]: process has died", launch.text), launch.text[-3000:]   # none died before Ctrl-C
    code = launch.stop(signal.SIGINT)
    text = launch.text
    assert code == 0, f"ros2 launch exited {code} on Ctrl-C:\n{text[-3000:]}"
    # a terminal's Ctrl-C reaches every process of the group at once. ros2 launch's own handler (Python's SIGINT
    # → a wakeup byte read by its asyncio loop) missed it once in a full run: it logged no "user interrupted", the
    # nodes ended on their own SIGINT and the metrics node's exit ended the launch. Either way: exit 0, every node
    # process ended (below)
    assert ("user interrupted with ctrl-c (SIGINT)" in text
            or "the metrics node has ended (the replay is scored): stopping the graph" in text), text[-3000:]
    assert TOKEN not in text                          # the pairing secret never reaches the log
    # log_level:=debug: the nodes' own debug lines (the labeler's on its questions), not rcl's and rmw's (a bare
    # --log-level debug printed thousands of those a second, and 20,000 in a 15 s replay)
    assert re.search(r"\[DEBUG\] \[[\d.]+\] \[rce\.labeler\]: sample \d+ ", text), text[-3000:]
    # and the learner's on each sample: what it predicted, what it learned and from whom
    learner_debug = (r"\[DEBUG\] \[[\d.]+\] \[rce\.learner\]: sample \d+: predicted -?\d+ \([\d.]+\); "
                     r"learned as \d+ \((?:pseudo-label|ground truth|a person's answer), confidence")
    assert re.search(learner_debug, text), text[-3000:]
    rcl_debug = re.findall(r"\[DEBUG\] \[[\d.]+\] \[(?:rcl|rmw)[\w.]*\]", text)
    assert not rcl_debug, f"{len(rcl_debug)} debug lines of rcl / rmw"
    assert "escalating to SIGTERM" not in text and "SIGKILL" not in text, text[-3000:]
    for name, pid in started.items():
        ended = rf"\[{name}-\d+\]: process has (finished cleanly|died) \[pid {pid}\b"
        assert re.search(ended, text), (name, text[-3000:])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"{name} (pid {pid}) still running after the launch ended")
