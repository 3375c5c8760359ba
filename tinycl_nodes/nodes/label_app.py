"""label_app node: label requests → a phone-first web page; a person's tap → LabelAnswer.

Subscribes ``label_request`` (LabelRequest), ``label_status`` (the labeler's verdict on each
answer and each rename: the page shows an answer as learned only when the labeler says so, and
shows a refusal otherwise), ``label_closed`` (its verdicts on the questions closed lately: latched, for this app
started again), ``classes`` (the labeler's classes, names and counts: latched), ``labeled`` (when a
class was last seen) and ``predictions`` (the "what the robot knows" view); publishes ``label_answer``
(LabelAnswer; ``class_id`` −2 = skipped / not sure), ``label_correction`` (LabelAnswer for an answered
request: its new class, or −2 to withdraw it) and ``rename_class`` (LabelAnswer: the rename's own request id,
the class, its new name). All reliable.

Serves the page over HTTP + WebSocket (aiohttp, in its own thread) on ``host:port``; the default
``127.0.0.1`` keeps it on this machine. Bound to another address it serves HTTPS with a
certificate made at first start (kept in the state folder; its fingerprint is shown beside the QR
code) unless ``tls_cert``/``tls_key`` are given. The pairing secret is kept in the state folder
(``pairing.json``, 0600), so phones stay paired across restarts; the URL with the secret and its
QR code go to the terminal only (never to stdout or a log, which the launcher collects):
``tinycl pair`` shows them again at any time.

    python -m tinycl_nodes.nodes.label_app --ros-args -p port:=8080 -p state_dir:=state
"""

from __future__ import annotations

import json
import os
import re
import ssl
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from .. import steady_wall
from ..core.errors import InputError, TinyclError
from ..core.federated import MAX_CLASSES
from ..core.names import MAX_NAME_CHARS
from ..label_app.pairing import Pairing, app_url, is_loopback, qr_text
from ..images import picture_file
from ..label_app.server import LabelServer, PortTakenError
from ..label_app.store import MAX_ID, REPLY_S, Answer, AnswerError, Pending, RequestStore, deadline
from ..label_app.tls import ensure_certificate
from .diagnostics import Status
from .label_requests import NEW_CLASS, NO_CLASS, REQUEST_TTL_S
from .messages import stamp_ns
from .runner import Node, NodeParams, run_node, state_dir

MAX_REASON = 200
MAX_CLOSED_CHARS = 1 << 20   # label_closed: the labeler's last 200 verdicts are 20-60 KB

#: how to give the label app another port, whichever way it was started (it cannot tell ros2 launch from tinycl launch)
CHOOSE_PORT = ("choose another with port:=N (ros2 launch), --port N (tinycl launch) or -p port:=N (ros2 run); "
               "0: any free port")


def class_list(classes: Any, what: str) -> Any:
    """A message's ClassInfo list (a question's buttons, the class list), refused (InputError) when longer than a head's
    (MAX_CLASSES): it is kept, saved and sent to every page."""
    if len(classes) > MAX_CLASSES:
        raise InputError(f"{what}: {len(classes)} classes, at most {MAX_CLASSES}: dropped")
    return classes


