"""The app's HTTP + WebSocket server: aiohttp in a thread of its own, with its own event loop.

Thread model: the bus spins in the node's main thread; its callbacks hand new requests to the
loop with ``loop.call_soon_threadsafe`` (:meth:`LabelServer.submit_request`). Everything that
touches the store (requests, answers, expiry, saving) runs in the loop thread, so two phones
answering the same request cannot both send. Answers are published from the loop thread by the
``publish`` callable the node gives (DDS writers are thread-safe).

Access: every HTTP request and the WebSocket handshake need pairing: opening the page with
``?token=<secret>`` (the QR code's URL) pairs the phone (it gets a cookie of its own, then a redirect
to a clean URL); later requests carry that cookie (revocable per phone), or the secret in an
``X-Tinycl-Token`` header, ``Authorization: Bearer`` or ``?token=`` on any other path (a script:
allowed, and no phone is paired for it). Wrong, missing, revoked or non-ASCII → 403 and no WebSocket. Malformed
bodies (not JSON, nested too deep, an unknown charset) → 400 with one line, never a 500.

WebSocket messages (JSON). Server → page: ``snapshot`` {pending, history, classes, predictions,
robot}, ``request`` {request}, ``remove`` {id, why: answered|expired|dropped|skipped}, ``answered``
{item} (again when the labeler's ``label_status`` says learned / refused), ``ok`` {request_id,
class_name}, ``error`` {message, request_id?}, ``pong`` (to a ping), ``classes`` {classes, predictions}, ``robot``
{online}, ``rename`` {request_id, class_id, name, status: renamed|refused|unanswered, message} (the
labeler's verdict on a rename, or its silence). Page → server: ``{"type": "answer", "request_id": ...,
"class_id": 3}`` or ``{..., "new_class_name": "cat"}``; ``{"type": "skip", "request_id": ..., "why":
"skip"|"unsure"}``; ``{"type": "undo", "request_id": ..., "class_id"?, "new_class_name"?}`` (no class:
withdraw); ``{"type": "rename", "class_id": 3, "name": "mug"}``; ``{"type": "ping"}``.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError

from .. import steady_wall
from ..core.errors import TinyclError
from ..images import picture_type
from ..ports import port_holder
from .page import MANIFEST, PAGE, PUBLIC, icon_png
from .pairing import Pairing
from .store import MAX_ID, Answer, AnswerError, Pending, RequestStore, history_item

COOKIE = "tinycl_phone"
MAX_JSON_DEPTH = 32
DEVICE = web.RequestKey("device", str)
MAX_WS_TEXT = 4096          # an answer is ~100 bytes; more is malformed
UNREACHABLE = "the robot is unreachable: nothing was sent, try again when it is back"
CHANGES_SETTLE_S = 2.0      # a robot online this long has its readers and writers matched: does it read
                            # label_correction, write label_status?
RESEND_AFTER_S = 5.0        # a request answered longer ago than this and asked again: the answer is re-sent
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
                                "script-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
FORBIDDEN = ("<!doctype html><meta name=viewport content='width=device-width,initial-scale=1'>"
             "<title>403 · tinycl</title><body style='font:18px system-ui;margin:2em'>"
             "<h1>403 — not paired</h1><p>Wrong or missing pairing token. Scan the QR code printed "
             "in the robot's terminal by the <code>label_app</code> node.</p>")



class _ClientErrorsInOneLine(logging.Filter):
    """aiohttp's own log of a request it could not parse (a 10 KB URL or header, a control character in one) or of a
    client gone mid-body: one line, not a traceback an unpaired client can write as often as it likes. An error of
    ours still comes with its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (HttpProcessingError, ConnectionResetError)):
            record.msg, record.args = f"{record.getMessage()}: {type(exc).__name__}: {str(exc)[:160]!r}", ()
            record.exc_info, record.exc_text = None, None
        return True


def _logged_path(request: web.Request) -> str:
    """A request's path as the log shows it: escaped, so that a client cannot write a line of its own into the log
    (``/x%0a[ERROR] …`` did), and cut at 200 characters. (Never its query: the pairing token is there.)"""
    return request.path[:200].encode("unicode_escape").decode("ascii")


class _ConnectionCaps:
    """Connections open per client address and in all, counted from the TCP accept, before any TLS handshake (so a
    socket that never starts one counts): one past a cap is refused. A refusal is said once a minute at most per
    address (and for the total), with how many were refused meanwhile: an attacker must not write the log.
    Used from the server's loop thread only."""

    SAY_EVERY_S = 60.0

    def __init__(self, per_peer: int, total: int, log: logging.Logger) -> None:
        self.per_peer, self.total, self.log = per_peer, total, log
        self.open: dict[str, int] = {}
        self.count = 0
        self._said: dict[str, tuple[float, int]] = {}      # address, or "" for the total → (said at, refused since)

    def admit(self, peer: str) -> bool:
        held = self.open.get(peer, 0)
        if held >= self.per_peer:
            self._refused(peer, f"label app: {peer} holds {held} connections (the cap): closing its new ones")
            return False
        if self.count >= self.total:
            self._refused("", f"label app: {self.count} connections open (the cap for all clients): closing new ones")
            return False
        self.open[peer] = held + 1
        self.count += 1
        return True

    def release(self, peer: str) -> None:
        held = self.open.pop(peer, 0) - 1
        if held > 0:
            self.open[peer] = held
        self.count -= 1

    def _refused(self, key: str, line: str) -> None:
        now = time.monotonic()
        said, since = self._said.get(key, (-self.SAY_EVERY_S, 0))
        if now - said < self.SAY_EVERY_S:
            self._said[key] = (said, since + 1)
            return
        self._said = {k: v for k, v in self._said.items() if now - v[0] < self.SAY_EVERY_S}   # the quiet ones go
        self._said[key] = (now, 0)
        self.log.warning("%s%s", line, f" ({since} more refused since the last such line)" if since else "")


_RESET = struct.pack("ii", 1, 0)    # SO_LINGER on, 0 s: close() sends a reset and keeps no TIME_WAIT


class _PeerSocket(socket.socket):
    """An accepted connection that gives its place back when it is closed, however its connection ended (the client,
    a TLS handshake timed out, aiohttp): asyncio closes the socket itself in every case."""

    __slots__ = ("_release",)

    def __init__(self, listener: socket.socket, fd: int, release: Callable[[], None]) -> None:
        super().__init__(listener.family, listener.type, listener.proto, fileno=fd)
        self._release: Callable[[], None] | None = release

    def close(self) -> None:
        release, self._release = getattr(self, "_release", None), None
        super().close()
        if release is not None:
            release()

    def __del__(self) -> None:
        """One dropped without a close (an error making its transport) gives its place back too."""
        self.close()


class _CappedListener(socket.socket):
    """A listening socket whose accept() keeps to the caps. asyncio's server calls it for each new connection before
    reading anything from it (a TLS handshake): the one place where the peer's address is known that early."""

    __slots__ = ("caps",)
    REFUSE_AT_ONCE = 128        # then the loop's other work comes first; the rest wait for its next turn

    def __init__(self, plain: socket.socket, caps: _ConnectionCaps) -> None:
        super().__init__(plain.family, plain.type, plain.proto, fileno=plain.detach())
        self.caps = caps

    def accept(self) -> tuple[socket.socket, Any]:
        """The next connection within the caps; one past them is reset at once (BlockingIOError: none waiting)."""
        for _ in range(self.REFUSE_AT_ONCE):
            fd, addr = self._accept()
            peer = str(addr[0])
            if self.caps.admit(peer):
                return _PeerSocket(self, fd, functools.partial(self.caps.release, peer)), addr
            refused = socket.socket(self.family, self.type, self.proto, fileno=fd)
            refused.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            refused.close()
        raise BlockingIOError(errno.EAGAIN, "connections past the caps refused; the rest at the loop's next turn")


def _listen(host: str, port: int, caps: _ConnectionCaps, backlog: int = 128) -> list[_CappedListener]:
    """Every address ``host`` names, bound and listening as asyncio's create_server binds them (SO_REUSEADDR, an IPv6
    socket for IPv6 only; a family this machine has no sockets of, IPv6 switched off, is skipped, as there), each a
    _CappedListener."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    bound: list[_CappedListener] = []
    try:
        for family, sockaddr in dict.fromkeys((info[0], info[4]) for info in infos):
            try:
                sock = socket.create_server(sockaddr, family=family, backlog=backlog)
            except OSError as exc:
                if exc.errno != errno.EAFNOSUPPORT:
                    raise
                continue
            bound.append(_CappedListener(sock, caps))
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    if not bound:
        raise OSError(errno.EAFNOSUPPORT, f"no address family of {host or 'any address'!r} is supported here")
    return bound


class _CappedSite(web.SockSite):
    """aiohttp's SockSite with a TLS handshake timeout: its start passes none to create_server (asyncio's default,
    60 s, then holds a socket that never starts one), nor does TCPSite's."""

    __slots__ = ("_handshake_s",)

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, ssl_context: ssl.SSLContext | None,
                 handshake_s: float) -> None:
        super().__init__(runner, sock, ssl_context=ssl_context)
        self._handshake_s = handshake_s

    async def start(self) -> None:
        await web.BaseSite.start(self)      # registers the site with its runner
        assert self._runner.server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._runner.server, sock=self._sock, ssl=self._ssl_context, backlog=self._backlog,
            ssl_handshake_timeout=self._handshake_s if self._ssl_context else None)


