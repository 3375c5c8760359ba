"""The label app's certificate in a real browser, by its dates: Chromium that trusts it (an NSS database, as a phone
that accepted it) opens the page over HTTPS whatever the robot's clock said when it was made.

Before, the app made it with ten years from the clock at first start: on a robot that booted in 1970 and started the
app before NTP, that was 1970 to 1980, and Chromium then refuses it even once trusted: ERR_CERT_DATE_INVALID. Now it
is valid from 1970 to 9999 (trusted by its fingerprint, not its dates), which Chromium takes: no validity rule of a
public CA applies to a certificate a person trusted."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS


def trusting(home: Path, cert: Path) -> dict[str, str]:
    """The environment of a Chromium whose NSS database (``$HOME/.pki/nssdb``) trusts ``cert`` as a peer."""
    certutil = shutil.which("certutil")
    if certutil is None:
        pytest.fail("certutil missing: Debian's libnss3-tools (make browser-deps installs it)")
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True, exist_ok=True)
    subprocess.run([certutil, "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True)
    subprocess.run([certutil, "-A", "-d", f"sql:{db}", "-t", "P,,", "-n", "robot", "-i", str(cert)], check=True,
                   capture_output=True)
    return {"HOME": str(home)}


def opens(url: str, env: dict[str, str]) -> str:
    """What Chromium, started with ``env``, shows at ``url``: the page's title, or its network error."""
    import os

    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=30_000,
                                     env={**os.environ, **env})
        try:
            page = browser.new_page()
            try:
                page.goto(url, timeout=15_000)
            except Error as exc:
                return str(exc).splitlines()[0]
            return page.title()
        finally:
            browser.close()


def test_chromium_opens_the_page_over_a_certificate_made_while_the_clock_said_1971(tmp_path, domain):
    """The app's first start on a clock set 56 years back (libfaketime), the next on the real one."""
    from tests.faketime import faketime_env
    from tests.nodes.conftest import node
    from tinycl_nodes.fleet.broker import free_port

    port, token = free_port(), "certificate-test-token"
    params = ("host:=0.0.0.0", f"port:={port}", f"state_dir:={tmp_path / 'state'}", "qr:=false", f"token:={token}")
    with node("label_app", domain, *params, env=faketime_env("-20440d")) as app:
        app.wait_for_line("label app on https://", 60)
    with node("label_app", domain, *params) as app:
        app.wait_for_line("label app on https://", 60)
        env = trusting(tmp_path / "home", tmp_path / "state" / "label_app.crt")
        title = opens(f"https://localhost:{port}/?token={token}", env)
        assert title and "ERR_" not in title, title


def test_chromium_refuses_a_certificate_made_with_ten_years_from_1970(tmp_path):
    """The contrast: what the app made before on such a robot, served as is (given as tls_cert, so not made again)."""
    from tests.nodes.test_label_app import ten_year_certificate

    crt, pem_key = tmp_path / "old.crt", tmp_path / "old.key"
    ten_year_certificate(crt, pem_key, dt.datetime(1970, 12, 20, tzinfo=dt.timezone.utc))
    from tinycl_nodes.bus import create_bus
    from tinycl_nodes.nodes.label_app import LabelApp, LabelAppParams

    bus = create_bus("label_app", backend="local")
    app = LabelApp(bus, LabelAppParams(host="0.0.0.0", port=0, state_dir=str(tmp_path / "state"), qr=False,
                                       tls_cert=str(crt), tls_key=str(pem_key)))
    try:
        said = opens(f"https://localhost:{app.server.port}/", trusting(tmp_path / "home", crt))
        assert "net::ERR_CERT_DATE_INVALID" in said, said
    finally:
        app.close()
        bus.shutdown()