class LabelAppParams(NodeParams):
    host: str = Field("127.0.0.1", description="bind address: 127.0.0.1 keeps the page on this machine; another "
                                               "address (0.0.0.0: every network) serves HTTPS")
    port: int = Field(8080, ge=0, le=65535, description="HTTP(S) port; 0: any free port (logged)")
    token: str | None = Field(None, description="pairing secret; None: the one kept in the state folder (made once)")
    tls_cert: str | None = Field(None, description="PEM certificate (chain) → HTTPS/WSS (default beyond 127.0.0.1: "
                                                   "one made at first start in the state folder)")
    plain_http: bool = Field(False, description="serve plain HTTP even when bound beyond 127.0.0.1 (not advised: "
                                                "the pairing secret travels in clear)")
    undo_s: float = Field(120.0, ge=0, le=86400, description="seconds an answer can be changed or withdrawn")
    reply_s: float = Field(REPLY_S, gt=0, le=3600, description="seconds the robot has to judge a change of an "
                                                               "answer or a rename: past them the phone is told "
                                                               "there was no word (a verdict later still counts)")
    tls_key: str | None = Field(None, description="the PEM private key of tls_cert")
    public_url: str | None = Field(None, description="base URL for the QR code (e.g. behind a NAT or a name)")
    request_ttl_s: float = Field(REQUEST_TTL_S, gt=0, description="a request not answered this long (seconds) after "
                                                                  "the labeler asked it leaves the page (set it as "
                                                                  "the labeler's)")
    state_dir: str | None = Field(None, description="pending requests (label_app.json), the pairing secret "
                                                    "(pairing.json) and the TLS certificate are kept here (default "
                                                    "$ROS_HOME/tinycl/<namespace>)")
    history_size: int = Field(20, ge=0, le=1000, description="recent answers kept in the page's history (0: none)")
    max_pending: int = Field(50, ge=1, le=10000, description="requests on the page at once; past that the oldest "
                                                             "is dropped")
    answered_by: str = Field("phone", min_length=1, max_length=MAX_NAME_CHARS,
                             description="LabelAnswer.answered_by: a name (a board's buffer holds one, no more)")
    qr: bool = Field(True, description="show the QR code of the pairing URL on the terminal (never in a log)")

    @field_validator("token")
    @classmethod
    def _token(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_\-.~]{8,128}", v):
            raise ValueError("token must be 8 to 128 URL-safe characters (letters, digits, - _ . ~)")
        return v

    @model_validator(mode="after")
    def _tls(self) -> LabelAppParams:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together (give both or neither)")
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: file not found: {path}")
        return self