class PortTakenError(TinyclError):
    """The port the server was to bind is another program's (or another label app's): the node says how to choose
    another, as only it knows how it was started."""


class LabelServer:
    """Serve ``store`` to phones; ``publish(answer)`` sends an answer (raises AnswerError if it cannot)."""

    def __init__(self, store: RequestStore, publish: Callable[[Answer], None], token: str | Pairing, *,
                 host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None,
                 state_path: Path | None = None, answered_by: str = "phone",
                 log: logging.Logger | None = None, tick_s: float = 0.5) -> None:
        self.store, self.publish = store, publish
        self.pairing = token if isinstance(token, Pairing) else Pairing(None, log, token=token)
        self.undo_s = 120.0
        self.on_undo: Callable[[Answer, Answer | None], None] | None = None
        self.on_skip: Callable[[str, str], None] | None = None
        self.on_rename: Callable[[str, int, str], None] | None = None   # (rename id, class id, name)
        self.robot_online: Callable[[], bool] = lambda: True
        #: the robot reads ``label_correction`` (a board's latent app does not): else Change answer and Withdraw are off
        self.robot_takes_changes: Callable[[], bool] = lambda: True
        #: the robot writes ``label_status`` (a board on a library built for fewer publishers does not): else its
        #: answers say that no verdict will come, rather than wait for one
        self.robot_says_verdicts: Callable[[], bool] = lambda: True
        self.classes_every_s = 1.0          # a class seen, a prediction: the pages hear of them at most this often
        self._classes_due: asyncio.TimerHandle | None = None
        self._online = True
        self._online_since = time.monotonic()   # when the labeler was last seen coming online (or this app started)
        self._changes = True                # the robot takes changes of answers (as last seen while online)
        self._verdicts = True               # the robot says its verdicts on label_status (likewise)
        self._reached = False               # the labeler was seen listening since this app started
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.state_path, self.answered_by = state_path, answered_by
        self.log = log or logging.getLogger("tinycl.label_app")
        self.tick_s = tick_s
        self.clients: set[web.WebSocketResponse] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping = asyncio.Event()    # set by stop(), in the server's loop
        self._error: BaseException | None = None

    # life cycle (called from the node's thread) --------------------------------------------------
    def start(self, timeout_s: float = 15.0) -> None:
        """Bind and serve in a background thread; TinyclError if the address cannot be bound."""
        self._thread = threading.Thread(target=self._main, name="label_app-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TinyclError(f"label app: server did not start within {timeout_s:.0f} s")
        if isinstance(self._error, OSError) and self._error.errno == errno.EADDRINUSE:
            holder = port_holder(self.port)
            raise PortTakenError(f"label app: port {self.port} on {self.host} is taken"
                                 + (f" by {holder}" if holder else " (by another program)"))
        if self._error is not None:
            raise TinyclError(f"label app: cannot serve on {self.host}:{self.port}: {self._error}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close the page connections, stop serving, save the pending requests."""
        loop, thread = self.loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(self._stopping.set)
            thread.join(timeout_s)

    def submit_request(self, req: Pending) -> None:
        """Thread-safe: hand a request from the bus thread to the server's loop."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._on_request, req)
            except RuntimeError:  # loop closed meanwhile (shutting down)
                pass

    def _main(self) -> None:
        # asyncio.Runner closes as asyncio.run does: the tasks still pending after the shutdown (a connection's handler
        # lingering on a body it did not read) are cancelled and awaited, not left for the garbage collector to log
        # "Task was destroyed but it is pending!" at some later moment, in whatever else the process then does
        with asyncio.Runner() as runner:
            self.loop = runner.get_loop()
            try:
                runner.run(self._serve())
            except BaseException as exc:  # noqa: BLE001 - reported by start()
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            runner.run(self._until_stopped())

    async def _until_stopped(self) -> None:
        ticker = asyncio.create_task(self._tick())
        try:
            await self._stopping.wait()
        finally:
            ticker.cancel()
            await self._shutdown()

    #: a connection with no whole request (nothing sent, or a header trickled line by line) is closed after this
    #: long, as is a keep-alive one left idle: aiohttp 3.14's default, an hour, held every such socket a client opened
    #: (three for 130 s in the audit, and on). A page's WebSocket is a request in progress, never closed by it.
    IDLE_CLOSE_S = 30.0
    #: how long a request's body (64 KB at most: an answer, a revoke) may take to come in
    BODY_READ_S = 10.0
    #: connections one client address may hold at once, counted from the TCP accept (so half-open ones count); one
    #: more is closed at once. A phone's browser opens up to 6 HTTP/1.1 connections and the WebSocket, and as many
    #: again on a reload or in a second tab while the old ones idle out (IDLE_CLOSE_S); phones behind one NAT share it.
    MAX_CONNECTIONS_PER_PEER = 32
    #: connections from all addresses at once: a quarter of the usual 1024 file descriptors, so that many addresses
    #: cannot take the ones the node needs (its state, its journal, DDS)
    MAX_CONNECTIONS = 256
    #: a TLS handshake not done in this long closes its connection (asyncio's default, 60 s, let a socket that never
    #: starts one hold its place in the caps)
    TLS_HANDSHAKE_S = 10.0

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._auth], client_max_size=64 * 1024)
        app.router.add_get("/", self._page)
        app.router.add_get("/manifest.webmanifest", self._manifest)
        app.router.add_get("/icon-192.png", self._icon)
        app.router.add_get("/icon-512.png", self._icon)
        app.router.add_get("/api/phones", self._phones)
        app.router.add_post("/api/revoke", self._revoke)
        app.router.add_get("/image", self._image)
        app.router.add_get("/api/state", self._state)
        app.router.add_post("/api/answer", self._answer_http)
        app.router.add_get("/ws", self._ws)
        server_log = logging.getLogger("aiohttp.server")
        if not any(isinstance(f, _ClientErrorsInOneLine) for f in server_log.filters):
            server_log.addFilter(_ClientErrorsInOneLine())
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
                                     keepalive_timeout=self.IDLE_CLOSE_S)
        await self._runner.setup()
        caps = _ConnectionCaps(self.MAX_CONNECTIONS_PER_PEER, self.MAX_CONNECTIONS, self.log)
        for sock in _listen(self.host, self.port, caps):
            await _CappedSite(self._runner, sock, self.ssl_context, self.TLS_HANDSHAKE_S).start()
        for addr in self._runner.addresses:
            if isinstance(addr, tuple):
                self.port = int(addr[1])
                break

    async def _shutdown(self) -> None:
        for ws in list(self.clients):
            try:
                await ws.close(code=1001, message=b"label app stopping")
            except Exception as exc:  # noqa: BLE001 - best effort on the way out
                self.log.debug("closing a page connection: %s", exc)
        if self._runner is not None:
            await self._runner.cleanup()
        self._save()
        try:
            self.pairing.save_used(now=True)
        except OSError as exc:
            self.log.error("cannot save the phones' last use to %s: %s", self.pairing.path, exc)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                for rid in self.store.expire(steady_wall.now()):
                    self.log.info("request %s expired unanswered", rid)
                    await self._broadcast({"type": "remove", "id": rid, "why": "expired"})
                for rename in self.store.unanswered_renames(steady_wall.now()):
                    self.log.warning("rename %s: no answer from the labeler in %g s", rename.request_id,
                                     self.store.reply_s)
                    await self._broadcast(rename.public())
                for a in self.store.unanswered_changes(steady_wall.now()):
                    self.log.warning("request %s: no verdict from the labeler in %g s: %s", a.request_id,
                                     self.store.reply_s, a.message)
                    await self._broadcast({"type": "answered", "item": history_item(a)})
                if self.pairing.load():     # changed on disk (`tinycl pair --revoke`): drop unpaired phones
                    for ws in list(self.clients):
                        dev = ws_device.get(id(ws))
                        if dev is not None and dev not in self.pairing.devices:
                            await ws.close(code=4403, message=b"this phone was unpaired")
                self.pairing.save_used()
                self._look_at_robot()
                self._save()
            except Exception as exc:  # noqa: BLE001 - the server keeps running
                self.log.error("label app: %s: %s", type(exc).__name__, exc)

    def _save(self) -> None:
        if self.state_path is not None and self.store.dirty:
            try:
                self.store.save(self.state_path)
            except OSError as exc:
                self.log.error("cannot save pending requests to %s: %s", self.state_path, exc)

    # requests from the bus (loop thread) -----------------------------------------------------------
    def _on_request(self, req: Pending) -> None:
        what, dropped = self.store.add(req)
        if what == "answered":
            answer = self.store.answered[req.request_id]
            if answer.status == "withdrawn":    # it was re-sent as an answer: learned after the person took it back
                self.log.info("request %s asked again: its answer was withdrawn, nothing is sent", req.request_id)
                return
            if steady_wall.now() - answer.answered_s < RESEND_AFTER_S:
                return              # crossed our answer on the way (a re-send to a new reader): not lost
            try:
                self.publish(answer)
                self.log.info("request %s asked again: answer re-sent (%s)", req.request_id, answer.class_name)
            except AnswerError as exc:
                self.log.warning("request %s asked again, answer not re-sent: %s", req.request_id, exc)
            return
        if what == "same":          # asked again (e.g. re-sent to a new reader): nothing to show
            return
        if what == "expired":
            self.log.info("request %s asked again past its deadline: not shown", req.request_id)
            return
        if what == "new":
            self.log.info("request %s pending (%s, %d candidates)", req.request_id, req.reason or "no reason",
                          len(req.candidates))
        if self.store.take_counts(req.candidates):      # the pages' list first: it counts as the buttons do
            self.on_classes_changed()
        for rid in dropped:
            self.log.warning("too many pending requests: dropped the oldest, %s", rid)
        self._spawn(self._broadcast({"type": "request", "request": req.public(steady_wall.now())}))
        for rid in dropped:
            self._spawn(self._broadcast({"type": "remove", "id": rid, "why": "dropped"}))

    def _spawn(self, coro: Any) -> None:
        assert self.loop is not None
        self.loop.create_task(coro)

    async def _broadcast(self, message: dict[str, Any]) -> None:
        data = json.dumps(message)
        for ws in list(self.clients):
            if ws.closed:
                self.clients.discard(ws)
                continue
            try:
                await ws.send_str(data)
            except (ConnectionError, RuntimeError):
                self.clients.discard(ws)

    # access ------------------------------------------------------------------------------------------
    def _phone(self, request: web.Request) -> tuple[bool, str | None, bool]:
        """(allowed, device id, pairing now) from the query token, a header or the phone's cookie. Only the
        page itself pairs (GET /?token=…, the QR code's URL): a script's call with the token pairs nothing."""
        query = request.query.get("token")
        if query is not None:
            ok = self.pairing.token_ok(query)
            held = self.pairing.device_of(request.cookies.get(COOKIE))
            if ok and held is not None:     # the QR code opened again on a paired phone: the same phone, not one more
                self.pairing.seen(held)
                return True, held, request.method == "GET" and request.path == "/"
            return ok, None, ok and request.method == "GET" and request.path == "/"
        auth = request.headers.get("Authorization", "")
        header = request.headers.get("X-Tinycl-Token") or (auth[7:] if auth.startswith("Bearer ") else None)
        if header is not None:
            return self.pairing.token_ok(header), None, False
        device = self.pairing.device_of(request.cookies.get(COOKIE))
        if device is not None:
            self.pairing.seen(device)
        return device is not None, device, False

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path in PUBLIC:            # the manifest and icons carry no data (installable app)
            return await handler(request)
        try:
            allowed, device, pairing = self._phone(request)
        except (UnicodeError, ValueError) as exc:      # undecodable header or cookie
            self.log.warning("refused %s %s from %s: unreadable credentials (%s)", request.method,
                             _logged_path(request), request.remote, type(exc).__name__)
            allowed, device, pairing = False, None, False
        if not allowed:
            self.log.warning("refused %s %s from %s: not paired", request.method, _logged_path(request),
                             request.remote)
            return web.Response(status=403, text=FORBIDDEN, content_type="text/html", headers=SECURITY_HEADERS)
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            self.log.warning("refused %s %s: cross-origin request from %s", request.method, _logged_path(request),
                             origin[:80].encode("ascii", "replace").decode())
            return web.Response(status=403, text="cross-origin request refused", headers=SECURITY_HEADERS)
        request[DEVICE] = device
        if pairing:
            resp = web.Response(status=303, headers={"Location": "/", **SECURITY_HEADERS})  # token out of the URL
            if device is None:
                cookie = self.pairing.pair(request.headers.get("User-Agent", ""))
                self.log.info("a phone was paired (%s)", cookie.split(".")[0])
            else:               # a paired phone scanning again: its cookie again, for another year
                cookie = request.cookies[COOKIE]
            self._set_cookie(resp, cookie)
            return resp
        return await handler(request)

    def _set_cookie(self, resp: web.StreamResponse, value: str) -> None:
        resp.set_cookie(COOKIE, value, httponly=True, samesite="Strict", secure=self.ssl_context is not None,
                        max_age=365 * 24 * 3600, path="/")

    # HTTP --------------------------------------------------------------------------------------------
    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html", headers=SECURITY_HEADERS)

    async def _manifest(self, request: web.Request) -> web.Response:
        return web.Response(text=MANIFEST, content_type="application/manifest+json", headers=SECURITY_HEADERS)

    async def _icon(self, request: web.Request) -> web.Response:
        size = 512 if "512" in request.path else 192
        return web.Response(body=icon_png(size), content_type="image/png", headers=SECURITY_HEADERS)

    async def _image(self, request: web.Request) -> web.Response:
        rid = request.query.get("id", "")
        req = self.store.pending.get(rid)
        picture = req.picture if req is not None else (self.store.answered[rid].picture if rid in self.store.answered
                                                       else None)
        if picture is None:
            return web.Response(status=404, text="no such picture", headers=SECURITY_HEADERS)
        return web.Response(body=picture, content_type=picture_type(picture), headers=SECURITY_HEADERS)

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self._snapshot(), headers=SECURITY_HEADERS)

    async def _phones(self, request: web.Request) -> web.Response:
        return web.json_response({"phones": self.pairing.public(), "this": request.get(DEVICE)},
                                 headers=SECURITY_HEADERS)

    async def _revoke(self, request: web.Request) -> web.Response:
        payload, err = await self._json_body(request)
        if err is not None:
            return err
        device = payload.get("id") if isinstance(payload, dict) else None
        if not isinstance(device, str):        # a 404 "no such paired phone" said nothing of the form
            return web.json_response({"type": "error", "message": 'expected {"id": "<paired phone id>"}'},
                                     status=400, headers=SECURITY_HEADERS)
        if not self.pairing.revoke(device):
            return web.json_response({"type": "error", "message": "no such paired phone"}, status=404,
                                     headers=SECURITY_HEADERS)
        self.log.info("paired phone %s revoked", device)
        await self._close_device(device)
        return web.json_response({"type": "ok"}, headers=SECURITY_HEADERS)

    async def _json_body(self, request: web.Request) -> tuple[Any, web.Response | None]:
        """The JSON body, or a 400 response with one line: not JSON, nested too deep, unknown charset."""
        try:
            try:
                raw = await asyncio.wait_for(request.read(), self.BODY_READ_S)
            except ConnectionResetError:      # the client went away mid-body (a traceback in the log)
                self.log.info("%s %s from %s: the client went away before its body came", request.method,
                              _logged_path(request), request.remote)
                return None, web.Response(status=400, headers=SECURITY_HEADERS)
            except asyncio.TimeoutError:      # a body trickled in, or never came: its connection was held open
                self.log.warning("%s %s from %s: its body did not come within %.0f s: dropped", request.method,
                                 _logged_path(request), request.remote, self.BODY_READ_S)
                return None, web.json_response({"type": "error", "message": "the request's body did not come in "
                                                "time"}, status=408, headers=SECURITY_HEADERS)
            charset = request.charset or "utf-8"
            try:
                text = raw.decode(charset)
            except LookupError:
                raise ValueError(f"unknown charset {charset[:40]!r}") from None
            return loads(text), None
        except (ValueError, UnicodeDecodeError) as exc:
            why = str(exc).splitlines()[0][:120] if isinstance(exc, MalformedJSON) or "charset" in str(exc) \
                else "not JSON"
            self.log.error("%s %s from %s: malformed payload dropped: %s", request.method, _logged_path(request),
                           request.remote, why)
            return None, web.json_response({"type": "error", "message": f"malformed payload: {why}"}, status=400,
                                           headers=SECURITY_HEADERS)

    async def _answer_http(self, request: web.Request) -> web.Response:
        payload, err = await self._json_body(request)
        if err is not None:
            return err
        reply = await self._handle(payload, request.remote)
        return web.json_response(reply, status=200 if reply["type"] in ("ok", "pong") else 400,
                                 headers=SECURITY_HEADERS)

    # WebSocket -----------------------------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=64 * 1024)
        await ws.prepare(request)
        ws_device[id(ws)] = request.get(DEVICE)
        self.clients.add(ws)
        peer = request.remote
        try:
            await ws.send_json(self._snapshot())
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    if len(msg.data) > MAX_WS_TEXT:
                        reply = self._malformed(peer, f"message of {len(msg.data)} characters (max {MAX_WS_TEXT})")
                    else:
                        try:
                            payload = loads(msg.data)
                        except MalformedJSON as exc:
                            reply = self._malformed(peer, str(exc))
                        except ValueError:
                            reply = self._malformed(peer, "not JSON")
                        else:
                            reply = await self._handle(payload, peer)
                    await ws.send_json(reply)
                elif msg.type == WSMsgType.BINARY:
                    await ws.send_json(self._malformed(peer, "binary message (send JSON text)"))
                elif msg.type == WSMsgType.ERROR:
                    self.log.warning("websocket from %s closed with error: %s", peer, ws.exception())
        finally:
            self.clients.discard(ws)
            ws_device.pop(id(ws), None)
        return ws

    async def _close_device(self, device: str) -> None:
        for ws in list(self.clients):
            if ws_device.get(id(ws)) == device:
                await ws.close(code=4403, message=b"this phone was unpaired")

    def _malformed(self, peer: str | None, why: str, request_id: Any = None) -> dict[str, Any]:
        self.log.error("websocket from %s: malformed message dropped: %s", peer, why)
        reply: dict[str, Any] = {"type": "error", "message": f"malformed message: {why}"}
        if isinstance(request_id, str):
            reply["request_id"] = request_id[:128]
        return reply

    def _snapshot(self) -> dict[str, Any]:
        snap = self.store.snapshot(steady_wall.now())
        snap.update(self.store.classes_view(), robot=self._robot(), undo_s=self.undo_s)
        return snap

    async def _handle(self, payload: Any, peer: str | None) -> dict[str, Any]:
        """One message from a page: an answer (checked, sent, committed), a skip, an undo, or a ping."""
        if not isinstance(payload, dict):
            return self._malformed(peer, "expected a JSON object")
        kind = payload.get("type")
        if kind == "ping":
            return {"type": "pong"}
        if kind not in ("answer", "skip", "undo", "rename"):
            return self._malformed(peer, f"unknown message type {str(kind)[:40]!r}")
        rid = payload.get("request_id")
        unknown = set(payload) - {"type", "request_id", "class_id", "new_class_name", "why", "name"}
        if unknown:
            return self._malformed(peer, f"unknown field(s) {', '.join(sorted(map(str, unknown)))[:80]}", rid)
        try:
            if not self._online:
                raise AnswerError(UNREACHABLE)
            if kind == "skip":
                return await self._skip(rid, payload.get("why"))
            if kind == "rename":
                return self._rename(payload.get("class_id"), payload.get("name"))
            if kind == "undo":
                return await self._undo(rid, payload.get("class_id"), payload.get("new_class_name"))
            answer = self.store.check_answer(rid, payload.get("class_id"), payload.get("new_class_name"),
                                             self.answered_by)
            self.publish(answer)
        except AnswerError as exc:
            self.log.warning("message from %s%s refused: %s", peer,   # the person's words; the log names the id
                             f" about request {rid[:MAX_ID]}" if isinstance(rid, str) else "", exc)
            reply: dict[str, Any] = {"type": "error", "message": str(exc)}
            if isinstance(rid, str):
                reply["request_id"] = rid[:128]
            return reply
        self.store.commit(answer)
        self.log.info("request %s answered: %s%s", answer.request_id, answer.class_name,
                      " (new class)" if answer.new_class_name else f" (class {answer.class_id})")
        await self._broadcast({"type": "remove", "id": answer.request_id, "why": "answered"})
        await self._broadcast({"type": "answered", "item": history_item(answer)})
        self._save()
        return {"type": "ok", "request_id": answer.request_id, "class_name": answer.class_name}

    def _rename(self, class_id: Any, name: Any) -> dict[str, Any]:
        """Send a rename to the labeler, which owns class names: its verdict (renamed or refused, and why) reaches
        the pages as a ``rename`` message when its label_status comes, or after ``reply_s`` without one."""
        if self.on_rename is None:
            raise AnswerError("renaming is not supported here")
        rename = self.store.check_rename(class_id, name)
        self.on_rename(rename.request_id, rename.class_id, rename.name)
        self.store.sent_rename(rename)
        self.log.info("rename %s sent: class %d to %r", rename.request_id, rename.class_id, rename.name[:64])
        return {"type": "ok", "class_name": f"renaming to {rename.name}…"}

    async def _skip(self, rid: Any, why: Any) -> dict[str, Any]:
        """'Skip' / 'not sure': the request leaves the page, the labeler drops it (nothing is learned)."""
        req = self.store.open_request(rid, steady_wall.now())
        why = "unsure" if why == "unsure" else "skip"
        if self.on_skip is not None:
            self.on_skip(req.request_id, why)
        self.store.skip(req.request_id)
        await self._broadcast({"type": "remove", "id": req.request_id, "why": "skipped"})
        self._save()
        return {"type": "ok", "request_id": req.request_id, "class_name": "skipped" if why == "skip" else "not sure"}

    async def _undo(self, rid: Any, class_id: Any, new_name: Any) -> dict[str, Any]:
        """Change or withdraw an answer within ``undo_s``: the labeler and the learner apply it."""
        settling = CHANGES_SETTLE_S - (time.monotonic() - self._online_since)
        if settling > 0:    # a robot just online: whether it reads label_correction is known once its readers match
            await asyncio.sleep(settling)
            self._look_at_robot()
            if not self._online:
                raise AnswerError(UNREACHABLE)
        old = self.store.answered.get(rid) if isinstance(rid, str) else None
        if old is None:
            raise AnswerError("there is no answer to this question to change: nothing was sent")
        if steady_wall.now() - old.answered_s > self.undo_s:
            raise AnswerError(f"the answer to {old.class_name} is older than {self.undo_s:.0f} s: it cannot be changed")
        if not self._changes:
            raise AnswerError("this robot cannot change or withdraw an answer it was given: nothing was sent")
        new = self.store.check_correction(old, class_id, new_name, self.answered_by)
        if self.on_undo is None:
            raise AnswerError("changing an answer is not supported here")
        self.on_undo(old, new)
        self.store.correct(old, new, judged=self._verdicts)
        item = self.store.answered[old.request_id]
        await self._broadcast({"type": "answered", "item": history_item(item)})
        self._save()
        return {"type": "ok", "request_id": old.request_id,
                "class_name": f"changed to {new.class_name}" if new else "answer withdrawn"}

    # from the bus (loop thread) ------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Thread-safe: run ``fn(*args)`` in the server's loop."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # loop closed meanwhile (shutting down)
                pass

    def on_status(self, status: dict[str, Any]) -> None:
        """The labeler's label_status: a rename's verdict goes to the pages; a question it let expire leaves them;
        an answer in the history becomes learned or refused."""
        rename = self.store.settle_rename(status)
        if rename is not None:
            self.log.info("rename %s %s%s", rename.request_id, rename.status,
                          f": {rename.message}" if rename.message else f" (class {rename.class_id} {rename.name!r})")
            self._spawn(self._broadcast(rename.public()))
            return
        rid = str(status.get("request_id", ""))
        if status.get("status") in ("expired", "skipped"):       # skipped: elsewhere (ros2 topic pub, another app)
            if self.store.expired_at_labeler(rid, steady_wall.now()):
                self.log.info("request %s %s at the labeler", rid, status["status"])
                self._spawn(self._broadcast({"type": "remove", "id": rid, "why": status["status"]}))
            return
        was_pending = rid in self.store.pending
        a = self.store.apply_status(status)
        if a is not None and was_pending and rid not in self.store.pending:      # answered elsewhere (ROS 2)
            self._spawn(self._broadcast({"type": "remove", "id": rid, "why": "answered"}))
        if a is not None:
            self._spawn(self._broadcast({"type": "answered", "item": history_item(a)}))
            self.on_classes_changed()           # a learned answer is the class's example picture
            self.store.dirty = True

    def on_classes_changed(self) -> None:
        self._spawn(self._broadcast({"type": "classes", **self.store.classes_view()}))

    def classes_soon(self) -> None:
        """A change the pages need not hear at once (a class seen again, a prediction): one ``classes`` within
        ``classes_every_s`` for all of them. Each labelled sample and each prediction sent the whole list to every
        phone: a camera's 30 a second, twice, for a "last seen" said in seconds."""
        if self._classes_due is None and self.loop is not None:
            self._classes_due = self.loop.call_later(self.classes_every_s, self._classes_now)

    def _classes_now(self) -> None:
        self._classes_due = None
        self.on_classes_changed()

    def set_online(self, online: bool) -> None:
        if online != self._online:
            self._online = online
            self._online_since = time.monotonic()
            if self._reached:
                self.log.warning("the labeler is %s", "reachable again" if online else "unreachable")
            else:   # a graph starts the app before the labeler: a warning then, and "again", at every launch
                self.log.info("the labeler is reachable" if online else "no labeler is listening yet: answers "
                              "wait until one is")
            self._spawn(self._broadcast({"type": "robot", **self._robot()}))
        self._reached = self._reached or online

    def _robot(self) -> dict[str, bool]:
        """What the pages know of the robot (in the snapshot and the ``robot`` message): reachable, takes changes,
        says verdicts."""
        return {"online": self._online, "changes": self._changes, "verdicts": self._verdicts}

    def _look_at_robot(self) -> None:
        """Whether the robot is online (``set_online``); then whether it takes changes and says verdicts, looked at
        while it is online (offline, every answer's buttons are off anyway) and once its readers and writers had
        ``CHANGES_SETTLE_S`` to be discovered (they match one by one). A change of mind goes to the pages: their
        answers' Change answer and Withdraw come or go, and an answer sent says whether a verdict will come."""
        self.set_online(bool(self.robot_online()))
        if not self._online or time.monotonic() - self._online_since < CHANGES_SETTLE_S:
            return
        changes, verdicts = bool(self.robot_takes_changes()), bool(self.robot_says_verdicts())
        if changes != self._changes:
            self.log.info("the robot %s", "takes changes of answers again" if changes else
                          "reads no label_correction: Change answer and Withdraw are off on the pages")
        if verdicts != self._verdicts:
            self.log.info("the robot %s", "says its verdicts again" if verdicts else
                          "writes no label_status (nor label_closed): the pages cannot say whether it learned an answer")
        if (changes, verdicts) != (self._changes, self._verdicts):
            self._changes, self._verdicts = changes, verdicts
            self._spawn(self._broadcast({"type": "robot", **self._robot()}))


ws_device: dict[int, str | None] = {}


class MalformedJSON(ValueError):
    """A JSON text nested deeper than MAX_JSON_DEPTH."""


def loads(text: str) -> Any:
    """``json.loads`` that refuses deep nesting in one line (not a RecursionError and a 500)."""
    depth = level = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            level += 1
            depth = max(depth, level)
            if depth > MAX_JSON_DEPTH:
                raise MalformedJSON(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        elif ch in "]}":
            level -= 1
    return json.loads(text)
