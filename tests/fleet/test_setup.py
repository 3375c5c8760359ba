"""Generated broker configuration, setup run again on a fleet's directory and `fleet run`'s refusals (the real
mosquitto where a broker is involved), and the fleet bench on a small scale."""

from __future__ import annotations

import contextlib
import io
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from tinycl_nodes.fleet import bench
from tinycl_nodes.fleet.broker import Broker, BrokerSetup, current_user, free_port, generate
from tinycl_nodes.fleet.broker import main as fleet_main

from .conftest import _need_mosquitto
from .test_fleet_lifecycle import _reach


def test_generated_config_is_tls_on_loopback_with_acl(tmp_path) -> None:
    _need_mosquitto()
    st = generate(tmp_path / "b", "lab", ["r1", "r2"], port=18999, user=current_user())   # tmp_path is 0700
    conf = (tmp_path / "b" / "mosquitto.conf").read_text().splitlines()
    assert [ln for ln in conf if ln.startswith("listener")] == ["listener 18999 127.0.0.1"], "plaintext off by default"
    for line in ("allow_anonymous false", "require_certificate true", "per_listener_settings true",
                 "use_identity_as_username true", "use_username_as_clientid true"):
        assert line in conf
    acl = (tmp_path / "b" / "acl").read_text()
    assert "user r1\ntopic write tinycl/lab/r1/head\ntopic read tinycl/lab/global\n" in acl
    assert "user aggregator\ntopic read tinycl/lab/+/head\ntopic readwrite tinycl/lab/global\n" in acl
    assert "global" not in acl.split("user r1")[1].split("topic read")[0], "devices never write global"
    passwd = (tmp_path / "b" / "passwd").read_text()
    assert st.credentials("r1").password not in passwd, "password file is hashed"
    assert BrokerSetup.load(tmp_path / "b").credentials("r2").password == st.credentials("r2").password
    generate(tmp_path / "c", "lab", ["r1"], port=18999, plaintext_port=18998, user=current_user())
    conf = (tmp_path / "c" / "mosquitto.conf").read_text()
    assert "listener 18998 127.0.0.1" in conf
    plain = conf.split("listener 18998 127.0.0.1")[1]
    assert "allow_anonymous false" in plain and "password_file" in plain, "the plaintext listener needs passwords"


def test_bench_small() -> None:
    res = bench.run(n_devices=50, relay_heads=60, round_devices=0)
    assert res["aggregate_ok"] and res["relay"]["heads"] == 60 and res["relay"]["refused"] == 0


def test_no_generated_password_looks_like_an_option() -> None:
    """One in 64 random passwords began with '-', and `tinycl fleet check --password <it>` then failed ("expected
    one argument"): a fresh-clone run of tests/hosts hit it."""
    from tinycl_nodes.fleet.broker import _password

    pws = [_password() for _ in range(2000)]
    assert not [p for p in pws if p.startswith("-")] and len(set(pws)) == 2000 and min(map(len, pws)) >= 24


def test_an_empty_device_list_revokes_nothing(tmp_path, capsys) -> None:
    """`--devices "$DEVICES"` with the variable unset: run again on the fleet's directory, it revoked every device
    (the list is all of the fleet's devices). Now one line, exit 2, and the directory as it was."""
    _need_mosquitto()
    folder = tmp_path / "b"
    assert fleet_main(["setup", str(folder), "--fleet", "lab", "--devices", "r1,r2", "--user", current_user()]) == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert fleet_main(["setup", str(folder), "--fleet", "lab", "--devices", "", "--user", current_user()]) == 2
    assert "no devices listed" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert BrokerSetup.load(folder).devices == ["r1", "r2"]


# --- setup run again on a fleet's directory, and `fleet run`, against the real mosquitto ---------------------------

