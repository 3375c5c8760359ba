"""What a phone-user trial met on a 390 px phone, in Chromium (390x844, touch) against the real TinyRCE labeler and
label app as processes on a private DDS domain: the new-name field's placeholder was cut off; a name being typed was
lost when the page re-rendered (a reconnect's snapshot) or its question expired; whether an open page comes back
by itself after the whole robot (labeler and app) was stopped and started again on its state; the app's own refusals
quoted raw request ids to the person; a question re-sent by the labeler got a new deadline (and one the app had let
expire came back), and a question the labeler let expire stayed on the page; a phone back online or back from the background waited for
the page's retry backoff (up to 10 s) before it was live again.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.e2e.conftest import SETTLED_S, ask, labeler_app_phone, open_phone
from tests.e2e.test_label_app_browser import _until
from tests.nodes.conftest import spin_until
from tests.nodes.test_label_app_rename import TOKEN, Robot, app_node, labeler_node, robot
from tinycl_nodes.bus import create_bus
from tinycl_nodes.fleet.broker import free_port

pytestmark = pytest.mark.waits      # what make test does with it: pyproject.toml

def test_the_new_name_placeholder_fits_a_390px_phone(domain, tmp_path, phone):
    with robot(domain, tmp_path) as r:
        page = open_phone(phone, r)
        ask(r, 1)
        field = page.locator("article.card input[name=new]")
        field.wait_for()
        text, width, room = field.evaluate("""i => {
            const s = getComputedStyle(i), ctx = document.createElement("canvas").getContext("2d");
            ctx.font = s.font;
            return [i.placeholder, ctx.measureText(i.placeholder).width,
                    i.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight)];
        }""")
    assert page.viewport_size["width"] == 390
    assert text and width <= room, f"placeholder {text!r} is {width:.0f} px wide, the field shows {room:.0f} px"


def test_a_name_being_typed_survives_a_reconnect(domain, tmp_path, phone):
    """The app restarts while the person types (the page reconnects and redraws from the snapshot): the name and the
    focus stay."""
    with labeler_app_phone(domain, tmp_path, phone) as rig:
        r, page, app = rig.r, rig.page, rig.app
        ask(r, 1)
        card = page.locator("article.card")
        field = card.locator("input[name=new]")
        field.tap()
        page.keyboard.type("gira")
        app.stop()                                                   # the app restarts as the person types
        page.wait_for_selector("#status:not(.live)")
        rig.start_app()
        page.wait_for_selector("#status.live", timeout=20_000)
        assert card.count() == 1
        assert field.input_value() == "gira"
        assert field.evaluate("i => document.activeElement === i")   # still focused: the keyboard stays up
        page.keyboard.type("ffe")
        assert field.input_value() == "giraffe"


def test_a_name_typed_for_a_question_that_expires_waits_in_the_next_one(domain, tmp_path, phone):
    """The question expires before the name typed for it is sent: the page says so and the name waits in the next
    question's field, where one tap on Add answers it. (With the reconnect above in the same 12 s lifetime, a loaded
    machine's slow app restart once let the question expire before the page redrew it.)"""
    with labeler_app_phone(domain, tmp_path, phone, "request_ttl_s:=12") as rig:
        r, page = rig.r, rig.page
        ask(r, 1)
        card = page.locator("article.card")
        field = card.locator("input[name=new]")
        field.tap()
        page.keyboard.type("giraffe")
        assert field.input_value() == "giraffe"
        card.wait_for(state="detached", timeout=20_000)                # its time is up, unanswered
        kept = page.locator("#kept")
        assert kept.is_visible() and "expired" in kept.inner_text() and "“giraffe” is kept" in kept.inner_text()
        ask(r, 2)
        nxt = page.locator("article.card")
        nxt.wait_for()
        assert nxt.locator("input[name=new]").input_value() == "giraffe"   # typed once, not sent yet
        rid = nxt.get_attribute("data-request-id")
        time.sleep(SETTLED_S)
        nxt.locator("form.new button").tap()
        page.locator("#history li", has_text="giraffe").locator(".state", has_text="learned").wait_for()
        assert r.status_of(rid)["class_name"] == "giraffe"
        assert kept.is_hidden()


