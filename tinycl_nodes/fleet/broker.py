"""A secured mosquitto for a fleet: generated CA and certificates, identities, ACL, config; a runner.

``generate(directory, fleet, devices, host=NAME, ip=ADDR)`` writes everything a broker on the
machine ``NAME`` (address ``ADDR``) and its clients need (``tinycl fleet setup``)::

    ca.crt ca.key                    the fleet's CA (EC P-256, made with ``cryptography``), outliving its leaves
    server.crt server.key            the broker's certificate, SAN = DNS:<host>, IP:<ip> (its real names)
    clients/<name>.crt/.key          one client certificate per device and for the aggregator, CN = name
    clients/<name>.renewed.pem       its certificates replaced by a renewal and not ended yet (revoked with it)
    passwd                           mosquitto password file (PBKDF2-SHA512, mosquitto's $7$ format)
    credentials.json                 the clear passwords (plaintext development listener only)
    acl                              device: write its own head, read global; aggregator: the rest
    crl.pem                          revoked client certificates (devices removed or re-keyed), signed by the CA
    mosquitto.conf                   TLS listener on <ip>:<port> (+ optional plaintext one on loopback)
    fleet.json                       what was generated (fleet, host, ip, port, names, paths)
    bundles/<name>/                  what one device (or the aggregator) needs, to copy to it as is: ca.crt,
                                     clients/<name>.crt/.key, fleet.json and its own credentials only

Paths in fleet.json and credentials.json are relative to their directory, so a directory or a bundle works
wherever it is copied (``BrokerSetup.load``). A device needs no other device's files: on the TLS listener its
certificate is its identity, and a bundle holds no other password.

Private keys, ``passwd`` and ``credentials.json`` are created mode 0600 (never readable by others,
not even for a moment).

mosquitto started as root drops to the ``user`` of mosquitto.conf (``broker_user``): set up as root, that is the
unprivileged account ``mosquitto`` (a network-facing broker should not run as root), unless ``user`` is given. It
opens ``BROKER_READS`` and writes ``data/`` only after dropping, so set-up gives those to it (``passwd`` and
``server.key`` stay 0600, now its own); the CA key and ``credentials.json`` stay root's. Every folder on the way
to the directory must let it pass (x): set-up refuses one it cannot reach (pytest's and ``mktemp -d``'s are
0700), before writing anything. A throwaway broker in a private temp folder (tests, demos, bench) passes
``user=current_user()``: it runs as whoever runs it, as mosquitto does when not started as root.

Identity on the TLS listener is the certificate: ``require_certificate`` (signed by the fleet CA),
``use_identity_as_username`` (the certificate's CN *is* the username,
whatever username or password the client sends) and ``use_username_as_clientid`` (the client id
is replaced by that username, so no client can take over another's session, e.g. the
aggregator's, by reusing its client id). The ACL then binds topics to that identity. Clients
verify the broker's certificate *and* its host name (paho's default with ``CERT_REQUIRED``), so a
device connects by the broker's name (``mqtt_host``, from ``fleet.json``). Topics::

    tinycl/<fleet>/<device>/head     device → aggregator (QoS 1, retained)
    tinycl/<fleet>/global            aggregator → devices (QoS 1, retained)
    tinycl/<fleet>/rounds            aggregator → anyone allowed: the per-round table (JSON, retained)

The same identity model exists in MQTT clusters (EMQX: ``peer_cert_as_username = cn``,
``peer_cert_as_clientid = cn``; VerneMQ: ``use_identity_as_username``), with the same topics and
per-user ACL, so a fleet can outgrow one broker without changing devices (docs/fleet.md).

``Broker(setup)`` starts/stops one mosquitto on that config (tests, demos, bench); with
``net=HostNet, on="cloud"`` it runs inside that host's network namespace (``tinycl_nodes.netns``).

Run again on the same directory (same fleet), ``generate`` adds and removes devices and re-keys those in
``rotate`` without touching the others: the CA and their identities are kept, so their bundles stay valid; a
removed or rotated certificate is revoked in ``crl.pem`` (the listener's ``crlfile``). ``new_ca`` starts over.
A kept identity whose certificate has ended or ends soon (``renewal_due``) is renewed: new key and certificate, same
name and password, the old certificate not revoked (the device works on with it until it ends). The CA lives
``ca_days(days)`` (10 x, 10 to 100 years) and no certificate outlives it; once it has ended, a re-run refuses and
names ``--new-ca``.
An option left off (address, port, aggregator's name, lifetime, user) keeps the directory's current value. A CA
whose ``fleet.json`` or ``credentials.json`` cannot be read is refused unless ``new_ca``.

CLI: ``tinycl fleet setup DIR --fleet F --devices a,b,c --host NAME --ip ADDR [--port P]
[--plaintext-port Q|off] [--user NAME] [--rotate a] [--new-ca] [--no-reload]`` (a broker running on the directory is
told to read its files again: ``served.apply_to_running``) and ``tinycl fleet run DIR`` (foreground: one line
once it listens, mosquitto's output in its ``mosquitto.log``; it reads only ``mosquitto.conf`` and what that names).
``tools/mosquitto/*.sh`` wrap these.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..arg_types import count
from .payload import check_name

AGGREGATOR = "aggregator"
HOST = "127.0.0.1"
LOCAL_NAME = "localhost"
BROKER_USER = "mosquitto"   # the account mosquitto's Debian package creates; mosquitto's own default
# what mosquitto opens after dropping root (measured on mosquitto 2.0.11: each one, unreadable, stops it)
BROKER_READS = ("passwd", "acl", "ca.crt", "crl.pem", "server.crt", "server.key")
DAYS = 825              # a new directory's certificate lifetime (--days)
#: a certificate is renewed this many days before its end, or a third of its lifetime before if that is shorter
RENEW_DAYS = 30
#: how a certificate renewed on disk comes to be served (set-up's CLI: ``served.apply_to_running``): the words of
#: set-up, `fleet run` and the links
SERVED_ONCE_RELOADED = ("set-up has a broker running on that directory serve it at once (SIGHUP: no connection is "
                        "cut); a broker it cannot reach: `kill -HUP` its mosquitto")
#: mosquitto.conf's record of --days: ``server.crt``'s own lifetime is cut short once the CA ends first
_DAYS_LINE = "# client and server certificates are issued for {days} days (--days); the CA lasts longer"


#: the broker's uptime, which every identity may read (ACL ``pattern``): a link told by it that the broker restarted
#: does not take the lost connections for another client taking its session (``link.MqttLink``)
UPTIME_TOPIC = "$SYS/broker/uptime"
#: seconds between two $SYS publications (mosquitto's default is 10: an uptime 10 s old could not tell two restarts
#: a few seconds apart from one broker)
SYS_INTERVAL_S = 1


def head_topic(fleet: str, device: str) -> str:
    return f"tinycl/{fleet}/{device}/head"


def global_topic(fleet: str) -> str:
    return f"tinycl/{fleet}/global"


def rounds_topic(fleet: str) -> str:
    """The aggregator's per-round table (JSON, retained): what an operator watches."""
    return f"tinycl/{fleet}/rounds"


