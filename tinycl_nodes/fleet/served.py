"""The broker running on a set-up directory: found among this host's processes, told to apply set-up's changes, and
what it serves.

mosquitto 2.0 reads its certificate, key, CA, CRL, password file and ACL again on SIGHUP (with a ``crlfile``, as
set-up writes, it makes its TLS context anew: a new CA applies too) and keeps every connection already open. Such a
connection keeps the certificate it was opened with, and one of a device removed from the fleet loses its ACL entry:
it can neither write nor read the fleet's topics any more. The listener (address, port, the plaintext one) and the
user change only at a restart, which cuts every connection. Before, set-up said only "a running broker applies this
when restarted": an operator who added a robot restarted the broker and cut every robot off, or did not, and the
renewed certificate was never served (the fleet stopped at the old one's end).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import ssl
import time
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from .broker import (SERVED_ONCE_RELOADED, BrokerSetup, end_words, not_here, read_certificate, renewal_due,
                     renewal_opens, utc_text)

#: what a running broker applies only at a restart: the listeners and the user are in mosquitto.conf
RESTART_ONLY = ("mosquitto.conf",)
#: in the environment of the mosquitto that `tinycl fleet run` starts: that fleet run's pid
RUN_PID = "TINYCL_FLEET_RUN_PID"


def broker_reads(directory: str | Path) -> dict[str, bytes] | None:
    """The files a running broker read (None: no broker set up there yet): what a reload or a restart would change.
    The server certificate is re-issued at every set-up, so its issuer, its names and whether it is due for renewal
    stand for it; mosquitto.conf's comments change nothing."""
    d = Path(directory)
    if not (d / "mosquitto.conf").is_file():
        return None
    files = {n: (d / n).read_bytes() if (d / n).is_file() else b"" for n in ("acl", "ca.crt")}
    files["mosquitto.conf"] = b"\n".join(ln for ln in (d / "mosquitto.conf").read_bytes().splitlines()
                                         if not ln.startswith(b"#"))
    # the password file's salts and the CRL's signature are new at every set-up: their users and serials stand for them
    users = (d / "passwd").read_bytes().splitlines() if (d / "passwd").is_file() else []
    files["passwd"] = b",".join(sorted(line.split(b":")[0] for line in users if line))
    try:
        crl = x509.load_pem_x509_crl((d / "crl.pem").read_bytes())
        files["crl"] = repr(sorted(r.serial_number for r in crl)).encode()
    except (OSError, ValueError):
        files["crl"] = b""
    crt = read_certificate(d / "server.crt")
    files["server"] = b"" if crt is None else (crt.issuer.rfc4514_string() + repr(crt.extensions) +
                                               repr(renewal_due(crt, dt.datetime.now(dt.timezone.utc)))).encode()
    return files


def running_brokers(directory: str | Path) -> list[int]:
    """The process ids of the mosquittos running here on ``directory``'s mosquitto.conf (``-c``), as `tinycl fleet
    run`, a service or a test starts them; in any network namespace of this host."""
    conf = (Path(directory) / "mosquitto.conf").resolve()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = [os.fsdecode(a) for a in (proc / "cmdline").read_bytes().split(b"\0")]
        except OSError:                                  # gone meanwhile
            continue
        if Path(argv[0]).name != "mosquitto":
            continue
        for flag, value in zip(argv, argv[1:]):
            if flag in ("-c", "--config-file"):
                try:
                    path = Path(value) if os.path.isabs(value) else Path(os.readlink(proc / "cwd")) / value
                except OSError:
                    continue
                if path.resolve() == conf:
                    pids.append(int(proc.name))
    return sorted(pids)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited and not reaped yet, does not: a container's first process may
    never reap it)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] != b"Z"


def stop_left_running(directory: str | Path, wait_s: float = 10.0) -> list[str]:
    """Stop the mosquittos on ``directory`` whose `tinycl fleet run` is gone: one killed with -9 (or by the OOM killer)
    could not stop its mosquitto, which went on holding the port, and the next `fleet run` refused to start beside it
    ("already listens there") until someone found and killed it. SIGTERM: mosquitto saves its persistence file. A
    mosquitto started otherwise (a service, ``start.sh``), or by a `fleet run` still running, is not touched. One line
    for each stopped."""
    said = []
    for pid in running_brokers(directory):
        try:
            env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        mark = next((e.split(b"=", 1)[1] for e in env if e.startswith(RUN_PID.encode() + b"=")), b"")
        if not mark.isdigit() or _alive(int(mark)):     # not a fleet run's, or its fleet run is still there
            continue
        saved = "it saved its persistence file"
        try:
            os.kill(pid, signal.SIGTERM)
            end = time.monotonic() + wait_s
            while _alive(pid) and time.monotonic() < end:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
                saved = f"killed: it did not stop within {wait_s:g} s of SIGTERM"
        except ProcessLookupError:
            pass
        said.append(f"stopped mosquitto (pid {pid}), left running on this directory by a `tinycl fleet run` (pid "
                    f"{int(mark)}) that is gone (killed?): {saved}; starting anew")
    return said


