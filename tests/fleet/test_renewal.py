"""Certificates that end: the CA outlives them, a re-run renews them (the old bundle works on until its end), and a CA
that has ended is refused in words. Each later day is a real process on a wall clock moved by libfaketime: set-up,
mosquitto and `tinycl fleet check`, over real TLS."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509

from tests.faketime import faketime_env
from tinycl_nodes.fleet.broker import BrokerSetup, current_user, free_port, listening

from .conftest import _need_mosquitto, reissue, wait_for
from .test_setup import _days, _files, _setup


def _cli(offset: str, *args: str) -> subprocess.CompletedProcess:
    """`tinycl fleet ARGS` in a process whose wall clock is ``offset`` off."""
    return subprocess.run([sys.executable, "-m", "tinycl_nodes.cli", "fleet", *args], capture_output=True, text=True,
                          env={**os.environ, **faketime_env(offset)}, timeout=120)


def _check(folder: Path, name: str, offset: str) -> str:
    """`tinycl fleet check` with ``folder``'s files (a broker directory or a bundle) on that clock: its ``connect``."""
    res = _cli(offset, "check", "--broker-dir", str(folder), "--identity", name, "--host", "localhost")
    return json.loads(res.stdout.strip().splitlines()[-1])["connect"]


@contextlib.contextmanager
def _broker_at(d: Path, offset: str) -> Iterator[None]:
    """The real mosquitto on ``d``'s config, its wall clock ``offset`` off."""
    st = BrokerSetup.load(d)
    with open(d / "mosquitto.log", "ab") as log:
        p = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", st.config],
                             env={**os.environ, **faketime_env(offset)}, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: listening(st.ip, st.port) or p.poll() is not None, timeout_s=10)
            assert p.poll() is None, (d / "mosquitto.log").read_text()[-2000:]
            yield
        finally:
            p.terminate()
            p.wait(10)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _revoked(d: Path) -> set[int]:
    return {r.serial_number for r in x509.load_pem_x509_crl((d / "crl.pem").read_bytes())}


def _new_fleet(tmp_path: Path, days: str) -> Path:
    _need_mosquitto()
    d = tmp_path / "b"
    code, out, err = _setup(d, "--devices", "robot1,robot2", "--days", days, "--port", str(free_port()), "--host",
                            "localhost", "--user", current_user())       # tmp_path is 0700: the broker runs as us
    assert code == 0, err
    return d


def test_a_rerun_after_the_certificates_ended_renews_them_and_the_broker_serves_again(tmp_path) -> None:
    """CA and certificates had the same --days: once ended, the advice given ("setup again / with --rotate") failed
    ("The next update date must be after the last update date") and left a server.key the broker's account could not
    read. Now the CA lives >= 10 years, and the re-run renews every certificate, keeping names and passwords."""
    d = _new_fleet(tmp_path, "100")
    assert _days(d / "ca.crt") >= 3652, "the CA outlives its certificates"
    assert round(_days(d / "clients" / "robot1.crt")) == round(_days(d / "server.crt")) == 100
    old = tmp_path / "robot1-old"                                   # what robot1 holds
    shutil.copytree(d / "bundles" / "robot1", old)
    passwords = {n: c.password for n, c in BrokerSetup.load(d).clients.items()}
    res = _cli("+101d", "setup", str(d), "--fleet", "lab", "--devices", "robot1,robot2")
    assert res.returncode == 0, res.stderr
    assert (f"renewed (certificate ended or ending; same names and passwords): copy {d / 'bundles'}/<name> to each "
            f"of: aggregator, robot1, robot2 again; the bundles they hold have ended (aggregator, robot1, robot2)"
            ) in res.stdout, res.stdout
    assert {n: c.password for n, c in BrokerSetup.load(d).clients.items()} == passwords
    assert not (d / "clients" / "robot1.renewed.pem").exists(), "an ended certificate is not kept to be revoked"
    with _broker_at(d, "+101d"):
        assert _check(d, "robot1", "+101d") == "Success"
        assert _check(d / "bundles" / "robot2", "robot2", "+101d") == "Success"
        said = _check(old, "robot1", "+101d")
        assert "it has expired on" in said and "fleet setup` on its directory again (it renews it)" in said, said


