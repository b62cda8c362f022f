"""One client socket of the key proxy: HTTP/1.1 parsing (llhttp), checks, and answering in order.

A :class:`ClientConnection` parses requests with httptools as the bytes arrive. A request for
``POST /v1/messages`` or ``POST /v1/messages/count_tokens`` is checked as soon as its headers are
in (token, rate, budget; its JSON body only when a model allowlist or a ``max_tokens`` cap is
configured), then handed to an :class:`~claudehub.proxy.exchange.Exchange`, which sends it
upstream and relays the response. Everything else goes to the local handler (health, readiness,
metrics, the admin usage API). Pipelined requests are answered one after the other.

The connection knows the server that accepted it only as a :class:`Listener`, so this module
does not import the listener (:mod:`claudehub.proxy.server`), which imports it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, cast

import httptools

from claudehub.proxy.auth import TokenAuthenticator
from claudehub.proxy.errors import Refusal, error_response
from claudehub.proxy.exchange import Exchange
from claudehub.proxy.limits import Limits, metered_user
from claudehub.proxy.metrics import Metrics
from claudehub.proxy.request import ALLOWED_QUERIES, FORWARDED_PATHS, LocalHandler, Request
from claudehub.proxy.settings import ProxySettings
from claudehub.proxy.upstream import UpstreamPool
from claudehub.proxy.usage import UsageRecorder, reservation_tokens

log = logging.getLogger("claudehub.proxy")

NO_KEY_MESSAGE = (
    "The claudehub key proxy has no Anthropic API key configured. An operator must set "
    "ANTHROPIC_API_KEY in the key proxy's environment (or ANTHROPIC_API_KEY_FILE / "
    "KeyProxyApp.api_key_file pointing at a key file) and restart it."
)

#: Refusals that one fresh look at the hub may lift: the server just started.
RECHECK_REASONS = frozenset({"server_stopped", "stale_token"})
_LOCAL_BODY_MAX = 65536  # the local endpoints' largest body (POST /audit takes one event)


class _NoParser:
    """Stands in for the parser of a closed connection."""

    def feed_data(self, data: bytes) -> None:
        pass


_NO_PARSER: Any = _NoParser()


class _Reject(Exception):
    """Raised from parser callbacks: answer with this error and close the connection."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


class Listener(Protocol):
    """What a client connection needs from the server that accepted it.

    All of it is read on every request, so these are plain attributes on the server (the
    properties here only say that the connection does not assign them).
    """

    @property
    def settings(self) -> ProxySettings: ...
    @property
    def authenticator(self) -> TokenAuthenticator: ...
    @property
    def limits(self) -> Limits: ...
    @property
    def usage(self) -> UsageRecorder: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def pool(self) -> UpstreamPool: ...
    @property
    def fixed_head(self) -> bytes: ...
    @property
    def allow_exact(self) -> frozenset[bytes]: ...
    @property
    def allow_prefixes(self) -> tuple[bytes, ...]: ...
    @property
    def has_key(self) -> bool: ...
    @property
    def closing(self) -> bool: ...
    @property
    def local_handler(self) -> LocalHandler | None: ...
    @property
    def refresh_servers(self) -> Callable[[], Awaitable[None]] | None: ...
    @property
    def report_forged(self) -> Callable[[str, str], None] | None: ...

    def register(self, conn: ClientConnection) -> bool:
        """Hold a new connection; False when it must be closed at once (full, shutting down)."""
        ...

    def forget(self, conn: ClientConnection) -> None:
        """A connection is closed (or closing): stop holding it."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a background task, holding a reference until it ends."""
        ...


