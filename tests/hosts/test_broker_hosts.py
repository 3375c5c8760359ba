"""The fleet's broker on a real address: mosquitto in ``cloud``, devices on other hosts by name over TLS."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time

import pytest

from tinycl_nodes.fleet.broker import Broker, current_user, generate, head_topic, make_ca, make_client_cert

from .conftest import PY, py_env, run_py

FLEET = "lab"
DEVICES = ["robot1", "robot2", "robot3"]


@pytest.fixture(scope="module")
def cloud_broker(net, tmp_path_factory):
    d = tmp_path_factory.mktemp("cloud-broker")
    # pytest's temp folders are 0700: the broker runs as whoever runs the tests (tests/fleet/test_broker_user.py
    # runs one as mosquitto)
    setup = generate(d, FLEET, DEVICES, port=8883, host="cloud", ip=net.ip("cloud"), user=current_user())
    b = Broker(setup, net=net, on="cloud").start()
    yield setup
    b.stop()


def check(net, host: str, setup, identity: str, *extra: str, timeout: float = 30) -> tuple[int, dict]:
    r = run_py(net, host, ["-m", "tinycl_nodes.fleet.check", "--broker-dir", setup.directory,
                           "--identity", identity, *extra], timeout=timeout)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result from check on {host}: {r.stderr[-500:]}"
    return r.returncode, json.loads(lines[-1])


def test_setup_names_the_broker_and_keeps_secrets_private(cloud_broker) -> None:
    d = cloud_broker.directory
    conf = open(os.path.join(d, "mosquitto.conf")).read().splitlines()
    assert "listener 8883 10.77.0.1" in conf
    for line in ("require_certificate true", "use_identity_as_username true", "use_username_as_clientid true",
                 "per_listener_settings true",
                 "allow_anonymous false"):
        assert line in conf
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(open(os.path.join(d, "server.crt"), "rb").read())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["cloud"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.77.0.1"]
    for f in ("passwd", "credentials.json", "ca.key", "server.key", "clients/robot1.key"):
        assert stat.S_IMODE(os.stat(os.path.join(d, f)).st_mode) == 0o600, f


def test_device_reaches_the_broker_by_name_over_tls(net, cloud_broker) -> None:
    rc, res = check(net, "robot2", cloud_broker, "robot2", "--publish", head_topic(FLEET, "robot2"))
    assert (rc, res["connect"], res["published"], res["host"]) == (0, "Success", True, "cloud"), res
    # hostname verification is on: the same broker under a name that is not in its certificate is refused
    with open(f"/etc/netns/{net.ns('robot2')}/hosts", "a") as f:
        f.write(f"{net.ip('cloud')} not-the-broker\n")
    rc, res = check(net, "robot2", cloud_broker, "robot2", "--host", "not-the-broker")
    assert rc == 1 and res["connect"].startswith("server certificate verify failed: Hostname mismatch") and \
        "not-the-broker" in res["connect"], res


def test_another_devices_certificate_or_identity_is_refused(net, cloud_broker, tmp_path) -> None:
    st = cloud_broker
    r1 = st.credentials("robot1")
    # robot2 presents robot1's certificate (it has not robot1's key): the TLS handshake cannot happen
    rc, res = check(net, "robot2", st, "robot2", "--cert", r1.certfile)
    assert rc == 1 and res["connect"].startswith("TLS"), res
    # a certificate for "robot1" made by anyone but the fleet's CA: the broker refuses the handshake
    rogue = tmp_path / "rogue"
    make_ca(rogue, "rogue CA")
    make_client_cert(rogue / "c", "robot1", rogue)
    rc, res = check(net, "robot2", st, "robot2", "--cert", str(rogue / "c" / "robot1.crt"),
                    "--key", str(rogue / "c" / "robot1.key"), "--publish", head_topic(FLEET, "robot1"))
    assert rc == 1 and res["connect"] != "Success", res
    # robot2's own certificate with robot1's username and password: the certificate decides who it
    # is (robot2), so writing robot1's head is not authorized
    rc, res = check(net, "robot2", st, "robot2", "--username", "robot1", "--password", r1.password,
                    "--publish", head_topic(FLEET, "robot1"))
    assert res["connect"] == "Success" and res["puback"] == "Not authorized" and rc == 1, res


def test_another_devices_client_id_cannot_take_its_session(net, cloud_broker) -> None:
    st = cloud_broker
    victims = {}
    for host, identity in (("robot1", "robot1"), ("cloud", "aggregator")):
        victims[identity] = net.popen(host, [PY, "-m", "tinycl_nodes.fleet.check", "--broker-dir", st.directory,
                                             "--identity", identity, "--hold", "6"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=py_env())
    time.sleep(2.5)                                 # both connected (python start + TLS)
    for victim in victims:                          # robot3 reuses each victim's client id
        rc, res = check(net, "robot3", st, "robot3", "--client-id", f"tinycl-{FLEET}-{victim}")
        assert res["connect"] == "Success", res
    for identity, p in victims.items():
        out, err = p.communicate(timeout=30)
        res = json.loads(out.strip().splitlines()[-1])
        assert res["connect"] == "Success" and res["still_connected"] is True, (identity, res, err[-300:])


def test_bench_round_small() -> None:
    """make bench's round through the TLS broker in namespaces, on a small scale (here 20 devices)."""
    from tinycl_nodes.fleet.bench import bench_round

    res = bench_round(20, n_hosts=2)
    assert res.get("devices_in_round") == 20 and res["round"] == 1 and res["round_s"] > 0, res


def test_a_killed_run_leaves_nothing_behind() -> None:
    """A run killed with SIGKILL cannot clean up: the next run removes its namespaces and processes."""
    import signal

    from tinycl_nodes.netns import NETNS_ETC, NETNS_RUN

    code = ("import sys, time; from tinycl_nodes.netns import HostNet; n = HostNet(['a', 'b']).up(); "
            "n.popen('a', ['sleep', '300']); print(n.prefix, flush=True); time.sleep(300)")
    p = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, text=True, env=py_env(), start_new_session=True)
    prefix = p.stdout.readline().strip()
    assert prefix and (NETNS_RUN / f"{prefix}a").exists() and (NETNS_ETC / f"{prefix}b" / "hosts").exists()
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(10)
    from tinycl_nodes.netns import sweep_stale
    removed = sweep_stale()
    assert {f"{prefix}sw", f"{prefix}a", f"{prefix}b"} <= set(removed), removed
    assert not any(n.startswith(prefix) for n in os.listdir(NETNS_RUN))
    assert not (NETNS_ETC / f"{prefix}a").exists()