def test_a_renewal_before_the_end_leaves_the_old_bundle_working_until_then(tmp_path) -> None:
    """A re-run never renewed a kept certificate, however near its end (only --rotate did, revoking the old one: the
    device cut off until its new bundle is copied). Within 30 days of its end it is renewed and the old one is not
    revoked; removing the device later revokes both."""
    d = _new_fleet(tmp_path, "100")
    old = tmp_path / "robot1-old"
    shutil.copytree(d / "bundles" / "robot1", old)
    old_cert, password = _cert(d / "clients" / "robot1.crt"), BrokerSetup.load(d).credentials("robot1").password
    res = _cli("+50d", "setup", str(d), "--fleet", "lab", "--devices", "robot1,robot2")
    assert res.returncode == 0 and "renewed" not in res.stdout, (res.stdout, res.stderr)   # 50 days left: not yet
    res = _cli("+80d", "setup", str(d), "--fleet", "lab", "--devices", "robot1,robot2")
    assert res.returncode == 0, res.stderr
    until = f"{old_cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    assert (f"each of: aggregator, robot1, robot2 again; the bundles they hold work until {until} (aggregator, "
            f"robot1, robot2)") in res.stdout, res.stdout
    new_cert = _cert(d / "clients" / "robot1.crt")
    assert new_cert.serial_number != old_cert.serial_number and old_cert.serial_number not in _revoked(d)
    assert new_cert.not_valid_after_utc > old_cert.not_valid_after_utc
    assert BrokerSetup.load(d).credentials("robot1").password == password
    with _broker_at(d, "+80d"):
        assert _check(old, "robot1", "+80d") == "Success", "the bundle robot1 holds works until it ends"
        assert _check(d / "bundles" / "robot1", "robot1", "+80d") == "Success"
    res = _cli("+81d", "setup", str(d), "--fleet", "lab", "--devices", "robot2")     # robot1 leaves the fleet
    assert res.returncode == 0 and "revoked: robot1" in res.stdout, (res.stdout, res.stderr)
    assert {old_cert.serial_number, new_cert.serial_number} <= _revoked(d), "both bundles it may hold"
    with _broker_at(d, "+81d"):
        assert "it is revoked" in _check(old, "robot1", "+81d")


def test_a_ca_that_has_ended_is_refused_in_one_line_and_nothing_is_written(tmp_path) -> None:
    """Past the CA's end, set-up failed half-way with "The next update date must be after the last update date",
    a new server.key written. Now one line with the date and --new-ca, the directory as it was; --new-ca goes on."""
    d = _new_fleet(tmp_path, "1")
    end = _cert(d / "ca.crt").not_valid_after_utc
    before = _files(d)
    res = _cli("+4000d", "setup", str(d), "--fleet", "lab", "--devices", "robot1,robot2")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert f"CA ({d / 'ca.crt'}) ended on {end:%Y-%m-%d %H:%M} UTC" in lines[0] and "--new-ca" in lines[0], lines
    assert _files(d) == before, "nothing written"
    res = _cli("+4000d", "setup", str(d), "--fleet", "lab", "--devices", "robot1,robot2", "--new-ca")
    assert res.returncode == 0, res.stderr


