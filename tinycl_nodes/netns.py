"""Separate hosts on one Linux machine: network namespaces on a private bridge (tests, demo-fleet).

``HostNet(["cloud", "robot1", "robot2"])`` creates, for one run:

- a switch namespace ``<prefix>sw`` holding a bridge ``br0`` (multicast snooping off, so
  multicast floods like on a plain switch);
- one namespace ``<prefix><host>`` per host, its ``eth0`` a veth pair to the bridge, address
  ``10.77.0.<i+1>/24``, ``lo`` up, a multicast route on ``eth0`` (or multicast switched off on
  the link with ``multicast=False``: a network that does not carry it);
- ``/etc/netns/<prefix><host>/hosts`` naming every host, which ``ip netns exec`` bind-mounts
  over ``/etc/hosts``: inside the namespaces ``cloud`` resolves to its address.

Nothing of it is in the caller's namespace: the bridge lives in the switch namespace, so the
addresses and traffic stay inside the namespaces the run made. The prefix is unique per run
(``tcl<pid>x<random>-``), so concurrent runs never collide. :meth:`HostNet.close` (also on an
exception in ``with`` and at interpreter exit) kills what was started in the namespaces and
removes the namespaces and their ``/etc/netns`` folders; a run killed with SIGKILL cannot clean
up, so :meth:`HostNet.up` first removes what runs whose process is gone left behind
(:func:`sweep_stale`: only names of this module's pattern whose pid is dead).

Processes run in a host with :meth:`popen` / :meth:`run` (``ip netns exec``, so ``execvp``:
the pid and signals are the program's own). :meth:`call_in` runs a function in a thread joined
to a host's network namespace (socket checks from the test process; names do not resolve there).
Needs root (CAP_SYS_ADMIN) and iproute2.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .core.errors import TinyclError

SUBNET = "10.77.0"
NETNS_RUN = Path("/run/netns")
NETNS_ETC = Path("/etc/netns")
_CLONE_NEWNET = 0x40000000


class NetnsError(TinyclError):
    """The test network could not be made (no root, no iproute2, ...): one line."""


def available() -> str:
    """'' if namespaces can be made here, else the reason (one line)."""
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return ""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {(r.stderr.strip() or '?').splitlines()[-1]}")
    return r


class HostNet:
    """Hosts (network namespaces) on one bridge; a context manager (see the module docstring)."""

    def __init__(self, hosts: Sequence[str], prefix: str | None = None, multicast: bool = True) -> None:
        if len(set(hosts)) != len(hosts) or not hosts:
            raise NetnsError("hosts must be a non-empty list of distinct names")
        if len(hosts) > 250:
            raise NetnsError("at most 250 hosts on one /24")
        self.hosts = list(hosts)
        self.prefix = prefix or f"tcl{os.getpid()}x{secrets.token_hex(2)}-"
        self.multicast = multicast
        self.addresses = {h: f"{SUBNET}.{i + 1}" for i, h in enumerate(self.hosts)}
        self.procs: list[subprocess.Popen] = []
        self._made: list[str] = []
        self._closed = False

    # --- names ----------------------------------------------------------------------------------
    def ns(self, host: str) -> str:
        if host not in self.addresses:
            raise NetnsError(f"unknown host {host!r} (hosts: {', '.join(self.hosts)})")
        return f"{self.prefix}{host}"

    def ip(self, host: str) -> str:
        self.ns(host)
        return self.addresses[host]

    @property
    def switch(self) -> str:
        return f"{self.prefix}sw"

    # --- life cycle -----------------------------------------------------------------------------
    def up(self) -> "HostNet":
        why = available()
        if why:
            raise NetnsError(f"test network: {why}")
        sweep_stale()
        atexit.register(self.close)
        try:
            self._add(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            hosts_text = "127.0.0.1 localhost\n" + "".join(f"{a} {h}\n" for h, a in self.addresses.items())
            for i, h in enumerate(self.hosts):
                ns = self.ns(h)
                self._add(ns)
                etc = NETNS_ETC / ns
                etc.mkdir(parents=True, exist_ok=True)
                (etc / "hosts").write_text(hosts_text)
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", self.switch, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
                _ip("-n", self.switch, "link", "set", f"p{i}", "master", "br0", "up")
                _ip("-n", ns, "addr", "add", f"{self.addresses[h]}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "multicast", "on" if self.multicast else "off", "up")
                if self.multicast:
                    _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
        except BaseException:
            self.close()
            raise
        return self

    def _add(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._made.append(ns)

    def close(self) -> None:
        """Stop every process started in the hosts, then remove namespaces and /etc/netns files."""
        if self._closed:
            return
        self._closed = True
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    p.kill()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for ns in reversed(self._made):
            self._kill_rest(ns)
            _ip("netns", "delete", ns, check=False)
            shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
        self._made.clear()
        atexit.unregister(self.close)

    @staticmethod
    def _kill_rest(ns: str) -> None:
        """Processes still inside a namespace this run made (started by it): SIGKILL."""
        r = _ip("netns", "pids", ns, check=False)
        for pid in r.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass

    def __enter__(self) -> "HostNet":
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def leftovers(self) -> list[str]:
        """Namespaces or /etc/netns folders of this run that still exist (empty after close)."""
        names = [self.switch, *(self.ns(h) for h in self.hosts)]
        return [n for n in names if (NETNS_RUN / n).exists() or (NETNS_ETC / n).exists()]

    # --- running things in a host -----------------------------------------------------------------
    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def popen(self, host: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
        """Start ``argv`` in ``host`` (own session: :meth:`close` kills its whole group)."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(self.command(host, argv), **kw)
        self.procs.append(p)
        return p

    def run(self, host: str, argv: Sequence[str], timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.command(host, argv), timeout=timeout, **kw)

    def call_in(self, host: str, fn: Callable[[], Any], timeout: float = 30) -> Any:
        """``fn()`` in a thread whose network namespace is ``host``'s; its result or exception."""
        box: dict[str, Any] = {}

        def body() -> None:
            try:
                fd = os.open(NETNS_RUN / self.ns(host), os.O_RDONLY)
                try:
                    if _libc().setns(fd, _CLONE_NEWNET) != 0:
                        raise NetnsError(f"setns {self.ns(host)}: {os.strerror(ctypes.get_errno())}")
                finally:
                    os.close(fd)
                box["v"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box["e"] = exc
        t = threading.Thread(target=body, daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise NetnsError(f"call in {host} did not return within {timeout} s")
        if "e" in box:
            raise box["e"]
        return box.get("v")

    def wait_port(self, host: str, port: int, timeout_s: float = 10.0, on: str | None = None) -> None:
        """Wait until ``host``'s address accepts TCP on ``port`` (checked from ``on``, default ``host``)."""
        addr = self.ip(host)

        def probe() -> bool:
            end = time.monotonic() + timeout_s
            while time.monotonic() < end:
                try:
                    with socket.create_connection((addr, port), timeout=0.2):
                        return True
                except OSError:
                    time.sleep(0.05)
            return False
        if not self.call_in(on or host, probe, timeout_s + 5):
            raise NetnsError(f"{host}:{port} did not accept connections within {timeout_s} s")


_STALE = re.compile(r"^tcl(\d+)x[0-9a-f]{4}-")


def sweep_stale() -> list[str]:
    """Remove namespaces (and /etc/netns folders) of earlier runs whose process no longer exists."""
    names = set()
    for folder in (NETNS_RUN, NETNS_ETC):
        if folder.is_dir():
            names |= {p.name for p in folder.iterdir()}
    removed = []
    for name in sorted(names):
        m = _STALE.match(name)
        if not m or Path(f"/proc/{m.group(1)}").exists():
            continue
        if (NETNS_RUN / name).exists():
            HostNet._kill_rest(name)
            _ip("netns", "delete", name, check=False)
        shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        removed.append(name)
    return removed


_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC
