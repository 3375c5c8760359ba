"""What a fleet node says when the broker will not have it: through a real mosquitto, each failure named by its
likely cause in one line (before: "cannot reach" with no reason, or nothing at all)."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tinycl_nodes.fleet.broker import make_ca, make_client_cert
from tinycl_nodes.fleet.check import check
from tinycl_nodes.fleet.link import ENDING_RECHECK_S, MqttLink, MqttParams

from .conftest import reissue, wait_for

pytestmark = pytest.mark.waits      # what make test does with it: pyproject.toml


def _link(setup, name: str = "dev1", recheck_ending_s: float = ENDING_RECHECK_S, **kw) -> MqttLink:
    c = setup.credentials("dev1")
    values = dict(host="localhost", port=setup.port, ca_file=setup.ca, cert_file=c.certfile, key_file=c.keyfile,
                  username="dev1", password=c.password, reconnect_min_s=0.1, reconnect_max_s=1.0,
                  client_id="tinycl-lab-dev1")
    values.update(kw)
    return MqttLink(MqttParams(**values), values["client_id"], [], None, logging.getLogger(f"test.{name}"),
                    recheck_ending_s=recheck_ending_s).start()


def _said(caplog, name: str, words: str, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == f"test.{name}" and r.levelno >= level and words in r.getMessage()]


def _rogue(tmp_path):
    rogue = tmp_path / "rogue"
    make_ca(rogue, "rogue CA")
    make_client_cert(rogue / "c", "dev1", rogue)
    return rogue


def test_a_refused_connection_is_said_with_its_likely_cause(fleet_setup, broker, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    rogue = _rogue(tmp_path)
    links = [_link(fleet_setup, "othercert", cert_file=str(rogue / "c/dev1.crt"), key_file=str(rogue / "c/dev1.key")),
             _link(fleet_setup, "otherca", ca_file=str(rogue / "ca.crt")),
             _link(fleet_setup, "typo", host="edge11.invalid")]
    try:
        # a client certificate of another CA is refused after the TLS handshake: before, nothing was logged
        wait_for(lambda: _said(caplog, "othercert", "refused this device's certificate: it is not signed by the "
                                                    "fleet's CA (a bundle of another fleet"), timeout_s=10)
        # a bundle of another fleet: the broker's certificate is not signed by its CA
        wait_for(lambda: _said(caplog, "otherca", "server certificate verify failed"), timeout_s=10)
        wait_for(lambda: _said(caplog, "typo", "the host name 'edge11.invalid' does not resolve"), timeout_s=15)
        time.sleep(1.0)
        for name in ("othercert", "otherca", "typo"):     # still one line for the outage, not one per attempt
            assert len([m for m in _said(caplog, name, "cannot connect")]) == 1, name
        assert not any(link.connected.is_set() for link in links)
    finally:
        for link in links:
            link.stop()
    # tinycl fleet check says the same
    c = fleet_setup.credentials("dev1")
    res = check("localhost", fleet_setup.port, fleet_setup.ca, str(rogue / "c/dev1.crt"), str(rogue / "c/dev1.key"),
                "dev1", c.password, "tinycl-lab-dev1", timeout_s=5)
    assert "refused this device's certificate: it is not signed by the fleet's CA" in res["connect"], res
    res = check("edge11.invalid", fleet_setup.port, fleet_setup.ca, c.certfile, c.keyfile, "dev1", c.password,
                "tinycl-lab-dev1", timeout_s=5)
    assert res["connect"].startswith("the host name 'edge11.invalid' does not resolve"), res


def test_two_clients_of_one_identity_are_named_and_back_off(fleet_setup, broker, caplog) -> None:
    """The same device's bundle on two machines: the broker closes the older connection whenever the other connects.
    Before: both reconnected at the first delay forever, a warning and an info line each time."""
    caplog.set_level(logging.DEBUG)
    a = _link(fleet_setup, "first", reconnect_max_s=2.0)
    assert a.wait_connected(10)
    b = _link(fleet_setup, "second", reconnect_max_s=2.0)
    try:
        wait_for(lambda: _said(caplog, "first", "another client with this device's identity took over the session",
                               logging.ERROR) and _said(caplog, "second", "is dev1's bundle on two robots?",
                                                        logging.ERROR), timeout_s=10)
        time.sleep(3.0)
        n0, t0 = a.connects + b.connects, time.monotonic()
        time.sleep(4.0)
        rate = (a.connects + b.connects - n0) / (time.monotonic() - t0)
        assert rate <= 1.5, f"{rate:.1f} connections/s: the backoff does not grow"     # at 0.1 s: ~5/s
        said = [r for r in caplog.records if r.name in ("test.first", "test.second") and r.levelno >= logging.INFO
                and r.created >= time.time() - 4.0]
        assert len(said) <= 2, [r.getMessage() for r in said]
    finally:
        a.stop()
        b.stop()


def test_two_quick_broker_restarts_are_not_taken_for_another_client(fleet_setup, broker, caplog) -> None:
    """The fleet trial restarted mosquitto twice, 2 s apart, a few seconds after the clients connected: each
    reconnected at its first try, and every one of them (the aggregator too) said 'another client with this
    device's identity took over the session … is dev1's bundle on two robots?' and backed off further. The broker's
    uptime ($SYS, readable by every identity) going back now says it was a restart."""
    caplog.set_level(logging.DEBUG)
    names = ("dev1", "dev2", "aggregator")
    links = []
    for name in names:
        c = fleet_setup.credentials(name)
        links.append(_link(fleet_setup, name, cert_file=c.certfile, key_file=c.keyfile, username=name,
                           password=c.password, client_id=f"tinycl-lab-{name}", reconnect_min_s=0.5,
                           reconnect_max_s=30.0))
    try:
        assert all(link.wait_connected(10) for link in links)
        for pause in (2.5, 2.0):
            time.sleep(pause)
            broker.stop()
            broker.start()
            wait_for(lambda: all(link.connected.is_set() for link in links), timeout_s=10)
        time.sleep(3.0)
        assert [link.connects for link in links] == [3, 3, 3]
        for name in names:
            assert not _said(caplog, name, "took over the session"), name
            assert len(_said(caplog, name, "lost the connection")) == 2, name
    finally:
        for link in links:
            link.stop()


def _reissued(setup, tmp_path, ends_in_days: float, name: str = "dev1", lasts_days: float = 825):
    """``name``'s certificate again (``reissue``), of ``lasts_days`` (set-up's 825), ending ``ends_in_days`` from now
    (< 0: ended): its file and its end."""
    path = tmp_path / f"{name}-{ends_in_days:g}d.crt"
    return path, reissue(setup.directory, Path(setup.credentials(name).certfile), path, ends_in_days, lasts_days)


def _expired(setup, tmp_path, name: str = "dev1"):
    """``name``'s certificate, signed by the fleet's CA, whose validity ended yesterday (a bundle past its 825 days)."""
    return _reissued(setup, tmp_path, -1, name)


def test_an_expired_certificate_is_named_with_its_date_and_the_way_out(fleet_setup, broker, tmp_path,
                                                                       caplog) -> None:
    """The fleet trial's robot2 with a certificate past its end: 'the broker refused this device's certificate
    (revoked, or not signed by the fleet's CA?) [… alert certificate expired]', two wrong guesses before the right
    cause. Now the cause, its date and what to do on the broker; the bridge's link and fleet check alike."""
    caplog.set_level(logging.DEBUG)
    crt, end = _expired(fleet_setup, tmp_path)
    c = fleet_setup.credentials("dev1")
    res = check("localhost", fleet_setup.port, fleet_setup.ca, str(crt), c.keyfile, "dev1", c.password,
                "tinycl-lab-dev1", timeout_s=5)
    want = f"the broker refused this device's certificate: it has expired on {end:%Y-%m-%d}"
    assert res["connect"].startswith(want) and "setup` on its directory again (it renews it)" in res["connect"], res
    link = _link(fleet_setup, "expired", cert_file=str(crt))
    try:
        wait_for(lambda: _said(caplog, "expired", want), timeout_s=10)
        time.sleep(1.0)
        assert len(_said(caplog, "expired", "cannot connect")) == 1 and not link.connected.is_set()
    finally:
        link.stop()


def test_a_clock_that_is_wrong_is_named_not_the_ca_or_a_revocation(fleet_setup, tmp_path) -> None:
    """A robot without a real-time clock boots at the time it last saved (or in 1970) and reaches the broker before
    NTP sets it: its TLS finds the broker's certificate not valid yet. A broker whose clock is wrong finds the device's
    certificate so. Before, the one was 'is the CA file this fleet's … and the broker's name?', the other 'it is
    revoked (the device was removed from the fleet …)'. Real mosquitto and TLS; each clock set with libfaketime."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    from tests.faketime import faketime_env
    from tinycl_nodes.fleet.broker import Broker, listening

    def fleet_check(env: dict[str, str] | None = None) -> str:
        out = subprocess.run([sys.executable, "-m", "tinycl_nodes.cli", "fleet", "check", "--broker-dir",
                              fleet_setup.directory, "--identity", "dev1", "--host", "localhost"],
                             env={**os.environ, **(env or {})}, capture_output=True, text=True,
                             timeout=60)
        return json.loads(out.stdout.strip().splitlines()[-1])["connect"]

    broker = Broker(fleet_setup).start()
    try:
        said = fleet_check(faketime_env("-400d"))           # the device's clock a year and a month behind
        assert said.startswith("the broker's certificate is not valid yet by this machine's clock, which says "), said
        assert "timedatectl" in said and "CA file" not in said, said
        assert fleet_check() == "Success"
    finally:
        broker.stop()
    log = open(tmp_path / "mosquitto.log", "wb")
    for offset, alert in (("-1d", "bad certificate"), ("+1000d", "certificate expired")):   # the broker's clock
        mosquitto = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", fleet_setup.config],
                                     env={**os.environ, **faketime_env(offset)}, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: listening(fleet_setup.ip, fleet_setup.port), timeout_s=10)
            said = fleet_check()
            if alert in said:                         # the broker's alert read: its dates, and only them
                assert said.startswith("the broker refused this device's certificate: by its dates, though it is "
                                       "the fleet CA's and in date here") and "revoked" not in said, said
            else:                                     # the connection closed before it (a loaded machine): either
                assert "it closed the connection before answering" in said and "it is revoked" in said, said
            assert "the broker's clock" in said and "timedatectl" in said, said
        finally:
            mosquitto.terminate()
            mosquitto.wait(10)


def test_fleet_check_names_the_tls_file_it_cannot_load(fleet_setup, tmp_path) -> None:
    """`tinycl fleet check` on a bundle without ca.crt said "FileNotFoundError: [Errno 2] No such file or directory",
    with a damaged key "TLS: SSLError: [SSL] PEM lib": no file named."""
    import shutil
    from pathlib import Path

    from tinycl_nodes.fleet.broker import BrokerSetup

    d = tmp_path / "bundle"
    shutil.copytree(Path(fleet_setup.directory) / "bundles" / "dev1", d)
    c = BrokerSetup.load(d).credentials("dev1")

    def said() -> str:
        return check("localhost", fleet_setup.port, str(d / "ca.crt"), c.certfile, c.keyfile, "dev1", c.password,
                     "tinycl-lab-dev1", timeout_s=5)["connect"]
    (d / "ca.crt").unlink()
    assert said().startswith(f"TLS: the CA certificate {d}/ca.crt does not exist (FileNotFoundError"), said()
    shutil.copy(Path(fleet_setup.directory) / "ca.crt", d / "ca.crt")
    Path(c.keyfile).write_text("-----BEGIN PRIVATE KEY-----\ncut\n")
    assert said().startswith(f"TLS: the certificate {c.certfile} and its key {c.keyfile} cannot be loaded as a pair "
                             f"(SSLError"), said()


def test_fleet_check_and_a_link_say_when_the_port_is_not_a_tls_listener(fleet_setup, tmp_path, caplog) -> None:
    """On a plain (non-TLS) mosquitto's port `tinycl fleet check` said "ConnectionResetError: [Errno 104] Connection
    reset by peer", and a bridge or the aggregator the same in its log: no cause."""
    import shutil
    import subprocess

    from tinycl_nodes.fleet.broker import free_port, listening

    c = fleet_setup.credentials("dev1")

    def said(port: int) -> str:
        return check("localhost", port, fleet_setup.ca, c.certfile, c.keyfile, "dev1", c.password, "tinycl-lab-dev1",
                     timeout_s=5)["connect"]
    port = free_port()
    (tmp_path / "plain.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    plain = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(tmp_path / "plain.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    link = None
    try:
        wait_for(lambda: listening("127.0.0.1", port), timeout_s=10)
        assert said(port).startswith("the TLS handshake failed: not a TLS listener? (a plain MQTT port"), said(port)
        caplog.set_level(logging.DEBUG)
        link = _link(fleet_setup, "plain", port=port)          # the bridge and the aggregator say the same
        wait_for(lambda: _said(caplog, "plain", "not a TLS listener?"), timeout_s=10)
    finally:
        if link is not None:
            link.stop()
        plain.terminate()
        plain.wait(10)


def test_fleet_check_counts_only_unexpected_disconnects_and_fails_when_the_connection_did_not_hold(
        fleet_setup, broker, capsys) -> None:
    """Every healthy check said "disconnects": 1 (its own disconnect at the end); one whose connection another client
    took during --hold said "still_connected": false, "disconnects": 2 and exited 0."""
    import json
    import threading

    from tinycl_nodes.fleet.check import main as check_main

    argv = ["--broker-dir", fleet_setup.directory, "--identity", "dev1", "--host", "localhost"]
    assert check_main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["connect"], res["disconnects"], res["still_connected"]) == ("Success", 0, True), res
    rc: list[int] = []
    held = threading.Thread(target=lambda: rc.append(check_main([*argv, "--hold", "3"])))
    held.start()
    try:
        time.sleep(1.0)                                   # connected by then (in-process: about 0.1 s)
        c = fleet_setup.credentials("dev1")
        other = check("localhost", fleet_setup.port, fleet_setup.ca, c.certfile, c.keyfile, "dev1", c.password,
                      "tinycl-lab-dev1", timeout_s=5)     # the same identity: the broker closes the first one
        assert other["connect"] == "Success", other
    finally:
        held.join(15)
    res = json.loads(capsys.readouterr().out)
    assert rc == [1] and res["still_connected"] is False and res["disconnects"] >= 1, (rc, res)


@contextmanager
def _bridge_and_aggregator(setup, tmp_path, bridge_cert: str = "", aggregator_cert: str = "",
                           bridge_period_s: float = 30.0) -> Iterator[tuple]:
    """A real MqttBridge (dev1) and AggregatorNode of the fleet, on one local graph, each with its /diagnostics
    (``Diagnostics``), their certificates the broker directory's unless given: (bridge, aggregator, [the two
    Diagnostics], (their buses)); closed after."""
    from tinycl_nodes.bus import create_bus
    from tinycl_nodes.bus.local import LocalGraph
    from tinycl_nodes.fleet.aggregator import AggregatorNode, AggregatorParams
    from tinycl_nodes.nodes.diagnostics import Diagnostics
    from tinycl_nodes.nodes.mqtt_bridge import BridgeParams, MqttBridge

    from .conftest import FLEET

    graph = LocalGraph()
    bus, hub = create_bus("mqtt_bridge", "/dev1/tinycl", backend="local", graph=graph), \
        create_bus("aggregator", "/fleet", backend="local", graph=graph)
    bridge = MqttBridge(bus, BridgeParams(fleet=FLEET, device="dev1", broker_dir=setup.directory,
                                          mqtt_cert_file=bridge_cert, period_s=bridge_period_s,
                                          state_dir=str(tmp_path / "s")))
    aggregator = AggregatorNode(hub, AggregatorParams(fleet=FLEET, broker_dir=setup.directory, kind="CWRStar",
                                                      mqtt_cert_file=aggregator_cert, extractor_hash="x" * 16,
                                                      n_features=4, state_dir=str(tmp_path / "a")))
    try:
        yield bridge, aggregator, [Diagnostics(bridge, 1.0), Diagnostics(aggregator, 1.0)], (bus, hub)
    finally:
        bridge.close()
        aggregator.close()
        bus.shutdown()
        hub.shutdown()


def test_the_bridge_says_on_diagnostics_whether_it_reaches_the_broker(fleet_setup, broker, tmp_path) -> None:
    """A robot's engineer looking at /diagnostics saw nothing of the fleet link beyond what every node has: a bridge or
    an aggregator cut off from the broker was OK. Now each is WARN while not connected, saying which broker and why."""
    from tinycl_nodes.nodes.diagnostics import OK, WARN

    with _bridge_and_aggregator(fleet_setup, tmp_path) as (bridge, aggregator, health, _):
        assert wait_for(lambda: bridge.link.connected.is_set() and aggregator.agg.link.connected.is_set())
        for h in health:
            st = h.status()
            assert st.level == OK and st.values["connected"] == "yes", (st.level, st.message, st.values)
            assert st.values["broker"].endswith(f":{fleet_setup.port}")
        assert health[0].status().values["lineage"] == bridge.lineage
        assert health[1].status().values["round"] == "0"
        broker.stop()
        assert wait_for(lambda: all(h.status().level == WARN for h in health))
        for h, name in zip(health, ("/dev1/tinycl/mqtt_bridge", "/fleet/aggregator"), strict=True):
            st = h.status()
            assert st.values["connected"] == "no" and st.message.startswith(f"not connected to the broker "
                                                                            f"{st.values['broker']}"), st.message
            msg = h.message(st)                  # the DiagnosticArray as published
            assert msg.status[0].name == name and msg.status[0].message == st.message


def test_a_certificate_that_ends_soon_is_said_at_the_connection_and_on_diagnostics(fleet_setup, broker, tmp_path,
                                                                                   caplog) -> None:
    """Nothing said that a device's certificate was about to end until the broker refused it and the device was cut
    off. Within set-up's renewal window, the link says it at each connection (and `fleet check`: test_renewal.py) and
    /diagnostics shows it as WARN while it lasts. Real mosquitto and TLS; a certificate of the fleet's CA that ends in
    5 days (its key the device's)."""
    from tinycl_nodes.nodes.diagnostics import WARN, link_status

    caplog.set_level(logging.INFO)
    crt, end = _reissued(fleet_setup, tmp_path, 5.0)
    link = _link(fleet_setup, "ending", cert_file=str(crt))
    try:
        assert link.wait_connected(10)
        words = (f"this device's certificate ({crt}) ends on {end:%Y-%m-%d %H:%M} UTC (in 5 days): on the broker, "
                 "`tinycl fleet setup` on its directory again renews it (if not done yet), then copy this device's "
                 "new bundle to this device")
        assert _said(caplog, "ending", words) == [f"mqtt: {words}"], _said(caplog, "ending", "")
        st = link_status(link)
        assert st.level == WARN and st.message == words and st.values["connected"] == "yes", st
    finally:
        link.stop()
    link = _link(fleet_setup, "in_date")           # set-up's own, 825 days: nothing to say
    try:
        assert link.wait_connected(10) and not link.ending and link_status(link).findings == []
        assert not _said(caplog, "in_date", "ends on")
    finally:
        link.stop()


def test_a_certificate_that_comes_into_its_window_during_a_connection_is_said_then(fleet_setup, broker, tmp_path,
                                                                                    caplog) -> None:
    """A robot's connection lasts weeks: its certificates' end was looked at only when it connected, so one that came
    into the renewal window later was said by nothing but its end, and one that ended was said by nothing at all (TLS
    checks it only at the handshake: the connection went on, the next was refused). The link looks again every
    ``recheck_ending_s`` (an hour) from its owner's timer, and says what is new once; an ended one is an error and
    ERROR on /diagnostics. Real mosquitto and TLS; a certificate of 12 s, its window the last third (4 s), looked at
    every 0.2 s; the broker restarted after its end refuses the link, as the words say."""
    from tinycl_nodes.nodes.diagnostics import ERROR, WARN, link_status

    caplog.set_level(logging.INFO)
    crt, end = _reissued(fleet_setup, tmp_path, 11 / 86400, lasts_days=12 / 86400)
    link = _link(fleet_setup, "window", cert_file=str(crt), recheck_ending_s=0.2)
    try:
        assert link.wait_connected(6)
        link.recheck_ending()
        assert not link.ending and not _said(caplog, "window", "ends on"), link.ending
        assert wait_for(lambda: link.recheck_ending() or link.ending, timeout_s=12), "never said"
        start = f"this device's certificate ({crt})"
        words = (f"{start} ends on {end:%Y-%m-%d %H:%M} UTC (in 0 minutes): on the broker, `tinycl fleet setup` on "
                 "its directory again renews it")
        assert link.ending[0].words.startswith(words) and link_status(link).level == WARN, link.ending
        for _ in range(5):                     # looked at again: the same words, not said again
            time.sleep(0.25)
            link.recheck_ending()
        assert _said(caplog, "window", "ends on") == [f"mqtt: {link.ending[0].words}"], _said(caplog, "window", "")
        assert wait_for(lambda: link.recheck_ending() or any(e.ended for e in link.ending), timeout_s=6), link.ending
        words = (f"{start} ended on {end:%Y-%m-%d %H:%M} UTC (0 minutes ago): the broker refuses this device's next "
                 "connection (this one goes on until it is lost); on the broker, `tinycl fleet setup`")
        st = link_status(link)
        assert link.ending[0].words.startswith(words) and st.level == ERROR and st.values["connected"] == "yes", st
        for _ in range(5):
            time.sleep(0.25)
            link.recheck_ending()
        assert _said(caplog, "window", "ended on", logging.ERROR) == [f"mqtt: {link.ending[0].words}"]
        broker.stop()
        broker.start()
        assert wait_for(lambda: _said(caplog, "window", "the broker refused this device's certificate: it has expired"),
                        timeout_s=10)
        assert not link.connected.is_set()
    finally:
        link.stop()


def test_the_bridge_and_the_aggregator_look_again_at_their_certificates(fleet_setup, broker, tmp_path) -> None:
    """The link's second look (above) is called by its owners' timers, the bridge's period and the aggregator's tick:
    with certificates of 40 s that end 10 s after the test starts (in their window, the last third, when the nodes
    connect), both nodes' /diagnostics go from WARN to ERROR at their end, during the connection. Each link looks
    every 0.2 s here (an hour by default)."""
    from tinycl_nodes.nodes.diagnostics import ERROR, WARN

    (dev, _), (agg, _) = (_reissued(fleet_setup, tmp_path, 10 / 86400, name, lasts_days=40 / 86400)
                          for name in ("dev1", "aggregator"))
    with _bridge_and_aggregator(fleet_setup, tmp_path, str(dev), str(agg), bridge_period_s=0.1) as \
            (bridge, aggregator, health, buses):
        links = (bridge.link, aggregator.agg.link)
        for link in links:
            link.recheck_ending_s = 0.2

        def levels() -> list[int]:
            for b in buses:
                b.spin_once(0.05)
            return [h.status().level for h in health]

        assert wait_for(lambda: all(link.connected.is_set() for link in links))
        assert levels() == [WARN, WARN], [h.status().message for h in health]
        assert wait_for(lambda: levels() == [ERROR, ERROR], timeout_s=15), [h.status().message for h in health]
        for h, whose in zip(health, (dev, agg), strict=True):
            st = h.status()
            assert st.values["connected"] == "yes" and f"this device's certificate ({whose}) ended on" in st.message


def test_a_renewed_certificate_copied_over_the_old_one_is_taken_at_the_next_attempt(fleet_setup, broker, tmp_path,
                                                                                    caplog) -> None:
    """`tinycl fleet setup` renews a certificate, and the operator copies the new bundle over the one a robot holds;
    the bridge kept its first TLS context, so an expired certificate went on failing until the node was restarted.
    Now a failed or lost connection reads the files again when they changed, and the next attempt takes them."""
    import shutil
    from pathlib import Path

    caplog.set_level(logging.INFO, logger="test.renewed")
    crt, _ = _expired(fleet_setup, tmp_path)
    held = tmp_path / "bundle"                       # what the robot holds: its certificate has ended
    held.mkdir()
    shutil.copy(crt, held / "dev1.crt")
    c = fleet_setup.credentials("dev1")
    shutil.copy(c.keyfile, held / "dev1.key")
    link = _link(fleet_setup, "renewed", cert_file=str(held / "dev1.crt"), key_file=str(held / "dev1.key"))
    try:
        assert wait_for(lambda: _said(caplog, "renewed", "it has expired"), timeout_s=10)
        assert not link.connected.is_set()
        shutil.copy(c.certfile, held / "dev1.crt.new")   # the renewed one, copied in as a copy tool does
        (held / "dev1.crt.new").replace(held / "dev1.crt")
        assert wait_for(link.connected.is_set, timeout_s=10), link.last_error
        assert _said(caplog, "renewed", "the TLS files changed on disk", level=logging.INFO)
        assert Path(held / "dev1.crt").read_bytes() == Path(c.certfile).read_bytes()
    finally:
        link.stop()


def test_a_bundle_copied_half_way_leaves_the_pair_in_use(fleet_setup, broker, tmp_path, caplog) -> None:
    """A network blip while the operator copies a renewed bundle (the certificate copied, not yet its key): the link
    loaded the mismatched pair into the context it connects with, lost the working one, and every attempt was refused
    until the key came too. Now the new pair is tried apart first; the one in use stays."""
    import shutil

    caplog.set_level(logging.INFO, logger="test.half")
    c, other = fleet_setup.credentials("dev1"), fleet_setup.credentials("dev2")
    held = tmp_path / "bundle"
    held.mkdir()
    shutil.copy(c.certfile, held / "dev1.crt")
    shutil.copy(c.keyfile, held / "dev1.key")
    link = _link(fleet_setup, "half", cert_file=str(held / "dev1.crt"), key_file=str(held / "dev1.key"))
    try:
        assert wait_for(link.connected.is_set, timeout_s=10), link.last_error
        shutil.copy(other.certfile, held / "dev1.crt")   # a certificate whose key is not there yet
        broker.stop()                                    # the blip
        assert wait_for(lambda: not link.connected.is_set(), timeout_s=10)
        broker.start()
        assert wait_for(link.connected.is_set, timeout_s=15), link.last_error   # on the pair in use
        assert _said(caplog, "half", "the TLS files changed but cannot be used yet")
    finally:
        link.stop()
