"""One MQTT connection (paho-mqtt 2.x, MQTT 5) shared by the bridge and the aggregator.

- TLS with the fleet CA and a client certificate, plus username/password;
- persistent session: ``clean_start=False`` and a session expiry, so the broker keeps the
  subscriptions and queues QoS 1 messages while the client is away;
- automatic reconnect with exponential backoff (paho's loop thread, ``reconnect_delay_set``);
- "latest value" publishing: :meth:`MqttLink.offer` keeps the latest payload per topic; it is sent
  now if connected, else on the next connect; until the broker acknowledges it (PUBACK success) it
  is sent again after every reconnect, and a retained one after every reconnect anyway: a broker
  restarted on an older save (mosquitto killed between two autosaves) would otherwise go on handing
  out an older value. Older unsent payloads of a topic are superseded, never queued: a head is a
  cumulative snapshot, so the latest one loses nothing;
- a failed connection is one line naming its likely cause (:func:`connect_error`), and another client taking
  this identity's session (its bundle on two machines) one error line and a growing backoff.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..core.errors import TinyclError
from ..nodes.runner import NodeParams
from ..validation_words import error_words
from .broker import SERVED_ONCE_RELOADED, SYS_INTERVAL_S, UPTIME_TOPIC, end_words, renewal_due, utc_text
from .payload import FleetName

OnMessage = Callable[[str, bytes], None]

#: a connection lost this soon after it was made, reconnecting at once, is another client taking the session (plus
#: twice the current first delay: each side's backoff grows, so each connection lasts about the other's delay)
TAKEOVER_S = 5.0
#: a connection lasts weeks: how often its certificates' end is looked at again (``MqttLink.recheck_ending``)
ENDING_RECHECK_S = 3600.0
#: TLS alerts a broker sends when it refuses the client's certificate (after the handshake under TLS 1.3)
_CERT_ALERTS = ("UNKNOWN_CA", "CERTIFICATE_REVOKED", "BAD_CERTIFICATE", "CERTIFICATE_REQUIRED",
                "CERTIFICATE_UNKNOWN", "CERTIFICATE_EXPIRED", "UNSUPPORTED_CERTIFICATE")
#: how the TLS handshake ends with a listener that does not speak TLS: an answer that is no TLS record (ssl's words);
#: a plain MQTT listener resets the connection instead (it drops the ClientHello as a malformed packet)
_NOT_TLS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG")


#: what the broker's refusal of the client's certificate means (its TLS alert), and what to do, on which side
_ALERT_WORDS = {
    "CERTIFICATE_EXPIRED": "it has expired{when}: on the broker, `tinycl fleet setup` on its directory again (it "
                           "renews it), then copy this device's new bundle to this device",
    "CERTIFICATE_REVOKED": "it is revoked (the device was removed from the fleet, or its key rotated with --rotate: "
                           "copy its new bundle from the broker's bundles/ to this device)",
    "UNKNOWN_CA": "it is not signed by the fleet's CA (a bundle of another fleet, or of the CA before --new-ca: copy "
                  "this device's bundle from the broker's bundles/ again)",
}


#: TLS alerts a broker sends when the client's certificate is out of date by the broker's clock (OpenSSL: expired;
#: not yet valid, or its CRL not yet valid, is a bad certificate)
_DATE_ALERTS = ("CERTIFICATE_EXPIRED", "BAD_CERTIFICATE")


def _clock_now() -> str:
    """What this machine's clock says, as a person compares it with theirs."""
    return utc_text(dt.datetime.now(dt.timezone.utc))


