"""A TLS certificate made at first start (``cryptography``) and kept in the state folder.

Why: the app binds beyond 127.0.0.1 only when a phone must reach it over a network, and then the
pairing secret and the answers must not travel in clear. There is no CA a robot could use, so the
certificate is self-signed; the phone's browser warns once, and the SHA-256 fingerprint printed
beside the QR code lets the person check it is this robot's.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from pathlib import Path

from ..storage import write_atomic
from .pairing import reachable_host

CERT, KEY = "label_app.crt", "label_app.key"


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 fingerprint of a PEM certificate, as browsers show it (AB:CD:…)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    digest = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def ensure_certificate(state_dir: str | Path, hosts: list[str]) -> tuple[Path, Path, str]:
    """``(cert, key, fingerprint)`` in ``state_dir``: made once (EC P-256, 10 years, the key 0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = Path(state_dir) / CERT, Path(state_dir) / KEY
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path, fingerprint(cert_path.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName(socket.gethostname())]
    for h in map(reachable_host, hosts):   # the address in the pairing URL, never a wildcard 0.0.0.0
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            if h:
                names.append(x509.DNSName(h))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"tinycl label app {socket.gethostname()}"[:64])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(names))), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    write_atomic(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), mode=0o600)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    write_atomic(cert_path, pem, mode=0o644)
    return cert_path, key_path, fingerprint(pem)
