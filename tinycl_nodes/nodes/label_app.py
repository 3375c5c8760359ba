"""label_app node: label requests → a phone-first web page; a person's tap → LabelAnswer.

Subscribes ``label_request`` (LabelRequest, reliable), publishes ``label_answer`` (LabelAnswer,
reliable), and serves the page over HTTP + WebSocket (aiohttp, in its own thread) on
``host:port`` (default 0.0.0.0:8080: reachable from a phone on the robot's network). Access needs
the pairing token (``token``, else a random one), printed at start with a QR code of the URL.
TLS when ``tls_cert`` and ``tls_key`` are given. Pending requests expire after ``request_ttl_s``
and are saved in ``<state_dir>/label_app.json`` so they survive a restart.

    python -m tinycl_nodes.nodes.label_app --ros-args -p port:=8080 -p state_dir:=state
"""

from __future__ import annotations

import re
import ssl
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from ..core.errors import InputError, TinyclError
from ..label_app.pairing import app_url, new_token, qr_text
from ..label_app.picture import image_png
from ..label_app.server import LabelServer
from ..label_app.store import MAX_ID, Answer, AnswerError, Pending, RequestStore
from .runner import Node, NodeParams, run_node, state_dir

MAX_REASON = 200


class LabelAppParams(NodeParams):
    host: str = Field("0.0.0.0", description="bind address; 127.0.0.1 for this machine only")
    port: int = Field(8080, ge=0, le=65535, description="HTTP(S) port; 0: any free port (logged)")
    token: str | None = Field(None, description="pairing token; None: a fresh random one each start")
    tls_cert: str | None = Field(None, description="PEM certificate (chain) → HTTPS/WSS")
    tls_key: str | None = Field(None, description="the PEM private key of tls_cert")
    public_url: str | None = Field(None, description="base URL for the QR code (e.g. behind a NAT or a name)")
    request_ttl_s: float = Field(3600.0, gt=0, description="a request not answered in this time (seconds) leaves "
                                                           "the page")
    state_dir: str | None = Field(None, description="pending requests are saved here (label_app.json; default "
                                                    "$ROS_HOME/tinycl/<namespace>)")
    history_size: int = Field(20, ge=0, le=1000, description="recent answers kept in the page's history (0: none)")
    max_pending: int = Field(50, ge=1, le=10000, description="requests on the page at once; past that the oldest "
                                                             "is dropped")
    answered_by: str = Field("phone", description="LabelAnswer.answered_by")
    qr: bool = Field(True, description="print the QR code of the URL on stdout")

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
        self.store = RequestStore(params.request_ttl_s, params.history_size, params.max_pending, self.log)
        state_path = Path(state_dir(params.state_dir, bus.namespace)) / "label_app.json"
        n = self.store.load(state_path, time.time())
        if n or state_path.exists():
            self.log.info("restored %d pending label request(s) from %s", n, state_path)
        self.token = params.token or new_token()
        tls = None
        if params.tls_cert:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                tls.load_cert_chain(params.tls_cert, params.tls_key)
            except (ssl.SSLError, OSError) as exc:
                raise TinyclError(f"label_app: cannot load TLS certificate/key: {exc}") from None
        self.server = LabelServer(self.store, self.publish_answer, self.token, host=params.host, port=params.port,
                                  ssl_context=tls, state_path=state_path, answered_by=params.answered_by, log=self.log)
        self.server.start()
        self.url = app_url(params.host, self.server.port, tls is not None, self.token, params.public_url)
        # the token goes to the terminal (stdout), not into log files
        self.log.info("label app on %s://%s:%d (pairing token %s; the URL to open is printed on stdout)",
                      "https" if tls else "http", params.host, self.server.port,
                      "given" if params.token else "generated")
        qr = f"\nScan with the phone to label the robot's samples:\n{qr_text(self.url)}" if params.qr else ""
        print(f"{qr}\nlabel app: open {self.url}\n", file=sys.stdout, flush=True)
        bus.create_subscription("label_request", "LabelRequest", self.on_request, "reliable")

    # bus thread ---------------------------------------------------------------------------------------
    def on_request(self, msg: Any) -> None:
        """A LabelRequest: checked and converted here (PNG encoding off the server's loop), then handed over."""
        rid = str(msg.request_id)
        if not rid or len(rid) > MAX_ID or not rid.isprintable():
            raise InputError(f"label request id must be 1 to {MAX_ID} printable characters, got {rid[:40]!r}")
        png, width, height = None, int(msg.picture.width), int(msg.picture.height)
        try:
            png = image_png(msg.picture)
        except InputError as exc:
            self.log.error("label request %s: picture dropped: %s", rid, exc)
        candidates = [{"id": int(c.id), "name": str(c.name) or str(int(c.id)), "sample_count": int(c.sample_count)}
                      for c in msg.candidates]
        now = time.time()
        self.server.submit_request(Pending(rid, str(msg.reason)[:MAX_REASON], candidates, png,
                                           width if png else 0, height if png else 0, now,
                                           now + self.params.request_ttl_s))

    # server thread ------------------------------------------------------------------------------------
    def publish_answer(self, answer: Answer) -> None:
        if self.answer_pub.get_subscription_count() < 1:
            raise AnswerError("no labeler is listening on label_answer: nothing was sent, try again")
        self.answer_pub.publish(self.LabelAnswer(
            header=self.Header(stamp=self.bus.stamp(), frame_id=""), request_id=answer.request_id,
            class_id=answer.class_id, new_class_name=answer.new_class_name, answered_by=answer.answered_by))

    def close(self) -> None:
        self.server.stop()


def main(argv: list[str] | None = None) -> int:
    return run_node(LabelApp, "label_app", argv)


if __name__ == "__main__":
    raise SystemExit(main())
