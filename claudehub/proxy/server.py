"""The key proxy's HTTP/1.1 server: an asyncio protocol with llhttp parsing, built for the hot path.

One :class:`ClientConnection` per client socket parses requests with httptools. A request for
``POST /v1/messages`` or ``POST /v1/messages/count_tokens`` is checked (token, rate, budget,
and, only when configured, its JSON body), then an :class:`~claudehub.proxy.exchange.Exchange`
sends it upstream on a pooled keep-alive connection with the allowlisted headers copied byte
for byte and the real key set, and relays the response chunk by chunk as it arrives.
Everything else (health, readiness, metrics, the admin usage API) is answered locally by
:mod:`claudehub.proxy.admin`.

Timeouts (slow headers, slow bodies, idle keep-alive, upstream first byte, upstream silence)
are enforced by one sweeper that runs four times a second, so the hot path only stores numbers.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httptools

from claudehub.proxy.auth import Refusal, TokenAuthenticator
from claudehub.proxy.errors import error_response
from claudehub.proxy.exchange import Exchange
from claudehub.proxy.limits import Limits
from claudehub.proxy.metrics import Metrics
from claudehub.proxy.tasks import cancel_and_wait
from claudehub.proxy.upstream import UpstreamPool, UpstreamTarget
from claudehub.proxy.usage import UsageRecorder

log = logging.getLogger("claudehub.proxy")

FORWARDED_PATHS = {
    b"/v1/messages": "/v1/messages",
    b"/v1/messages/count_tokens": "/v1/messages/count_tokens",
}
DEFAULT_FORWARD_HEADERS = (
    "anthropic-version",
    "anthropic-beta",
    "content-type",
    "accept",
    "user-agent",
    "x-app",
    "x-claude-code-session-id",
    "x-stainless-*",
)
NO_KEY_MESSAGE = (
    "The claudehub key proxy has no Anthropic API key configured. An operator must set "
    "ANTHROPIC_API_KEY in the key proxy's environment (or ANTHROPIC_API_KEY_FILE / "
    "KeyProxyApp.api_key_file pointing at a key file) and restart it."
)


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


@dataclass
class ProxySettings:
    """Everything the server needs; the traitlets app fills this from configuration."""

    upstream_url: str = "https://api.anthropic.com"
    upstream_ca_file: str = ""
    api_key: str = ""
    forward_headers: Sequence[str] = DEFAULT_FORWARD_HEADERS
    max_body_bytes: int = 32 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 20.0
    body_timeout: float = 120.0
    keepalive_timeout: float = 75.0
    upstream_connect_timeout: float = 10.0
    upstream_timeout: float = 600.0
    upstream_idle_timeout: float = 300.0
    upstream_pool_size: int = 256
    upstream_pool_idle_timeout: float = 30.0
    max_connections: int = 10000
    access_log: bool = False


@dataclass(slots=True)
class Request:
    """A complete request, ready to be answered."""

    method: bytes
    url: bytes
    keep_alive: bool
    started: float
    http10: bool = False
    route: str = ""  # forwarded path name, "" for a local request
    user: str = ""
    server: str = ""
    forward: list[bytes] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    body_len: int = 0
    refusal: Refusal | None = None
    token: str = ""  # kept for local requests (admin auth) and for a hub re-check
    authz: str = ""


LocalHandler = Callable[[Request], "bytes | Awaitable[bytes]"]

#: Refusals that one fresh look at the hub may lift: the server just started.
RECHECK_REASONS = frozenset({"server_stopped", "stale_token"})


class KeyProxyServer:
    """The listening server, its upstream pool, and the background sweeper."""

    def __init__(
        self,
        settings: ProxySettings,
        authenticator: TokenAuthenticator,
        limits: Limits,
        usage: UsageRecorder,
        metrics: Metrics,
        local_handler: LocalHandler | None = None,
    ) -> None:
        self.settings = settings
        self.authenticator = authenticator
        self.limits = limits
        self.usage = usage
        self.metrics = metrics
        self.local_handler = local_handler
        # Set by the service in hub mode: asks the hub for its running servers right now.
        # A server that started after the last poll is not yet known; its token is checked
        # again after one fresh look instead of being refused for up to a poll interval.
        self.refresh_servers: Callable[[], Awaitable[None]] | None = None
        self.target = UpstreamTarget.from_url(settings.upstream_url, settings.upstream_ca_file)
        self.pool = UpstreamPool(
            self.target,
            connect_timeout=settings.upstream_connect_timeout,
            max_idle=settings.upstream_pool_size,
            idle_timeout=settings.upstream_pool_idle_timeout,
        )
        exact, prefixes = [], []
        for name in settings.forward_headers:
            low = name.strip().lower()
            if low in (
                "x-api-key",
                "authorization",
                "cookie",
                "host",
                "content-length",
                "transfer-encoding",
                "connection",
            ):
                continue  # credentials and framing are never copied
            if low.endswith("*"):
                prefixes.append(low[:-1].encode("latin-1"))
            else:
                exact.append(low.encode("latin-1"))
        self.allow_exact = frozenset(exact)
        self.allow_prefixes = tuple(prefixes)
        self.fixed_head = b""
        self.set_api_key(settings.api_key)
        self.connections: set[ClientConnection] = set()
        self.server: asyncio.base_events.Server | None = None
        self.closing = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Future[None]] = set()
        self._port = 0

    # -- configuration that can change at run time ----------------------------------------
    def set_api_key(self, key: str) -> None:
        """Install a (new) real key; requests from now on use it."""
        key = key.strip()
        self.settings.api_key = key
        if "\r" in key or "\n" in key:
            raise ValueError("the API key contains a line break")
        self.fixed_head = (
            b"host: "
            + self.target.host_header
            + b"\r\nx-api-key: "
            + key.encode("latin-1")
            + b"\r\n"
        )

    @property
    def has_key(self) -> bool:
        return bool(self.settings.api_key)

    # -- life cycle --------------------------------------------------------------------------
    async def start(self, host: str, port: int, sock: socket.socket | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        if sock is not None:
            self.server = await self.loop.create_server(
                lambda: ClientConnection(self), sock=sock, backlog=4096
            )
        else:
            self.server = await self.loop.create_server(
                lambda: ClientConnection(self), host, port, backlog=4096, reuse_address=True
            )
        self._port = int(self.server.sockets[0].getsockname()[1])
        self._sweeper = asyncio.ensure_future(self._sweep_forever())

    @property
    def port(self) -> int:
        return self._port

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a background task, holding a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, let open requests and streams finish (up to ``grace`` s), close."""
        self.closing = True
        if self.server is not None:
            self.server.close()
        for conn in list(self.connections):
            conn.close_if_idle()
        deadline = time.monotonic() + grace
        while self.connections and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        await cancel_and_wait(self._sweeper)
        self.pool.close()
        if self.server is not None:
            await self.server.wait_closed()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.check_deadline(now)
            self.pool.sweep(now)