def _setup(folder: Path, *extra: str, fleet: str = "lab") -> tuple[int, str, str]:
    """`tinycl fleet setup` on ``folder``: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = fleet_main(["setup", str(folder), "--fleet", fleet, *extra])
    return code, out.getvalue(), err.getvalue()


def _days(certfile: Path) -> float:
    crt = x509.load_pem_x509_certificate(certfile.read_bytes())
    return (crt.not_valid_after_utc - crt.not_valid_before_utc).total_seconds() / 86400


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_setup_again_keeps_every_option_left_off(tmp_path) -> None:
    """Adding robot3 by running setup again without --host, --port and --aggregator moved the broker to localhost:8883
    ("copy the bundles of aggregator, robot1, robot2 again") and revoked the aggregator `hub` for a new `aggregator`:
    every robot cut off. An option left off now keeps the fleet's value; one given still changes it, and says so."""
    _need_mosquitto()
    d = tmp_path / "b"
    port, plain, me = free_port(), free_port(), ("--user", current_user())   # tmp_path is 0700
    code, out, err = _setup(d, "--devices", "robot1,robot2", "--host", "localhost", "--port", str(port),
                            "--plaintext-port", str(plain), "--aggregator", "hub", "--days", "30", *me)
    assert code == 0, err
    robots = tmp_path / "robots"
    shutil.copytree(d / "bundles", robots)
    code, out, err = _setup(d, "--devices", "robot1,robot2,robot3", *me)    # (--user: test_broker_user.py)
    assert code == 0, err
    assert "kept (their bundles stay valid): hub, robot1, robot2" in out, out
    assert "copy the bundles" not in out and "revoked" not in out, out
    st = BrokerSetup.load(d)
    assert (st.host, st.ip, st.port, st.plaintext_port, st.aggregator) == ("localhost", "127.0.0.1", port, plain, "hub")
    assert f"user {current_user()}" in (d / "mosquitto.conf").read_text().splitlines()
    assert round(_days(d / "clients" / "robot3.crt")) == 30 == round(_days(d / "server.crt")), "--days kept"
    with Broker(st):
        assert _reach(robots / "robot1", "robot1") == "ok", "robot1's day-one bundle still reaches the broker"
        assert _reach(robots / "hub", "hub") == "Success", "hub connects (its ACL lets it write no head)"
        assert _reach(d / "bundles" / "robot3", "robot3") == "ok"
    # a value given on purpose still changes it, and names the bundles to copy again
    port2 = free_port()
    code, out, err = _setup(d, "--devices", "robot1,robot2,robot3", "--port", str(port2), "--plaintext-port", "off",
                            *me)
    assert code == 0, err
    assert (f"the broker's address is now localhost (127.0.0.1):{port2}: copy the bundles of hub, robot1, robot2, "
            "robot3 again") in out, out
    st = BrokerSetup.load(d)
    assert (st.port, st.plaintext_port, st.aggregator) == (port2, None, "hub")
    assert [ln for ln in (d / "mosquitto.conf").read_text().splitlines() if ln.startswith("listener")] == [
        f"listener {port2} 127.0.0.1"]
    code, out, err = _setup(d, "--devices", "robot1,robot2,robot3", "--plaintext-port", str(port2), *me)
    assert code == 2 and f"the plaintext port {port2} is the TLS port too" in err, err
    # the audit's own case: --host vm (and an --ip), left off on the re-run (no broker: vm resolves nowhere here)
    e = tmp_path / "e"
    assert _setup(e, "--devices", "robot1,robot2", "--host", "vm", "--ip", "127.0.0.2", *me)[0] == 0
    code, out, err = _setup(e, "--devices", "robot1,robot2,robot3", *me)
    assert code == 0 and "kept (their bundles stay valid): aggregator, robot1, robot2" in out, (out, err)
    assert (BrokerSetup.load(e).host, BrokerSetup.load(e).ip) == ("vm", "127.0.0.2")


