"""Undo from the phone against the real labeler: the real TinyRCE labeler and label app as processes on a
private DDS domain, the test as the phone (WebSocket, as the page talks to the app).

A thumb that bounces on Undo (or Undo in two tabs) sent the withdrawal twice: the labeler withdrew the
answer, refused the second ("cannot be changed any more"), and the phone then showed the withdrawn answer
as "refused" on a red toast, with Undo and Change back — the person believed the undo had failed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from tests.nodes.conftest import spin_until
from tests.nodes.test_label_app_rename import CENTERS, TOKEN, Robot, robot


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
