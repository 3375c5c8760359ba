"""A secured mosquitto for a fleet: generated CA and certificates, passwords, ACL, config; a runner.

``generate(directory, fleet, devices)`` writes everything a broker and its clients need::

    ca.crt ca.key                    the fleet's CA (EC P-256, made with the openssl CLI)
    server.crt server.key            the broker's certificate (SAN IP:127.0.0.1, DNS:localhost)
    clients/<name>.crt/.key          one client certificate per device and for the aggregator
    passwd                           mosquitto password file (hashed by mosquitto_passwd -U)
    credentials.json                 the clear passwords, mode 600, for provisioning the devices
    acl                              device: write its own head, read global; aggregator: the rest
    mosquitto.conf                   TLS listener on 127.0.0.1:<port> (+ optional plaintext one)
    fleet.json                       what was generated (fleet, port, names, paths)

A client must present a certificate signed by the CA *and* its username/password. Topics::

    tinycl/<fleet>/<device>/head     device → aggregator (QoS 1, retained)
    tinycl/<fleet>/global            aggregator → devices (QoS 1, retained)

``Broker(setup)`` starts/stops one mosquitto on that config (tests, demos, bench): it waits until
the port accepts connections and kills the process on ``stop()``. Loopback only.

CLI: ``python -m tinycl_nodes.fleet.broker setup DIR --fleet F --devices a,b,c [--port P]
[--plaintext-port Q]`` and ``... run DIR`` (foreground). ``tools/mosquitto/*.sh`` wrap these.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .payload import check_name

AGGREGATOR = "aggregator"
HOST = "127.0.0.1"


def head_topic(fleet: str, device: str) -> str:
    return f"tinycl/{fleet}/{device}/head"


def global_topic(fleet: str) -> str:
    return f"tinycl/{fleet}/global"


@dataclass
class Credentials:
    username: str
    password: str
    certfile: str
    keyfile: str


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
    clients: dict[str, Credentials] = field(default_factory=dict)

    def credentials(self, name: str) -> Credentials:
        return self.clients[name]

    @classmethod
    def load(cls, directory: str | Path) -> "BrokerSetup":
        d = Path(directory)
        meta = json.loads((d / "fleet.json").read_text())
        creds = json.loads((d / "credentials.json").read_text())
        meta["clients"] = {k: Credentials(**v) for k, v in creds.items()}
        return cls(**meta)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], cwd: Path) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(f"{cmd[0]} {cmd[1]} failed: {last}")


def _key_and_csr(d: Path, name: str, cn: str) -> None:
    _run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}"], d)


def _sign(d: Path, name: str, ca_dir: Path, ext: str, days: int) -> None:
    (d / f"{name}.ext").write_text(ext)
    _run(["openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca_dir / "ca.crt"), "-CAkey",
          str(ca_dir / "ca.key"), "-CAcreateserial", "-out", f"{name}.crt", "-days", str(days), "-sha256",
          "-extfile", f"{name}.ext"], d)
    for suffix in (".csr", ".ext"):
        (d / f"{name}{suffix}").unlink()
    os.chmod(d / f"{name}.key", 0o600)


def make_ca(d: Path, cn: str, days: int = 825) -> None:
    """A self-signed EC CA ``ca.crt`` / ``ca.key`` in ``d``."""
    _run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-keyout", "ca.key", "-out", "ca.crt", "-days", str(days), "-sha256", "-subj", f"/CN={cn}",
          "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)
    os.chmod(d / "ca.key", 0o600)


def make_client_cert(d: Path, name: str, ca_dir: Path, days: int = 825) -> None:
    _key_and_csr(d, name, name)
    _sign(d, name, ca_dir, "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n", days)


def generate(directory: str | Path, fleet: str, devices: list[str], port: int = 8883,
             plaintext_port: int | None = None, aggregator: str = AGGREGATOR, days: int = 825,
             user: str | None = None) -> BrokerSetup:
    """Generate CA, certificates, passwords, ACL and mosquitto.conf in ``directory`` (see module doc).

    Re-running on the same directory regenerates everything (new CA, new passwords).
    """
    for n in [fleet, aggregator, *devices]:
        try:
            check_name(n)
        except ValueError as exc:
            raise ValueError(f"invalid name {n!r}: {exc}") from None
    if aggregator in devices or len(set(devices)) != len(devices):
        raise ValueError("device names must be unique and differ from the aggregator's")
    for tool in ("openssl", "mosquitto_passwd"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: run tools/mosquitto/install.sh")
    d = Path(directory).resolve()
    (d / "clients").mkdir(parents=True, exist_ok=True)
    (d / "data").mkdir(exist_ok=True)
    make_ca(d, f"tinycl fleet {fleet} CA", days)
    _key_and_csr(d, "server", "localhost")
    _sign(d, "server", d, "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                          "subjectAltName=IP:127.0.0.1,DNS:localhost\n", days)
    clients: dict[str, Credentials] = {}
    for name in [aggregator, *devices]:
        make_client_cert(d / "clients", name, d, days)
        clients[name] = Credentials(name, secrets.token_urlsafe(18), str(d / "clients" / f"{name}.crt"),
                                    str(d / "clients" / f"{name}.key"))
    passwd = d / "passwd"
    passwd.write_text("".join(f"{c.username}:{c.password}\n" for c in clients.values()))
    os.chmod(passwd, 0o600)
    _run(["mosquitto_passwd", "-U", str(passwd)], d)
    creds = d / "credentials.json"
    creds.write_text(json.dumps({k: asdict(v) for k, v in clients.items()}, indent=1))
    os.chmod(creds, 0o600)
    acl = [f"# generated by tinycl for fleet {fleet}",
           "# the aggregator alone writes the global head and reads every device head",
           f"user {aggregator}", f"topic read {head_topic(fleet, '+')}", f"topic readwrite {global_topic(fleet)}", ""]
    for dev in devices:
        acl += [f"user {dev}", f"topic write {head_topic(fleet, dev)}", f"topic read {global_topic(fleet)}", ""]
    (d / "acl").write_text("\n".join(acl))
    conf = [
        f"# generated by tinycl (tinycl_nodes.fleet.broker) for fleet {fleet}",
        f"user {user or getpass.getuser()}",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {passwd}",
        f"acl_file {d / 'acl'}",
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
        "",
        f"listener {port} {HOST}",
        "protocol mqtt",
        f"cafile {d / 'ca.crt'}",
        f"certfile {d / 'server.crt'}",
        f"keyfile {d / 'server.key'}",
        "require_certificate true",
        "use_identity_as_username false",
        "tls_version tlsv1.2",
        "",
    ]
    if plaintext_port:
        conf += ["# development only: plaintext on loopback (passwords still required)",
                 f"listener {plaintext_port} {HOST}", "protocol mqtt", ""]
    (d / "mosquitto.conf").write_text("\n".join(conf))
    setup = BrokerSetup(str(d), fleet, list(devices), port, plaintext_port, aggregator, str(d / "ca.crt"),
                        str(d / "mosquitto.conf"))
    (d / "fleet.json").write_text(json.dumps({k: v for k, v in asdict(setup).items() if k != "clients"}, indent=1))
    setup.clients = clients
    return setup


class Broker:
    """One mosquitto process on a generated config; ``start()`` waits until it accepts connections."""

    def __init__(self, setup: BrokerSetup, log_path: str | Path | None = None) -> None:
        self.setup = setup
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(log_path or Path(setup.directory) / "mosquitto.log")
        self._log = None

    def start(self, timeout_s: float = 10.0) -> "Broker":
        exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if exe is None:
            raise RuntimeError("mosquitto not found: run tools/mosquitto/install.sh")
        if self.proc is not None and self.proc.poll() is None:
            return self
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([exe, "-c", self.setup.config], stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {self.tail()}")
            try:
                with socket.create_connection((HOST, self.setup.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {HOST}:{self.setup.port} within {timeout_s}s")

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
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-n:])
        except OSError:
            return ""

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tinycl-broker", description="generate or run the fleet's mosquitto")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup", help="generate CA, certificates, passwords, ACL and mosquitto.conf")
    s.add_argument("directory")
    s.add_argument("--fleet", required=True)
    s.add_argument("--devices", required=True, help="comma-separated device ids")
    s.add_argument("--port", type=int, default=8883)
    s.add_argument("--plaintext-port", type=int, default=None, help="also listen without TLS on 127.0.0.1 (dev)")
    s.add_argument("--aggregator", default=AGGREGATOR)
    s.add_argument("--days", type=int, default=825)
    s.add_argument("--user", default=None, help="user mosquitto drops to when started as root (default: you)")
    r = sub.add_parser("run", help="run mosquitto on a generated directory (foreground)")
    r.add_argument("directory")
    a = p.parse_args(argv)
    try:
        if a.cmd == "setup":
            devices = [x for x in a.devices.split(",") if x]
            st = generate(a.directory, a.fleet, devices, a.port, a.plaintext_port, a.aggregator, a.days, a.user)
            print(f"broker: fleet {st.fleet}, {len(devices)} device(s), TLS on {HOST}:{st.port}"
                  + (f", plaintext on {HOST}:{st.plaintext_port}" if st.plaintext_port else "")
                  + f"; config {st.config}; credentials in {Path(st.directory) / 'credentials.json'}")
            return 0
        st = BrokerSetup.load(a.directory)
        os.execvp(shutil.which("mosquitto") or "/usr/sbin/mosquitto", ["mosquitto", "-c", st.config])
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"broker: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