def _local_cause(cert_file: str, ca_file: str, alert: str | None) -> str | None:
    """Which of ``_ALERT_WORDS`` this client's own files tell, or None: the broker's alert is not always read before
    the connection closes (then only 'EOF'), but an expired certificate, or one the bundle's CA did not sign, shows
    in the files themselves; one the CA signed, in date, can only be revoked, unless the broker's alert was about its
    dates (``_DATE_ALERTS``): then the broker's clock and this one disagree; with no alert read, either.
    ``' on <date>'`` of an expired one's end is filled into its words."""
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
        if cert.not_valid_after_utc < dt.datetime.now(dt.timezone.utc):
            end = cert.not_valid_after_utc
            return _ALERT_WORDS["CERTIFICATE_EXPIRED"].format(when=f" on {utc_text(end)} ({cert_file})")
        if ca_file:
            try:
                cert.verify_directly_issued_by(x509.load_pem_x509_certificate(Path(ca_file).read_bytes()))
            except (InvalidSignature, ValueError, TypeError):      # signed by another key, or another issuer
                return _ALERT_WORDS["UNKNOWN_CA"]
            dates = (f"valid {utc_text(cert.not_valid_before_utc)} to {utc_text(cert.not_valid_after_utc)}; this "
                     f"machine's clock says {_clock_now()}")
            if alert in _DATE_ALERTS:
                return (f"by its dates, though it is the fleet CA's and in date here ({dates}): is the broker's clock "
                        f"wrong? (on the broker: `timedatectl`, NTP synchronised)")
            if alert is None:       # closed before its alert was read: its CRL, or its dates by the broker's clock
                return (f"{_ALERT_WORDS['CERTIFICATE_REVOKED']}; or, as it is the fleet CA's and in date here "
                        f"({dates}), the broker's clock is wrong (on the broker: `timedatectl`, NTP synchronised)")
            return _ALERT_WORDS["CERTIFICATE_REVOKED"]       # the CA's own, in date: what is left is its CRL
    except (OSError, ValueError):
        return None
    return None


def connect_error(exc: BaseException | str, host: str, cert_file: str = "", ca_file: str = "") -> str:
    """Why a connection to the broker failed, in words naming the likely cause and where to act (one owner for the
    bridge, the aggregator and ``tinycl fleet check``). ``exc``: the exception, or (a str) how a connection that
    passed the TLS handshake ended before the broker's CONNACK: paho's log line, e.g. of a failed receive.
    ``cert_file``, ``ca_file``: this client's certificate and CA, read when the broker refused the certificate."""
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    text = text.removeprefix("failed to receive on socket: ")
    if isinstance(exc, socket.gaierror):
        return f"the host name {host!r} does not resolve ({exc.strerror}): a typo, or no DNS / hosts entry?"
    if isinstance(exc, ssl.SSLCertVerificationError):
        if "not yet valid" in str(exc.verify_message):     # a robot that booted at the time it last saved
            return (f"the broker's certificate is not valid yet by this machine's clock, which says "
                    f"{_clock_now()}: is it set? (`timedatectl`: NTP synchronised; a robot without a real-time clock "
                    f"starts at the time it last saved, or in 1970) [{exc.verify_message}]")
        if "expired" in str(exc.verify_message):
            return (f"the broker's certificate has expired (this machine's clock says {_clock_now()}): on the "
                    f"broker, `tinycl fleet setup` on its directory again (it renews it, keeping every identity; "
                    f"if the fleet's CA has ended, it says so: then --new-ca); {SERVED_ONCE_RELOADED} "
                    f"[{exc.verify_message}]")
        return (f"server certificate verify failed: {exc.verify_message}: is the CA file this fleet's (a bundle "
                f"from another fleet, or of the CA before --new-ca?) and {host!r} the broker's name?")
    alert = next((a for a in _CERT_ALERTS if a in text.upper()), None)
    refused = alert is not None or isinstance(exc, str)      # a str: closed without a word (its alert not read)
    if not refused:
        if isinstance(exc, ConnectionRefusedError):
            return "connection refused: is the broker running, on this port?"
        if isinstance(exc, ConnectionResetError) or (isinstance(exc, ssl.SSLError)
                                                      and any(w in text.upper() for w in _NOT_TLS)):
            return (f"the TLS handshake failed: not a TLS listener? (a plain MQTT port, or another service, on this "
                    f"port: is it the broker's TLS port?) [{text}]")
        return f"TLS: {text}" if isinstance(exc, ssl.SSLError) else text
    detail = text if alert is not None else f"it closed the connection before answering: {text}"
    local = _local_cause(cert_file, ca_file, alert) if cert_file else None
    if alert in _ALERT_WORDS and (alert != "CERTIFICATE_EXPIRED" or local is None):
        return f"the broker refused this device's certificate: {_ALERT_WORDS[alert].format(when='')} [{detail}]"
    if local is not None:
        return f"the broker refused this device's certificate: {local} [{detail}]"
    return f"the broker refused this device's certificate (revoked, or not signed by the fleet's CA?) [{detail}]"



