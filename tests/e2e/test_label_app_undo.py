"""Undo from the phone against the real labeler: the real TinyRCE labeler and label app as processes on a
private DDS domain, the test as the phone (WebSocket, as the page talks to the app).

A thumb that bounces on Undo (or Undo in two tabs) sent the withdrawal twice: the labeler withdrew the
answer, refused the second ("cannot be changed any more"), and the phone then showed the withdrawn answer
as "refused" on a red toast, with Undo and Change back — the person believed the undo had failed.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from typing import Any

import numpy as np
import pytest

from tests.label_page import page_state
from tests.nodes.conftest import spin_until
from tests.nodes.test_label_app_rename import CENTERS, TOKEN, Robot, robot

pytestmark = pytest.mark.waits      # what make test does with it: pyproject.toml


def novel(r: Robot) -> None:
    """An unlabelled sample far from both known classes: the labeler asks the phone about it."""
    Features, Header, Time = (r.bus.msg(t) for t in ("Features", "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    r.stamp += 1000
    x = (-(CENTERS[0] + CENTERS[1])).astype(np.float32)
    r.features.publish(Features(header=Header(stamp=Time(sec=r.stamp // 10**9, nanosec=r.stamp % 10**9)), data=x,
                                extractor_hash=r.hash, sample_id=4242, true_label=-1, labelled=False))


def test_a_double_tap_on_undo_withdraws_once_and_the_phone_says_withdrawn(domain, tmp_path):
    import aiohttp

    with robot(domain, tmp_path) as r:
        r.learn(0)
        r.learn(1)
        r.wait_app_knows({0: "walking", 1: "seated"})

        async def go() -> tuple[str, list[dict[str, Any]]]:
            async with aiohttp.ClientSession(headers={"X-Tinycl-Token": TOKEN}) as s:
                ws = await s.ws_connect(r.base + "/ws")
                assert (await ws.receive_json(timeout=5))["type"] == "snapshot"
                novel(r)

                async def until(pred, timeout_s: float = 15.0) -> dict[str, Any]:
                    end = time.monotonic() + timeout_s
                    while True:
                        m = await ws.receive_json(timeout=max(0.1, end - time.monotonic()))
                        if pred(m):
                            return m

                rid = (await until(lambda m: m["type"] == "request"))["request"]["id"]
                await ws.send_json({"type": "answer", "request_id": rid, "class_id": 0})
                await until(lambda m: m["type"] == "answered" and m["item"]["status"] == "learned")
                await ws.send_json({"type": "undo", "request_id": rid})       # the thumb bounces
                await ws.send_json({"type": "undo", "request_id": rid})
                seen: list[dict[str, Any]] = []
                end = time.monotonic() + 3.0                                    # the labeler's verdicts come back
                while time.monotonic() < end:
                    try:
                        seen.append(await ws.receive_json(timeout=0.2))
                    except asyncio.TimeoutError:
                        pass
                await ws.close()
                return rid, seen

        rid, seen = asyncio.run(asyncio.wait_for(go(), 60))
        spin_until(r.bus, lambda: False, 1.0)
        verdicts = [s["status"] for s in r.status if s["request_id"] == rid]
    replies = [m for m in seen if m["type"] in ("ok", "error")]
    assert [m["type"] for m in replies] == ["ok", "error"], seen
    assert replies[0]["class_name"] == "answer withdrawn"
    assert replies[1]["message"] == "the answer walking was already withdrawn: nothing was sent"
    states = [m["item"]["status"] for m in seen if m["type"] == "answered"]
    assert states and set(states) == {"withdrawn"}, seen            # never "refused"
    assert verdicts == ["learned", "withdrawn"]                     # the labeler got one withdrawal


def test_undo_follows_the_robots_clock_not_the_phones(domain, tmp_path, phone):
    """A robot without network time runs minutes behind the phone: the page compared the robot's answer time with
    the phone's clock, so a fresh answer had no Undo and no "just now". And an Undo drawn once stayed after
    ``undo_s``: its tap only got a refusal. Now the page counts from the answer's age the app gives."""
    with robot(domain, tmp_path, "undo_s:=8") as r:
        r.learn(0)
        r.learn(1)
        r.wait_app_knows({0: "walking", 1: "seated"})
        page = phone.new_page()
        page.clock.install(time=time.time() + 300)                    # the phone is 5 minutes ahead of the robot
        page.goto(r.base + f"/?token={TOKEN}")
        page.wait_for_selector("#status.live")
        novel(r)
        card = page.locator("article.card")
        card.locator('button.cls[data-class-id="0"]').wait_for()
        rid = card.get_attribute("data-request-id")
        time.sleep(0.8)                                                # the new card's buttons settle
        card.locator('button.cls[data-class-id="0"]').tap()
        item = page.locator(f'#history li[data-request-id="{rid}"]')
        item.locator(".state", has_text="learned").wait_for()
        assert item.locator(".when").inner_text() == "just now"
        assert item.locator("button.undo").is_visible() and item.locator("button.change").is_visible()
        item.locator("button.undo").wait_for(state="detached", timeout=15_000)   # undo_s is over: no dead button
        assert item.locator("button.change").count() == 0
        page.locator("#tab-know").tap()
        seen = page.locator('#classes li[data-class-id="0"] .meta-c')
        assert seen.inner_text().endswith("last seen just now"), seen.inner_text()