def test_certificates_end_with_a_ca_ending_first_and_the_lifetime_is_kept_past_it(tmp_path) -> None:
    """A CA ending within --days: certificates end with it (none outlives its CA), set-up says so and names --new-ca;
    that cut-short server.crt is not taken for the fleet's --days by the --new-ca re-run."""
    d = _new_fleet(tmp_path, "1000")
    ca_end = _cert(d / "ca.crt").not_valid_after_utc
    assert round(_days(d / "ca.crt")) == 10000
    res = _cli("+9500d", "setup", str(d), "--fleet", "lab", "--devices", "robot1,robot2")
    assert res.returncode == 0, res.stderr
    assert "renewed" in res.stdout, res.stdout
    assert (f"certificates now end with the fleet's CA on {ca_end:%Y-%m-%d %H:%M} UTC: run this set-up with --new-ca "
            f"before then") in res.stdout, res.stdout
    for crt in (d / "server.crt", d / "clients" / "robot1.crt"):
        assert _cert(crt).not_valid_after_utc == ca_end
    res = _cli("+9990d", "setup", str(d), "--fleet", "lab", "--devices", "robot1,robot2")
    assert res.returncode == 0 and "renewed" not in res.stdout, res.stdout    # due, but nothing later to renew them to
    assert "certificates now end with the fleet's CA" in res.stdout, res.stdout
    res = _cli("+9990d", "setup", str(d), "--fleet", "lab", "--devices", "robot1,robot2", "--new-ca")
    assert res.returncode == 0 and "end with the fleet's CA" not in res.stdout, (res.stdout, res.stderr)
    assert round(_days(d / "clients" / "robot1.crt")) == round(_days(d / "server.crt")) == 1000


def _checked(folder: Path, name: str, offset: str) -> tuple[dict, list[str]]:
    """`tinycl fleet check` as in :func:`_check`: its JSON line and its warnings (stderr)."""
    res = _cli(offset, "check", "--broker-dir", str(folder), "--identity", name, "--host", "localhost")
    return json.loads(res.stdout.strip().splitlines()[-1]), res.stderr.strip().splitlines()


def test_certificates_that_end_soon_are_said_ahead_and_the_broker_serves_the_renewed_one_once_told(tmp_path):
    """mosquitto reads its certificate at its start and on SIGHUP: renewed on disk, the old one is what every device
    meets until it ends and the fleet stops. A second set-up run (nothing more to renew) said nothing of it, and nothing
    said a certificate was about to end before it had. Now `fleet check` and the aggregator's (and a bridge's) link say
    the broker's certificate and their own ahead, within the window in which set-up renews them, until the broker reads
    its files again (set-up tells a broker running on its directory; left alone with --no-reload, set-up says what it
    serves) and the devices hold their new bundles."""
    d = _new_fleet(tmp_path, "100")
    old = _cert(d / "server.crt").not_valid_after_utc
    with _broker_at(d, "+80d"):
        out, warnings = _checked(d, "robot1", "+80d")
        assert out["connect"] == "Success" and out["broker_certificate_ends"] == f"{old:%Y-%m-%d %H:%M} UTC", out
        assert len(warnings) == 2 and warnings == [f"tinycl fleet check: warning: {w}" for w in out["ending"]]
        assert f"the broker's certificate ends on {old:%Y-%m-%d %H:%M} UTC (in 20 days): on the broker, `tinycl " \
               "fleet setup` on its directory again renews it (if not done yet), then the broker serves the renewed " \
               "one: set-up has a broker running on that directory serve it at once (SIGHUP: no connection is cut); " \
               "a broker it cannot reach: `kill -HUP` its mosquitto" in warnings[0], warnings
        assert f"this device's certificate ({d / 'clients' / 'robot1.crt'}) ends on" in warnings[1] and \
               "then copy this device's new bundle to this device" in warnings[1], warnings
        agg = subprocess.run([sys.executable, "-m", "tinycl_nodes.cli", "aggregate", "--fleet", "lab", "--broker-dir",
                              str(d), "--host", "localhost", "--model", "mnist_0to5_fp32", "--duration", "2",
                              "--state-dir", str(tmp_path / "agg")],
                             capture_output=True, text=True, env={**os.environ, **faketime_env("+80d")}, timeout=120)
        said = [ln for ln in agg.stderr.splitlines() if "ends on" in ln]
        assert agg.returncode == 0 and len(said) == 2 and "WARNING" in said[0], agg.stderr[-2000:]
        assert "the broker's certificate ends on" in said[0] and "this device's certificate" in said[1], said
        for _ in range(2):      # the renewal, then a run with nothing left to renew, each leaving the broker alone
            res = _cli("+80d", "setup", str(d), "--fleet", "lab", "--devices", "robot1,robot2", "--no-reload")
            assert res.returncode == 0, res.stderr
            out, warnings = _checked(d, "robot1", "+80d")
            assert out["broker_certificate_ends"] == f"{old:%Y-%m-%d %H:%M} UTC" and len(warnings) == 1, warnings
            assert "the broker's certificate ends on" in warnings[0], warnings
            # and set-up says so itself, having looked at what the running broker serves (before: the second run
            # said nothing)
            new = _cert(d / "server.crt").not_valid_after_utc
            assert _stale(res) == [f"warning: the broker listening on localhost (127.0.0.1):{_port(d)} serves the "
                                   f"certificate that ends on {old:%Y-%m-%d %H:%M} UTC (in 20 days), not the renewed "
                                   f"one in {d / 'server.crt'} (ends on {new:%Y-%m-%d %H:%M} UTC): every device is cut "
                                   "off at its end unless you reload it (`kill -HUP` its mosquitto, as its user or "
                                   "root) or restart it"], res.stdout
        assert new > old
    with _broker_at(d, "+80d"):                         # restarted: it serves the renewed one; robot1 holds its own
        out, warnings = _checked(d, "robot1", "+80d")     # (told to reload, it does too: test_fleet_lifecycle.py)
        assert out["connect"] == "Success" and not warnings and not out["ending"], (out, warnings)
        assert out["broker_certificate_ends"] == f"{new:%Y-%m-%d %H:%M} UTC", out
        res = _cli("+80d", "setup", str(d), "--fleet", "lab", "--devices", "robot1,robot2", "--new-ca", "--no-reload")
        assert res.returncode == 0 and _stale(res) == [f"warning: the broker listening on localhost (127.0.0.1):"
                                                       f"{_port(d)} serves a certificate of another CA (the fleet's "
                                                       "before --new-ca?): no device with a new bundle connects until "
                                                       "you reload it (`kill -HUP` its mosquitto, as its user or root) "
                                                       "or restart it"], res.stdout


