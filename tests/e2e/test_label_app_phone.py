"""What a phone-user trial met on a 390 px phone, in Chromium (390x844, touch) against the real TinyRCE labeler and
label app as processes on a private DDS domain: the new-name field's placeholder was cut off.
"""

from __future__ import annotations

import numpy as np

from tests.nodes.test_label_app_rename import TOKEN, Robot, robot


def ask(r: Robot, k: int) -> None:
    """A sample far from both known classes and from the other asks (``k``): the labeler asks the phone about it."""
    Features, Header, Time = (r.bus.msg(t) for t in ("Features", "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    r.stamp += 1000
    x = np.random.default_rng(100 + k).normal(0, 6, 64).astype(np.float32)
    r.features.publish(Features(header=Header(stamp=Time(sec=r.stamp // 10**9, nanosec=r.stamp % 10**9)), data=x,
                                extractor_hash=r.hash, sample_id=5000 + k, true_label=-1, labelled=False))


def open_phone(phone, r: Robot):
    """The paired page, live, with the classes the robot knows."""
    r.learn(0)
    r.learn(1)
    r.wait_app_knows({0: "walking", 1: "seated"})
    page = phone.new_page()
    page.goto(r.base + f"/?token={TOKEN}")
    page.wait_for_selector("#status.live")
    return page


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
