"""What a person answering the imu graph's questions on a 390 px phone met (Chromium against the real TinyRCE labeler
and label app on a private DDS domain): a class renamed ("sitting" to "seated") kept its old name on the buttons of
the questions already shown, beside a class list that said the new one."""

from __future__ import annotations

import time

from tests.e2e.conftest import SETTLED_S, ask, open_phone
from tests.nodes.test_label_app_rename import robot


def test_a_questions_buttons_follow_a_rename(domain, tmp_path, phone):
    with robot(domain, tmp_path) as r:
        page = open_phone(phone, r)                       # classes 0 "walking", 1 "seated"
        ask(r, 1)
        button = page.locator('article.card button.cls[data-class-id="1"]')
        button.wait_for()
        assert button.inner_text().startswith("seated")
        page.once("dialog", lambda d: d.accept("sitting"))
        page.locator("#tab-know").tap()
        page.locator('#classes li[data-class-id="1"] button.rename').tap()
        page.locator("#toast", has_text="Renamed class 1 to sitting").wait_for()
        page.locator("#tab-ask").tap()
        page.locator('#classes li[data-class-id="1"] .name', has_text="sitting").wait_for(state="attached")
        page.wait_for_timeout(300)
        assert button.inner_text().split("\n")[0] == "sitting"
        assert button.get_attribute("aria-label") == "It is sitting"
        page.reload()                                     # the snapshot's question carries the old name: shown new
        page.wait_for_selector("#status.live")
        time.sleep(SETTLED_S)
        assert page.locator('article.card button.cls[data-class-id="1"]').inner_text().split("\n")[0] == "sitting"