def _stale(res: subprocess.CompletedProcess) -> list[str]:
    """Set-up's words on what the running broker serves (``served.stale_served``)."""
    return [ln for ln in res.stdout.splitlines() if ln.startswith("warning: the broker listening on")]


def _port(d: Path) -> int:
    return BrokerSetup.load(d).port


def test_fleet_run_says_when_the_certificate_it_serves_ends(tmp_path) -> None:
    """`tinycl fleet run` started mosquitto with a certificate in its renewal window, or one that had ended, without a
    word: the devices then refused it at its end. It says so on stderr once it listens, and nothing of one in date.
    The real `tinycl fleet run` and mosquitto; the broker's certificate signed again by the fleet's CA to end soon,
    then to have ended (libfaketime cannot move this one's clock: Python's time.sleep fails under it)."""
    d = _new_fleet(tmp_path, "100")
    crt = d / "server.crt"
    assert _fleet_run(d) == []
    tail = _RUN_TAIL
    end = reissue(d, crt, crt, 2.5, lasts_days=12)          # its window: the last third, 4 days
    assert _fleet_run(d) == [f"warning: the certificate this broker serves ({crt}) ends on {end:%Y-%m-%d %H:%M} UTC "
                             f"(in 2 days): {tail}"]
    end = reissue(d, crt, crt, -1, lasts_days=12)
    assert _fleet_run(d) == [f"warning: the certificate this broker serves ({crt}) ended on {end:%Y-%m-%d %H:%M} UTC "
                             f"(24 hours ago): {tail}"]


_RUN_TAIL = ("every device refuses to connect from its end; `tinycl fleet setup` on this directory again renews it: "
             "set-up has a broker running on that directory serve it at once (SIGHUP: no connection is cut); a broker "
             "it cannot reach: `kill -HUP` its mosquitto")


