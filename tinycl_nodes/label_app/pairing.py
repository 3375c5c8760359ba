"""Pairing: the secret a phone needs, the phones paired with it, the URL to open and its QR code.

The pairing secret is created once and kept in the node's state (``pairing.json``, mode 0600), so
a phone stays paired across restarts of the app. Opening the pairing URL (``?token=<secret>``)
pairs a phone: it gets a cookie of its own (``<device id>.<HMAC(secret, device id)>``), and each
paired phone can be revoked on its own (``tinycl pair --revoke ID``, or from the page) without
unpairing the others. ``tinycl pair`` prints the URL and QR code again at any time (the app writes
the URL and the TLS fingerprint into the same file). Past ``MAX_DEVICES`` the phone used longest ago is forgotten:
by the order of use (``seen_n``, a count the file keeps), not by a date, which a robot's clock may have moved.

QR code per ISO/IEC 18004: a quiet zone of 4 modules, dark modules dark — drawn with explicit
black-on-white terminal colours so it reads the same in a light and in a dark terminal.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..journal import aside_path
from ..storage import write_atomic

FILE = "pairing.json"
FORMAT, VERSION = "tinycl-pairing", 1
MAX_DEVICES = 64
SEEN_SAVE_S = 60.0      # a phone's use is written at most this often (it moves it in the eviction order only)
QUIET_ZONE = 4
# 256-colour black on white; reset at the end of each line
QR_ON, QR_OFF = "\x1b[38;5;16;48;5;231m", "\x1b[0m"


log = logging.getLogger("tinycl.pairing")
_SIOCGIFFLAGS, _SIOCGIFADDR, _IFF_UP = 0x8913, 0x8915, 0x1
_warned_loopback = False


def new_token() -> str:
    """A fresh random pairing secret (128 bits, URL-safe)."""
    return secrets.token_urlsafe(16)


def lan_address() -> str:
    """This machine's address on its default route (no packet is sent); without a default route (a robot network
    often has none) the address of an interface that is up and not loopback; else 127.0.0.1, said in one warning."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))   # TEST-NET-1: only picks the outgoing interface
        return s.getsockname()[0]
    except OSError:
        pass
    finally:
        s.close()
    found = interface_addresses()
    if found:
        return found[0]
    global _warned_loopback
    if not _warned_loopback:
        _warned_loopback = True
        log.warning("no network address but loopback: the app's URL says 127.0.0.1, which no phone can open "
                    "(connect this machine, or set public_url)")
    return "127.0.0.1"


def interface_addresses() -> list[str]:
    """The IPv4 addresses of the interfaces that are up, loopback and link-local left out (Linux ioctls: no
    dependency, no subprocess)."""
    import fcntl
    import struct

    out = []
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _, name in socket.if_nameindex():
            req = struct.pack("256s", name.encode()[:15])
            try:
                flags = struct.unpack("H", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req)[16:18])[0]
                if not flags & _IFF_UP:
                    continue
                addr = ipaddress.ip_address(fcntl.ioctl(s.fileno(), _SIOCGIFADDR, req)[20:24])
            except OSError:        # no IPv4 address on it
                continue
            if not (addr.is_loopback or addr.is_link_local or addr.is_unspecified):
                out.append(str(addr))
    except OSError:
        return []
    finally:
        s.close()
    return out


def reachable_host(host: str) -> str:
    """The address a phone uses for a server bound to ``host``: a wildcard bind address is the LAN address."""
    return lan_address() if host in ("", "0.0.0.0", "::") else host


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def app_url(host: str, port: int, tls: bool, token: str, public_url: str | None = None) -> str:
    """The URL to open on the phone, with the token (a wildcard bind address becomes the LAN address)."""
    if public_url:
        base = public_url.rstrip("/")
    else:
        shown = reachable_host(host)
        try:
            if ipaddress.ip_address(shown).version == 6:
                shown = f"[{shown}]"
        except ValueError:
            pass
        base = f"{'https' if tls else 'http'}://{shown}:{port}"
    return f"{base}/?token={quote(token, safe='')}"


