"""A real browser for the end-to-end tests: Debian's Chromium (tools/install-browser.sh) driven by
Playwright for Python, in a phone-sized viewport. `make test` installs both; a missing one is a
failure that says how to install it, not a silent skip."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.nodes.conftest import domain  # noqa: F401 - the private DDS domain fixture, shared
from tests.nodes.conftest import spin_until
from tests.nodes.test_label_app_rename import TOKEN, Robot, app_node, labeler_node

CHROMIUM = os.environ.get("TINYCL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
         "device_scale_factor": 1, "locale": "en-GB"}


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("playwright missing: pip install -e '.[dev]' (make test does it)")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} missing: run tools/install-browser.sh (make test does it)")
    pw = sync_api.sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=30_000)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture()
def phone(browser):
    """A fresh phone-sized browser context (its own cookies), closed at the end."""
    ctx = browser.new_context(**PHONE)
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def axe_js() -> str:
    """axe-core from npm (tools/install-axe.sh, which make browser-deps runs)."""
    out = subprocess.run(["bash", str(Path(__file__).resolve().parents[2] / "tools" / "install-axe.sh")],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        pytest.fail(f"axe-core missing and not installable: {out.stderr[-500:]} (run make browser-deps)")
    return Path(out.stdout.strip()).read_text()


SETTLED_S = 0.8                  # a new card's buttons ignore taps for the page's SETTLE_MS (0.6 s)


def ask(r: Robot, k: int) -> None:
    """A sample far from both known classes and from the other asks (``k``): the labeler asks the phone about it."""
    Features, Header, Time = (r.bus.msg(t) for t in ("Features", "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    r.stamp += 1000
    x = np.random.default_rng(100 + k).normal(0, 6, 64).astype(np.float32)
    r.features.publish(Features(header=Header(stamp=Time(sec=r.stamp // 10**9, nanosec=r.stamp % 10**9)), data=x,
                                extractor_hash=r.hash, sample_id=5000 + k, true_label=-1, labelled=False))


def open_phone(phone, r: Robot, received: list[dict] | None = None):
    """The paired page, live, with the classes the robot knows (what the app sends it appended to ``received``)."""
    r.learn(0)
    r.learn(1)
    r.wait_app_knows({0: "walking", 1: "seated"})
    page = phone.new_page()
    if received is not None:
        page.on("websocket", lambda ws: ws.on("framereceived", lambda f: received.append(json.loads(f))))
    page.goto(r.base + f"/?token={TOKEN}")
    page.wait_for_selector("#status.live")
    return page


@dataclass
class Rig:
    """The real labeler, a label app on a fixed port (started again, it is at the page's address) and the page."""
    r: Robot
    page: Any
    app: Any
    apps: ExitStack          # the app's process: close it to stop the app for good, start_app() to start it again
    start_app: Any


@contextmanager
def labeler_app_phone(domain_id: int, tmp_path: Path, phone, *app_params: str) -> Iterator[Rig]:
    """:class:`Rig`: the labeler and the app (with ``app_params``) on DDS domain ``domain_id``, the phone's page live
    on it."""
    from tinycl_nodes.bus import create_bus
    from tinycl_nodes.fleet.broker import free_port

    port = free_port()
    bus = create_bus("phone_side", backend="dds", dds_config="loopback", domain=domain_id)
    r = Robot(bus, f"http://127.0.0.1:{port}")
    try:
        with labeler_node(domain_id, tmp_path), ExitStack() as apps:
            def start_app() -> Any:
                app = apps.enter_context(app_node(domain_id, tmp_path, f"port:={port}", *app_params))
                app.wait_for_line("label app on", 30)
                return app

            app = start_app()
            assert spin_until(bus, lambda: r.features.get_subscription_count() > 0, 20)
            r.wait_online()
            yield Rig(r, open_phone(phone, r), app, apps, start_app)
    finally:
        bus.shutdown()


def answer(page, class_id: int, learned: bool = True) -> tuple[str, Any]:
    """Tap class ``class_id`` on the first question on the page: its request id, and its history entry (with
    ``learned``, once the labeler learned it)."""
    card = page.locator("article.card").first
    card.wait_for()
    rid = card.get_attribute("data-request-id")
    time.sleep(SETTLED_S)
    card.locator(f'button.cls[data-class-id="{class_id}"]').tap()
    item = page.locator(f'#history li[data-request-id="{rid}"]')
    if learned:
        item.locator(".state", has_text="learned").wait_for()
    return rid, item


def teach(page, name: str):
    """Answer the first question on the page with a new class ``name``; its history entry once the labeler learned
    it."""
    card = page.locator("article.card").first
    card.wait_for()
    rid = card.get_attribute("data-request-id")
    card.locator("input[name=new]").fill(name)
    time.sleep(SETTLED_S)
    card.locator("form.new button").tap()
    item = page.locator(f'#history li[data-request-id="{rid}"]')
    item.locator(".state", has_text="learned").wait_for()
    return item