def served_certificate(st: BrokerSetup, timeout_s: float = 3.0) -> x509.Certificate | None:
    """The certificate the broker listening at ``st``'s address serves, read without verifying it (it may be of
    another CA); None when nothing answers there, or the address is not one of this host's (set-up runs on the
    broker's machine: another would cost the timeout when nothing answers).

    The handshake presents the aggregator's certificate from the directory and ends with a TLS close: mosquitto then
    logs a client that "closed its connection". Without one it logged "OpenSSL Error … peer did not return a
    certificate" at every set-up, a line an operator takes for a fault; that is the fallback when the broker refuses
    the aggregator's certificate (one of a new CA it has not read yet)."""
    if not_here(st.ip):
        return None
    d = Path(st.directory)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        ctx.load_cert_chain(d / "clients" / f"{st.aggregator}.crt", d / "clients" / f"{st.aggregator}.key")
        with socket.create_connection((st.ip, st.port), timeout=timeout_s) as raw, ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
            with contextlib.suppress(OSError):
                tls.unwrap()
        return x509.load_der_x509_certificate(der)
    except (OSError, ValueError):            # no identity here, refused, none listens, or not TLS (SSLError: OSError)
        pass
    try:
        return x509.load_pem_x509_certificate(ssl.get_server_certificate((st.ip, st.port), timeout=timeout_s)
                                              .encode())
    except (OSError, ValueError):
        return None


def stale_served(st: BrokerSetup, served: x509.Certificate | None) -> str | None:
    """Words for a broker at set-up's address that serves (``served``) a certificate it must not go on serving: one
    of the CA before ``--new-ca``, or one in its renewal window that set-up has renewed on disk (a set-up run with
    nothing left to renew said nothing of it, and every device was cut off at its end). None: it serves what it may.
    Only its dates and issuer are looked at."""
    d = Path(st.directory)
    ca, disk = read_certificate(d / "ca.crt"), read_certificate(d / "server.crt")
    if served is None or ca is None or disk is None:
        return None
    where = f"the broker listening on {st.host} ({st.ip}):{st.port}"
    reload = "reload it (`kill -HUP` its mosquitto, as its user or root) or restart it"
    try:
        served.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return (f"{where} serves a certificate of another CA (the fleet's before --new-ca?): no device with a new "
                f"bundle connects until you {reload}")
    now = dt.datetime.now(dt.timezone.utc)
    end = served.not_valid_after_utc
    if renewal_due(served, now) and disk.not_valid_after_utc > end:
        return (f"{where} serves the certificate that {end_words(end, now)}, not the renewed one in "
                f"{d / 'server.crt'} (ends on {utc_text(disk.not_valid_after_utc)}): every device is cut off at its "
                f"end unless you {reload}")
    return None


def _serves_disk(st: BrokerSetup, wait_s: float) -> tuple[bool, x509.Certificate | None]:
    """Whether the broker serves ``server.crt`` as on disk (re-issued at every set-up, so a broker that read it again
    serves exactly it), looked at until ``wait_s`` has passed (a reload is done in mosquitto's loop, not at once);
    and the certificate it served last (None: nothing answered)."""
    disk = read_certificate(Path(st.directory) / "server.crt")
    end = time.monotonic() + wait_s
    while True:
        time.sleep(0.2)
        served = served_certificate(st)
        ok = served is not None and served == disk          # cryptography compares certificates by their DER
        if ok or time.monotonic() > end:
            return ok, served


