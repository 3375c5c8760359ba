"""The label app's connection caps, on the real server over real sockets and TLS: per client address, in all, and a
TLS handshake that never comes. Anyone on the robot's network may connect (pairing is checked per HTTP request, after
the handshake): without caps one client held thousands of silent sockets, the process's file descriptors, and no phone
could connect any more."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from contextlib import contextmanager

import aiohttp
import pytest

from tinycl_nodes.label_app.server import LabelServer
from tinycl_nodes.label_app.store import RequestStore
from tinycl_nodes.label_app.tls import ensure_certificate

TOKEN = "test-token-123"
OTHER = "127.0.0.2"         # loopback too on Linux: another client address for the same server


@pytest.fixture
def tls(tmp_path):
    """The server's context with a certificate made as the node makes it, and a client's context trusting it."""
    crt, key, _ = ensure_certificate(tmp_path, ["127.0.0.1"])
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(crt, key)
    client_ctx = ssl.create_default_context(cafile=str(crt))
    client_ctx.check_hostname = False
    return server_ctx, client_ctx


@contextmanager
def serving(server_ctx):
    server = LabelServer(RequestStore(60.0), lambda answer: None, TOKEN, host="127.0.0.1", port=0,
                         ssl_context=server_ctx, tick_s=0.05)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def silent_sockets(port: int, n: int, source: str = "127.0.0.1") -> list[socket.socket]:
    """``n`` TCP connections from ``source`` that never start a TLS handshake."""
    socks = []
    for _ in range(n):
        sock = socket.socket()
        sock.bind((source, 0))
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionResetError:  # past a cap, closed before connect() returned (a loaded machine): one it closed
            pass
        sock.setblocking(False)
        socks.append(sock)
    return socks


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:           # reset
        return True
    except OSError as exc:            # reset before its connect() returned: never connected
        if exc.errno == errno.ENOTCONN:
            return True
        raise


def wait_closed(socks: list[socket.socket], n: int, within_s: float) -> tuple[int, float]:
    """How many of ``socks`` the server closed, waiting up to ``within_s`` for ``n`` of them; and how long it took."""
    started, closed = time.monotonic(), set()
    while True:
        closed |= {i for i, s in enumerate(socks) if i not in closed and closed_by_server(s)}
        took = time.monotonic() - started
        if len(closed) >= n or took > within_s:
            return len(closed), took
        time.sleep(0.02)


def get_state(port: int, client_ctx: ssl.SSLContext, source: str = "127.0.0.1", retry_s: float = 0.0) -> int:
    """A paired client's GET of the app's state over TLS from ``source``: its status (retried ``retry_s`` while its
    connection is refused)."""
    async def go() -> int:
        deadline = time.monotonic() + retry_s
        while True:
            try:
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0))) as s, \
                        s.get(f"https://127.0.0.1:{port}/api/state", ssl=client_ctx,
                              headers={"X-Tinycl-Token": TOKEN}, timeout=aiohttp.ClientTimeout(total=5)) as r:
                    return r.status
            except (aiohttp.ClientConnectionError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    return asyncio.run(go())


def cap_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "(the cap" in r.getMessage()]


def test_one_address_past_its_cap_is_refused_at_once_said_once_and_others_still_connect(tls, caplog, monkeypatch):
    server_ctx, client_ctx = tls
    monkeypatch.setattr(LabelServer, "TLS_HANDSHAKE_S", 60.0)    # the silent ones stay for the test
    cap = LabelServer.MAX_CONNECTIONS_PER_PEER
    with caplog.at_level(logging.WARNING, logger="tinycl.label_app"), serving(server_ctx) as server:
        socks = silent_sockets(server.port, cap + 100)
        try:
            closed, took = wait_closed(socks, 100, within_s=5)
            assert closed == 100 and took < 2, (closed, took)
            time.sleep(0.3)
            assert wait_closed(socks, 101, within_s=0)[0] == 100          # the ones within the cap are kept
            assert get_state(server.port, client_ctx, source=OTHER) == 200  # another address is not blocked
            late = silent_sockets(server.port, 1)                          # 127.0.0.1 still is
            assert wait_closed(late, 1, within_s=2)[0] == 1
            socks += late
            lines = cap_lines(caplog)
            assert 1 <= len(lines) <= 2, lines
            assert lines[0] == f"label app: 127.0.0.1 holds {cap} connections (the cap): closing its new ones"
        finally:
            for sock in socks:
                sock.close()
        assert get_state(server.port, client_ctx, retry_s=5) == 200     # its silent sockets gone, 127.0.0.1 is back


def test_many_addresses_meet_the_total_cap(tls, caplog, monkeypatch):
    server_ctx, client_ctx = tls
    monkeypatch.setattr(LabelServer, "TLS_HANDSHAKE_S", 60.0)
    monkeypatch.setattr(LabelServer, "MAX_CONNECTIONS", 20)
    with caplog.at_level(logging.WARNING, logger="tinycl.label_app"), serving(server_ctx) as server:
        first = silent_sockets(server.port, 20)
        others = silent_sockets(server.port, 30, source=OTHER) + silent_sockets(server.port, 30, source="127.0.0.3")
        try:
            closed, took = wait_closed(others, 60, within_s=5)
            assert closed == 60 and took < 2, (closed, took)
            assert wait_closed(first, 1, within_s=0.3)[0] == 0
            lines = cap_lines(caplog)
            assert len(lines) == 1 and lines[0] == ("label app: 20 connections open (the cap for all clients): "
                                                    "closing new ones"), lines
        finally:
            for sock in first + others:
                sock.close()
        assert get_state(server.port, client_ctx, source=OTHER, retry_s=5) == 200


def test_a_tls_handshake_that_never_comes_is_closed_after_the_timeout_and_frees_its_place(tls, monkeypatch):
    server_ctx, client_ctx = tls
    monkeypatch.setattr(LabelServer, "TLS_HANDSHAKE_S", 1.0)
    monkeypatch.setattr(LabelServer, "MAX_CONNECTIONS_PER_PEER", 4)
    with serving(server_ctx) as server:
        socks = silent_sockets(server.port, 4)
        try:
            closed, took = wait_closed(socks, 4, within_s=5)
            assert closed == 4 and 0.8 < took < 3, (closed, took)
        finally:
            for sock in socks:
                sock.close()
        assert get_state(server.port, client_ctx) == 200            # no retry: their places were given back
