"""The app's HTTP + WebSocket server: aiohttp in a thread of its own, with its own event loop.

Thread model: the bus spins in the node's main thread; its callbacks hand new requests to the
loop with ``loop.call_soon_threadsafe`` (:meth:`LabelServer.submit_request`). Everything that
touches the store (requests, answers, expiry, saving) runs in the loop thread, so two phones
answering the same request cannot both send. Answers are published from the loop thread by the
``publish`` callable the node gives (DDS writers are thread-safe).

Access: every HTTP request and the WebSocket handshake need the pairing token: ``?token=`` (the
page then sets a cookie and redirects to a clean URL), the cookie, an ``X-Tinycl-Token`` header
or ``Authorization: Bearer``. Wrong or missing → 403 and no WebSocket.

WebSocket messages (JSON). Server → page: ``snapshot`` {pending, history}, ``request`` {request},
``remove`` {id, why: answered|expired|dropped}, ``answered`` {item}, ``ok`` {request_id,
class_name}, ``error`` {message, request_id?}. Page → server: ``{"type": "answer", "request_id":
..., "class_id": 3}`` or ``{..., "new_class_name": "cat"}``; ``{"type": "ping"}``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from ..core.errors import TinyclError
from .page import PAGE
from .store import Answer, AnswerError, Pending, RequestStore, history_item

COOKIE = "tinycl_token"
MAX_WS_TEXT = 4096          # an answer is ~100 bytes; more is malformed
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


class LabelServer:
    """Serve ``store`` to phones; ``publish(answer)`` sends an answer (raises AnswerError if it cannot)."""

    def __init__(self, store: RequestStore, publish: Callable[[Answer], None], token: str, *,
                 host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None,
                 state_path: Path | None = None, answered_by: str = "phone",
                 log: logging.Logger | None = None, tick_s: float = 0.5) -> None:
        self.store, self.publish, self.token = store, publish, token
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.state_path, self.answered_by = state_path, answered_by
        self.log = log or logging.getLogger("tinycl.label_app")
        self.tick_s = tick_s
        self.clients: set[web.WebSocketResponse] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # life cycle (called from the node's thread) --------------------------------------------------
    def start(self, timeout_s: float = 15.0) -> None:
        """Bind and serve in a background thread; TinyclError if the address cannot be bound."""
        self._thread = threading.Thread(target=self._main, name="label_app-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TinyclError(f"label app: server did not start within {timeout_s:.0f} s")
        if self._error is not None:
            raise TinyclError(f"label app: cannot serve on {self.host}:{self.port}: {self._error}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close the page connections, stop serving, save the pending requests."""
        loop, thread = self.loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
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
        loop = self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        ticker = loop.create_task(self._tick())
        try:
            loop.run_forever()
        finally:
            ticker.cancel()
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._auth], client_max_size=64 * 1024)
        app.router.add_get("/", self._page)
        app.router.add_get("/image", self._image)
        app.router.add_get("/api/state", self._state)
        app.router.add_post("/api/answer", self._answer_http)
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
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

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                for rid in self.store.expire(time.time()):
                    self.log.info("request %s expired unanswered", rid)
                    await self._broadcast({"type": "remove", "id": rid, "why": "expired"})
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
            if time.time() - answer.answered_s < RESEND_AFTER_S:
                return              # crossed our answer on the way (a re-send to a new reader): not lost
            try:
                self.publish(answer)
                self.log.info("request %s asked again: answer re-sent (%s)", req.request_id, answer.class_name)
            except AnswerError as exc:
                self.log.warning("request %s asked again, answer not re-sent: %s", req.request_id, exc)
            return
        if what == "same":          # asked again (e.g. re-sent to a new reader): nothing to show
            return
        if what == "new":
            self.log.info("request %s pending (%s, %d candidates)", req.request_id, req.reason or "no reason",
                          len(req.candidates))
        for rid in dropped:
            self.log.warning("too many pending requests: dropped the oldest, %s", rid)
        self._spawn(self._broadcast({"type": "request", "request": req.public(time.time())}))
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
    def _token_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        query = request.query.get("token")
        auth = request.headers.get("Authorization", "")
        given = (query if query is not None else request.headers.get("X-Tinycl-Token")
                 or (auth[7:] if auth.startswith("Bearer ") else None) or request.cookies.get(COOKIE))
        if not self._token_ok(given):
            self.log.warning("refused %s %s from %s: %s pairing token", request.method, request.path,
                             request.remote, "wrong" if given else "no")
            return web.Response(status=403, text=FORBIDDEN, content_type="text/html", headers=SECURITY_HEADERS)
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            self.log.warning("refused %s %s: cross-origin request from %s", request.method, request.path, origin)
            return web.Response(status=403, text="cross-origin request refused", headers=SECURITY_HEADERS)
        if query is not None and request.method == "GET" and request.path == "/":
            resp = web.Response(status=303, headers={"Location": "/", **SECURITY_HEADERS})  # token out of the URL
            self._set_cookie(resp)
            return resp
        resp = await handler(request)
        if query is not None:
            self._set_cookie(resp)
        return resp

    def _set_cookie(self, resp: web.StreamResponse) -> None:
        resp.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", secure=self.ssl_context is not None,
                        max_age=30 * 24 * 3600, path="/")

    # HTTP --------------------------------------------------------------------------------------------
    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html", headers=SECURITY_HEADERS)

    async def _image(self, request: web.Request) -> web.Response:
        req = self.store.pending.get(request.query.get("id", ""))
        if req is None or req.png is None:
            return web.Response(status=404, text="no such picture", headers=SECURITY_HEADERS)
        return web.Response(body=req.png, content_type="image/png", headers=SECURITY_HEADERS)

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.snapshot(time.time()), headers=SECURITY_HEADERS)

    async def _answer_http(self, request: web.Request) -> web.Response:
        try:
            payload = json.loads(await request.text())
        except (ValueError, UnicodeDecodeError):
            self.log.error("POST /api/answer from %s: malformed payload dropped: not JSON", request.remote)
            return web.json_response({"type": "error", "message": "malformed answer: not JSON"}, status=400)
        reply = await self._handle(payload, request.remote)
        return web.json_response(reply, status=200 if reply["type"] == "ok" else 400, headers=SECURITY_HEADERS)

    # WebSocket -----------------------------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=64 * 1024)
        await ws.prepare(request)
        self.clients.add(ws)
        peer = request.remote
        try:
            await ws.send_json(self.store.snapshot(time.time()))
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    if len(msg.data) > MAX_WS_TEXT:
                        reply = self._malformed(peer, f"message of {len(msg.data)} characters (max {MAX_WS_TEXT})")
                    else:
                        try:
                            payload = json.loads(msg.data)
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
        return ws

    def _malformed(self, peer: str | None, why: str, request_id: Any = None) -> dict[str, Any]:
        self.log.error("websocket from %s: malformed message dropped: %s", peer, why)
        reply: dict[str, Any] = {"type": "error", "message": f"malformed message: {why}"}
        if isinstance(request_id, str):
            reply["request_id"] = request_id[:128]
        return reply

    async def _handle(self, payload: Any, peer: str | None) -> dict[str, Any]:
        """One message from a page: an answer (checked, sent, committed) or a ping."""
        if not isinstance(payload, dict):
            return self._malformed(peer, "expected a JSON object")
        kind = payload.get("type")
        if kind == "ping":
            return {"type": "pong"}
        if kind != "answer":
            return self._malformed(peer, f"unknown message type {str(kind)[:40]!r}")
        rid = payload.get("request_id")
        unknown = set(payload) - {"type", "request_id", "class_id", "new_class_name"}
        if unknown:
            return self._malformed(peer, f"unknown field(s) {', '.join(sorted(map(str, unknown)))[:80]}", rid)
        try:
            answer = self.store.check_answer(rid, payload.get("class_id"), payload.get("new_class_name"),
                                             self.answered_by)
            self.publish(answer)
        except AnswerError as exc:
            self.log.warning("answer from %s refused: %s", peer, exc)
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