def qr_matrix(data: str) -> list[list[bool]]:
    """The QR code of ``data`` as rows of modules (True: dark), quiet zone included."""
    import qrcode

    qr = qrcode.QRCode(border=QUIET_ZONE, error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(data)
    qr.make(fit=True)
    return [list(map(bool, row)) for row in qr.get_matrix()]


def qr_text(data: str, colour: bool = True) -> str:
    """``data`` as a QR code in a terminal: two modules per character cell (half blocks).

    With ``colour`` every line sets black on white itself, so the code is not inverted in a dark
    terminal; without it, dark modules are drawn as blocks (right on a light terminal only).
    """
    m = qr_matrix(data)
    if len(m) % 2:
        m.append([False] * len(m[0]))
    glyph = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}
    lines = ["".join(glyph[(top, bottom)] for top, bottom in zip(m[r], m[r + 1])) for r in range(0, len(m), 2)]
    if colour:
        lines = [f"{QR_ON}{line}{QR_OFF}" for line in lines]
    return "\n".join(lines) + "\n"


def read_pairing(path: Path) -> tuple[str, dict[str, dict[str, Any]], list[str], dict[str, Any]]:
    """``(token, devices, revoked, info)`` of a pairing file, or ValueError (one line) for one that cannot be used.
    Read only: ``tinycl pair`` shows and lists with it (a bad file set aside by the command, with a new secret, had
    unpaired every phone behind the running app's back)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise ValueError("not a tinycl pairing file of version 1")
        token = doc["token"]
        if not isinstance(token, str) or not 8 <= len(token) <= 128 or not token.isascii():
            raise ValueError("bad pairing secret")
        devices = {str(k): _device(v) for k, v in dict(doc.get("devices") or {}).items()}
        revoked = [str(r) for r in doc.get("revoked") or []]
        return token, devices, revoked[-1000:], dict(doc.get("info") or {})
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ValueError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def _device(entry: Any) -> dict[str, Any]:
    """A paired phone's entry as :meth:`Pairing.pair` writes it, from what the file holds: a time that is missing or
    not a number is 0 (the phone stays paired: its cookie depends on its id alone), and so is a use order
    (``seen_n``) that is not a count (a file of a build before it has none). One without ``seen_s`` was a KeyError in
    the app's eviction and in ``tinycl pair --list``."""
    entry = dict(entry)

    def seconds(value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e11   # NaN is not
        return float(value) if ok else 0.0
    n = entry.get("seen_n")
    return {**entry, "agent": str(entry.get("agent", ""))[:120], "paired_s": seconds(entry.get("paired_s")),
            "seen_s": seconds(entry.get("seen_s")),
            "seen_n": n if isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**53 else 0}


class Pairing:
    """The pairing secret and the paired phones of one label app, kept in ``<state_dir>/pairing.json``."""

    def __init__(self, state_dir: str | os.PathLike[str] | None, log: logging.Logger | None = None,
                 token: str | None = None) -> None:
        self.path = Path(state_dir) / FILE if state_dir is not None else None   # None: in memory only
        self.log = log or logging.getLogger("tinycl.label_app")
        self.token = ""
        self.devices: dict[str, dict[str, Any]] = {}
        self.revoked: list[str] = []
        self.info: dict[str, Any] = {}        # url, fingerprint: what `tinycl pair` prints
        self._mtime = 0.0
        self._used: dict[str, tuple[float, int]] = {}     # phones used since the last save: (seen_s, seen_n)
        self._used_saved = time.monotonic()
        self.load()
        if token and token != self.token:     # a configured token wins (and unpairs the others)
            self.token, self.devices = token, {}
            self.save()
        elif not self.token:
            self.token = new_token()
            self.save()
            if self.path is not None:
                self.log.info("new pairing secret created in %s (0600)", self.path)

    # --- file -----------------------------------------------------------------------------------
    def load(self) -> bool:
        """(Re)read the file; a bad one is moved aside with one line. True if something was read."""
        if self.path is None:
            return False
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return False
        except OSError as exc:      # a symlink loop, a folder's permissions: was replaced by a new secret unsaid
            return self._set_aside(exc.strerror or str(exc))
        if st.st_mtime == self._mtime:
            return False
        try:
            self.token, self.devices, self.revoked, self.info = read_pairing(self.path)
        except ValueError as exc:
            return self._set_aside(str(exc))
        self._mtime = st.st_mtime
        return True

    def _order(self) -> int:
        """The latest use's number (``seen_n``), in the file or since."""
        return max([0, *(d["seen_n"] for d in self.devices.values()), *(n for _, n in self._used.values())])

    def _set_aside(self, why: str) -> bool:
        """A pairing file that cannot be used, renamed aside and said; False (nothing was read)."""
        aside = aside_path(self.path)
        self.path.rename(aside)
        self.log.error("pairing file %s cannot be loaded (%s): kept as %s, a new secret is made (pair the phones "
                       "again)", self.path, why, aside.name)
        return False

    def _take_uses(self) -> None:
        """The phones' uses since the last save into their entries (those still paired)."""
        for device, (seen_s, seen_n) in self._used.items():
            if device in self.devices:
                self.devices[device].update(seen_s=seen_s, seen_n=seen_n)
        self._used = {}

    def save(self) -> None:
        """Write the file, with the phones' uses since the last save."""
        self._take_uses()
        self._used_saved = time.monotonic()
        if self.path is None:
            return
        doc = {"format": FORMAT, "version": VERSION, "token": self.token, "devices": self.devices,
               "revoked": self.revoked, "info": self.info}
        write_atomic(self.path, json.dumps(doc, indent=1).encode(), mode=0o600)
        self._mtime = self.path.stat().st_mtime

    # --- phones ---------------------------------------------------------------------------------
    def _mac(self, device: str) -> str:
        return hmac.new(self.token.encode(), device.encode(), hashlib.sha256).hexdigest()[:32]

    def token_ok(self, given: str | None) -> bool:
        """The pairing secret itself (URL, header): non-ASCII or wrong → False, never an exception."""
        return bool(given) and given.isascii() and hmac.compare_digest(given.encode(), self.token.encode())

    def pair(self, agent: str = "", now: float | None = None) -> str:
        """A new phone: its cookie value (past MAX_DEVICES, the phone used longest ago is forgotten)."""
        device = secrets.token_hex(4)
        now = time.time() if now is None else now
        self.devices[device] = {"agent": agent[:120], "paired_s": now, "seen_s": now, "seen_n": self._order() + 1}
        self._take_uses()                                      # the order as it is now, not as last saved
        while len(self.devices) > MAX_DEVICES:
            self.devices.pop(min(self.devices, key=lambda d: self.devices[d]["seen_n"]))
        self.save()
        return f"{device}.{self._mac(device)}"

    def seen(self, device: str, now: float | None = None) -> None:
        """A paired phone used the app: it becomes the last to be forgotten (in memory: :meth:`save_used` writes it).
        Before, a phone's "last seen" stayed its pairing time, so the first phone paired, the one in daily use, was
        the first forgotten."""
        self._used[device] = (time.time() if now is None else now, self._order() + 1)

    def save_used(self, now: bool = False) -> None:
        """Write the phones' uses if any and the last write is ``SEEN_SAVE_S`` old, or ``now`` (the app stopping):
        a request must not write the file, and a kill loses at most that much of the order."""
        if self._used and (now or time.monotonic() - self._used_saved >= SEEN_SAVE_S):
            self.save()

    def device_of(self, cookie: str | None) -> str | None:
        """The paired phone a cookie belongs to; None if unknown, revoked, forged or not ASCII."""
        if not cookie or not cookie.isascii() or cookie.count(".") != 1:
            return None
        device, mac = cookie.split(".")
        if device not in self.devices or not hmac.compare_digest(mac.encode(), self._mac(device).encode()):
            return None
        return device

    def revoke(self, device: str) -> bool:
        if self.devices.pop(device, None) is None:
            return False
        self.revoked.append(device)
        self.save()
        return True

    def public(self) -> list[dict[str, Any]]:
        return [{"id": d, **{k: v for k, v in info.items()}} for d, info in self.devices.items()]
