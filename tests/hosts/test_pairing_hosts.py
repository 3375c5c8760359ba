"""The label app's pairing URL on a robot network without a default route (network namespaces: none has one)."""

from __future__ import annotations

import logging

from tinycl_nodes.label_app import pairing
from tinycl_nodes.netns import HostNet, _ip

from .conftest import need_hosts


def test_pairing_url_without_a_default_route(caplog) -> None:
    """Before: 127.0.0.1 (and its QR code), which no phone can open, without a word."""
    need_hosts()
    caplog.set_level(logging.WARNING, logger="tinycl.pairing")
    with HostNet(["robot", "bare"], multicast=False) as net:
        _ip("-n", net.ns("bare"), "addr", "flush", "dev", "eth0")      # up, but no address but loopback
        url = net.call_in("robot", lambda: pairing.app_url("0.0.0.0", 8080, True, "tok"))
        assert url == f"https://{net.ip('robot')}:8080/?token=tok"
        assert not caplog.records
        pairing._warned_loopback = False
        assert net.call_in("bare", pairing.lan_address) == "127.0.0.1"
        said = [r.getMessage() for r in caplog.records]
        assert len(said) == 1 and "set public_url" in said[0], said
    assert net.leftovers() == []