class ClientConnection(asyncio.Protocol):
    """One client socket: parses requests, answers them in order."""

    def __init__(self, server: KeyProxyServer) -> None:
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
        if len(srv.connections) >= srv.settings.max_connections or srv.closing:
            self.transport.abort()
            self.closed = True
            return
        srv.connections.add(self)
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
            self.srv.metrics.bad_requests += 1
            self.fail(400, "invalid_request_error", f"Malformed HTTP request: {e}")

    def eof_received(self) -> bool:
        # A client that half-closes is gone for our purposes (no HTTP client does it mid-request).
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.srv.connections.discard(self)
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
            if self.content_length > 65536:
                raise _Reject(413, "request_too_large", "Request body too large for this endpoint.")
            return
        req.route = route
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
                req.user = claims.user
                req.server = claims.server
                srv.limits.admit(claims.user)
            except Refusal as refusal:
                req.refusal = refusal
                if refusal.reason in RECHECK_REASONS and srv.refresh_servers is not None:
                    req.token = self.token
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
            req.user = claims.user
            req.server = claims.server
            srv.limits.admit(claims.user)
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
        if srv.limits.needs_body:
            body = b"".join(req.body)
            try:
                replacement = srv.limits.check_body(body)
            except Refusal as refusal:
                self.respond_refusal(refusal, req=req)
                return
            req.body = [replacement if replacement is not None else body]
            req.body_len = len(req.body[0])
        ex = Exchange(self, req)
        self.exchange = ex
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
        srv = self.srv
        srv.metrics.refuse(refusal.reason)
        keep = keep_alive and (req.keep_alive if req is not None else True) and not srv.closing
        data = error_response(
            refusal.status, refusal.kind, refusal.message, keep_alive=keep, headers=refusal.headers
        )
        if req is not None:
            key = (req.route or "other", refusal.status)
            srv.metrics.requests[key] = srv.metrics.requests.get(key, 0) + 1
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
            self.srv.connections.discard(self)
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
            self.srv.connections.discard(self)
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        self.srv.connections.discard(self)
        if self.transport is not None:
            self.transport.abort()

    def check_deadline(self, now: float) -> None:
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
        self.srv.connections.discard(self)
        if self.transport is not None:
            self.transport.close()
