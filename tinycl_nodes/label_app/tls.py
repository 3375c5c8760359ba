"""A TLS certificate made at first start (``cryptography``) and kept in the state folder.

Why: the app binds beyond 127.0.0.1 only when a phone must reach it over a network, and then the
pairing secret and the answers must not travel in clear. There is no CA a robot could use, so the
certificate is self-signed; the phone's browser warns once, and the SHA-256 fingerprint printed
beside the QR code lets the person check it is this robot's. It is trusted by that fingerprint, not by its dates, so
it is valid whatever the robot's clock says (``NOT_BEFORE`` to ``NOT_AFTER``): one made at the first start of a robot
that booted in 1970, valid ten years from then, had long expired once NTP set the clock. One found out of date (made
by an earlier build so) is made again, and said.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
from pathlib import Path

from ..core.errors import TinyclError
from ..storage import write_atomic
from .pairing import reachable_host

CERT, KEY = "label_app.crt", "label_app.key"
UTC = datetime.timezone.utc
NOT_BEFORE = datetime.datetime(1970, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)      # RFC 5280: "no well-defined expiration"


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 fingerprint of a PEM certificate, as browsers show it (AB:CD:…)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    digest = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def ensure_certificate(state_dir: str | Path, hosts: list[str],
                       log: logging.Logger | None = None) -> tuple[Path, Path, str]:
    """``(cert, key, fingerprint)`` in ``state_dir``: made once (EC P-256, valid whatever the clock says, the key
    0600); made again if the one there is out of date by this clock (``log`` says so)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = Path(state_dir) / CERT, Path(state_dir) / KEY
    log = log or logging.getLogger(__name__)
    for path in (cert_path, key_path):
        if path.exists() and not path.is_file():     # a folder: the new file's rename failed, IsADirectoryError
            raise TinyclError(f"the label app's {path} is not a file: move it away (its certificate is kept there)")
    if cert_path.is_file() and key_path.is_file():
        pem = cert_path.read_bytes()
        try:
            old = x509.load_pem_x509_certificate(pem)
            serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (ValueError, TypeError):    # empty, cut or foreign: was a ValueError traceback at start
            log.warning("the label app's certificate %s or its key %s cannot be read: a new pair is made; the phone "
                        "warns once more, check the new fingerprint", cert_path, key_path)
        else:
            now = datetime.datetime.now(UTC)
            if old.not_valid_before_utc <= now <= old.not_valid_after_utc:
                return cert_path, key_path, fingerprint(pem)
            log.warning("the label app's certificate %s is valid from %s to %s, and this machine's clock says %s: a "
                        "new one is made, valid whatever the clock says; the phone warns once more, check the new "
                        "fingerprint", cert_path, f"{old.not_valid_before_utc:%Y-%m-%d}",
                        f"{old.not_valid_after_utc:%Y-%m-%d}", f"{now:%Y-%m-%d %H:%M} UTC")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName(socket.gethostname())]
    for h in map(reachable_host, hosts):   # the address in the pairing URL, never a wildcard 0.0.0.0
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            if h:
                names.append(x509.DNSName(h))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"tinycl label app {socket.gethostname()}"[:64])])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
            .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(names))), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    write_atomic(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), mode=0o600)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    write_atomic(cert_path, pem, mode=0o644)
    return cert_path, key_path, fingerprint(pem)