class CertificateEnd(NamedTuple):
    """One certificate of a connection that ends soon or has ended: the words that say when and what to do, and
    whether it has ended (the connection goes on, TLS checks a certificate only at the handshake, but the next one is
    refused: /diagnostics says ERROR, not WARN)."""

    words: str
    ended: bool


def ending_soon(served: x509.Certificate | None, cert_file: str) -> list[CertificateEnd]:
    """The certificates of a connection that end soon (``broker.renewal_due``: the window in which set-up renews
    them) or have ended, each in words that say when and what to do: the one the broker serves (``served``, from the
    TLS handshake; mosquitto reads its certificate at its start and on SIGHUP, so a renewed one is served only then)
    and this device's own (``cert_file``). An unreadable file is left to connect_error."""
    now = dt.datetime.now(dt.timezone.utc)
    try:
        own = x509.load_pem_x509_certificate(Path(cert_file).read_bytes()) if cert_file else None
    except (OSError, ValueError):
        own = None
    renew = "on the broker, `tinycl fleet setup` on its directory again renews it (if not done yet), then"
    certs = [(served, "the broker's certificate", "every device refuses its next connection to the broker",
              f"the broker serves the renewed one: {SERVED_ONCE_RELOADED}"),
             (own, f"this device's certificate ({cert_file})", "the broker refuses this device's next connection",
              "copy this device's new bundle to this device")]
    ends = []
    for cert, whose, refused, then in certs:
        if cert is None or not renewal_due(cert, now):
            continue
        ended = cert.not_valid_after_utc <= now
        now_words = f"{refused} (this one goes on until it is lost); " if ended else ""
        ends.append(CertificateEnd(f"{whose} {end_words(cert.not_valid_after_utc, now)}: {now_words}{renew} {then}",
                                   ended))
    return ends


def served_certificate(client: mqtt.Client) -> x509.Certificate | None:
    """The certificate the broker presented on ``client``'s connection, None without TLS or a connection."""
    sock = client.socket()
    der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
    try:
        return x509.load_der_x509_certificate(der) if der else None
    except ValueError:
        return None


def stop_network_thread(client: mqtt.Client) -> None:
    """``client.loop_stop()``, without paho's race (eclipse-paho/paho.mqtt.python#872, paho 2.2.0): after a
    ``disconnect()`` the network thread ends by itself and unsets ``client._thread`` on its way out, which may fall
    between loop_stop's look at it and its join, an AttributeError. The thread is read once here and joined."""
    thread = client._thread  # paho's own attribute: the one thing loop_stop reads twice
    try:
        client.loop_stop()
    except AttributeError:  # the thread had unset itself: it is ending; the join below waits for its last steps
        pass
    if thread is not None and thread is not threading.current_thread():
        thread.join()


def tls_problem(ca_file: str | None, cert_file: str | None, key_file: str | None) -> str:
    """Which of a client's TLS files cannot be used (missing, or an empty, cut or foreign file), in words: ssl's own
    error ("[SSL] PEM lib", or a bare "[Errno 2] No such file or directory") names none."""
    for what, path in (("the CA certificate", ca_file), ("the certificate", cert_file), ("the key", key_file)):
        if path and not Path(path).is_file():
            return f"{what} {path} " + ("is not a file" if Path(path).exists() else "does not exist")
    try:
        ssl.create_default_context(cafile=ca_file or None)
    except (ssl.SSLError, OSError, ValueError):
        return f"the CA certificate {ca_file} cannot be loaded"
    if cert_file:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert_file, key_file or None)
        except (ssl.SSLError, OSError, ValueError):
            return f"the certificate {cert_file} and its key {key_file} cannot be loaded as a pair"
    return "its certificates cannot be loaded"

