"""``tinycl fleet check``: can this machine reach the fleet's broker as a given identity?

Connects once (MQTT 5, TLS with the fleet CA, the identity's certificate, host name verified),
optionally publishes one QoS 1 message (``payload.PROBE``, not retained: the aggregator ignores it on a device's head
topic), and prints one JSON line::

    {"connect": "Success" | "<MQTT reason>" | "<why it failed>" | "no CONNACK", "puback": "<reason>",
     "published": true | false, "disconnects": n, "still_connected": ..., "host": ..., "port": ...,
     "broker_certificate_ends": "<date> UTC", "ending": ["<words>", ...]}

``ending``: the broker's certificate (the one it serves now, which a renewal on disk changes only at its next start)
and this identity's, where either ends within the window in which set-up renews it, in words also printed on stderr
as warnings (the bridge and the aggregator log them at each connection).

``disconnects``: the connection's losses this check did not ask for (another client taking the client id). Exit code 0
if connected and still connected at the end (and, with ``--publish``, the broker acknowledged it with a success
code), else 1. The broker makes the client id the certificate's name, so on a live fleet a check as a
device that is connected takes over its session for a moment: its bridge reconnects by itself (the
global head is retained on the broker; nothing is lost).
What it sends can be overridden to probe the broker's rules (the tests use it from other hosts):
``--cert``/``--key`` another certificate, ``--client-id`` another client id, ``--username`` /
``--password``.

    python -m tinycl_nodes.fleet.check --broker-dir DIR --identity robot2 [--host cloud] [--publish TOPIC]
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import threading
from typing import Any

import paho.mqtt.client as mqtt

from ..arg_types import number
from .broker import BrokerSetup, utc_text
from .link import connect_error, ending_soon, served_certificate, stop_network_thread, tls_problem
from .payload import PROBE


def check(host: str, port: int, ca: str, cert: str | None, key: str | None, username: str, password: str,
          client_id: str, publish: str | None = None, payload: bytes = PROBE, timeout_s: float = 10.0,
          hold_s: float = 0.0) -> dict[str, Any]:
    out: dict[str, Any] = {"host": host, "port": port, "connect": "no CONNACK", "puback": None}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    connected, acked = threading.Event(), threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, props: Any) -> None:
        out["connect"] = str(reason)
        out["assigned_client_id"] = getattr(props, "AssignedClientIdentifier", None)
        connected.set()

    def on_publish(_c: Any, _u: Any, _mid: int, reason: Any, _p: Any) -> None:
        out["puback"] = str(reason)           # MQTT 5: "No matching subscribers" is a success too
        out["published"] = not getattr(reason, "is_failure", False)
        acked.set()
    c.on_connect, c.on_publish = on_connect, on_publish
    out["disconnects"] = 0
    closing = threading.Event()         # our own disconnect at the end: not a loss of the connection

    def on_disconnect(*_a: Any) -> None:                # e.g. another client took this client id
        if out["connect"] == "Success" and not closing.is_set():
            out["disconnects"] += 1
        connected.set()
    c.on_disconnect = on_disconnect
    errors: list[str] = []      # a certificate refused after the TLS handshake shows only in paho's log
    c.on_log = lambda _c, _u, level, buf: errors.append(buf) if level == mqtt.MQTT_LOG_ERR else None
    try:
        c.tls_set(ca_certs=ca, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED,
                  tls_version=ssl.PROTOCOL_TLS_CLIENT)
    except (ssl.SSLError, OSError, ValueError) as exc:      # "[SSL] PEM lib", "[Errno 2] …": no file named
        out["connect"] = f"TLS: {tls_problem(ca, cert, key)} ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        return out
    try:
        c.username_pw_set(username, password)
        c.connect(host, port, 10)
    except (ssl.SSLError, ssl.CertificateError, OSError, ValueError) as exc:
        out["connect"] = connect_error(exc, host, cert, ca)
        return out
    c.loop_start()
    try:
        connected.wait(timeout_s)
        if out["connect"] == "no CONNACK" and errors:
            out["connect"] = connect_error(errors[0], host, cert, ca)      # the first: later ones are its consequences
        if out["connect"] == "Success":
            served = served_certificate(c)
            if served is not None:
                out["broker_certificate_ends"] = utc_text(served.not_valid_after_utc)
            out["ending"] = [e.words for e in ending_soon(served, cert or "")]
        if publish and out["connect"] == "Success":
            c.publish(publish, payload, qos=1)
            acked.wait(timeout_s)
        if hold_s:
            threading.Event().wait(hold_s)
        out["still_connected"] = c.is_connected() and out["disconnects"] == 0
    finally:
        closing.set()
        c.disconnect()
        stop_network_thread(c)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tinycl fleet check", description=__doc__.splitlines()[0] + " (as a "
                                 "connected device, it takes over that device's session for a moment: its bridge "
                                 "reconnects by itself)")
    ap.add_argument("--broker-dir", required=True)
    ap.add_argument("--identity", required=True, help="device (or aggregator) name whose files are used")
    ap.add_argument("--host", default=None, help="broker host name (default: the broker_dir's)")
    ap.add_argument("--cert", default=None)
    ap.add_argument("--key", default=None)
    ap.add_argument("--client-id", default=None)
    ap.add_argument("--username", default=None)
    ap.add_argument("--password", default=None)
    ap.add_argument("--publish", default=None, help="topic to publish one QoS 1 probe on (not retained; "
                    "no head: the aggregator ignores it), proving the identity may write it")
    ap.add_argument("--hold", type=number(0), default=0.0, help="stay connected this many seconds")
    a = ap.parse_args(argv)
    try:
        st = BrokerSetup.load(a.broker_dir)
        cred = st.credentials(a.identity)
    except ValueError as exc:
        print(f"tinycl fleet check: error: {exc}", file=sys.stderr)
        return 2
    res = check(a.host or st.host, st.port, st.ca, a.cert or cred.certfile, a.key or cred.keyfile,
                a.username or cred.username, a.password or cred.password,
                a.client_id or f"tinycl-{st.fleet}-{a.identity}", a.publish, hold_s=a.hold)
    print(json.dumps(res), flush=True)
    for words in res.get("ending", []):
        print(f"tinycl fleet check: warning: {words}", file=sys.stderr)
    held = bool(res.get("still_connected")) and not res["disconnects"]       # another client took the client id
    ok = res["connect"] == "Success" and held and (a.publish is None or bool(res.get("published")))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