class LabelApp(Node):
    Params = LabelAppParams

    def __init__(self, bus: Any, params: LabelAppParams) -> None:
        super().__init__(bus, params)
        self.LabelAnswer = bus.msg("LabelAnswer")
        self.Header = bus.msg("std_msgs/msg/Header")
        self.answer_pub = bus.create_publisher("label_answer", self.LabelAnswer, "reliable")
        self.correction_pub = bus.create_publisher("label_correction", self.LabelAnswer, "reliable")
        self.rename_pub = bus.create_publisher("rename_class", self.LabelAnswer, "reliable")
        self.store = RequestStore(params.request_ttl_s, params.history_size, params.max_pending, self.log,
                                  params.reply_s)
        folder = Path(state_dir(params.state_dir, bus.namespace))
        state_path = folder / "label_app.json"
        if words := steady_wall.unshared_words():
            self.log.warning("%s", words)
        n = self.store.load(state_path, steady_wall.now())
        if n or state_path.exists():
            self.log.info("restored %d pending label request(s) from %s", n, state_path)
        self.pairing = Pairing(folder, self.log, params.token)
        tls, fingerprint = None, ""
        cert, key = params.tls_cert, params.tls_key
        if cert is None and not is_loopback(params.host) and not params.plain_http:
            c, k, fingerprint = ensure_certificate(folder, [params.host], self.log)
            cert, key = str(c), str(k)
        if cert:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                tls.load_cert_chain(cert, key)
            except (ssl.SSLError, OSError) as exc:
                raise TinyclError(f"label_app: cannot load TLS certificate/key: {exc}") from None
            if not fingerprint:
                from ..label_app.tls import fingerprint as fp
                fingerprint = fp(Path(cert).read_bytes())
        elif not is_loopback(params.host):
            self.log.warning("label app on %s over plain HTTP (plain_http): the pairing secret travels in clear",
                             params.host)
        self.server = LabelServer(self.store, self.publish_answer, self.pairing, host=params.host, port=params.port,
                                  ssl_context=tls, state_path=state_path, answered_by=params.answered_by, log=self.log)
        self.server.undo_s = params.undo_s
        self.server.on_undo = self.publish_correction
        self.server.on_skip = self.publish_skip
        self.server.on_rename = self.publish_rename
        self.server.robot_online = lambda: self.answer_pub.get_subscription_count() > 0
        self.server.robot_takes_changes = lambda: self.correction_pub.get_subscription_count() > 0
        self.server.robot_says_verdicts = lambda: any(bus.count_publishers(t) for t in ("label_status", "label_closed"))
        try:
            self.server.start()
        except PortTakenError as exc:
            raise TinyclError(f"{exc}: {CHOOSE_PORT}") from None
        self.url = app_url(params.host, self.server.port, tls is not None, self.pairing.token, params.public_url)
        self.pairing.info = {"url": self.url, "fingerprint": fingerprint, "pid": os.getpid()}
        self.pairing.save()
        self.log.info("label app on %s://%s:%d%s; `tinycl pair --state-dir %s` shows the pairing QR code",
                      "https" if tls else "http", params.host, self.server.port,
                      f" (TLS fingerprint SHA-256 {fingerprint})" if fingerprint else "", folder)
        if params.qr:
            show_pairing(self.url, fingerprint)
        bus.create_subscription("label_request", "LabelRequest", self.on_request, "reliable")
        bus.create_subscription("label_status", "std_msgs/msg/String", self.on_status, "reliable")
        self._closed_seen: dict[str, tuple[Any, ...]] = {}
        bus.create_subscription("label_closed", "std_msgs/msg/String", self.on_closed, "latched")
        bus.create_subscription("labeled", "LabeledFeatures", self.on_labeled, "reliable")
        bus.create_subscription("predictions", "Prediction", self.on_prediction, "reliable")
        bus.create_subscription("classes", "ClassList", self.on_classes, "latched")

    # bus thread ---------------------------------------------------------------------------------------
    def on_request(self, msg: Any) -> None:
        """A LabelRequest: checked and converted here (image encoding off the server's loop), then handed over."""
        rid = str(msg.request_id)
        if not rid or len(rid) > MAX_ID or not rid.isprintable():
            raise InputError(f"label request id must be 1 to {MAX_ID} printable characters, got {rid[:40]!r}")
        picture, width, height = None, int(msg.picture.width), int(msg.picture.height)
        try:
            picture = picture_file(msg.picture)
        except InputError as exc:
            self.log.error("label request %s: picture dropped: %s", rid, exc)
        candidates = [{"id": int(c.id), "name": str(c.name)[:MAX_NAME_CHARS] or str(int(c.id)),
                       "sample_count": int(c.sample_count)} for c in class_list(msg.candidates, "candidates")]
        now = steady_wall.now()
        self.server.submit_request(Pending(rid, str(msg.reason)[:MAX_REASON], candidates, picture,
                                           width if picture else 0, height if picture else 0, now,
                                           deadline(stamp_ns(msg.header) / 1e9, self.bus.now_ns() / 1e9, now,
                                                    self.params.request_ttl_s)))

    def on_status(self, msg: Any) -> None:
        try:
            status = json.loads(str(msg.data)[:4096])
        except ValueError:
            raise InputError("label_status: not JSON") from None
        if not isinstance(status, dict):
            raise InputError("label_status: expected a JSON object")
        self.server.submit(self.server.on_status, status)

    def on_closed(self, msg: Any) -> None:
        """The labeler's verdicts on the questions closed lately (``label_closed``, latched: the list it had before
        this app started, then each change of it): each one new or changed since the last list goes the way a
        ``label_status`` goes, so a question answered or skipped elsewhere while this app was down leaves the pages."""
        text = str(msg.data)
        if len(text) > MAX_CLOSED_CHARS:
            raise InputError(f"label_closed: {len(text)} characters, more than the {MAX_CLOSED_CHARS} accepted")
        try:
            closed = json.loads(text).get("closed")
        except (ValueError, AttributeError):
            raise InputError("label_closed: not a JSON object") from None
        if not isinstance(closed, list) or not all(isinstance(v, dict) for v in closed):
            raise InputError("label_closed: expected {\"closed\": [verdict, ...]}")
        seen = {str(v.get("request_id", "")): tuple(sorted((k, str(x)) for k, x in v.items())) for v in closed}
        for v in closed:
            rid = str(v.get("request_id", ""))
            if self._closed_seen.get(rid) != seen[rid]:
                self.server.submit(self.server.on_status, v)
        self._closed_seen = seen

    def on_labeled(self, msg: Any) -> None:
        """A labelled sample: when its class was last seen (only that: the count is the labeler's, on ``classes``)."""
        if int(msg.label) >= 0:
            self.server.submit(self._observe, int(msg.label))

    def _observe(self, label: int) -> None:     # server loop
        self.store.observe(label, steady_wall.now())
        self.server.classes_soon()

    def on_classes(self, msg: Any) -> None:
        """The labeler's classes (latched: also the list it sent before this app started): what the pages list, and
        the names and counts on every question's buttons and in the history."""
        self.server.submit(self._classes, [(int(c.id), str(c.name)[:MAX_NAME_CHARS], int(c.sample_count))
                                           for c in class_list(msg.classes, "classes")])

    def _classes(self, classes: list[tuple[int, str, int]]) -> None:      # server loop
        if self.store.set_classes(classes):
            self.server.on_classes_changed()

    def on_prediction(self, msg: Any) -> None:
        """A prediction for the "what the robot knows" view; a confidence that is not a number from 0 to 1 is refused
        (a NaN went into the pages' JSON, which a browser cannot parse: new pages showed no question)."""
        confidence = float(msg.confidence)
        if not 0.0 <= confidence <= 1.0:
            raise InputError(f"prediction confidence {confidence:g}: must be from 0 to 1: dropped")
        self.server.submit(self._predicted, int(msg.sample_id), int(msg.class_id), str(msg.class_name)[:MAX_NAME_CHARS],
                           confidence)

    def _predicted(self, sample_id: int, class_id: int, name: str, confidence: float) -> None:   # server loop
        self.store.observe_prediction(sample_id, class_id, name, confidence, steady_wall.now())
        self.server.classes_soon()

    # server thread ------------------------------------------------------------------------------------
    def _send(self, pub: Any, request_id: str, class_id: int, name: str, by: str) -> None:
        if pub.get_subscription_count() < 1:
            raise AnswerError("the robot is unreachable (no labeler is listening): nothing was sent, try again")
        pub.publish(self.LabelAnswer(header=self.Header(stamp=self.bus.stamp(), frame_id=""), request_id=request_id,
                                     class_id=class_id, new_class_name=name, answered_by=by))

    def publish_answer(self, answer: Answer) -> None:
        self._send(self.answer_pub, answer.request_id, answer.class_id, answer.new_class_name, answer.answered_by)

    def publish_rename(self, rename_id: str, class_id: int, name: str) -> None:
        self._send(self.rename_pub, rename_id, class_id, name, self.params.answered_by)

    def publish_skip(self, request_id: str, why: str) -> None:
        said = f" ({why})"    # within a name's length: a board drops an answer whose answered_by its buffer cannot hold
        by = self.params.answered_by[:MAX_NAME_CHARS - len(said)] + said
        self._send(self.answer_pub, request_id, NO_CLASS, "", by)

    def publish_correction(self, old: Answer, new: Answer | None) -> None:
        if new is None:
            self._send(self.correction_pub, old.request_id, NO_CLASS, "", self.params.answered_by)
        else:
            self._send(self.correction_pub, old.request_id, new.class_id,
                       new.new_class_name if new.class_id == NEW_CLASS else "", self.params.answered_by)

    def status(self) -> Status:
        """Phones connected (pages open) and the questions they show."""
        return Status(values={"phones_connected": str(len(self.server.clients)),
                              "questions_shown": str(len(self.store.pending))})

    def close(self) -> None:
        self.server.stop()


def show_pairing(url: str, fingerprint: str = "") -> bool:
    """The pairing URL and its QR code on the controlling terminal (not stdout: the launcher logs stdout).

    Returns False when there is no terminal (then ``tinycl pair`` shows them).
    """
    text = (f"\nScan with the phone to answer the robot's questions:\n{qr_text(url)}\nlabel app: open {url}\n"
            + (f"TLS certificate fingerprint (SHA-256): {fingerprint}\n" if fingerprint else ""))
    try:
        with open("/dev/tty", "w", encoding="utf-8") as tty:
            tty.write(text)
        return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    return run_node(LabelApp, "label_app", argv)


if __name__ == "__main__":
    raise SystemExit(main())