class MqttParams(BaseModel):
    """Connection parameters (pydantic; also the ``mqtt_*`` part of the node parameters)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = "127.0.0.1"
    port: int = Field(8883, ge=1, le=65535)
    tls: bool = True
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    username: str = ""
    password: str = ""
    password_file: str = ""          # read at start if set (first line), instead of password
    client_id: str = ""
    keepalive_s: int = Field(30, ge=5, le=3600)
    session_expiry_s: int = Field(86400, ge=0, le=2**32 - 1)
    reconnect_min_s: float = Field(0.5, gt=0, le=60)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _check(self) -> "MqttParams":
        if self.tls:
            for name in ("ca_file", "cert_file", "key_file"):
                value = getattr(self, name)
                if not value:
                    raise ValueError(f"{name} is required when tls is true")
                if not Path(value).is_file():
                    raise ValueError(f"{name}: file not found: {value}")
        if self.password_file and not Path(self.password_file).is_file():
            raise ValueError(f"password_file: file not found: {self.password_file}")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self

    def secret(self) -> str:
        if self.password_file:
            return Path(self.password_file).read_text().splitlines()[0].strip()
        return self.password


@dataclass
class _Pending:
    payload: bytes
    retain: bool
    mid: int | None = None
    acked: bool = False
    refused: bool = False


class MqttLink:
    """A paho client with the policies above; thread-safe ``offer``; callbacks in paho's thread."""

    def __init__(self, params: MqttParams, client_id: str, subscriptions: list[str], on_message: OnMessage | None,
                 logger: logging.Logger | None = None, qos: int = 1,
                 recheck_ending_s: float = ENDING_RECHECK_S) -> None:
        self.params = params
        self.recheck_ending_s = recheck_ending_s
        self.log = logger or logging.getLogger("tinycl.mqtt")
        self.qos = qos
        self.subscriptions = list(subscriptions)
        self.on_message = on_message
        self.connected = threading.Event()
        self.connects = 0
        self.last_error = ""
        self.ending: list[CertificateEnd] = []   # of the last connection: ending_soon's (said, and on /diagnostics)
        self._served: x509.Certificate | None = None    # the certificate the broker served on the last connection
        self._ending_at = 0.0        # when (monotonic) ``ending`` was last worked out
        self._failed_tries = 0       # connection attempts failed since the last connect (said once per outage)
        self._said = ""              # the reason said for this outage (said again if it changes)
        self._paho_error = ""        # paho's last error line (a refusal after the TLS handshake comes only there)
        self._lost_at: float | None = None
        self._connected_at = 0.0
        self._at_once = False        # the latest connect needed no failed attempt
        self._taken_over = 0         # connections lost in a row soon after being made (another client's takeover)
        self._first_delay = params.reconnect_min_s
        self._uptime: tuple[int, float] | None = None   # the broker's last uptime seen (s) and when (monotonic)
        self._uptime_new = False     # the next uptime is the first of this connection: did the broker restart?
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._mid_topic: dict[int, tuple[str, _Pending]] = {}
        self._early: dict[int, Any] = {}
        self._on_ack: Callable[[str, bytes], None] | None = None
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=params.client_id or client_id,
                        protocol=mqtt.MQTTv5)
        self._tls: ssl.SSLContext | None = None
        self._tls_files: tuple[tuple[int, int], ...] = ()
        if params.tls:
            try:
                self._tls = ssl.create_default_context(cafile=params.ca_file)     # CERT_REQUIRED, host name checked
                # Python 3.13 makes the default strict (RFC 5280): it refused every fleet's certificates, which have
                # no key identifiers (paho's tls_set, used before, never asked for strict either)
                self._tls.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
                self._tls.load_cert_chain(params.cert_file, params.key_file or None)
            except (ssl.SSLError, OSError, ValueError) as exc:      # "[SSL] PEM lib" named no file
                raise TinyclError(f"MQTT TLS: {tls_problem(params.ca_file, params.cert_file, params.key_file)} "
                                  f"({exc})") from None
            self._tls_files = self._tls_stamp()
            c.tls_set_context(self._tls)
        if params.username:
            c.username_pw_set(params.username, params.secret())
        c.reconnect_delay_set(params.reconnect_min_s, params.reconnect_max_s)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_connect_fail = self._on_connect_fail
        c.on_log = self._on_log
        self.client = c
        self._started = False

    # --- life cycle -----------------------------------------------------------------------------
    def start(self) -> "MqttLink":
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.params.session_expiry_s
        self.client.connect_async(self.params.host, self.params.port, self.params.keepalive_s, clean_start=False,
                                  properties=props)
        self.client.loop_start()
        self._started = True
        return self

    def stop(self) -> None:
        """Disconnect (the broker keeps the session for ``session_expiry_s``) and join paho's thread."""
        if not self._started:
            return
        self._started = False
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001 - already gone
            pass
        stop_network_thread(self.client)
        self.connected.clear()

    def wait_connected(self, timeout_s: float) -> bool:
        return self.connected.wait(timeout_s)

    # --- publishing the latest value per topic ---------------------------------------------------
    def offer(self, topic: str, payload: bytes, retain: bool = True) -> None:
        """Send ``payload`` on ``topic`` now if connected, else at the next connect (latest wins)."""
        p = _Pending(payload, retain)
        with self._lock:
            self._pending[topic] = p
        if self.connected.is_set():
            self._send(topic, p)

    def unacked(self) -> list[str]:
        """Topics whose latest payload the broker has not acknowledged yet."""
        with self._lock:
            return [t for t, p in self._pending.items() if not p.acked]

    # Locking: paho calls on_publish with its own mutex held, so ``self._lock`` is never held
    # while calling into paho (that order would deadlock); a PUBACK can then arrive before the
    # mid is registered: it is parked in ``_early`` and applied at registration.
    def _send(self, topic: str, p: _Pending) -> None:
        info = self.client.publish(topic, p.payload, qos=self.qos, retain=p.retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.log.warning("mqtt: publish on %s not sent now (%s), will retry on reconnect",
                             topic, mqtt.error_string(info.rc))
            return
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._mid_topic[info.mid] = (topic, p)
                return
        self._acked(topic, p, early)

    # --- paho callbacks (paho's thread) ---------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.last_error = str(reason)
            self.log.error("mqtt: broker %s:%d refused the connection: %s (retrying with backoff)",
                           self.params.host, self.params.port, reason)
            return
        self.connects += 1
        self.last_error = ""
        self._connected_at, self._at_once, self._said = time.monotonic(), self._failed_tries == 0, ""
        if self._taken_over >= 2:        # said once when the flapping started: each connect is a debug line
            self._failed_tries, self._lost_at = 0, None
            self.log.debug("mqtt: connected to %s:%d again", self.params.host, self.params.port)
            self._subscribe_and_send(client)
            return
        after = ""
        if self._lost_at is not None:
            after = f", {time.monotonic() - self._lost_at:.1f} s after the connection was lost"
        if self._failed_tries:
            after += f", after {self._failed_tries} failed attempt{'s' * (self._failed_tries > 1)}"
        self._failed_tries, self._lost_at = 0, None
        self.log.info("mqtt: connected to %s:%d (session present: %s%s)", self.params.host, self.params.port,
                      bool(getattr(flags, "session_present", False)), after)
        self._served, self.ending = served_certificate(client), []
        self._say_ending()                       # each connection says them all
        self._subscribe_and_send(client)

    def recheck_ending(self) -> None:
        """``ending`` worked out again if ``recheck_ending_s`` has passed, saying the words that are new (each day's
        count, each hour's in the last two days, and once a certificate has ended, error lines counting since): a
        connection opened before the renewal window would otherwise say nothing until it ends, nor that it has ended
        while it lasts. Called from the owner's timer (the bridge's period, the aggregator's tick)."""
        if self.connected.is_set() and time.monotonic() - self._ending_at >= self.recheck_ending_s:
            self._say_ending()

    def _say_ending(self) -> None:
        ends = ending_soon(self._served, self.params.cert_file)
        with self._lock:
            new, self.ending, self._ending_at = [e for e in ends if e not in self.ending], ends, time.monotonic()
        for e in new:
            self.log.log(logging.ERROR if e.ended else logging.WARNING, "mqtt: %s", e.words)

    def _subscribe_and_send(self, client: Any) -> None:
        for t in self.subscriptions:
            client.subscribe(t, qos=self.qos)
        self._uptime_new = True
        client.subscribe(UPTIME_TOPIC, qos=0)   # refused by a broker set up before this ACL line: no harm
        self.connected.set()
        with self._lock:   # retained: the broker may have lost it (restarted on an older autosave)
            todo = [(t, p) for t, p in self._pending.items() if not p.acked or (p.retain and not p.refused)]
        for topic, p in todo:
            self._send(topic, p)

    def _on_log(self, client: Any, userdata: Any, level: int, buf: str) -> None:
        if level == mqtt.MQTT_LOG_ERR and not self._paho_error:     # the first: later ones are its consequences
            self._paho_error = buf

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        # paho calls this inside its ``except OSError`` without passing the exception: it is the one being handled
        exc = sys.exc_info()[1]
        p = self.params
        self._failed(connect_error(exc, p.host, p.cert_file, p.ca_file) if exc is not None else "")

    def _tls_stamp(self) -> tuple[tuple[int, int], ...]:
        """The TLS files' modification times and sizes: how a bundle copied again is seen."""
        out = []
        for path in (self.params.ca_file, self.params.cert_file, self.params.key_file):
            try:
                st = os.stat(path)
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((0, 0))
        return tuple(out)

    def _take_new_tls_files(self) -> None:
        """After a failed or lost connection: the bundle's files again if they changed on disk, for the next attempt
        (a renewed certificate copied to a robot running for months was taken only at a restart, and an expired one
        kept failing). The CA file is added to those trusted (a new CA's broker is taken; the old CA stays trusted
        until a restart); a pair that does not load (copied half-way) leaves the old one in use, and is tried again
        at the next failure."""
        if self._tls is None or (stamp := self._tls_stamp()) == self._tls_files:
            return
        p = self.params
        try:        # a trial first: a pair that fails in the context in use leaves it with none (the old one lost)
            ssl.create_default_context(cafile=p.ca_file).load_cert_chain(p.cert_file, p.key_file or None)
            self._tls.load_cert_chain(p.cert_file, p.key_file or None)
            self._tls.load_verify_locations(cafile=p.ca_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            self.log.warning("mqtt: the TLS files changed but cannot be used yet: %s (%s)",
                             tls_problem(p.ca_file, p.cert_file, p.key_file), exc)
            return
        self._tls_files = stamp
        self.log.info("mqtt: the TLS files changed on disk (%s): the next connection uses them", p.cert_file)

    def _failed(self, reason: str) -> None:
        """One warning per outage, not one per attempt (a broker down for an hour would fill the log); again if the
        reason changes. The TLS files are read again if they changed (:meth:`_take_new_tls_files`)."""
        self._take_new_tls_files()
        self.last_error = reason or "connection failed"
        self._failed_tries += 1
        cause = reason.split(" [")[0]          # the details in brackets vary from one attempt to the next
        say = self.log.warning if self._failed_tries == 1 or cause != self._said else self.log.debug
        self._said = cause
        say("mqtt: cannot connect to %s:%d%s; retrying with backoff (%g s doubling to %g s between tries; one line "
            "again once connected)", self.params.host, self.params.port, f": {reason}" if reason else "",
            self.params.reconnect_min_s, self.params.reconnect_max_s)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if not self._started:
            return
        if not was:                      # refused after the TLS handshake (e.g. its certificate): no CONNACK
            err, self._paho_error = self._paho_error, ""
            self._failed(connect_error(err or f"paho: {reason}", self.params.host, self.params.cert_file,
                                        self.params.ca_file))
            return
        self._take_new_tls_files()
        now = time.monotonic()
        self._lost_at = now
        if self._at_once and now - self._connected_at < TAKEOVER_S + 2 * self._first_delay:
            self._taken_over += 1
        else:
            self._taken_over = 0
        if self._taken_over >= 2:        # the other client reconnects as fast: back off further each time
            self._first_delay = min(self._first_delay * 2, self.params.reconnect_max_s)
            client.reconnect_delay_set(self._first_delay, self.params.reconnect_max_s)
            if self._taken_over == 2:
                self.last_error = "session taken over"
                who = self.params.username or self.params.client_id or "this device"
                self.log.error("mqtt: another client with this device's identity took over the session on %s:%d "
                               "(the connection lost %.1f s after it was made, twice in a row): is %s's bundle on "
                               "two robots? Reconnecting with a growing backoff (now %g s)", self.params.host,
                               self.params.port, now - self._connected_at, who, self._first_delay)
            return
        if self._first_delay != self.params.reconnect_min_s:
            self._first_delay = self.params.reconnect_min_s
            client.reconnect_delay_set(self._first_delay, self.params.reconnect_max_s)
        self.log.warning("mqtt: lost the connection to %s:%d (paho: %s), reconnecting", self.params.host,
                         self.params.port, reason)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            entry = self._mid_topic.pop(mid, None)
            if entry is None:
                self._early[mid] = reason
                if len(self._early) > 1000:          # bounded: stale mids of superseded sends
                    self._early.pop(next(iter(self._early)))
                return
        self._acked(entry[0], entry[1], reason)

    def _acked(self, topic: str, p: _Pending, reason: Any) -> None:
        if reason is not None and getattr(reason, "is_failure", False):
            self.log.error("mqtt: broker refused publish on %s: %s", topic, reason)
            p.refused = True
        p.acked = True        # success, or refused (retrying a refused publish would not help)
        cb = self._on_ack
        if cb is not None and not getattr(reason, "is_failure", False):
            cb(topic, p.payload)

    def _on_uptime(self, payload: bytes) -> None:
        """The broker's uptime ("N seconds"). The first one of a connection that went back, or whose broker started
        later than the previous one's by more than its staleness, tells the connection lost before was the broker's
        restart: not counted as another client's takeover (two restarts a few seconds apart, each reconnected at once,
        said 'is robot1's bundle on two robots?' on every client, the aggregator too)."""
        try:
            up = int(payload.split()[0])
        except (ValueError, IndexError):
            return
        now, last = time.monotonic(), self._uptime
        self._uptime = (up, now)
        first, self._uptime_new = self._uptime_new, False
        if now - self._connected_at > TAKEOVER_S + 2 * self._first_delay:
            # only a young connection's loss can be taken for a takeover: one a second for good was 5 MB a day
            self.client.unsubscribe(UPTIME_TOPIC)
        if not first or last is None:
            return
        if up < last[0] or (now - up) - (last[1] - last[0]) > SYS_INTERVAL_S + 1.5:
            self.log.debug("mqtt: the broker restarted (uptime %d s, was %d s): not a takeover", up, last[0])
            self._taken_over = 0
            if self._first_delay != self.params.reconnect_min_s:
                self._first_delay = self.params.reconnect_min_s
                self.client.reconnect_delay_set(self._first_delay, self.params.reconnect_max_s)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.topic == UPTIME_TOPIC:
            self._on_uptime(bytes(msg.payload))
            return
        if self.on_message is None:
            return
        try:
            self.on_message(msg.topic, bytes(msg.payload))
        except Exception as exc:  # noqa: BLE001 - a bad message must not kill the link
            self.log.error("mqtt: message on %s dropped: %s: %s", msg.topic, type(exc).__name__,
                           str(exc).splitlines()[0] if str(exc) else "")


class MqttNodeParams(NodeParams):
    """What every fleet node (bridge, aggregator) needs to reach the broker.

    ``broker_dir`` (``tinycl fleet setup``'s directory or a bundle) fills in port, CA, certificate and password
    for the node's identity; explicit ``mqtt_*`` values override it.
    """

    fleet: FleetName = Field(description="the fleet's name: part of every MQTT topic (tinycl/<fleet>/...)")
    broker_dir: str = Field("", description="folder of `tinycl fleet setup` (or a device's bundles/<name>): port, CA, certificate and "
                                            "password of this node's identity (empty: none)")
    mqtt_host: str = Field("", description="MQTT broker host name (verified against its certificate; empty: "
                                           "broker_dir's host, else 127.0.0.1)")
    mqtt_port: int | None = Field(None, ge=1, le=65535, description="MQTT broker port (None: broker_dir's, else "
                                                                    "8883)")
    mqtt_tls: bool = Field(True, description="TLS with the fleet CA and a client certificate (CA, certificate and "
                                             "key files required)")
    mqtt_ca_file: str = Field("", description="fleet CA certificate, PEM (empty: broker_dir's)")
    mqtt_cert_file: str = Field("", description="client certificate, PEM (empty: broker_dir's)")
    mqtt_key_file: str = Field("", description="client private key, PEM (empty: broker_dir's)")
    mqtt_username: str = Field("", description="MQTT username (empty: the node's identity)")
    mqtt_password: str = Field("", description="MQTT password (empty: broker_dir's, else none)")
    mqtt_password_file: str = Field("", description="read at start if set (first line), instead of mqtt_password")
    mqtt_session_expiry_s: int = Field(86400, ge=0, le=2**32 - 1,
                                       description="MQTT 5 session expiry: how long (seconds) the broker keeps the "
                                                   "subscriptions and QoS 1 messages while the node is away")
    mqtt_reconnect_min_s: float = Field(0.5, gt=0, le=60,
                                        description="first delay (seconds) of the reconnect backoff")
    mqtt_reconnect_max_s: float = Field(30.0, gt=0, le=3600,
                                        description="longest delay (seconds) of the reconnect backoff")
    mqtt_keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive interval (seconds)")



def mqtt_params(p: "MqttNodeParams", identity: str) -> MqttParams:
    """The connection parameters of a node: ``broker_dir`` defaults, then explicit ``mqtt_*`` values."""
    values: dict[str, Any] = {"username": identity}
    if p.broker_dir:
        from .broker import BrokerSetup
        try:
            setup = BrokerSetup.load(p.broker_dir)
            cred = setup.credentials(identity)
        except ValueError as exc:
            raise TinyclError(f"broker_dir {p.broker_dir}: no usable credentials for {identity!r} ({exc})") from None
        if setup.fleet != p.fleet:   # else it runs on, and a second aggregator takes over the real one's session
            raise TinyclError(f"broker_dir {p.broker_dir} is fleet {setup.fleet!r}, not {p.fleet!r}")
        values.update(host=setup.host, port=setup.port, ca_file=setup.ca, cert_file=cred.certfile, key_file=cred.keyfile,
                      password=cred.password)
    for field in ("host", "port", "tls", "ca_file", "cert_file", "key_file", "username", "password",
                  "password_file", "session_expiry_s", "reconnect_min_s", "reconnect_max_s", "keepalive_s"):
        v = getattr(p, f"mqtt_{field}")
        default = type(p).model_fields[f"mqtt_{field}"].default
        if v is not None and (v != default or field not in values):
            values[field] = v
    if not values.get("host"):
        values["host"] = "127.0.0.1"
    values["client_id"] = f"tinycl-{p.fleet}-{identity}"  # the broker replaces it by the certificate's name
    try:
        return MqttParams(**values)
    except ValidationError as exc:
        lines = [f"parameter mqtt_{loc}: {msg}" if loc else f"mqtt parameters: {msg}"
                 for loc, msg in map(error_words, exc.errors())]
        raise TinyclError("\n".join(lines)) from None