@dataclass
class Credentials:
    username: str
    password: str
    certfile: str
    keyfile: str


class NotASetup(ValueError):
    """A folder that is no broker directory or bundle of ``tinycl fleet setup``: ``file`` is the one that could not
    be used, ``error`` why (set-up's refusal to replace a CA names them)."""

    def __init__(self, directory: Path, file: Path, error: Exception) -> None:
        super().__init__(f"{directory} is no broker directory or bundle of `tinycl fleet setup` "
                         f"({type(error).__name__}: {error})")
        self.file, self.error = file, error

    def what(self) -> str:
        """The file and its fault, in words."""
        return (f"{self.file} is missing" if isinstance(self.error, FileNotFoundError) else
                f"{self.file} cannot be read ({type(self.error).__name__}: {self.error})")


@dataclass
class BrokerSetup:
    directory: str
    fleet: str
    devices: list[str]
    port: int
    plaintext_port: int | None = None
    aggregator: str = AGGREGATOR
    ca: str = ""
    config: str = ""
    host: str = LOCAL_NAME
    ip: str = HOST
    clients: dict[str, Credentials] = field(default_factory=dict)
    changes: dict[str, list[str]] = field(default_factory=dict)   # of the last generate: kept, new, rotated, revoked,
    # readdressed (kept, but the broker's address changed: their bundles are to be copied again), unrevoked (removed
    # or re-keyed, but the old certificate could not be read, so it was not revoked: the old bundle still connects),
    # renewed (kept, with a new certificate: their bundles are to be copied again)

    def credentials(self, name: str) -> Credentials:
        if name not in self.clients:
            raise ValueError(f"{self.directory} holds no identity {name!r} (it holds: {', '.join(self.clients)})")
        return self.clients[name]

    @classmethod
    def load(cls, directory: str | Path) -> "BrokerSetup":
        """A broker directory or a bundle (``tinycl fleet setup``); its relative paths resolved against it."""
        d = Path(directory).resolve()
        reading = d / "fleet.json"      # the file the error is in: set-up's refusal names it
        try:
            meta = json.loads(reading.read_text())
            here = {k: str(d / meta[k]) if meta.get(k) else "" for k in ("ca", "config")}
            reading = d / "credentials.json"
            creds = json.loads(reading.read_text())
            clients = {k: Credentials(v["username"], v["password"], str(d / v["certfile"]), str(d / v["keyfile"]))
                       for k, v in creds.items()}
            reading = d / "fleet.json"
            return cls(**{**meta, **here, "directory": str(d), "clients": clients})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:   # AttributeError: a list, no dict
            raise NotASetup(d, reading, exc) from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# --- files and keys -------------------------------------------------------------------------------
def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file created mode 0600 (replacing any old file; never briefly 0644)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, Any]:
    cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    return cert, key


def _issue(d: Path, name: str, cn: str, ca_dir: Path, days: int, server_names: list[str] | None = None) -> None:
    """``<name>.key`` (0600) and ``<name>.crt`` signed by the CA in ``ca_dir``; a server if names given."""
    ca_cert, ca_key = _load_ca(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
         .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(leaf_end(ca_cert, now, days))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server_names is not None
                                               else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if server_names is not None:
        alt: list[x509.GeneralName] = []
        for n in server_names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                alt.append(x509.DNSName(n))
        b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    _write_key(d / f"{name}.key", key)
    (d / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ca_days(days: int) -> int:
    """The lifetime of a CA whose certificates live ``days``: 10 times longer, at least 10 years (3653 days) and at
    most 100 (36500, ``--days``' own bound), so that certificates are renewed many times under one CA: a CA that
    ended with them left nothing to renew them with (every device then needs a new bundle)."""
    return min(36500, max(3653, 10 * days))


def leaf_end(ca_cert: x509.Certificate, now: dt.datetime, days: int) -> dt.datetime:
    """When a certificate issued ``now`` for ``days`` ends: never after its CA (a chain is no longer than its CA)."""
    return min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)


def renewal_opens(cert: x509.Certificate) -> dt.datetime:
    """When ``cert``'s renewal window opens: ``RENEW_DAYS`` before its end, or a third of its lifetime if that is
    shorter (a 1-day certificate renewed 30 days ahead would be new at every run, and never copied in time)."""
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    return cert.not_valid_after_utc - min(dt.timedelta(days=RENEW_DAYS), life / 3)


def renewal_due(cert: x509.Certificate, now: dt.datetime) -> bool:
    """Whether ``cert`` has ended or is in its renewal window (``renewal_opens``)."""
    return now >= renewal_opens(cert)


def utc_text(when: dt.datetime) -> str:
    """A certificate's end as the fleet's words give it (to the minute, UTC)."""
    return f"{when:%Y-%m-%d %H:%M} UTC"


def span_words(seconds: float) -> str:
    """A time left or past as a person counts it: days from 48 h, hours from 2 h, else minutes."""
    hours = seconds / 3600
    return (f"{round(hours / 24)} days" if hours >= 48 else f"{round(hours)} hours" if hours >= 2
            else f"{round(hours * 60)} minutes")


def end_words(end: dt.datetime, now: dt.datetime) -> str:
    """A certificate's end as the fleet says it: "ends on DATE (in N days)", or "ended on DATE (N days ago)"."""
    left = (end - now).total_seconds()
    return f"ends on {utc_text(end)} (in {span_words(left)})" if left > 0 else \
        f"ended on {utc_text(end)} ({span_words(-left)} ago)"


def make_ca(d: Path, cn: str, days: int = ca_days(DAYS)) -> None:
    """A self-signed EC CA ``ca.crt`` / ``ca.key`` (0600) in ``d``, valid ``days`` (``ca_days``)."""
    d.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write_key(d / "ca.key", key)
    (d / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_client_cert(d: Path, name: str, ca_dir: Path, days: int = DAYS) -> None:
    """A client certificate whose CN is the identity ``name`` (the broker's username for it)."""
    d.mkdir(parents=True, exist_ok=True)
    _issue(d, name, name, ca_dir, days)


def make_server_cert(d: Path, names: list[str], ca_dir: Path, days: int = DAYS) -> None:
    """``server.crt`` / ``server.key`` with every name and address in ``names`` in its SAN."""
    _issue(d, "server", names[0], ca_dir, days, server_names=names)


def read_certificate(certfile: Path) -> x509.Certificate | None:
    """The PEM certificate in ``certfile``; None when it is missing or unreadable."""
    try:
        return x509.load_pem_x509_certificate(certfile.read_bytes())
    except (OSError, ValueError):
        return None


def _serial(certfile: Path) -> int | None:
    return cert.serial_number if (cert := read_certificate(certfile)) is not None else None


def _superseded(d: Path, name: str) -> list[x509.Certificate]:
    """``name``'s certificates replaced by a renewal and not revoked (``clients/<name>.renewed.pem``): a device may
    still hold one, so removing or re-keying it revokes them too."""
    try:
        return x509.load_pem_x509_certificates((d / "clients" / f"{name}.renewed.pem").read_bytes())
    except (OSError, ValueError):
        return []


def _supersede(d: Path, name: str, old: x509.Certificate, now: dt.datetime) -> None:
    """Add ``old`` to ``name``'s replaced certificates, dropping those ended (no broker takes them any more)."""
    keep = [c for c in [*_superseded(d, name), old] if c.not_valid_after_utc > now]
    path = d / "clients" / f"{name}.renewed.pem"
    path.unlink(missing_ok=True)
    if keep:
        path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in keep))


