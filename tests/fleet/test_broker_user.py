"""`tinycl fleet setup` as root: the broker runs as the unprivileged `mosquitto`, not as root (real mosquitto).

It ran as root (`user root` in mosquitto.conf); mosquitto opens passwd, the ACL, the certificates and the server key
after dropping to its user and writes data/, so set-up gives it those, and refuses a folder it cannot reach.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from tinycl_nodes.fleet.broker import Broker, BrokerSetup, free_port, global_topic, head_topic, main as fleet_main

from .conftest import FLEET, _need_mosquitto, wait_for
from .test_broker import device_link

SETUP = ["--fleet", FLEET, "--devices", "dev1,dev2"]


@pytest.fixture
def as_root() -> pwd.struct_passwd:
    """The mosquitto account; only root drops to it (mosquitto not started as root keeps its user)."""
    _need_mosquitto()
    if os.geteuid() != 0:
        pytest.fail("these tests need root: setup drops the broker to another user only as root (make test runs as root)")
    return pwd.getpwnam("mosquitto")


@pytest.fixture
def open_dir(as_root) -> Path:
    """A folder under /tmp that any user can pass (pytest's tmp_path is 0700, closed to mosquitto)."""
    d = Path(tempfile.mkdtemp(prefix="tinycl-broker-user-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _uids(pid: int) -> list[int]:
    """real, effective, saved and filesystem uid of a process (/proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no Uid line for {pid}")


def test_setup_as_root_runs_the_broker_as_mosquitto(open_dir, as_root, capsys) -> None:
    d = open_dir / "srv" / "broker"
    assert fleet_main(["setup", str(d), *SETUP, "--port", str(free_port())]) == 0, capsys.readouterr().err
    assert "user mosquitto" in (d / "mosquitto.conf").read_text().splitlines()
    for f in ("passwd", "server.key", "acl", "ca.crt", "server.crt"):     # what it opens as mosquitto
        assert (d / f).stat().st_uid == as_root.pw_uid, f
    for f in ("passwd", "server.key"):                                     # its secrets stay private
        assert stat.S_IMODE((d / f).stat().st_mode) == 0o600, f
    st = (d / "data").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (as_root.pw_uid, 0o700)
    for f in ("ca.key", "credentials.json", "clients/dev1.key"):        # never the broker's
        st = (d / f).stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600), f

    setup = BrokerSetup.load(d)
    broker = Broker(setup).start()
    got: list[tuple[str, bytes]] = []
    links = []
    try:
        agg = device_link(setup, "aggregator", subs=[head_topic(FLEET, "+")],
                          on_message=lambda tp, b: got.append((tp, b)))
        dev1 = device_link(setup, "dev1", subs=[global_topic(FLEET)], on_message=lambda tp, b: got.append((tp, b)))
        links = [agg, dev1]
        assert agg.wait_connected(10) and dev1.wait_connected(10), (agg.last_error, dev1.last_error)
        dev1.offer(head_topic(FLEET, "dev1"), b"head of dev1", retain=True)
        dev1.offer(head_topic(FLEET, "dev2"), b"forged", retain=True)          # not its topic: the ACL refuses
        agg.offer(global_topic(FLEET), b"global", retain=True)
        wait_for(lambda: not dev1.unacked() and not agg.unacked() and len(got) >= 2)
        assert sorted(got) == [(head_topic(FLEET, "dev1"), b"head of dev1"), (global_topic(FLEET), b"global")], got
        assert _uids(broker.proc.pid) == [as_root.pw_uid] * 4, "mosquitto runs as mosquitto, not as root"
        # data/ is its own: the retained head outlives a restart
        for link in links:
            link.stop()
        broker.stop()
        assert (d / "data" / "mosquitto.db").stat().st_uid == as_root.pw_uid
        broker.start()
        got.clear()
        agg = device_link(setup, "aggregator", subs=[head_topic(FLEET, "+")],
                          on_message=lambda tp, b: got.append((tp, b)))
        links = [agg]
        wait_for(lambda: got)
        assert got == [(head_topic(FLEET, "dev1"), b"head of dev1")], got
        # set-up again (root) adds dev3: the broker, as mosquitto, reads the files set-up gave it again (SIGHUP)
        capsys.readouterr()
        assert fleet_main(["setup", str(d), "--fleet", FLEET, "--devices", "dev1,dev2,dev3"]) == 0
        out = capsys.readouterr().out
        assert f"the running broker (mosquitto, pid {broker.proc.pid}) read its files again (SIGHUP)" in out, out
        dev3 = device_link(BrokerSetup.load(d), "dev3", subs=[global_topic(FLEET)],
                           on_message=lambda tp, b: got.append((tp, b)))
        links.append(dev3)
        assert dev3.wait_connected(10), dev3.last_error
        assert agg.connected.is_set() and _uids(broker.proc.pid) == [as_root.pw_uid] * 4
    finally:
        for link in links:
            link.stop()
        broker.stop()


def test_setup_as_root_refuses_a_folder_mosquitto_cannot_reach_and_writes_nothing(open_dir, as_root,
                                                                                  capsys) -> None:
    private = open_dir / "private"
    private.mkdir(mode=0o700)
    d = private / "broker"
    assert fleet_main(["setup", str(d), *SETUP]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"{private} is closed to it" in err and "'mosquitto'" in err and "--user root" in err, err
    assert list(private.iterdir()) == [], "nothing written"
    # --user root, knowingly: the broker runs as root there, as it did before
    assert fleet_main(["setup", str(d), *SETUP, "--user", "root"]) == 0
    assert "user root" in (d / "mosquitto.conf").read_text().splitlines()
    assert (d / "passwd").stat().st_uid == 0


def test_setup_refuses_a_user_that_does_not_exist(open_dir, capsys) -> None:
    d = open_dir / "broker"
    assert fleet_main(["setup", str(d), *SETUP, "--user", "no-such-user-here"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no user 'no-such-user-here'" in err, err
    assert not d.exists()


def test_a_file_mosquitto_cannot_read_is_named_by_its_own_log(open_dir, as_root) -> None:
    d = open_dir / "broker"
    assert fleet_main(["setup", str(d), *SETUP, "--port", str(free_port())]) == 0
    os.chown(d / "passwd", 0, 0)                    # 0600 root's: mosquitto, once it is mosquitto, cannot open it
    broker = Broker(BrokerSetup.load(d))
    with pytest.raises(RuntimeError, match=r"mosquitto exited with \d+: .*Unable to open pwfile .*passwd"):
        broker.start()
    assert not broker.running


def test_setup_again_without_user_keeps_the_brokers_user(open_dir, as_root, capsys) -> None:
    """Set up with --user root, then again without --user to add a device: the broker was switched to mosquitto (the
    option left off took a new directory's default) and its files handed over. Left off, the user is kept now; given,
    it still changes."""
    d = open_dir / "broker"
    assert fleet_main(["setup", str(d), *SETUP, "--user", "root"]) == 0
    assert fleet_main(["setup", str(d), "--fleet", FLEET, "--devices", "dev1,dev2,dev3"]) == 0, capsys.readouterr().err
    assert "user root" in (d / "mosquitto.conf").read_text().splitlines()
    assert (d / "passwd").stat().st_uid == 0
    assert fleet_main(["setup", str(d), "--fleet", FLEET, "--devices", "dev1,dev2,dev3", "--user", "mosquitto"]) == 0
    assert "user mosquitto" in (d / "mosquitto.conf").read_text().splitlines()
    assert (d / "passwd").stat().st_uid == as_root.pw_uid
