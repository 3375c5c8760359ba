"""Generated broker configuration (no broker needed) and the fleet bench on a small scale."""

from __future__ import annotations

from tinycl_nodes.fleet import bench
from tinycl_nodes.fleet.broker import BrokerSetup, current_user, generate
from tinycl_nodes.fleet.broker import main as fleet_main

from .conftest import _need_mosquitto


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