def _old_serial(d: Path, name: str) -> int | None:
    """The serial of ``name``'s certificate, to revoke it: from ``clients/``, else from its bundle's copy (what the
    device holds). None if neither can be read: then nothing can be revoked, and set-up must not say it was."""
    for crt in (d / "clients" / f"{name}.crt", d / "bundles" / name / "clients" / f"{name}.crt"):
        if (sn := _serial(crt)) is not None:
            return sn
    return None


def write_crl(d: Path, revoke: list[int]) -> None:
    """``crl.pem``: the serials already revoked in it plus ``revoke``, signed by the CA in ``d``, valid as long as
    the CA (an expired CRL would make mosquitto refuse every client)."""
    ca_cert, ca_key = _load_ca(d)
    serials = set(revoke)
    try:
        serials |= {r.serial_number for r in x509.load_pem_x509_crl((d / "crl.pem").read_bytes())}
    except (OSError, ValueError):
        pass
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
         .last_update(now - dt.timedelta(minutes=5)).next_update(ca_cert.not_valid_after_utc))
    for sn in sorted(serials):
        b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(sn).revocation_date(now).build())
    (d / "crl.pem").write_bytes(b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def _previous(d: Path, fleet: str, new_ca: bool) -> BrokerSetup | None:
    """The setup a directory already holds (its identities are kept: its devices hold bundles signed by its CA);
    None with ``new_ca`` or in a fresh folder. A folder of another fleet is refused unless ``new_ca``, and so is a
    CA whose fleet's state cannot be read: going on would replace the CA and every identity, cutting off every
    device, without anyone asking for it. So is a fleet's directory whose CA key is gone (deleted, or a device bundle,
    which holds ``fleet.json`` and no key): a new CA there cut off every device without a word. So is a CA that has
    ended: nothing can be renewed under it (its CRL failed to sign half-way, leaving a server key the broker's
    account could not read)."""
    if new_ca:
        return None
    if not (d / "ca.key").exists():
        if (d / "fleet.json").exists():
            what = "a fleet's directory" if (d / "mosquitto.conf").exists() else "a device bundle"
            raise ValueError(f"{d} is {what} without the fleet's CA key (ca.key): set-up would make a new CA, cutting "
                             f"off every device; run it on the broker's directory, restore ca.key, or pass --new-ca "
                             f"to start over (every device then needs its new bundle)")
        return None
    try:
        old = BrokerSetup.load(d)
    except NotASetup as exc:
        raise ValueError(f"{exc.what()}, but {d} holds the fleet's CA (ca.key): set-up would replace the CA "
                         f"and every identity, cutting off every device; restore the file, or pass --new-ca to "
                         f"start over (every device then needs its new bundle)") from None
    if old.fleet != fleet:
        raise ValueError(f"{d} holds fleet {old.fleet!r}, not {fleet!r}: choose another folder, or pass --new-ca "
                         f"to start over (every device then needs its new bundle)")
    if (ca := read_certificate(d / "ca.crt")) is None:
        raise ValueError(f"{d / 'ca.crt'} is missing or cannot be read, but {d} holds the fleet's CA key (ca.key): "
                         f"restore it, or pass --new-ca to start over (every device then needs its new bundle)")
    if ca.not_valid_after_utc <= dt.datetime.now(dt.timezone.utc):
        raise ValueError(f"the fleet's CA ({d / 'ca.crt'}) ended on {utc_text(ca.not_valid_after_utc)}: "
                         f"no certificate can be issued or renewed under it; pass --new-ca to start over (every "
                         f"device then needs its new bundle)")
    return old


def _saved(d: Path) -> dict[str, Any]:
    """The settings of a directory's last set-up, which an option left off on a re-run keeps (a re-run to add a
    device moved the broker to localhost:8883 and renamed the aggregator, cutting every robot off): the address and
    the aggregator's name from ``fleet.json``, the broker's account and the certificates' lifetime from
    ``mosquitto.conf`` (``_DAYS_LINE``; ``server.crt``'s own lifetime, in a directory of an older build, which never
    cut it short to the CA's end). Empty for a new folder; none of them goes into a bundle's ``fleet.json``, which
    older devices read."""
    out: dict[str, Any] = {}
    try:
        meta = json.loads((d / "fleet.json").read_text())
    except (OSError, ValueError):
        meta = None
    if isinstance(meta, dict):
        out |= {k: meta[k] for k in ("host", "ip", "port", "plaintext_port", "aggregator") if k in meta}
    try:
        lines = (d / "mosquitto.conf").read_text().splitlines()
    except OSError:
        lines = []
    users = [ln.split()[1] for ln in lines if ln.startswith("user ") and len(ln.split()) == 2]
    out |= {"user": users[0]} if users else {}
    days = re.compile(re.escape(_DAYS_LINE).replace(re.escape("{days}"), r"(\d+)"))
    if recorded := [int(m.group(1)) for ln in lines if (m := days.fullmatch(ln))]:
        out["days"] = max(1, min(36500, recorded[0]))
    elif (crt := read_certificate(d / "server.crt")) is not None:
        out["days"] = max(1, round((crt.not_valid_after_utc - crt.not_valid_before_utc).total_seconds() / 86400))
    return out


def mosquitto_hash(password: str, salt: bytes | None = None, iterations: int = 101) -> str:
    """mosquitto 2's password hash (``$7$``: PBKDF2-HMAC-SHA512, 12-byte salt), as mosquitto_passwd writes."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _check_address(host: str, ip: str) -> None:
    try:
        check_name(host.replace(".", "_"))
    except ValueError:
        raise ValueError(f"invalid broker host name {host!r}: letters, digits, '-', '_' and dots") from None
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise ValueError(f"invalid broker address {ip!r}: an IPv4 or IPv6 address") from None


def current_user() -> str:
    """Whoever runs this process (by its uid: ``$USER`` is left as it was by ``su``)."""
    return pwd.getpwuid(os.geteuid()).pw_name


def broker_user(user: str | None = None) -> str:
    """The account mosquitto runs as: ``user`` if given (it must exist); else, for root, the unprivileged
    ``mosquitto``; else the current user (mosquitto not started as root does not switch user, and this one owns
    the files if it ever is)."""
    if user is None and os.geteuid() != 0:
        return current_user()
    name = user or BROKER_USER
    try:
        pwd.getpwnam(name)
    except KeyError:
        fix = ("pass --user NAME of an existing account" if user else
               "install mosquitto's package (tools/mosquitto/install.sh), which creates it, or pass --user NAME")
        raise ValueError(f"no user {name!r} on this machine for the broker to run as: {fix}") from None
    return name


def _blocking_folder(d: Path, account: pwd.struct_passwd) -> Path | None:
    """The first existing folder on the way to ``d`` that ``account`` may not pass (no x for it), or None.

    Mode bits only (owner, else group, else others: the class that applies), no ACLs."""
    groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    for p in [*reversed(d.parents), d]:
        try:
            st = p.stat()
        except FileNotFoundError:
            return None        # generate creates the rest, passable by all
        bit = (stat.S_IXUSR if st.st_uid == account.pw_uid else stat.S_IXGRP if st.st_gid in groups
               else stat.S_IXOTH)
        if not st.st_mode & bit:
            return p
    return None


def _check_reachable(d: Path, account: pwd.struct_passwd) -> None:
    blocked = _blocking_folder(d, account)
    if blocked is not None:
        st = blocked.stat()
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        raise ValueError(f"the broker runs as {account.pw_name!r} (root drops to it), which cannot reach {d}: "
                         f"{blocked} is closed to it (mode {stat.S_IMODE(st.st_mode):04o}, owner {owner}); "
                         f"choose a folder it can reach (e.g. under /srv or /var/lib), "
                         f"or pass --user root to run the broker as root")


def _mkdirs(d: Path, passable: bool) -> None:
    """``d`` and its missing parents; with ``passable``, those created get x for all (whatever the umask), so
    the broker user can pass them."""
    missing = [p for p in [*reversed(d.parents), d] if not p.exists()]
    d.mkdir(parents=True, exist_ok=True)
    for p in missing if passable else []:
        os.chmod(p, stat.S_IMODE(p.stat().st_mode) | 0o111)


def _give_to(d: Path, account: pwd.struct_passwd) -> None:
    """``BROKER_READS`` and ``data/`` (0700, with any old persistence in it) to the account mosquitto drops to: those
    there (a set-up that failed half-way gives what it wrote)."""
    data = d / "data"
    if data.is_dir():
        os.chmod(data, 0o700)
    for p in [*(d / f for f in BROKER_READS), *([data, *data.iterdir()] if data.is_dir() else [])]:
        if p.exists():
            os.chown(p, account.pw_uid, account.pw_gid)


def generate(directory: str | Path, fleet: str, devices: list[str], port: int | None = None,
             plaintext_port: int | None = None, aggregator: str | None = None, days: int | None = None,
             user: str | None = None, host: str | None = None, ip: str | None = None,
             rotate: list[str] | None = None, new_ca: bool = False) -> BrokerSetup:
    """Generate CA, certificates, passwords, ACL and mosquitto.conf in ``directory`` (see module doc).

    Re-running on a directory of the same fleet is how devices are added, removed and re-keyed without touching
    the others (their bundles stay valid): the CA and every listed identity's certificate, key and password are
    kept; a new name gets new ones; a name no longer listed, and each name in ``rotate`` (its old certificate),
    is revoked in ``crl.pem`` (``tinycl fleet setup`` has a broker running on the directory read it again:
    ``served.apply_to_running``). ``new_ca``: everything new (every device
    then needs its new bundle). ``user``: the account mosquitto runs as when started as root (``broker_user``).
    A kept identity whose certificate ``renewal_due`` gets a new key and certificate (if that ends later), the same
    password, and its old certificate stays valid until it ends (``changes["renewed"]``: bundles to copy).
    The CA lives ``ca_days(days)``; a certificate never outlives it, and a CA that has ended is refused (``_previous``).

    An option left as None (``port``, ``plaintext_port``, ``aggregator``, ``days``, ``user``, ``host``, ``ip``)
    keeps the directory's current value (``_saved``), also with ``new_ca``; a new folder takes the defaults
    (8883, none, ``aggregator``, ``DAYS``, ``broker_user``, localhost, 127.0.0.1). ``plaintext_port=0``: none.
    """
    d = Path(directory).resolve()
    saved = _saved(d)
    port = saved.get("port", 8883) if port is None else port
    plaintext_port = saved.get("plaintext_port") if plaintext_port is None else plaintext_port or None
    aggregator = saved.get("aggregator", AGGREGATOR) if aggregator is None else aggregator
    days = saved.get("days", DAYS) if days is None else days
    user = saved.get("user") if user is None else user
    host = saved.get("host", LOCAL_NAME) if host is None else host
    ip = saved.get("ip", HOST) if ip is None else ip
    if plaintext_port == port:
        raise ValueError(f"the plaintext port {port} is the TLS port too: pass another --plaintext-port, "
                         f"or --plaintext-port off")
    if not devices:     # run again on a fleet's directory, no devices would revoke every device's certificate
        raise ValueError("no devices listed: a fleet has at least one (the list is all of its devices: "
                         "a name left out is revoked)")
    for n in [fleet, aggregator, *devices]:
        try:
            check_name(n)
        except ValueError as exc:
            raise ValueError(f"invalid name {n!r}: {exc}") from None
    if aggregator in devices or len(set(devices)) != len(devices):
        raise ValueError("device names must be unique and differ from the aggregator's")
    rotate = list(rotate or [])
    if unknown := sorted(set(rotate) - {aggregator, *devices}):
        raise ValueError(f"cannot rotate {', '.join(unknown)}: not among the aggregator and the devices listed")
    _check_address(host, ip)
    before = _previous(d, fleet, new_ca)
    old = before.clients if before is not None else {}
    # a kept device's bundle holds the broker's address (fleet.json): a new one means copying it again
    moved = before is not None and (before.host, before.ip, before.port) != (host, ip, port)
    user = broker_user(user)
    account = pwd.getpwnam(user)
    drops = os.geteuid() == 0 and account.pw_uid != 0       # mosquitto will switch to another account
    if drops:
        _check_reachable(d, account)                         # before writing anything
    _mkdirs(d, passable=drops)
    try:
        setup = _write(d, fleet, devices, port, plaintext_port, aggregator, days, user, host, ip, rotate, old, moved)
    finally:        # whatever was written, a broker dropping root can read it (a failure left it root's)
        if drops:
            _give_to(d, account)
    (d / "fleet.json").write_text(_fleet_json(setup, d))
    for name, cred in setup.clients.items():
        _write_bundle(d / "bundles" / name, setup, name, cred)
    return setup


def _write(d: Path, fleet: str, devices: list[str], port: int, plaintext_port: int | None, aggregator: str,
           days: int, user: str, host: str, ip: str, rotate: list[str], old: dict[str, Credentials],
           moved: bool) -> BrokerSetup:
    """``generate``'s files that the broker reads (its arguments settled): apart, so that whatever it wrote before a
    failure is still given to the broker's account (a failure half-way left a server key it could not read)."""
    (d / "clients").mkdir(exist_ok=True)
    (d / "data").mkdir(exist_ok=True)
    if not old:                                                   # a new CA: nothing of an older one stays
        make_ca(d, f"tinycl fleet {fleet} CA", ca_days(days))
        (d / "crl.pem").unlink(missing_ok=True)
        for stale in (d / "clients").iterdir():
            stale.unlink()
        shutil.rmtree(d / "bundles", ignore_errors=True)
    make_server_cert(d, list(dict.fromkeys([host, ip])), d, days)
    clients: dict[str, Credentials] = {}
    names = [aggregator, *devices]
    changes: dict[str, list[str]] = {"kept": [], "new": [], "rotated": [], "revoked": [], "readdressed": [],
                                     "unrevoked": [], "renewed": []}
    revoke = []
    now = dt.datetime.now(dt.timezone.utc)
    renewed_end = leaf_end(x509.load_pem_x509_certificate((d / "ca.crt").read_bytes()), now, days)   # a renewal's end
    for name in [n for n in old if n not in names]:                # removed: revoked, its files gone
        crt = d / "clients" / f"{name}.crt"
        sn = _old_serial(d, name)
        revoke += [sn] if sn is not None else []
        revoke += [c.serial_number for c in _superseded(d, name)]
        for f in (crt, d / "clients" / f"{name}.key", d / "clients" / f"{name}.renewed.pem"):
            f.unlink(missing_ok=True)
        shutil.rmtree(d / "bundles" / name, ignore_errors=True)
        changes["revoked" if sn is not None else "unrevoked"].append(name)
    for name in names:
        crt = d / "clients" / f"{name}.crt"
        prev, cert = old.get(name), read_certificate(crt)
        if prev is not None and cert is not None and name not in rotate:   # its identity, whole: kept
            clients[name] = Credentials(name, prev.password, str(crt), str(d / "clients" / f"{name}.key"))
            if renewal_due(cert, now) and renewed_end > cert.not_valid_after_utc:   # the old one left valid
                make_client_cert(d / "clients", name, d, days)
                _supersede(d, name, cert, now)
                changes["renewed"].append(name)
            else:
                changes["readdressed" if moved else "kept"].append(name)
            continue
        if prev is not None:                # re-keyed (asked for, or its certificate unreadable): the old one revoked
            sn = _old_serial(d, name)
            revoke += [sn] if sn is not None else []
            revoke += [c.serial_number for c in _superseded(d, name)]
            (d / "clients" / f"{name}.renewed.pem").unlink(missing_ok=True)
            changes["unrevoked"] += [name] if sn is None else []
        make_client_cert(d / "clients", name, d, days)
        clients[name] = Credentials(name, _password(), str(crt), str(d / "clients" / f"{name}.key"))
        changes["rotated" if prev is not None else "new"].append(name)
    write_crl(d, revoke)
    write_private(d / "passwd", "".join(f"{c.username}:{mosquitto_hash(c.password)}\n"
                                        for c in clients.values()).encode())
    write_private(d / "credentials.json", _credentials_json(clients, d))
    acl = [f"# generated by tinycl for fleet {fleet}: the username is the client certificate's CN",
           "# (use_identity_as_username) and the client id is the username (use_username_as_clientid)",
           "# every client may read the broker's uptime (a restart is not another client taking its session)",
           f"pattern read {UPTIME_TOPIC}", "",
           "# the aggregator alone writes the global head and reads every device head",
           f"user {aggregator}", f"topic read {head_topic(fleet, '+')}", f"topic readwrite {global_topic(fleet)}",
           f"topic readwrite {rounds_topic(fleet)}", ""]
    for dev in devices:
        acl += [f"user {dev}", f"topic write {head_topic(fleet, dev)}", f"topic read {global_topic(fleet)}",
                f"topic read {rounds_topic(fleet)}", ""]
    (d / "acl").write_text("\n".join(acl))
    # Security is per listener: mosquitto 2.0 honours use_username_as_clientid only there.
    security = ["allow_anonymous false", f"password_file {d / 'passwd'}", f"acl_file {d / 'acl'}",
                "use_username_as_clientid true"]
    conf = [
        f"# generated by tinycl (tinycl_nodes.fleet.broker) for fleet {fleet} on {host} ({ip})",
        _DAYS_LINE.format(days=days),
        f"user {user}",
        "per_listener_settings true",
        "persistence true",
        f"persistence_location {d / 'data'}/",
        "autosave_interval 5",
        "max_queued_messages 1000",
        "max_packet_size 4194304",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages true",
        f"sys_interval {SYS_INTERVAL_S}",
        "",
        f"listener {port} {ip}",
        "protocol mqtt",
        "max_connections -1",
        f"cafile {d / 'ca.crt'}",
        f"certfile {d / 'server.crt'}",
        f"keyfile {d / 'server.key'}",
        f"crlfile {d / 'crl.pem'}",
        "require_certificate true",
        "use_identity_as_username true",
        "tls_version tlsv1.2",
        *security,
        "",
    ]
    if plaintext_port:
        conf += ["# development only: plaintext on loopback (username + password from passwd)",
                 f"listener {plaintext_port} {HOST}", "protocol mqtt", *security, ""]
    (d / "mosquitto.conf").write_text("\n".join(conf))
    setup = BrokerSetup(str(d), fleet, list(devices), port, plaintext_port, aggregator, str(d / "ca.crt"),
                        str(d / "mosquitto.conf"), host, ip)
    setup.clients, setup.changes = clients, changes
    return setup


def _password() -> str:
    """A random password that no command line takes for an option (a leading '-': `--password -x…` fails)."""
    while (pw := secrets.token_urlsafe(18)).startswith("-"):
        pass
    return pw


def _fleet_json(setup: BrokerSetup, d: Path, config: bool = True) -> str:
    meta = {k: v for k, v in asdict(setup).items() if k not in ("clients", "directory", "changes")}
    meta |= {"ca": "ca.crt", "config": Path(setup.config).relative_to(d).as_posix() if config else ""}
    return json.dumps(meta, indent=1)


def _credentials_json(clients: dict[str, Credentials], d: Path) -> bytes:
    return json.dumps({k: {**asdict(v), "certfile": Path(v.certfile).relative_to(d).as_posix(),
                           "keyfile": Path(v.keyfile).relative_to(d).as_posix()}
                       for k, v in clients.items()}, indent=1).encode()


def _write_bundle(b: Path, setup: BrokerSetup, name: str, cred: Credentials) -> None:
    """``bundles/<name>``: the CA certificate, ``name``'s certificate and key, the fleet's facts and ``name``'s
    credentials alone, in the broker directory's layout (what ``BrokerSetup.load`` reads)."""
    d = Path(setup.directory)
    (b / "clients").mkdir(parents=True, exist_ok=True)
    os.chmod(b, 0o700)
    (b / "ca.crt").write_bytes((d / "ca.crt").read_bytes())
    (b / "clients" / f"{name}.crt").write_bytes(Path(cred.certfile).read_bytes())
    write_private(b / "clients" / f"{name}.key", Path(cred.keyfile).read_bytes())
    (b / "fleet.json").write_text(_fleet_json(setup, d, config=False))
    write_private(b / "credentials.json", _credentials_json({name: cred}, d))


def listening(ip: str, port: int) -> bool:
    """Whether a TCP socket listens on ``ip:port`` in the calling thread's network namespace, read from /proc: a
    probe that connected and left would make mosquitto log a failed TLS handshake ("unexpected eof") at every start,
    a line an operator would take for a fault."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    raw = socket.inet_pton(family, ip)
    want = "".join(raw[i:i + 4][::-1].hex() for i in range(0, len(raw), 4)).upper() + f":{port:04X}"
    table = Path("/proc/thread-self/net") / ("tcp6" if family == socket.AF_INET6 else "tcp")
    try:
        rows = table.read_text().splitlines()[1:]
    except OSError:
        return False
    return any(f[1] == want and f[3] == "0A" for f in (row.split() for row in rows))     # 0A: TCP_LISTEN


class Broker:
    """One mosquitto process on a generated config; ``start()`` waits until it accepts connections.

    ``net``/``on``: run it in host ``on`` of a :class:`tinycl_nodes.netns.HostNet` (else here). ``env``: variables
    added to mosquitto's environment.
    """

    def __init__(self, setup: BrokerSetup, log_path: str | Path | None = None, net: Any = None,
                 on: str | None = None, env: dict[str, str] | None = None) -> None:
        self.setup = setup
        self.net, self.on = net, on
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(log_path or Path(setup.directory) / "mosquitto.log")
        self._log = None
        self._log_from = 0      # the log's size when this run started: its errors are what it wrote after that

    def start(self, timeout_s: float = 10.0) -> "Broker":
        exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if exe is None:
            raise RuntimeError("mosquitto not found: run tools/mosquitto/install.sh")
        if self.proc is not None and self.proc.poll() is None:
            return self
        if self._accepts():     # the old one still runs: ours failed to bind, its 'listening' was the old one's
            raise RuntimeError(f"{self.setup.ip}:{self.setup.port} is in use: a broker (this directory's, not "
                               f"stopped?) already listens there and goes on with its old CRL, ACL and passwords; "
                               f"stop it first")
        self._log = open(self.log_path, "ab")
        self._log_from = os.fstat(self._log.fileno()).st_size
        cmd = [exe, "-c", self.setup.config]
        kw: dict[str, Any] = dict(stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env={**os.environ, **self.env} if self.env else None)
        self.proc = self.net.popen(self.on, cmd, **kw) if self.net is not None else subprocess.Popen(cmd, **kw)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:     # e.g. a file it cannot read as its user: its log says which
                code = self.proc.returncode
                self.stop()
                raise RuntimeError(f"mosquitto exited with {code}: {self.tail()}")
            if self._accepts():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.setup.ip}:{self.setup.port} within {timeout_s}s: "
                           f"{self.tail()}")

    def _accepts(self) -> bool:
        probe = lambda: listening(self.setup.ip, self.setup.port)  # noqa: E731
        return self.net.call_in(self.on, probe) if self.net is not None else probe()

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM (mosquitto then saves its persistence file), SIGKILL if it does not exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 5) -> str:
        """The last ``n`` lines this run wrote to the log (an earlier run's lines, e.g. its fault since fixed, would
        be taken for this one's)."""
        try:
            with open(self.log_path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(self._log_from if self._log_from <= size else 0)     # emptied meanwhile: all of it is ours
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-n:])

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def not_here(ip: str) -> str:
    """A hint when ``ip`` is none of this host's addresses (mosquitto says only "Cannot assign requested address")."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((ip, 0))
    except OSError:
        return (f"; {ip} is not an address of this host: run `tinycl fleet setup` on this directory again with "
                f"--ip one of its addresses (`ip -br addr`), then copy the bundles again")
    return ""


def _runnable(directory: str | Path) -> BrokerSetup:
    """What ``tinycl fleet run`` needs, from ``mosquitto.conf`` alone: mosquitto reads neither ``fleet.json`` nor
    ``credentials.json``, and refusing a directory without them invited a set-up that replaced every key. A device
    bundle (no ``mosquitto.conf``) is refused in words: mosquitto said "Unable to open config file ."."""
    d = Path(directory).resolve()
    conf = d / "mosquitto.conf"
    if not conf.is_file():
        if (d / "fleet.json").is_file() and not (d / "ca.key").exists():
            broker = d.parent.parent if d.parent.name == "bundles" else None
            where = f" {broker}" if broker is not None and (broker / "mosquitto.conf").is_file() else \
                " (the folder whose bundles/ it was copied from)"
            raise ValueError(f"{d} is a device bundle, not a broker directory: run `tinycl fleet run` on the "
                             f"broker's directory{where}")
        raise ValueError(f"{d} is no broker directory of `tinycl fleet setup`: it holds no mosquitto.conf")
    lines = conf.read_text().splitlines()
    listeners = [ln.split() for ln in lines if ln.startswith("listener ")]
    if not listeners or len(listeners[0]) != 3 or not listeners[0][1].isdigit():
        raise ValueError(f"{conf} has no `listener PORT ADDRESS` line: run `tinycl fleet setup` on {d} again")
    port, ip = int(listeners[0][1]), listeners[0][2]
    head = re.search(r"for fleet (\S+) on (\S+) \(", lines[0]) if lines else None
    fleet, host = (head.group(1), head.group(2)) if head else ("?", ip)
    return BrokerSetup(str(d), fleet, [], port, None, AGGREGATOR, str(d / "ca.crt"), str(conf), host, ip)


def _run(st: BrokerSetup) -> int:
    """``tinycl fleet run``: mosquitto in the foreground, one line once it listens, until Ctrl-C, SIGTERM or SIGHUP; a
    warning on stderr when the certificate it serves comes into its renewal window, then each day (hour, in the last
    two), and at its end, and when set-up has renewed it on disk but the broker has not read it again."""
    from ..nodes.runner import STOP_SIGNALS
    from .served import RUN_PID, next_ending_look, now_served, serving_ending, stop_left_running

    def _stop(*_: Any) -> None:
        raise KeyboardInterrupt
    # SIGINT too: a script's `tinycl fleet run &` starts with it ignored. SIGHUP (a closed terminal, `kill -HUP`) killed
    # this process and left mosquitto running on the port; it stops it now, as it stops `tinycl launch` and the nodes
    # (a broker is told to read its files again by set-up, which signals mosquitto itself). Set before mosquitto
    # starts: a signal at any moment after it stops it cleanly.
    old = {sig: signal.signal(sig, _stop) for sig in STOP_SIGNALS}
    b, d = Broker(st, env={RUN_PID: str(os.getpid())}), Path(st.directory)
    try:
        for said in stop_left_running(d):       # a fleet run killed with -9 could not stop its mosquitto
            print(f"warning: {said}", file=sys.stderr, flush=True)
        try:
            b.start()
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}{not_here(st.ip)}") from None
        proc, served = b.proc, read_certificate(d / "server.crt")      # what mosquitto read at its start
        if (said := serving_ending(st, served)) is not None:      # said before the line that it listens
            print(f"warning: {said}", file=sys.stderr, flush=True)
        print(f"mosquitto listening on {st.host} ({st.ip}):{st.port} (TLS) for fleet {st.fleet}; log {b.log_path}; "
              f"Ctrl-C stops it", flush=True)
        while True:         # a broker runs for months: its certificate's window opens, and it ends, meanwhile
            try:
                proc.wait(next_ending_look(served))
                break
            except subprocess.TimeoutExpired:
                served = now_served(st, served)
                if (ending := serving_ending(st, served)) is not None and ending != said:
                    print(f"warning: {ending}", file=sys.stderr, flush=True)
                said = ending
    except KeyboardInterrupt:
        return 0
    finally:
        b.stop()                         # SIGTERM: mosquitto saves its persistence file
        for sig, handler in old.items():    # called in-process (tests), the caller's again
            signal.signal(sig, handler)
    if proc.returncode in (0, -signal.SIGTERM):      # stopped by another's SIGTERM (a service's whole group)
        return 0
    print(f"error: mosquitto exited with {proc.returncode}: {b.tail(3)}", file=sys.stderr, flush=True)
    return 1


def _renewed_words(d: Path, names: list[str]) -> str:
    """What a renewal asks of the operator: which bundles to copy again, and until when the copies held work."""
    until: dict[str, list[str]] = {}
    for name in names:
        held = _superseded(d, name)     # the one just replaced is the last; an ended one is not kept
        when = f"work until {utc_text(held[-1].not_valid_after_utc)}" if held else "have ended"
        until.setdefault(when, []).append(name)
    return (f"renewed (certificate ended or ending; same names and passwords): copy {d / 'bundles'}/<name> to each "
            f"of: {', '.join(names)} again; the bundles they hold " +
            "; ".join(f"{when} ({', '.join(who)})" for when, who in until.items()))


def _ca_end_caps(d: Path) -> dt.datetime | None:
    """The fleet CA's end if it cut the server certificate just issued short (it ends first): then every
    certificate ends with it, and only --new-ca goes on."""
    ca, server = read_certificate(d / "ca.crt"), read_certificate(d / "server.crt")
    if ca is None or server is None or server.not_valid_after_utc < ca.not_valid_after_utc:
        return None
    return ca.not_valid_after_utc


def _port_or_off(text: str) -> int:
    """``--plaintext-port``: a port, or ``off`` (0) to drop the listener a directory has (left off, it is kept)."""
    return 0 if text == "off" else count(1, 65535)(text)


def main(argv: list[str] | None = None, prog: str = "tinycl fleet") -> int:
    """``tinycl fleet setup DIR ...`` (generate) and ``tinycl fleet run DIR`` (mosquitto, foreground); ``tinycl fleet
    check`` is ``fleet.check``, ``tinycl fleet status`` the aggregator's (listed here)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["check"]:
        from .check import main as check_main

        return check_main(argv[1:])
    if argv[:1] == ["status"]:
        from .aggregator import status_main

        return status_main(argv[1:])
    p = argparse.ArgumentParser(prog=prog, description="generate or run the fleet's mosquitto; "
                                "`tinycl fleet check --help`: can a device (or the aggregator) reach it?")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup", help="generate CA, certificates, passwords, ACL and mosquitto.conf")
    s.add_argument("directory")
    s.add_argument("--fleet", required=True)
    s.add_argument("--devices", required=True, help="comma-separated device ids: all of the fleet's (run again on "
                   "the same directory to add or remove devices; the others keep their bundles)")
    # an option left off keeps the directory's current value (a re-run to add a device moved the broker to
    # localhost:8883 and renamed the aggregator); the defaults named are a new directory's
    s.add_argument("--host", help="the broker machine's name, as devices resolve it (in the certificate's SAN; "
                                  "default: kept, else localhost)")
    s.add_argument("--ip", help="the address the broker listens on (in the SAN too; default: kept, else 127.0.0.1)")
    s.add_argument("--port", type=count(1, 65535),     # -3, 0 and 99999 went into mosquitto.conf
                   help="the TLS port (default: kept, else 8883)")
    s.add_argument("--plaintext-port", type=_port_or_off,
                   help="also listen without TLS on 127.0.0.1 (dev); off: no longer (default: kept, else off)")
    s.add_argument("--aggregator", help=f"the aggregator's identity (default: kept, else {AGGREGATOR})")
    s.add_argument("--days", type=count(1, 36500),     # 0: already expired; 99999999: OverflowError
                   help=f"how long the certificates issued now are valid (default: kept, else {DAYS}); the CA "
                        "lives 10 times longer (10 to 100 years), and a re-run renews a certificate ending soon")
    s.add_argument("--user", default=None, help="account mosquitto runs as when started as root (default: kept, "
                   f"else {BROKER_USER} if set up as root, else you); set up as root, it gets the files it reads")
    s.add_argument("--rotate", default="", help="comma-separated names (devices or the aggregator) that get a new "
                   "key, certificate and password; their old certificate is revoked")
    s.add_argument("--new-ca", action="store_true", help="start over: a new CA and new identities for all (every "
                   "device then needs its new bundle)")
    s.add_argument("--no-reload", action="store_true", help="leave a broker running on this directory with the files "
                   "it read (by default it is told to read them again: SIGHUP, no connection is cut)")
    sub.add_parser("check", help="connect as a device or the aggregator: reachable, certificate accepted? "
                                 "(`tinycl fleet check --help`)", add_help=False)
    sub.add_parser("status", help="which devices reported, which round, which versions are in the global head "
                                  "(`tinycl fleet status --help`)", add_help=False)
    r = sub.add_parser("run", help="run mosquitto on a generated directory (foreground)")
    r.add_argument("directory")
    a = p.parse_args(argv)
    if a.cmd == "setup" and a.port is not None and a.plaintext_port == a.port:
        p.error(f"--plaintext-port: {a.port} is the TLS port too")
    try:
        if a.cmd == "setup":
            from .served import apply_to_running, broker_reads

            devices = [x for x in a.devices.split(",") if x]
            before = broker_reads(a.directory)
            st = generate(a.directory, a.fleet, devices, a.port, a.plaintext_port, a.aggregator, a.days, a.user,
                          host=a.host, ip=a.ip, rotate=[x for x in a.rotate.split(",") if x], new_ca=a.new_ca)
            ch = st.changes
            bundles = Path(st.directory) / "bundles"
            print(f"broker: fleet {st.fleet}, {len(devices)} device(s), TLS on {st.host} ({st.ip}):{st.port}"
                  + (f", plaintext on {HOST}:{st.plaintext_port}" if st.plaintext_port else "")
                  + f"; config {st.config}; credentials in {Path(st.directory) / 'credentials.json'}")
            if ch["kept"]:
                print(f"kept (their bundles stay valid): {', '.join(ch['kept'])}")
            if ch["readdressed"]:
                print(f"the broker's address is now {st.host} ({st.ip}):{st.port}: copy the bundles of "
                      f"{', '.join(ch['readdressed'])} again (their identities are kept; the copies they hold point "
                      "at the old address)")
            if ch["new"] or ch["rotated"]:
                print(f"copy {bundles}/<name> to each of: {', '.join(ch['new'] + ch['rotated'])} (its files only)")
            if ch["renewed"]:
                print(_renewed_words(Path(st.directory), ch["renewed"]))
            if revoked := ch["revoked"] + [n + " (old certificate)" for n in ch["rotated"] if n not in ch["unrevoked"]]:
                print(f"revoked: {', '.join(revoked)}")
            if ch["unrevoked"]:
                names = [n if n in st.clients else f"{n} (removed)" for n in ch["unrevoked"]]
                print(f"not revoked: {', '.join(names)}: the old certificate could be read neither in clients/ nor "
                      f"in the bundle, so it was not revoked and the old bundle still connects, until the CA changes "
                      f"(--new-ca: every device then needs its new bundle)")
            if (ca_end := _ca_end_caps(Path(st.directory))) is not None:
                print(f"certificates now end with the fleet's CA on {utc_text(ca_end)}: run this set-up "
                      f"with --new-ca before then (every device then needs its new bundle)")
            for line in apply_to_running(st, before, reload=not a.no_reload):
                print(line)
            return 0
        return _run(_runnable(a.directory))
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0

if __name__ == "__main__":
    sys.exit(main())