@pytest.mark.waits      # 45 s, 4.5 s of it CPU: what make test does with it, pyproject.toml
@pytest.mark.parametrize("renewed_unread", [False, True], ids=["as-served", "renewed-with-no-reload"])
def test_fleet_run_says_when_its_certificate_comes_into_its_window_and_when_it_ends(tmp_path, renewed_unread) -> None:
    """A broker runs for months, and `tinycl fleet run` looked at its certificate only at its start: it said nothing
    when the certificate came into its renewal window, nor when it ended. It now says each at its moment. A
    certificate whose window is the last third of its life, ending 20 s after it is made (25 s when set-up runs in
    its window): each line comes at its moment (on the wall clock, whatever the time `fleet run` took to start on a
    loaded machine). It looked at ``server.crt`` on disk: renewed there by a `--no-reload` set-up, the certificate
    the broker still served ended without a word. It now says the broker serves the old one, at its end."""
    import threading

    d = _new_fleet(tmp_path, "100")
    crt = d / "server.crt"
    end = reissue(d, crt, crt, 25 / 86400 if renewed_unread else 20 / 86400,
                  lasts_days=45 / 86400 if renewed_unread else 30 / 86400)
    cert = _cert(crt)                   # its dates in whole seconds, as `fleet run` reads them
    moments = [(cert.not_valid_after_utc - (cert.not_valid_after_utc - cert.not_valid_before_utc) / 3).timestamp(),
               cert.not_valid_after_utc.timestamp()]          # the window opens, it ends
    p = subprocess.Popen([sys.executable, "-m", "tinycl_nodes.cli", "fleet", "run", str(d)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    said: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: said.extend((time.time(), ln.strip()) for ln in p.stderr), daemon=True)
    try:
        assert p.stdout.readline().startswith("mosquitto listening on"), p.stderr.read() if p.poll() else ""
        started = time.time()
        reader.start()
        if renewed_unread:              # in the window, the operator renews and leaves the broker alone
            wait_for(lambda: said or p.poll() is not None, timeout_s=40)
            res = subprocess.run([sys.executable, "-m", "tinycl_nodes.cli", "fleet", "setup", str(d), "--fleet", "lab",
                                  "--devices", "robot1,robot2", "--no-reload"], capture_output=True, text=True,
                                 timeout=60)
            assert res.returncode == 0 and time.time() < moments[1], (res.stderr, moments[1] - time.time())
        wait_for(lambda: len(said) >= 2 or p.poll() is not None, timeout_s=40)
    finally:
        p.terminate()
        p.wait(10)
    reader.join(5)
    ended = (f"warning: the broker listening on localhost (127.0.0.1):{_port(d)} serves the certificate that ended "
             f"on {end:%Y-%m-%d %H:%M} UTC (0 minutes ago), not the renewed one in {crt} (ends on "
             f"{_cert(crt).not_valid_after_utc:%Y-%m-%d %H:%M} UTC): every device is cut off at its end unless you "
             "reload it (`kill -HUP` its mosquitto, as its user or root) or restart it") if renewed_unread else \
        f"warning: the certificate this broker serves ({crt}) ended on {end:%Y-%m-%d %H:%M} UTC (0 minutes ago): " \
        f"{_RUN_TAIL}"
    assert p.returncode == 0 and [ln for _, ln in said] == [
        f"warning: the certificate this broker serves ({crt}) ends on {end:%Y-%m-%d %H:%M} UTC (in 0 minutes): "
        f"{_RUN_TAIL}", ended], said
    for (at, _), moment in zip(said, moments):      # not before its moment, and then within seconds, not an hour
        assert moment - 0.5 <= at <= max(moment, started) + 5, (at - moment, started - moment)


def _fleet_run(d: Path) -> list[str]:
    """`tinycl fleet run` on ``d``, stopped once it listens: what it said on stderr."""
    p = subprocess.Popen([sys.executable, "-m", "tinycl_nodes.cli", "fleet", "run", str(d)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith("mosquitto listening on"), p.stderr.read() if p.poll() else ""
    finally:
        p.terminate()
        _, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    return err.strip().splitlines()