@pytest.mark.parametrize("damage", ["credentials.json missing", "fleet.json truncated"])
def test_setup_refuses_a_ca_whose_fleet_state_cannot_be_read_and_run_does_not_need_it(tmp_path, damage) -> None:
    """With credentials.json gone (or fleet.json truncated), setup again made a new CA and every key (exit 0: every
    robot cut off), even for another fleet's name; and `fleet run` refused the directory, though mosquitto reads
    neither file, which invited that set-up. Now setup refuses in one line and writes nothing; run starts."""
    _need_mosquitto()
    d = tmp_path / "b"
    st = generate(d, "lab", ["robot1", "robot2"], port=free_port(), user=current_user())
    file = "credentials.json" if damage.startswith("credentials") else "fleet.json"
    if file == "credentials.json":
        (d / file).unlink()
    else:
        (d / file).write_text((d / file).read_text()[:20])
    before = _files(d)
    for fleet in ("lab", "yard"):
        code, out, err = _setup(d, "--devices", "robot1,robot2,robot3", "--user", current_user(), "--port",
                                str(st.port), fleet=fleet)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
        assert str(d / file) in lines[0] and "--new-ca" in lines[0] and "ca.key" in lines[0], lines
        assert _files(d) == before, "nothing written"
    p = subprocess.Popen([sys.executable, "-m", "tinycl_nodes.cli", "fleet", "run", str(d)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline() if select.select([p.stdout], [], [], 15)[0] else "(nothing within 15 s)"
        assert line.startswith(f"mosquitto listening on localhost (127.0.0.1):{st.port} (TLS) for fleet lab"), \
            (line, p.poll(), p.stderr.read() if p.poll() is not None else "")
        assert _reach(d / "bundles" / "robot1", "robot1") == "ok"
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
    assert p.returncode == 0


def test_setup_says_revoked_only_what_it_revoked(tmp_path) -> None:
    """robot1's clients/robot1.crt unreadable: setup again said "revoked: robot1 (old certificate)" while its old bundle
    still connected after a restart (the serial was never read). Now the serial comes from the bundle's copy; with
    neither readable, setup says plainly that the old certificate was not revoked."""
    _need_mosquitto()
    d = tmp_path / "b"
    port = free_port()
    generate(d, "lab", ["robot1", "robot2", "robot3"], port=port, user=current_user())
    robots = tmp_path / "robots"
    shutil.copytree(d / "bundles", robots)
    (d / "clients" / "robot1.crt").write_text("garbage\n")                 # the bundle's copy is whole
    me = ("--user", current_user(), "--port", str(port))                    # tmp_path is 0700
    code, out, err = _setup(d, "--devices", "robot1,robot2,robot3", *me)
    assert code == 0, err
    assert "revoked: robot1 (old certificate)" in out and "not revoked" not in out, out
    with Broker(BrokerSetup.load(d)):
        assert "it is revoked" in _reach(robots / "robot1", "robot1"), "the old bundle is cut off, as said"
        assert _reach(d / "bundles" / "robot1", "robot1") == "ok"
    for name in ("robot2", "robot3"):                                       # neither copy readable
        (d / "clients" / f"{name}.crt").write_text("garbage\n")
        (d / "bundles" / name / "clients" / f"{name}.crt").write_text("garbage\n")
    code, out, err = _setup(d, "--devices", "robot1,robot2", *me)         # robot2 re-keyed, robot3 removed
    assert code == 0, err
    assert "revoked:" not in out.replace("not revoked:", ""), out
    assert ("not revoked: robot3 (removed), robot2: the old certificate could be read neither in clients/ nor in the "
            "bundle, so it was not revoked") in out, out
    with Broker(BrokerSetup.load(d)):
        assert _reach(robots / "robot2", "robot2") == "ok", "as said: the old bundle still connects"
        assert _reach(d / "bundles" / "robot2", "robot2") == "ok"


def test_fleet_run_refuses_a_device_bundle_in_one_line(tmp_path, capsys) -> None:
    """`fleet run D/bundles/robot1` said "mosquitto exited with 3: Error: Unable to open config file ." and left a
    mosquitto.log in the bundle."""
    d = tmp_path / "b"
    generate(d, "lab", ["robot1"], port=free_port(), user=current_user())
    bundle = d / "bundles" / "robot1"
    before = _files(bundle)
    assert fleet_main(["run", str(bundle)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tinycl fleet: error: {bundle} is a device bundle, not a broker directory: run `tinycl fleet run` "
                   f"on the broker's directory {d}"], err
    assert _files(bundle) == before, "nothing written into the bundle"
    assert fleet_main(["run", str(tmp_path)]) == 2
    assert "holds no mosquitto.conf" in capsys.readouterr().err


def test_fleet_run_error_shows_only_this_runs_log(tmp_path, capsys) -> None:
    """mosquitto.log is appended to: the error of a failed start showed the last lines of earlier runs too (a fault
    since fixed, taken for this run's)."""
    _need_mosquitto()
    d = tmp_path / "b"
    generate(d, "lab", ["robot1"], port=free_port(), user=current_user())
    key = (d / "server.key").read_bytes()
    (d / "server.key").write_text("garbage\n")
    assert fleet_main(["run", str(d)]) == 2
    assert "Unable to load server key file" in capsys.readouterr().err
    (d / "server.key").write_bytes(key)                                    # fixed; another fault now
    conf = d / "mosquitto.conf"
    conf.write_text(conf.read_text() + "no_such_option 1\n")
    assert fleet_main(["run", str(d)]) == 2
    err = capsys.readouterr().err
    assert 'Unknown configuration variable "no_such_option"' in err, err
    assert "server key" not in err, "the earlier run's lines are not this run's"


@pytest.mark.parametrize("where", ["a bundle", "a directory whose ca.key is gone"])
def test_setup_refuses_a_fleet_directory_without_its_ca_key(tmp_path, capsys, where) -> None:
    """Setup on a device bundle, or on the broker's directory after ca.key was deleted, made a new CA in silence: every
    device's bundle then failed. Refused in one line, nothing written; --new-ca still starts over."""
    d = tmp_path / "b"
    generate(d, "lab", ["robot1"], port=free_port(), user=current_user())
    target = d / "bundles" / "robot1" if where == "a bundle" else d
    if where != "a bundle":
        (d / "ca.key").unlink()
    before = _files(target)
    assert fleet_main(["setup", str(target), "--fleet", "lab", "--devices", "robot1", "--user", current_user()]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "without the fleet's CA key (ca.key)" in err, err
    assert ("is a device bundle" in err) == (where == "a bundle"), err
    assert _files(target) == before
    assert fleet_main(["setup", str(target), "--fleet", "lab", "--devices", "robot1", "--user", current_user(),
                       "--new-ca"]) == 0
