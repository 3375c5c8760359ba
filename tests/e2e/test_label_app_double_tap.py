"""A thumb that bounces: two taps on one button, the second without waiting for anything, in Chromium on a 390x844
phone against the real TinyRCE labeler and label app (processes on a private DDS domain). The labeler receives one
answer, one change: the buttons tapped are off from the first tap until the labeler's verdict (or a reconnect), and
on again after it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.conftest import SETTLED_S, answer, ask, open_phone, teach
from tests.e2e.test_label_app_browser import _until
from tests.nodes.conftest import spin_until
from tests.nodes.test_label_app_rename import Robot, robot

pytestmark = pytest.mark.waits      # what make test does with it: pyproject.toml


class Heard:
    """What reaches the labeler from the app: answers (label_answer) and changes (label_correction)."""

    def __init__(self, r: Robot) -> None:
        self.r, self.answers, self.changes = r, [], []
        r.bus.create_subscription("label_answer", "LabelAnswer", self.answers.append, "reliable")
        r.bus.create_subscription("label_correction", "LabelAnswer", self.changes.append, "reliable")

    def of(self, kind: str, rid: str) -> list[Any]:
        spin_until(self.r.bus, lambda: False, 2.0)          # a second one would be here by now
        return [m for m in getattr(self, kind) if m.request_id == rid]


def double_tap(page, button) -> None:
    """Two taps at the button's centre, the second at once (a bounce: nothing waited for between them)."""
    box = button.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.touchscreen.tap(x, y)
    page.touchscreen.tap(x, y)


def one_question(r, phone) -> tuple[Heard, Any, Any, str]:
    """A phone open on the robot, one sample asked: what the robot heard, the page, the question's card, its id."""
    heard = Heard(r)
    page = open_phone(phone, r)
    ask(r, 1)
    card = page.locator("article.card").first
    card.wait_for()
    return heard, page, card, card.get_attribute("data-request-id")


def test_a_double_tap_on_a_questions_class_sends_one_answer(domain, tmp_path, phone):
    with robot(domain, tmp_path) as r:
        heard, page, card, rid = one_question(r, phone)
        time.sleep(SETTLED_S)
        double_tap(page, card.locator('button.cls[data-class-id="0"]'))
        page.locator(f'#history li[data-request-id="{rid}"] .state', has_text="learned").wait_for()
        assert [m.class_id for m in heard.of("answers", rid)] == [0]
        assert [s["status"] for s in r.status if s["request_id"] == rid] == ["learned"]


def test_a_double_tap_on_add_sends_one_new_class(domain, tmp_path, phone):
    with robot(domain, tmp_path) as r:
        heard, page, card, rid = one_question(r, phone)
        card.locator("input[name=new]").fill("cat")
        time.sleep(SETTLED_S)
        double_tap(page, card.locator("form.new button"))
        page.locator(f'#history li[data-request-id="{rid}"] .state', has_text="learned").wait_for()
        assert [m.new_class_name for m in heard.of("answers", rid)] == ["cat"]