def test_an_open_page_comes_back_after_the_whole_robot_restarts(domain, tmp_path, phone):
    """Labeler and app stopped, then started again on the same state folders and port: the page that stayed open
    goes live by itself and answers the next question."""
    port = free_port()
    bus = create_bus("phone_side", backend="dds", dds_config="loopback", domain=domain)
    r = Robot(bus, f"http://127.0.0.1:{port}")
    try:
        with labeler_node(domain, tmp_path), app_node(domain, tmp_path, f"port:={port}") as app:
            app.wait_for_line("label app on", 30)
            assert spin_until(bus, lambda: r.features.get_subscription_count() > 0, 20)
            r.wait_online()
            page = open_phone(phone, r)
        page.wait_for_selector("#status:not(.live)")
        with labeler_node(domain, tmp_path) as labeler, app_node(domain, tmp_path, f"port:={port}") as app:
            app.wait_for_line("label app on", 30)
            assert spin_until(bus, lambda: r.features.get_subscription_count() > 0, 20), labeler.lines[-10:]
            r.wait_online()
            page.wait_for_selector("#status.live", timeout=20_000)     # by itself: its retry backs off to 10 s
            assert page.locator("#offline").is_hidden()
            ask(r, 3)
            card = page.locator("article.card")
            card.locator('button.cls[data-class-id="1"]').wait_for()
            rid = card.get_attribute("data-request-id")
            time.sleep(SETTLED_S)
            card.locator('button.cls[data-class-id="1"]').tap()
            page.locator(f'#history li[data-request-id="{rid}"] .state', has_text="learned").wait_for()
            assert r.status_of(rid)["class_name"] == "seated"
            assert _until(lambda: page.locator("#status").inner_text() == "live")
            assert "Traceback" not in "\n".join(labeler.lines + app.lines)
    finally:
        bus.shutdown()


def test_the_apps_refusals_say_words_never_a_request_id(domain, tmp_path, phone):
    """What the app refuses by itself (a question already answered, one it is not asking, a class the question does
    not offer, a change with no answer to change) reaches the phone in words; the request id is for its log only."""
    received: list[dict] = []
    with robot(domain, tmp_path) as r:
        page = open_phone(phone, r, received)
        ask(r, 1)
        card = page.locator("article.card")
        card.wait_for()
        rid = card.get_attribute("data-request-id")
        time.sleep(SETTLED_S)
        card.locator('button.cls[data-class-id="1"]').tap()
        page.locator(f'#history li[data-request-id="{rid}"] .state', has_text="learned").wait_for()
        ask(r, 2)
        other = page.locator("article.card:not(.leaving)")
        other.wait_for()
        rid2 = other.get_attribute("data-request-id")
        tries = [({"type": "answer", "request_id": rid, "class_id": 1},
                  "this question was already answered (seated): nothing was sent"),
                 ({"type": "skip", "request_id": "no-such-question", "why": "skip"},
                  "the robot is not asking this question (any more): nothing was sent"),
                 ({"type": "undo", "request_id": rid2}, "there is no answer to this question to change: nothing was sent"),
                 ({"type": "answer", "request_id": rid2, "class_id": 7},
                  "class 7 is not one of this question's choices: nothing was sent")]
        shown = []
        for message, text in tries:
            page.evaluate("m => window.tinycl.send(m)", message)      # as a stale page, or a second tab, sends it
            page.locator("#toast.error", has_text=text).wait_for()
            shown.append(page.locator("#toast").inner_text())
        shown.append(other.locator(".err").inner_text())
        page.wait_for_timeout(200)                                   # the frames' events reach this thread
    said = [m["message"] for m in received if m["type"] == "error"]
    assert said == [text for _, text in tries]
    assert shown == said + [said[-1]]                                # the toasts, and the card's own line
    assert not [t for t in said + shown if rid in t or rid2 in t or "no-such-question" in t]


def pending(r: Robot) -> list[dict]:
    """The questions the app shows (its /api/state), each with ``deadline``: when it leaves, by this machine's clock."""
    req = urllib.request.Request(r.base + "/api/state", headers={"X-Tinycl-Token": TOKEN})
    with urllib.request.urlopen(req, timeout=5) as got:
        return [{**p, "deadline": time.time() + p["expires_in_s"]} for p in json.loads(got.read())["pending"]]


def test_a_question_re_sent_by_the_labeler_keeps_its_deadline(domain, tmp_path):
    """The labeler re-sends its open questions to a new reader: an app started afresh (its state lost) shows one with
    the deadline it had, counted from when the labeler asked (the request's stamp), not a new one; once the app let
    it expire, a restart of the app does not bring it back (the labeler, waiting longer, re-sends it again)."""
    port = free_port()
    bus = create_bus("phone_side", backend="dds", dds_config="loopback", domain=domain)
    r = Robot(bus, f"http://127.0.0.1:{port}")
    app_params = (f"port:={port}", "request_ttl_s:=6")
    try:
        with labeler_node(domain, tmp_path) as labeler:
            with app_node(domain, tmp_path, *app_params) as app:
                app.wait_for_line("label app on", 30)
                assert spin_until(bus, lambda: r.features.get_subscription_count() > 0, 20), labeler.lines[-10:]
                ask(r, 1)
                assert _until(lambda: len(pending(r)) == 1)
                first = pending(r)[0]
            time.sleep(1.5)                            # the labeler's tick (1 s) sees its reader gone: the next is new
            fresh = (f"state_dir:={tmp_path / 'fresh'}",)      # the app's state lost: it learns the question anew
            with app_node(domain, tmp_path, *app_params, *fresh) as app:
                app.wait_for_line(f"request {first['id']} pending", 20)       # re-sent by the labeler
                again = pending(r)
                assert [p["id"] for p in again] == [first["id"]]
                assert abs(again[0]["deadline"] - first["deadline"]) < 1.0, (again[0]["deadline"] - first["deadline"])
                app.wait_for_line(f"request {first['id']} expired", 10)       # its time is up at the app
            time.sleep(1.5)
            with app_node(domain, tmp_path, *app_params, *fresh) as app:
                line = app.wait_for_line(f"request {first['id']}", 20)        # re-sent again: still open at the labeler
                time.sleep(0.5)
                assert pending(r) == [] and "not shown" in line, line
            assert "Traceback" not in "\n".join(labeler.lines)
    finally:
        bus.shutdown()