def apply_to_running(st: BrokerSetup, before: dict[str, bytes] | None, reload: bool = True) -> list[str]:
    """Set-up's lines on the broker running on its directory, after it wrote it (``before``: ``broker_reads`` then).
    A broker running here whose files changed, or that serves a certificate it must not (``stale_served``), is told
    to read them again (SIGHUP, unless ``reload`` is False) and then looked at: it serves the new certificate. Not
    when mosquitto.conf changed: that takes a restart, which applies everything."""
    d = Path(st.directory)
    after = broker_reads(d) or {}
    changed = before is not None and after != before
    restart = before is not None and any(before.get(n) != after.get(n) for n in RESTART_ONLY)
    pids = running_brokers(d)
    served = served_certificate(st)
    stale = stale_served(st, served)
    lines = []
    which = f"the running broker (mosquitto, pid {', '.join(map(str, pids))})"
    if restart:     # not told: a new user's files are not the running one's to read (a reload broke its listener)
        pass
    elif pids and (changed or stale) and not reload:
        lines.append(f"{which} goes on with the files it read (--no-reload): `kill -HUP {' '.join(map(str, pids))}` "
                     f"applies them without cutting a connection")
    elif pids and (changed or stale):
        failed = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                pass
            except PermissionError:
                failed.append(pid)
        if failed:
            lines.append(f"warning: {which} could not be told to read its files again (not permitted to signal pid "
                         f"{', '.join(map(str, failed))}): run set-up as its user or root, or `kill -HUP` it so")
        else:
            ok, served = _serves_disk(st, wait_s=3.0) if served is not None else (True, None)
            new_ca = " (the new CA's: only the new bundles connect from now on)" if changed and \
                before.get("ca.crt") != after.get("ca.crt") else ""  # type: ignore[union-attr]
            lines.append(f"{which} read its files again (SIGHUP) and applies this from now on{new_ca}: the connections "
                         f"open are kept (a removed device's can no longer use the fleet's topics; a restart would cut "
                         f"them all)" if ok else
                         f"warning: {which} was told to read its files again (SIGHUP) but does not serve "
                         f"{d / 'server.crt'}: its log says why ({d / 'mosquitto.log'} under `tinycl fleet run`)")
            stale = stale_served(st, served)
    elif changed:
        lines.append("no broker runs on this directory here: one running on it elsewhere applies this once it reads "
                     "its files again (`kill -HUP` its mosquitto) or restarts")
    if restart:
        lines.append("mosquitto.conf changed (the address, a port or the user): a running broker applies this only "
                     "when restarted (Ctrl-C and `tinycl fleet run` again, or restart its service; every connection "
                     "is cut then), and goes on with the files it read until then")
    if stale is not None:
        lines.append(f"warning: {stale}")
    return lines


def now_served(st: BrokerSetup, last: x509.Certificate | None) -> x509.Certificate | None:
    """The certificate the broker of ``tinycl fleet run`` serves now, ``last`` being what it served at the last look
    (at its start: ``server.crt``). While ``server.crt`` is that one, it is; once set-up has re-issued it, the broker
    is looked at (it read the new one again, or not: ``--no-reload``, a refused SIGHUP). ``last`` when none answers."""
    disk = read_certificate(Path(st.directory) / "server.crt")
    if last is not None and disk == last:
        return last
    return served_certificate(st) or last


def serving_ending(st: BrokerSetup, served: x509.Certificate | None) -> str | None:
    """``tinycl fleet run``'s words when the certificate its broker serves (``now_served``) is one it must not go on
    serving (``stale_served``: set-up renewed it on disk, the broker has not read it again), or is in its renewal
    window or has ended (mosquitto starts with it all the same, and the devices refuse it at its end): None
    otherwise. Before, ``server.crt`` on disk was looked at: after a ``--no-reload`` renewal, the broker went on
    serving the old certificate to its end, and said nothing of it."""
    if served is None:
        return None
    if (stale := stale_served(st, served)) is not None:
        return stale
    now = dt.datetime.now(dt.timezone.utc)
    if not renewal_due(served, now):
        return None
    return (f"the certificate this broker serves ({Path(st.directory) / 'server.crt'}) "
            f"{end_words(served.not_valid_after_utc, now)}: every device refuses to connect from its end; "
            f"`tinycl fleet setup` on this directory again renews it: {SERVED_ONCE_RELOADED}")


def next_ending_look(served: x509.Certificate | None, most_s: float = 3600.0) -> float:
    """Seconds until ``serving_ending``'s words may next change: the certificate's renewal window opens, or it ends
    (each said at its moment, not up to an hour late); else at most ``most_s`` (the count of days or hours, and a
    look at what set-up did meanwhile)."""
    if served is None:
        return most_s
    now = dt.datetime.now(dt.timezone.utc)
    left = [(t - now).total_seconds() for t in (renewal_opens(served), served.not_valid_after_utc)]
    return min([most_s, *(s + 0.05 for s in left if s > 0)])
