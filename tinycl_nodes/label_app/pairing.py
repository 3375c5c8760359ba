"""Pairing: the token a phone needs, the URL to open, and that URL as a QR code in the terminal."""

from __future__ import annotations

import io
import ipaddress
import secrets
import socket
from urllib.parse import quote

TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def new_token() -> str:
    """A fresh random pairing token (128 bits, URL-safe)."""
    return secrets.token_urlsafe(16)


def lan_address() -> str:
    """This machine's address on its default route (no packet is sent), else 127.0.0.1."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))   # TEST-NET-1: only picks the outgoing interface
        return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        s.close()


def app_url(host: str, port: int, tls: bool, token: str, public_url: str | None = None) -> str:
    """The URL to open on the phone, with the token (a wildcard bind address becomes the LAN address)."""
    if public_url:
        base = public_url.rstrip("/")
    else:
        shown = lan_address() if host in ("", "0.0.0.0", "::") else host
        try:
            if ipaddress.ip_address(shown).version == 6:
                shown = f"[{shown}]"
        except ValueError:
            pass
        base = f"{'https' if tls else 'http'}://{shown}:{port}"
    return f"{base}/?token={quote(token, safe='')}"


def qr_text(data: str) -> str:
    """``data`` as a QR code drawn with block characters, readable from a terminal by a phone camera."""
    import qrcode

    qr = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_L)
    qr.add_data(data)
    qr.make(fit=True)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()