def test_a_question_the_labeler_let_expire_leaves_the_page_at_once(domain, tmp_path, phone):
    """The labeler's deadline is the question's (its label_status says "expired"): the card leaves then, though the
    app would have waited longer; what was typed for it is kept, and the page says the question expired."""
    port = free_port()
    bus = create_bus("phone_side", backend="dds", dds_config="loopback", domain=domain)
    r = Robot(bus, f"http://127.0.0.1:{port}")
    try:
        with labeler_node(domain, tmp_path, "request_ttl_s:=3") as labeler, \
                app_node(domain, tmp_path, f"port:={port}", "request_ttl_s:=60") as app:
            app.wait_for_line("label app on", 30)
            assert spin_until(bus, lambda: r.features.get_subscription_count() > 0, 20), labeler.lines[-10:]
            r.wait_online()
            page = open_phone(phone, r)
            ask(r, 1)
            card = page.locator("article.card")
            card.wait_for()
            rid = card.get_attribute("data-request-id")
            card.locator("input[name=new]").fill("gira")
            card.wait_for(state="detached", timeout=8_000)       # the labeler's 3 s (and its 1 s tick), not the app's 60
            assert r.status_of(rid)["status"] == "expired"
            kept = page.locator("#kept")
            assert "expired" in kept.inner_text() and "“gira” is kept" in kept.inner_text()
            assert pending(r) == []
            assert "Traceback" not in "\n".join(labeler.lines + app.lines)
    finally:
        bus.shutdown()


def network(cdp, online: bool) -> None:
    """The browser's network off or on, as DevTools emulates it: Chromium fires ``offline`` / ``online`` on the page.
    "On" is an override with a (non-limiting) throughput: clearing the emulation (Playwright's set_offline(False))
    falls back to the host's own state, and a test in a network namespace with loopback only is offline to Chromium,
    so no ``online`` event would come."""
    cdp.send("Network.emulateNetworkConditions", {"offline": not online, "latency": 0,
                                                  "downloadThroughput": -1 if not online else 1e9,
                                                  "uploadThroughput": -1 if not online else 1e9})


def test_a_phone_back_from_the_background_or_online_reconnects_at_once(domain, tmp_path, phone):
    """Offline, the page's retries fail and their delay doubles (0.5, 1, 2, 4, 8 s, at most 10 s); the app restarts
    meanwhile. Back in the foreground (visibilitychange) the page tries at once, not when its backoff says; back online
    (the browser's own ``online`` event) it is live again at once, with the answers on."""
    attempts: list[float] = []
    with labeler_app_phone(domain, tmp_path, phone) as rig:
        r, page, app = rig.r, rig.page, rig.app
        page.on("websocket", lambda ws: attempts.append(time.monotonic()))
        cdp = phone.new_cdp_session(page)
        cdp.send("Network.enable")
        network(cdp, online=False)
        app.stop()                                               # the page's connection goes: it retries, offline
        page.wait_for_selector("#status:not(.live)")
        rig.start_app()
        r.wait_online()
        while len(attempts) < 4:                                 # after 0.5 + 1 + 2 + 4 s: the next in 8 s
            page.wait_for_timeout(50)
        due = attempts[-1] + min(0.5 * 2 ** len(attempts), 10.0)
        shown = time.monotonic()
        page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")   # the page is visible again
        n = len(attempts)
        while len(attempts) == n and time.monotonic() < due + 1:
            page.wait_for_timeout(20)
        tried = attempts[n] - shown
        on = time.monotonic()
        network(cdp, online=True)
        page.wait_for_selector("#status.live", timeout=15_000)
        live = time.monotonic() - on
        print(f"backoff {due - shown:.1f} s left: tried after {tried:.2f} s; online: live after {live:.2f} s")
        assert tried < 1.0 and due - shown >= 6.0, (tried, due - shown)
        assert live < 3.0, live                                  # its backoff was at 10 s by then
        assert page.locator("#offline").is_hidden()