def test_a_double_tap_on_a_changes_class_sends_one_change_and_its_buttons_come_back(domain, tmp_path, phone):
    """Change's choices closed at the first tap and the answer below moved up under the thumb: the bounce landed on its
    Withdraw (measured: "dog" withdrawn with "cow" changed). Now the choices stay, off, until the labeler's verdict."""
    with robot(domain, tmp_path) as r:
        heard = Heard(r)
        page = open_phone(phone, r)
        for k, name in enumerate(["cat", "dog", "cow"]):   # 5 classes: Change offers 4, two rows on a 390 px phone
            ask(r, k + 1)
            assert _until(lambda: page.locator("article.card").count() == 1)
            teach(page, name)
            assert _until(lambda: page.locator("article.card").count() == 0)
        rids = page.locator("#history li").evaluate_all("lis => lis.map(li => li.dataset.requestId)")
        item = page.locator("#history li").first                      # "cow", the newest; "dog" below it
        time.sleep(SETTLED_S)
        item.locator("button.change").tap()
        picker = item.locator(".picker")
        picker.wait_for()
        time.sleep(SETTLED_S)
        offered = picker.locator("button.cls")
        assert offered.all_inner_texts() == [f"{n}\n1 example" if n in ("cat", "dog") else f"{n}\n2 examples"
                                             for n in ("walking", "seated", "cat", "dog")], offered.all_inner_texts()
        double_tap(page, offered.last)                                  # "dog", the second row's right
        assert _until(lambda: item.locator(".name").inner_text() == "dog"), item.inner_text()
        item.locator(".state", has_text="learned").wait_for()
        spin_until(r.bus, lambda: False, 2.0)                           # a second change would be here by now
        changes = [(m.request_id, m.class_id) for m in heard.changes]
        assert changes == [(rids[0], 3)], (rids, changes, r.status, page.locator("#history").inner_text())
        said = {rid: [s["status"] for s in r.status if s["request_id"] == rid] for rid in rids}
        assert said == {rids[0]: ["learned", "learned"], rids[1]: ["learned"], rids[2]: ["learned"]}, said
        assert page.locator("#history .state.withdrawn").count() == 0
        assert item.locator(".picker").count() == 0                     # the verdict closed the choices
        for b in page.locator("#history .acts button").all():          # and every answer's buttons are on
            assert b.is_enabled()
        page.screenshot(path=str(tmp_path / "after_verdict.png"))


def test_a_change_without_a_reply_keeps_its_buttons_off_until_the_reconnect(domain, tmp_path, phone):
    """The app's replies to the page held back (a link gone quiet) once a change is sent: the answer's buttons and
    Change's choices stay there, off (a bounce changes or withdraws nothing); the page finds the link silent,
    reconnects, and the answer's buttons are on again, with the change the labeler made."""
    hold = {"on": False}

    def route(ws) -> None:                                      # the page's socket, through the test
        server = ws.connect_to_server()
        server.on_message(lambda m: None if hold["on"] else ws.send(m))

    phone.route_web_socket("**/ws", route)
    with robot(domain, tmp_path) as r:
        heard = Heard(r)
        page = open_phone(phone, r)
        ask(r, 1)
        ask(r, 2)
        assert _until(lambda: page.locator("article.card").count() == 2)
        first, _ = answer(page, 0)
        assert _until(lambda: page.locator("article.card").count() == 1)
        rid, item = answer(page, 0)
        time.sleep(SETTLED_S)
        item.locator("button.change").tap()
        picker = item.locator(".picker")
        picker.wait_for()
        time.sleep(SETTLED_S)
        hold["on"] = True
        double_tap(page, picker.locator('button.cls[data-class-id="1"]'))
        assert picker.count() == 1 and all(b.is_disabled() for b in picker.locator("button").all())
        assert all(b.is_disabled() for b in item.locator(".acts button").all())
        page.screenshot(path=str(tmp_path / "change_sent.png"))
        assert spin_until(r.bus, lambda: [m.request_id for m in heard.changes] == [rid], 5)   # the app sent it on
        hold["on"] = False                                      # the page gives the silent link up within 5 s
        page.locator("#status.live").wait_for(state="detached", timeout=10_000)
        page.wait_for_selector("#status.live", timeout=20_000)
        assert _until(lambda: item.locator(".name").inner_text() == "seated"), item.inner_text()
        item.locator(".state", has_text="learned").wait_for()
        assert [(m.request_id, m.class_id) for m in heard.of("changes", rid)] == [(rid, 1)]
        assert heard.of("changes", first) == []
        time.sleep(SETTLED_S)
        assert item.locator(".picker").count() == 0
        for b in page.locator("#history .acts button").all():
            assert b.is_enabled()
        page.screenshot(path=str(tmp_path / "after_reconnect.png"))
