"""The operator's days with a fleet, on a real TLS mosquitto: add a robot, remove (revoke) one, rotate one's
credentials, by running `tinycl fleet setup` again on the broker's directory."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tinycl_nodes.fleet.broker import Broker, BrokerSetup, current_user, free_port, generate, head_topic
from tinycl_nodes.fleet.check import check
from tinycl_nodes.fleet.link import stop_network_thread
from tinycl_nodes.fleet.payload import PROBE

from .conftest import _need_mosquitto, reissue, wait_for


def _reach(bundle: Path, name: str) -> str:
    """Connect (and publish its head) with the files of a copied bundle, as the robot holding it would."""
    st = BrokerSetup.load(bundle)
    c = st.credentials(name)
    res = check(st.host, st.port, st.ca, c.certfile, c.keyfile, c.username, c.password, f"tinycl-lab-{name}",
                publish=head_topic("lab", name), timeout_s=5)
    return "ok" if res["connect"] == "Success" and res.get("published") else res["connect"]


def test_adding_removing_and_rotating_devices_keeps_the_others_bundles(tmp_path) -> None:
    """Before: a second `setup` made a new CA, so adding robot3 cut robot1 and robot2 off (their bundles failed the
    TLS handshake: certificate signature failure) without a word; a removed device could not be cut off alone."""
    _need_mosquitto()
    d = tmp_path / "broker"
    generate(d, "lab", ["robot1", "robot2"], port=free_port(), user=current_user())
    robots = tmp_path / "robots"                    # the bundles as copied to the robots on day one
    shutil.copytree(d / "bundles", robots)
    broker = Broker(BrokerSetup.load(d)).start()
    try:
        assert _reach(robots / "robot1", "robot1") == _reach(robots / "robot2", "robot2") == "ok"

        st = generate(d, "lab", ["robot1", "robot2", "robot3"], port=broker.setup.port, user=current_user())
        broker.stop()
        broker.start()
        assert _reach(robots / "robot1", "robot1") == "ok", "robot1's day-one bundle still works"
        assert st.changes == {"kept": ["aggregator", "robot1", "robot2"], "new": ["robot3"], "rotated": [],
                              "revoked": [], "readdressed": [], "unrevoked": [], "renewed": []}
        shutil.copytree(d / "bundles" / "robot3", robots / "robot3")
        assert _reach(robots / "robot3", "robot3") == "ok"

        st = generate(d, "lab", ["robot1", "robot3"], port=broker.setup.port, user=current_user(), rotate=["robot1"])
        assert st.changes["revoked"] == ["robot2"] and st.changes["rotated"] == ["robot1"]
        assert not (d / "bundles" / "robot2").exists() and "robot2" not in (d / "acl").read_text()
        broker.proc.send_signal(signal.SIGHUP)      # mosquitto reloads passwd, ACL and the CRL
        time.sleep(0.5)
        # ... in words naming the cause (it said "no CONNACK")
        said = ("the broker refused this device's certificate: it is revoked (the device was removed from the fleet, "
                "or its key rotated")
        assert said in _reach(robots / "robot2", "robot2"), "a removed device is refused"
        assert said in _reach(robots / "robot1", "robot1"), "a rotated device's old certificate is refused"
        assert _reach(d / "bundles" / "robot1", "robot1") == "ok", "its new bundle works"
        assert _reach(robots / "robot3", "robot3") == "ok", "the others are untouched"
        log = broker.log_path.read_text()
        assert log.count("certificate verify failed") >= 2, log[-2000:]
    finally:
        broker.stop()


def test_setup_again_on_a_new_address_says_which_bundles_to_copy_again(tmp_path, capsys) -> None:
    """Before: setup again with a new --port (or --host, --ip) said the kept devices' bundles "stay valid", while
    the fleet.json in each copy still pointed at the old address."""
    from tinycl_nodes.fleet.broker import main

    d = tmp_path / "broker"
    args = ["setup", str(d), "--fleet", "lab", "--devices", "robot1,robot2", "--user", current_user()]
    assert main([*args, "--port", "8883"]) == 0
    capsys.readouterr()
    assert main([*args, "--port", "8884"]) == 0
    out = capsys.readouterr().out
    assert "kept (their bundles stay valid)" not in out, out
    assert ("the broker's address is now localhost (127.0.0.1):8884: copy the bundles of aggregator, robot1, robot2 "
            "again") in out, out
    assert BrokerSetup.load(d / "bundles" / "robot1").port == 8884
    assert main([*args, "--port", "8884"]) == 0                   # the same address again: nothing to copy
    assert "kept (their bundles stay valid): aggregator, robot1, robot2" in capsys.readouterr().out


def test_setup_again_refuses_another_fleets_folder_and_new_ca_starts_over(tmp_path) -> None:
    _need_mosquitto()
    d = tmp_path / "broker"
    generate(d, "lab", ["robot1"], port=18999, user=current_user())
    ca = (d / "ca.crt").read_bytes()
    with pytest.raises(ValueError, match="holds fleet 'lab', not 'yard'.*--new-ca"):
        generate(d, "yard", ["robot1"], port=18999, user=current_user())
    assert (d / "ca.crt").read_bytes() == ca, "nothing written"
    st = generate(d, "lab", ["robot9"], port=18999, user=current_user(), new_ca=True)
    assert (d / "ca.crt").read_bytes() != ca and st.changes["new"] == ["aggregator", "robot9"]
    assert sorted(p.name for p in (d / "bundles").iterdir()) == ["aggregator", "robot9"]
    with pytest.raises(ValueError, match="cannot rotate robot1"):
        generate(d, "lab", ["robot9"], port=18999, user=current_user(), rotate=["robot1"])


def test_a_device_no_longer_allowed_leaves_the_rounds_after_a_restart(tmp_path) -> None:
    """The operator revokes robot2 and restarts the aggregator with --allow robot1: robot2's last head, held in the
    aggregator's state, was still merged into every later round (only new heads were checked)."""
    import numpy as np

    from tinycl_nodes.fleet.aggregator import Aggregator, AggregatorParams
    from tinycl_nodes.fleet.payload import encode

    from .conftest import XH, head

    _need_mosquitto()
    st = generate(tmp_path / "broker", "lab", ["robot1", "robot2"], port=18999, user=current_user())

    def agg(allow: list[str] | None) -> Aggregator:
        return Aggregator(AggregatorParams(fleet="lab", kind="CWRStar", extractor_hash=XH, n_features=2,
                                           broker_dir=st.directory,
                                           allowed_devices=allow, state_dir=str(tmp_path / "agg"), min_interval_s=0),
                          start=False)
    a = agg(None)
    a.accept("robot1", encode(head("robot1", [[1, 0], [0, 1]], counts=[10, 10]), "lab", "robot1"))
    a.accept("robot2", encode(head("robot2", [[9, 0], [0, 9]], counts=[30, 30]), "lab", "robot2"))
    assert a.tick() and a.global_head.counts.tolist() == [40, 40]
    a.close()
    b = agg(["robot1"])
    assert sorted(b.heads) == ["robot1"]
    assert b.tick(), "a round without robot2 closes at once"
    assert b.global_head.counts.tolist() == [10, 10]
    np.testing.assert_allclose(b.global_head.weights, [[1, 0], [0, 1]])
    assert b.rounds[-1]["devices"] == ["robot1"] and b.rounds[-1]["removed"] == ["robot2"]
    assert not b.tick(), "nothing new: no further round"
    b.close()
    assert sorted(agg(["robot1"]).heads) == ["robot1"], "the state saved without robot2"