def test_a_change_the_labeler_refuses_leaves_the_answer_as_it_stood(domain, tmp_path):
    """A labeler that no longer holds an answer (it lost its state, or 200 answers came since) refuses a change of
    it; the phone then showed the answer itself as "refused", though the labeler's clusters and the learner still
    hold it as it was. Now the answer stays as it stood ("learned", its class, its picture an example of it), with
    the labeler's reason, and the phone says so."""
    import shutil

    import aiohttp

    from tests.nodes.conftest import node
    from tests.nodes.test_label_app_rename import MODEL, NAMES
    from tinycl_nodes.bus import create_bus

    state = tmp_path / "labeler"
    labeler_args = (f"model:={MODEL}", "preset:=rce", NAMES, f"state_dir:={state}", "ask_policy:=each")
    bus = create_bus("phone_side", backend="dds", dds_config="loopback", domain=domain)

    def phone(base: str, send: dict[str, Any] | None, until) -> list[dict[str, Any]]:
        """As the phone: connect, send ``send``, read until ``until(message)`` (in a thread of its own: a browser
        test before this one may leave its event loop running in this one)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, _phone(base, send, until)).result()

    async def _phone(base: str, send: dict[str, Any] | None, until) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession(headers={"X-Tinycl-Token": TOKEN}) as s:
            ws = await s.ws_connect(base + "/ws")
            seen = [await ws.receive_json(timeout=5)]
            if send is not None:
                await ws.send_json(send)
            while not until(seen[-1]):
                try:
                    seen.append(await ws.receive_json(timeout=15))
                except asyncio.TimeoutError:
                    raise AssertionError(f"the phone waited 15 s; it got {seen}"[:3000]) from None
            await ws.close()
            return seen

    try:
        with node("label_app", domain, "host:=127.0.0.1", "port:=0", f"token:={TOKEN}", f"state_dir:={tmp_path / 'app'}",
                  "qr:=false") as app:
            base = "http://127.0.0.1:" + re.search(r"http://127\.0\.0\.1:(\d+)", app.wait_for_line("label app on", 30)).group(1)
            r = Robot(bus, base)
            with node("labeler", domain, *labeler_args):
                assert spin_until(bus, lambda: r.features.get_subscription_count() > 0, 20)
                r.learn(0)
                r.learn(1)
                r.wait_app_knows({0: "walking", 1: "seated"})
                r.wait_online()
                novel(r)
                rid = phone(base, None, lambda m: m["type"] == "request" or (
                    m["type"] == "snapshot" and m["pending"]))[-1]
                rid = rid["request"]["id"] if rid["type"] == "request" else rid["pending"][0]["id"]
                phone(base, {"type": "answer", "request_id": rid, "class_id": 0},
                      lambda m: m["type"] == "answered" and m["item"]["status"] == "learned")
            shutil.rmtree(state)                                        # the labeler lost its state
            with node("labeler", domain, *labeler_args) as fresh:
                assert spin_until(bus, lambda: r.features.get_subscription_count() > 0, 20), fresh.lines[-5:]
                time.sleep(1.0)                                         # the app discovers it too
                r.wait_online()
                seen = phone(base, {"type": "undo", "request_id": rid, "class_id": 1},
                             lambda m: m["type"] == "answered" and m["item"]["message"])
                spin_until(bus, lambda: len([s for s in r.status if s["request_id"] == rid]) >= 2, 5)
    finally:
        bus.shutdown()
    # the fresh labeler lists no class (its classes: nothing learned); the app names the class by its id
    assert [m for m in seen if m["type"] in ("ok", "error")][0]["class_name"] == "changed to 1", seen
    item = seen[-1]["item"]
    assert (item["status"], item["class_id"], item["class_name"]) == ("learned", 0, "walking"), item
    assert item["message"] == "change refused: the robot no longer holds this answer: it cannot be changed any more"
    assert [s["status"] for s in r.status if s["request_id"] == rid] == ["learned", "refused"]


def test_a_change_the_robot_does_not_judge_is_said_and_its_late_verdict_counts(domain, tmp_path, phone):
    """A change the labeler never judged (it was paused, the message lost, or it reads no label_correction) left the
    answer saying "sent, waiting for the robot", its buttons off, for good. Now, past ``reply_s``, the answer shows
    as the labeler last held it, says there was no word, and has its buttons back; the verdict, when it comes, counts.
    The real labeler is paused (SIGSTOP) for the change and resumed (SIGCONT) after the app gave up on it."""
    from tests.e2e.conftest import answer, ask, open_phone

    with robot(domain, tmp_path, "reply_s:=2") as r:
        page = open_phone(phone, r)
        ask(r, 1)
        rid, item = answer(page, 0)
        said = lambda: [(s["status"], s["class_name"]) for s in r.status if s["request_id"] == rid]   # noqa: E731
        assert spin_until(r.bus, lambda: said() == [("learned", "walking")], 10), said()
        time.sleep(0.8)                                                 # the new answer's buttons settle
        item.locator("button.change").tap()
        time.sleep(0.8)
        os.kill(r.labeler.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            item.locator('.picker button.cls[data-class-id="1"]').tap()
            item.locator(".state", has_text="sent, waiting for the robot").wait_for(timeout=5_000)
            assert "busy" in item.get_attribute("class") and item.locator(".name").inner_text() == "seated"
            state = item.locator(".state.unanswered")
            state.wait_for(timeout=10_000)
            waited = time.monotonic() - t0
            assert state.inner_text() == "no word from the robot: the change to seated may not have been made"
            assert item.locator(".name").inner_text() == "walking"     # as the labeler last said it holds it
            assert "busy" not in (item.get_attribute("class") or "") and item.locator("button.change").is_enabled()
            assert page.locator("#toast").inner_text() == ("No word from the robot: the change to seated may not "
                                                           "have been made")
            assert 1.5 < waited < 8, waited
            assert said() == [("learned", "walking")]
        finally:
            os.kill(r.labeler.proc.pid, signal.SIGCONT)
        item.locator(".state", has_text="learned").wait_for(timeout=15_000)    # the late verdict
        assert item.locator(".name").inner_text() == "seated" and item.locator(".state").inner_text() == "learned"
        assert spin_until(r.bus, lambda: said() == [("learned", "walking"), ("learned", "seated")], 10), said()


def test_a_change_to_a_robot_that_says_no_verdict_is_done_once_sent(domain, tmp_path, phone):
    """A robot that reads ``label_correction`` but writes no ``label_status`` (a board on a libmicroros built with
    fewer publishers than subscriptions; here the real labeler, its ``label_status`` and ``label_closed`` remapped where
    the app does not listen): a change was waited for as if a verdict would come. The page kept it busy, and after
    ``reply_s`` the app said "no word from the robot", showing the answer as before the change, which the robot had
    made. Now a change and a withdrawal to such a robot say "this robot says no verdict", as its answers do, and are
    done once sent."""
    from tests.e2e.conftest import answer, ask, open_phone

    with robot(domain, tmp_path, "reply_s:=1", verdicts_heard=False) as r:
        page = open_phone(phone, r)
        robot_is = lambda: page_state(r.base, TOKEN)["robot"]     # noqa: E731 (the app looks 2 s after it is online)
        assert spin_until(r.bus, lambda: robot_is() == {"online": True, "changes": True, "verdicts": False}, 10), \
            robot_is()
        ask(r, 1)
        rid, item = answer(page, 0, learned=False)
        state = item.locator(".state")
        state.filter(has_text="sent; this robot says no verdict").wait_for(timeout=5_000)
        said = lambda: [(s["status"], s.get("class_name")) for s in r.status if s["request_id"] == rid]  # noqa: E731
        assert spin_until(r.bus, lambda: said() == [("learned", "walking")], 10), said()     # the labeler's own
        time.sleep(0.8)                                                 # the new answer's buttons settle
        item.locator("button.change").tap()
        time.sleep(0.8)
        item.locator('.picker button.cls[data-class-id="1"]').tap()
        assert spin_until(r.bus, lambda: said()[-1:] == [("learned", "seated")], 10), said()  # the robot made it
        time.sleep(1.5)                                                 # past reply_s: nothing is waited for
        shown = item.locator(".name").inner_text(), state.inner_text()
        assert shown == ("seated", "sent; this robot says no verdict"), shown
        assert "busy" not in (item.get_attribute("class") or "") and item.locator("button.change").is_enabled()
        assert item.locator(".picker").count() == 0                    # Change's choices closed, as after a verdict
        item.locator("button.undo").tap()
        state.filter(has_text="withdrawn: this robot says no verdict").wait_for(timeout=5_000)
        assert spin_until(r.bus, lambda: said()[-1][0] == "withdrawn", 10), said()
        time.sleep(1.5)
        assert state.inner_text() == "withdrawn: this robot says no verdict"
        assert page_state(r.base, TOKEN)["history"][0]["status"] == "withdrawn"
