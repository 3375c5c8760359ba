"""A real browser for the end-to-end tests: Debian's Chromium (tools/install-browser.sh) driven by
Playwright for Python, in a phone-sized viewport. `make test` installs both; a missing one is a
failure that says how to install it, not a silent skip."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.nodes.conftest import domain  # noqa: F401 - the private DDS domain fixture, shared

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