class ClientConnection(asyncio.Protocol):
    """One client socket: parses requests, answers them in order."""

    def __init__(self, server: Listener) -> None:
        self.srv = server
        self.transport: asyncio.Transport | None = None
        self.parser: Any = httptools.HttpRequestParser(self)
        self.url = b""
        self.header_bytes = 0
        self.forward: list[bytes] = []
        self.token = ""
        self.has_api_key_header = False
        self.authz = b""
        self.content_length = -1
        self.hosts = 0
        self.expect_continue = False
        self.cur: Request | None = None
        self.queue: list[Request] = []
        self.busy = False
        self.exchange: Exchange | None = None
        self.deadline = 0.0
        self.deadline_kind = ""
        self.lingering = False
        self.closed = False
        self.write_paused = False
        self.read_paused = False

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        srv = self.srv
        if not srv.register(self):
            self.transport.abort()
            self.closed = True
            return
        self.deadline = time.monotonic() + srv.settings.header_timeout
        self.deadline_kind = "idle"

    def data_received(self, data: bytes) -> None:
        if self.lingering or self.closed:
            return
        try:
            self.parser.feed_data(data)
        except _Reject as e:
            self.fail(e.status, e.kind, e.message)
        except httptools.HttpParserCallbackError as e:
            inner = e.__context__  # httptools wraps what our callbacks raise
            if isinstance(inner, _Reject):
                self.fail(inner.status, inner.kind, inner.message)
            else:
                log.error("Internal error handling a request", exc_info=inner or e)
                self.fail(500, "api_error", "Internal error in the key proxy.")
        except httptools.HttpParserUpgrade:
            self.fail(400, "invalid_request_error", "Protocol upgrades are not supported.")
        except httptools.HttpParserError as e:
            self.srv.metrics.count_bad_request()
            self.fail(400, "invalid_request_error", f"Malformed HTTP request: {e}")

    def eof_received(self) -> bool:
        # A client that half-closes is gone for our purposes (no HTTP client does it mid-request).
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.srv.forget(self)
        ex = self.exchange
        if ex is not None:
            self.exchange = None
            ex.cancel()
        self.queue.clear()
        # break the parser <-> protocol cycle so the connection is freed without the GC
        self.parser = _NO_PARSER
        self.cur = None

    def pause_writing(self) -> None:
        self.write_paused = True
        ex = self.exchange
        if ex is not None:
            ex.pause_upstream()

    def resume_writing(self) -> None:
        self.write_paused = False
        ex = self.exchange
        if ex is not None:
            ex.resume_upstream()

    # -- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.header_bytes = 0
        self.forward = []
        self.token = ""
        self.has_api_key_header = False
        self.authz = b""
        self.content_length = -1
        self.hosts = 0
        self.expect_continue = False
        self.cur = None
        if self.deadline_kind != "header":
            self.deadline = time.monotonic() + self.srv.settings.header_timeout
            self.deadline_kind = "header"

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > self.srv.settings.max_header_bytes:
            raise _Reject(414, "invalid_request_error", "The request URL is too long.")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.srv.settings.max_header_bytes:
            raise _Reject(431, "invalid_request_error", "The request headers are too large.")
        low = name.lower()
        srv = self.srv
        if low in srv.allow_exact or (srv.allow_prefixes and low.startswith(srv.allow_prefixes)):
            self.forward.append(name + b": " + value + b"\r\n")
        elif low == b"x-api-key":
            if self.has_api_key_header:
                raise _Reject(400, "invalid_request_error", "More than one x-api-key header.")
            self.has_api_key_header = True
            self.token = value.decode("latin-1")
        elif low == b"authorization":
            self.authz = value
            if not self.token and value[:7].lower() == b"bearer ":
                self.token = value[7:].strip().decode("latin-1")
        elif low == b"content-length":
            try:
                self.content_length = int(value)
            except ValueError:
                raise _Reject(400, "invalid_request_error", "Invalid Content-Length.") from None
        elif low == b"host":
            self.hosts += 1
        elif low == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        """Decide about the request as soon as its headers are in (before any body)."""
        srv = self.srv
        parser = self.parser
        now = time.monotonic()
        url = self.url
        version = parser.get_http_version()
        req = Request(parser.get_method(), url, parser.should_keep_alive(), now, version == "1.0")
        self.cur = req
        self.deadline = now + srv.settings.body_timeout
        self.deadline_kind = "body"
        if version not in ("1.1", "1.0"):
            raise _Reject(400, "invalid_request_error", "Only HTTP/1.0 and HTTP/1.1 are supported.")
        if self.hosts > 1:
            raise _Reject(400, "invalid_request_error", "More than one Host header.")
        if url[:1] != b"/":
            raise _Reject(
                400,
                "invalid_request_error",
                "Only origin-form request targets (/path) are accepted.",
            )
        q = url.find(b"?")
        path = url if q == -1 else url[:q]
        route = FORWARDED_PATHS.get(path)
        if route is None:
            # a local request (health, metrics, usage): keep what the admin endpoints need
            req.token = self.token
            req.authz = self.authz.decode("latin-1")
            if self.content_length > _LOCAL_BODY_MAX:
                raise _Reject(413, "request_too_large", "Request body too large for this endpoint.")
            return
        req.route = route
        if q != -1 and url[q + 1 :] not in ALLOWED_QUERIES:
            # Only the body names a model; a query string is refused rather than forwarded, so
            # nothing the upstream might read there bypasses the body's checks.
            req.refusal = Refusal(
                400,
                "invalid_request_error",
                f"{route} takes no query parameters here but beta=true; put the model and "
                "every other field in the JSON body.",
                "query",
            )
            return
        if req.method != b"POST":
            req.refusal = Refusal(
                405, "invalid_request_error", f"{route} only accepts POST.", "method"
            )
            return
        req.forward = self.forward
        if not srv.has_key:
            req.refusal = Refusal(401, "authentication_error", NO_KEY_MESSAGE, "no_real_key")
        else:
            try:
                claims = srv.authenticator.check(self.token)
                req.user = metered_user(claims.user, claims.kind)
                req.server = claims.server
                srv.limits.admit(req.user)
            except Refusal as refusal:
                req.refusal = refusal
                if refusal.reason in RECHECK_REASONS and srv.refresh_servers is not None:
                    req.token = self.token
                if refusal.forged and srv.report_forged is not None:
                    srv.report_forged(self._peer(), self.token)
        if self.content_length > srv.settings.max_body_bytes:
            raise _Reject(413, "request_too_large", self._too_large())
        if self.expect_continue and self.transport is not None:
            if req.refusal is not None:
                # answer now; the client will not send the body
                self.respond_refusal(req.refusal, keep_alive=False)
                self.cur = None
                self.lingering = True
                return
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _peer(self) -> str:
        """The client's address (no port), for the audit log's forged-token records."""
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        if isinstance(peer, tuple) and peer:
            return str(peer[0])
        return str(peer or "")

    def _too_large(self) -> str:
        limit = self.srv.settings.max_body_bytes
        return f"Request body is larger than this key proxy accepts ({limit:,} bytes)."

    def on_body(self, body: bytes) -> None:
        req = self.cur
        if req is None:
            return
        req.body_len += len(body)
        if req.body_len > self.srv.settings.max_body_bytes:
            raise _Reject(413, "request_too_large", self._too_large())
        if req.route and (req.refusal is None or req.token):
            req.body.append(body)
        elif not req.route:
            # a local request's body (POST /audit): small, as for a Content-Length one
            if req.body_len > _LOCAL_BODY_MAX:
                raise _Reject(413, "request_too_large", "Request body too large for this endpoint.")
            req.body.append(body)

    def on_message_complete(self) -> None:
        req = self.cur
        self.cur = None
        self.deadline = 0.0
        self.deadline_kind = ""
        if req is None:
            return
        if self.busy:
            self.queue.append(req)
            if len(self.queue) > 8 and self.transport is not None and not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()
        else:
            self.dispatch(req)

    # -- answering -------------------------------------------------------------------------
    def dispatch(self, req: Request) -> None:
        """Answer ``req``: locally, with its refusal, or by forwarding it upstream."""
        self.busy = True
        srv = self.srv
        if not req.route:
            handler = srv.local_handler
            if handler is None:
                self.send_final(
                    req,
                    error_response(404, "not_found_error", "Not found.", keep_alive=req.keep_alive),
                )
                return
            result = handler(req)
            if isinstance(result, bytes):
                self.send_final(req, result)
            else:
                srv.spawn(self._await_local(req, result))
            return
        if req.refusal is not None:
            if req.token and srv.refresh_servers is not None:
                srv.spawn(self._recheck(req, srv.refresh_servers))
                return
            self.respond_refusal(req.refusal, req=req)
            return
        self._forward(req)

    async def _recheck(self, req: Request, refresh: Callable[[], Awaitable[None]]) -> None:
        """Look at the hub's running servers once more, then forward or refuse ``req``."""
        try:
            await refresh()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the poller logs hub errors; the refusal below stands
            log.debug("On-demand hub refresh failed: %s", e)
        srv = self.srv
        token, req.token = req.token, ""
        try:
            claims = srv.authenticator.check(token)
            req.user = metered_user(claims.user, claims.kind)
            req.server = claims.server
            srv.limits.admit(req.user)
        except Refusal as refusal:
            req.body = []
            self.respond_refusal(refusal, req=req)
            return
        req.refusal = None
        if self.transport is None or self.transport.is_closing():
            self.busy = False
            return
        self._forward(req)

    def _forward(self, req: Request) -> None:
        srv = self.srv
        if srv.limits.needs_body(req.user):
            body = b"".join(req.body)
            try:
                replacement = srv.limits.check_body(body, req.user)
            except Refusal as refusal:
                self.respond_refusal(refusal, req=req)
                return
            req.body = [replacement if replacement is not None else body]
            req.body_len = len(req.body[0])
        ex = Exchange(
            self,
            req,
            pool=srv.pool,
            fixed_head=srv.fixed_head,
            settings=srv.settings,
            metrics=srv.metrics,
            limits=srv.limits,
            usage=srv.usage,
            spawn=srv.spawn,
        )
        self.exchange = ex
        if (
            req.route == "/v1/messages"
            and srv.usage.store is not None
            and srv.limits.budget_for(req.user) > 0
        ):
            # a budget must hold through a crash: what this request may cost is on disk
            # before it goes upstream (one group-committed write; none without a budget)
            body = req.body[0] if len(req.body) == 1 else b"".join(req.body)
            srv.spawn(ex.reserve_and_start(reservation_tokens(body)))
        else:
            ex.start()

    async def _await_local(self, req: Request, result: Awaitable[bytes]) -> None:
        try:
            data = await result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Local endpoint failed")
            data = error_response(500, "api_error", "Internal error.", keep_alive=req.keep_alive)
        self.send_final(req, data)

    def respond_refusal(
        self, refusal: Refusal, *, req: Request | None = None, keep_alive: bool = True
    ) -> None:
        """Answer with ``refusal``, counted in metrics and (for a known user) in usage."""
        srv = self.srv
        srv.metrics.refuse(refusal.reason)
        keep = keep_alive and (req.keep_alive if req is not None else True) and not srv.closing
        data = error_response(
            refusal.status, refusal.kind, refusal.message, keep_alive=keep, headers=refusal.headers
        )
        if req is not None:
            srv.metrics.count_request(req.route or "other", refusal.status)
            if req.user:  # a known user over a limit: that belongs in their usage too
                srv.usage.record(
                    (req.user, req.server, "", req.route, refusal.status, False),
                    [0, 0, 0, 0],
                    (time.monotonic() - req.started) * 1000,
                    0.0,
                )
            self.send_final(req, data)
        elif self.transport is not None:
            self.transport.write(data)

    def send_final(self, req: Request, data: bytes) -> None:
        """Write a complete locally-made response and move on to the next request."""
        if self.transport is None or self.closed:
            return
        self.transport.write(data)
        self.finish(req.keep_alive and b"connection: close" not in data[:512])

    def finish(self, keep_alive: bool) -> None:
        """The current response is fully written."""
        self.busy = False
        self.exchange = None
        if self.closed or self.transport is None:
            return
        if not keep_alive or self.srv.closing or self.lingering:
            self.closed = True
            self.srv.forget(self)
            self.transport.close()
            return
        if self.queue:
            req = self.queue.pop(0)
            if self.read_paused and len(self.queue) <= 8:
                self.read_paused = False
                self.transport.resume_reading()
            self.dispatch(req)
            return
        if self.cur is None and self.deadline_kind == "":
            self.deadline = time.monotonic() + self.srv.settings.keepalive_timeout
            self.deadline_kind = "idle"

    @property
    def shutting_down(self) -> bool:
        """Whether the proxy is shutting down (responses then end with connection: close)."""
        return self.srv.closing

    def drop(self) -> None:
        """The current response cannot be completed: forget its exchange, abort the socket."""
        # the exchange has already accounted for itself; connection_lost must not cancel it
        self.exchange = None
        self.abort()

    def fail(self, status: int, kind: str, message: str) -> None:
        """Answer a request we cannot parse or accept, then close (draining what is in flight)."""
        if self.transport is None or self.closed:
            return
        self.srv.metrics.refuse(f"http_{status}")
        if not self.busy:
            self.transport.write(error_response(status, kind, message, keep_alive=False))
        self.linger()

    def linger(self) -> None:
        """Stop reading requests; close after the peer stops sending (or 2 s).

        Closing a socket with unread input makes the kernel send a reset that can destroy the
        error response before the client reads it; draining first lets it arrive.
        """
        self.lingering = True
        self.queue.clear()
        if self.transport is None:
            return
        if self.exchange is None:
            try:
                self.transport.write_eof()
            except (OSError, RuntimeError, NotImplementedError):
                self.transport.close()
                return
        self.deadline = time.monotonic() + 2.0
        self.deadline_kind = "linger"

    def close_if_idle(self) -> None:
        """Shutdown: close now if nothing is in flight, else after the current response."""
        if not self.busy and self.cur is None and self.transport is not None:
            self.closed = True
            self.srv.forget(self)
            self.transport.close()

    def abort(self) -> None:
        """Close the socket at once (shutdown after the grace period, linger expired)."""
        self.closed = True
        self.srv.forget(self)
        if self.transport is not None:
            self.transport.abort()

    def check_deadline(self, now: float) -> None:
        """Called by the sweeper: enforce this connection's (and its exchange's) timeouts."""
        ex = self.exchange
        if ex is not None:
            ex.check_deadline(now)
        if not self.deadline or now < self.deadline:
            return
        kind = self.deadline_kind
        if kind == "linger" and ex is not None:
            return  # a response is still streaming; finish() closes after it
        self.deadline = 0.0
        if kind in ("header", "body") and not self.busy and self.transport is not None:
            self.srv.metrics.refuse("client_timeout")
            self.transport.write(
                error_response(
                    408,
                    "invalid_request_error",
                    "The request was not received in time.",
                    keep_alive=False,
                )
            )
            self.linger()
            return
        self.abort() if kind == "linger" else self._close()

    def _close(self) -> None:
        self.closed = True
        self.srv.forget(self)
        if self.transport is not None:
            self.transport.close()