def test_fleet_status_shows_rounds_devices_and_versions(tmp_path) -> None:
    """The operator had no way to see which devices reported, which round closed and what the global head holds
    but the aggregator's log: `tinycl fleet status` was no command."""
    import subprocess
    import sys

    from tinycl_nodes.fleet.aggregator import Aggregator, AggregatorParams
    from tinycl_nodes.fleet.payload import encode

    from .conftest import XH, head

    _need_mosquitto()
    st = generate(tmp_path / "broker", "lab", ["robot1", "robot2"], port=18999, user=current_user())
    a = Aggregator(AggregatorParams(fleet="lab", kind="CWRStar", extractor_hash=XH, n_features=2, broker_dir=st.directory,
                                    state_dir=st.directory, min_interval_s=0), start=False)
    a.accept("robot1", encode(head("robot1", [[1, 0], [0, 1]], counts=[10, 10], version=3), "lab", "robot1"))
    assert a.tick()
    a.accept("robot2", encode(head("robot2", [[1, 0], [0, 1]], counts=[5, 6], version=7), "lab", "robot2"))
    a.close()                                        # robot2's head is held, not in a round yet

    def status(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tinycl_nodes.cli", "fleet", "status", *args],
                              capture_output=True, text=True, timeout=60)
    r = status(st.directory)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("fleet lab | round 1 | CWRStar | extractor eeeeeeeeeeee | 2 device(s)")
    rows = {ln.split()[0]: ln.split() for ln in lines[2:4]}
    assert rows["robot1"][1:3] == ["v3", "v3"], "robot1's v3 is in the global head"
    assert rows["robot2"][1:3] == ["v7", "-"], "robot2's v7 is held, not merged yet"
    assert rows["robot2"][5] == "11"
    assert lines[4].startswith("round 1 at ") and "1 device(s), new heads robot1" in lines[4]
    # how stale each head is, and what the round under way holds (the trial: a robot gone quiet did not show)
    assert re.search(r" \(\d+ s ago\)$", lines[2]) and re.search(r" \(\d+ s ago\)$", lines[3]), lines[2:4]
    assert re.fullmatch(r"round 2 under way: new heads from robot2; nothing new from robot1 \(last heard \d+ s ago\)",
                        lines[-1]), lines[-1]
    r = status(str(tmp_path / "nowhere"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "no aggregator state" in r.stderr
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "aggregator.state").write_bytes(b"")          # "state: empty file" named no file
    r = status(str(tmp_path / "empty"))
    assert r.returncode == 2 and f"{tmp_path / 'empty' / 'aggregator.state'}: state: empty file" in r.stderr, r.stderr


def test_fleet_run_says_where_it_listens_or_which_address_is_wrong(tmp_path) -> None:
    """Before: nothing on a normal start; on an address this host does not have only mosquitto's 'Error: Cannot
    assign requested address'."""
    import subprocess
    import sys

    _need_mosquitto()
    d = tmp_path / "broker"
    st = generate(d, "lab", ["robot1"], port=free_port(), user=current_user())
    cmd = [sys.executable, "-m", "tinycl_nodes.fleet.broker", "run", str(d)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import select
        line = p.stdout.readline() if select.select([p.stdout], [], [], 15)[0] else "(nothing within 15 s)"
        assert line.startswith(f"mosquitto listening on localhost (127.0.0.1):{st.port}"), (line, p.poll())
        assert _reach(d / "bundles" / "robot1", "robot1") == "ok"
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
    assert p.returncode == 0
    generate(d, "lab", ["robot1"], port=free_port(), user=current_user(), host="edge1", ip="198.51.100.7")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "198.51.100.7 is not an address of this host" in r.stderr, r.stderr


def test_fleet_run_beside_a_running_broker_says_so(tmp_path) -> None:
    """The trial restarted the broker to apply a change while the old one still ran: `tinycl fleet run` printed
    'mosquitto listening on …' (the old one listened; its own mosquitto logged 'Address already in use' and exited)
    and ended 1 without a word, and the old broker went on with its old CRL. Now one line naming the port, exit 2."""
    import subprocess
    import sys

    _need_mosquitto()
    d = tmp_path / "broker"
    st = generate(d, "lab", ["robot1"], port=free_port(), user=current_user())
    broker = Broker(BrokerSetup.load(d)).start()
    try:
        r = subprocess.run([sys.executable, "-m", "tinycl_nodes.fleet.broker", "run", str(d)], capture_output=True,
                           text=True, timeout=30)
        assert "listening on" not in r.stdout, r.stdout
        err = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(err) == 1, (r.returncode, err)
        assert f"127.0.0.1:{st.port} is in use: a broker" in err[0] and "stop it first" in err[0], err
        assert broker.running and _reach(d / "bundles" / "robot1", "robot1") == "ok"
    finally:
        broker.stop()


@pytest.mark.parametrize("sig, started_ignoring_sigint", [(signal.SIGINT, True), (signal.SIGHUP, False)],
                         ids=["SIGINT, started in a script's background", "SIGHUP"])
def test_fleet_run_stops_its_broker_on_signals(tmp_path, sig, started_ignoring_sigint) -> None:
    """`tinycl fleet run &` in a script starts with SIGINT ignored; it took Ctrl-C as Python's KeyboardInterrupt, which
    Python does not install then: ``kill -INT`` did nothing. A closed terminal (or `kill -HUP`) killed it at once and
    left its mosquitto running, re-parented, on the port: the next `fleet run` found it "already listens there". It
    has its own handler for both now, as `tinycl launch` and the nodes: mosquitto stopped (saving its persistence
    file), exit 0."""
    import subprocess
    import sys

    from tests.processes import IGNORING_SIGINT
    from tinycl_nodes.fleet.served import running_brokers

    _need_mosquitto()
    d = tmp_path / "broker"
    st = generate(d, "lab", ["robot1"], port=free_port(), user=current_user())
    p = subprocess.Popen([sys.executable, *(("-c", IGNORING_SIGINT) if started_ignoring_sigint else ()), "-m",
                          "tinycl_nodes.cli", "fleet", "run", str(d)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert "listening on" in p.stdout.readline()
        assert _reach(d / "bundles" / "robot1", "robot1") == "ok" and len(running_brokers(d)) == 1
        p.send_signal(sig)
        assert p.wait(timeout=15) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for pid in running_brokers(d):       # an orphan, not to outlive the test
            os.kill(pid, signal.SIGKILL)
    assert running_brokers(d) == [] and _reach(d / "bundles" / "robot1", "robot1") != "ok", \
        f"a broker still answers on {st.port}"
    assert (d / "data" / "mosquitto.db").is_file(), "mosquitto saved its persistence file: it was stopped cleanly"


def test_fleet_run_after_one_killed_with_9_stops_the_broker_it_left_and_starts_anew(tmp_path) -> None:
    """A `tinycl fleet run` killed with -9 (or by the OOM killer) cannot stop its mosquitto: it went on holding the port,
    and the next `fleet run` refused to start beside it ("already listens there") until someone found and killed it.
    Now the next one stops it (SIGTERM: it saves its persistence file), says so, and starts; a mosquitto started
    otherwise on the directory is left alone (the refusal as before). The real commands and mosquitto."""
    import subprocess
    import sys

    from tinycl_nodes.fleet.served import running_brokers

    _need_mosquitto()
    d = tmp_path / "broker"
    generate(d, "lab", ["robot1"], port=free_port(), user=current_user())
    run = [sys.executable, "-m", "tinycl_nodes.cli", "fleet", "run", str(d)]
    first = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "listening on" in first.stdout.readline()
    [left] = running_brokers(d)
    first.kill()
    first.wait()
    assert running_brokers(d) == [left] and _reach(d / "bundles" / "robot1", "robot1") == "ok", "it goes on alone"
    second = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in second.stdout.readline(), second.stderr.read() if second.poll() else ""
        [now] = running_brokers(d)
        assert now != left and _reach(d / "bundles" / "robot1", "robot1") == "ok"
    finally:
        second.terminate()
        _, err = second.communicate(timeout=15)
        for pid in running_brokers(d):
            os.kill(pid, signal.SIGKILL)
    assert err.strip().splitlines() == [f"warning: stopped mosquitto (pid {left}), left running on this directory by a "
                                        f"`tinycl fleet run` (pid {first.pid}) that is gone (killed?): it saved its "
                                        "persistence file; starting anew"], err
    assert second.returncode == 0 and running_brokers(d) == []
    with Broker(BrokerSetup.load(d)):                   # one of another starter (a test's, a service's) is left alone
        third = subprocess.run(run, capture_output=True, text=True, timeout=30)
        assert third.returncode == 2 and "already listens there" in third.stderr, third.stderr
        assert len(running_brokers(d)) == 1


def _setup_cli(d: Path, devices: str, *extra: str) -> list[str]:
    """`tinycl fleet setup` on ``d`` as the operator runs it (a process): its lines."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "tinycl_nodes.cli", "fleet", "setup", str(d), "--fleet", "lab",
                        "--devices", devices, "--user", current_user(), *extra], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_setup_says_when_a_broker_it_finds_no_running_must_read_its_files_again(tmp_path) -> None:
    """The trial ran setup again on a directory of an older build (its ACL without the broker's uptime) and with
    --new-ca: setup said nothing of the running broker, which went on serving the old ACL, or the old CA to robots
    holding the new bundles. A broker running here is now told itself (the next test); with none, set-up says that one
    running elsewhere applies the change once it reads its files again, whenever what a broker reads changed, and
    only then."""
    d = tmp_path / "b"
    setup = lambda *extra: _setup_cli(d, "robot1,robot2", "--port", "18889", *extra)  # noqa: E731
    elsewhere = ("no broker runs on this directory here: one running on it elsewhere applies this once it reads its "
                 "files again (`kill -HUP` its mosquitto) or restarts")
    assert elsewhere not in setup()                     # new: nothing runs yet
    assert elsewhere not in setup()                     # the same again: nothing changed
    acl = d / "acl"
    acl.write_text("".join(ln for ln in acl.read_text().splitlines(True) if "$SYS" not in ln))   # an older build's
    assert elsewhere in setup()
    assert elsewhere in setup("--new-ca")
    assert elsewhere in setup("--rotate", "robot1")
    assert elsewhere not in setup()


class _Open:
    """A connection held open with a copied bundle, as a robot's link holds it for weeks: whether the broker ever cut
    it, and the fleet's messages it received."""

    def __init__(self, bundle: Path, name: str) -> None:
        import paho.mqtt.client as mqtt

        st = BrokerSetup.load(bundle)
        c = st.credentials(name)
        self.cuts: list[str] = []
        self.got: list[bytes] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"tinycl-lab-{name}")
        self.client.tls_set(ca_certs=st.ca, certfile=c.certfile, keyfile=c.keyfile)
        self.client.on_disconnect = lambda *a: self.cuts.append(str(a[3]))
        self.client.on_message = lambda _c, _u, m: self.got.append(m.payload)
        self.subscribed: list[int] = []
        self.client.on_subscribe = lambda _c, _u, mid, *_: self.subscribed.append(mid)
        self.client.connect(st.host, st.port)
        self.client.loop_start()
        wait_for(self.client.is_connected)

    def subscribe(self, topic: str) -> None:
        """Subscribed once the broker has said so (SUBACK): a message published before that is not this reader's."""
        _, mid = self.client.subscribe(topic, qos=1)
        wait_for(lambda: mid in self.subscribed)

    def close(self) -> None:
        self.client.disconnect()
        stop_network_thread(self.client)


def test_setup_has_the_running_broker_apply_its_change_and_no_open_connection_is_cut(tmp_path) -> None:
    """Before, set-up said "a running broker applies this when restarted": an operator who added a robot restarted
    the broker, which cut every robot off, or forgot to, and a renewed certificate was never served (the fleet
    stopped at the old one's end). Now set-up finds the mosquitto running on its directory and has it read its files
    again (SIGHUP): a device added connects, a removed one is refused and its open connection can no longer use the
    fleet's topics, a renewed certificate and a new CA are served, and the open connections stay up throughout.
    The real mosquitto, set-up as a process, paho connections held open with the robots' copies of their bundles."""
    from cryptography import x509

    from tinycl_nodes.fleet.served import served_certificate

    _need_mosquitto()
    d = tmp_path / "b"
    _setup_cli(d, "robot1,robot2", "--port", str(free_port()))
    robots = tmp_path / "robots"
    shutil.copytree(d / "bundles", robots)
    broker = Broker(BrokerSetup.load(d)).start()
    told = f"the running broker (mosquitto, pid {broker.proc.pid}) read its files again (SIGHUP) and applies this"
    opened = []
    try:
        agg, r1, r2 = opened = [_Open(robots / n, n) for n in ("aggregator", "robot1", "robot2")]
        agg.subscribe(head_topic("lab", "+"))

        def heads_reach() -> list[bytes]:
            """Both robots' open connections publish their head: what the aggregator's receives. robot2 first, each
            acknowledged by the broker before the next: the broker forwards them to the aggregator in that order, so
            once robot1's has come, robot2's has too if it was let through. Not the probes of ``_reach`` (``fleet
            check --publish``, not heads), which the broker may forward after the clear: a fresh clone's run got
            robot3's probe among the heads once."""
            agg.got.clear()
            for who, r in (("robot2", r2), ("robot1", r1)):
                r.client.publish(head_topic("lab", who), who.encode(), qos=1).wait_for_publish(5)
            wait_for(lambda: b"robot1" in agg.got, timeout_s=5)
            return sorted(m for m in agg.got if m != PROBE)
        assert heads_reach() == [b"robot1", b"robot2"]
        assert not [ln for ln in _setup_cli(d, "robot1,robot2") if "running broker" in ln], "nothing changed"

        lines = _setup_cli(d, "robot1,robot3")                  # robot3 added, robot2 removed
        assert [ln for ln in lines if "running broker" in ln] == [
            f"{told} from now on: the connections open are kept (a removed device's can no longer use the fleet's "
            "topics; a restart would cut them all)"], lines
        shutil.copytree(d / "bundles" / "robot3", robots / "robot3")
        assert _reach(robots / "robot3", "robot3") == "ok", "added: it connects, the broker not restarted"
        assert "it is revoked" in _reach(robots / "robot2", "robot2"), "removed: a new connection is refused"
        assert heads_reach() == [b"robot1"], "the removed robot's open connection no longer reaches the fleet"

        crt = d / "server.crt"      # the broker serves a certificate in its renewal window (the operator's reload)
        ends = reissue(d, crt, crt, 2.5, lasts_days=12)
        broker.proc.send_signal(signal.SIGHUP)
        st = BrokerSetup.load(d)
        served = lambda: served_certificate(st)  # noqa: E731
        wait_for(lambda: served().not_valid_after_utc == ends.replace(microsecond=0), timeout_s=5)
        lines = _setup_cli(d, "robot1,robot3", "--no-reload")   # set-up renews it on disk; the broker left alone
        assert f"the running broker (mosquitto, pid {broker.proc.pid}) goes on with the files it read (--no-reload): " \
               f"`kill -HUP {broker.proc.pid}` applies them without cutting a connection" in lines, lines
        assert [ln for ln in lines if ln.startswith("warning: ")] == [
            f"warning: the broker listening on localhost (127.0.0.1):{st.port} serves the certificate that ends on "
            f"{ends:%Y-%m-%d %H:%M} UTC (in 2 days), not the renewed one in {crt} (ends on "
            f"{x509.load_pem_x509_certificate(crt.read_bytes()).not_valid_after_utc:%Y-%m-%d %H:%M} UTC): every "
            "device is cut off at its end unless you reload it (`kill -HUP` its mosquitto, as its user or root) or "
            "restart it"], lines
        lines = _setup_cli(d, "robot1,robot3")      # nothing left to renew: told all the same, as it serves the old one
        assert told in lines[-1] and not [ln for ln in lines if ln.startswith("warning: ")], lines
        assert served().public_bytes(serialization.Encoding.PEM) == crt.read_bytes(), "it serves the renewed one"

        # set-up's looks at what the broker serves (with the aggregator's certificate) are no TLS error in its log
        assert "did not return a certificate" not in broker.log_path.read_text()
        lines = _setup_cli(d, "robot1,robot3", "--new-ca")
        assert f"{told} from now on (the new CA's: only the new bundles connect from now on)" in lines[-1], lines
        assert _reach(d / "bundles" / "robot3", "robot3") == "ok", "robot3's new bundle connects"
        assert "verify failed" in _reach(robots / "robot3", "robot3"), "its old bundle no longer does"
        assert heads_reach() == [b"robot1"], "robot1's connection opened with the old CA goes on"

        lines = _setup_cli(d, "robot1,robot3", "--port", str(free_port()))
        assert lines[-1] == ("mosquitto.conf changed (the address, a port or the user): a running broker applies this "
                             "only when restarted (Ctrl-C and `tinycl fleet run` again, or restart its service; every "
                             "connection is cut then), and goes on with the files it read until then"), lines
        assert not [ln for ln in lines if "running broker (mosquitto" in ln], "not told: a restart applies it"
        assert agg.cuts == r1.cuts == [] and agg.client.is_connected() and r1.client.is_connected(), \
            "no connection was cut"
        log = broker.log_path.read_text()
        assert "reloading certificate" not in log and "Unable to load" not in log, log[-2000:]
    finally:
        for o in opened:
            o.close()
        broker.stop()
