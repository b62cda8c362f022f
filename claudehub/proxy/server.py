"""The key proxy's listener: accepts client connections, holds the upstream pool, sweeps timeouts.

:class:`KeyProxyServer` is an asyncio server on uvloop whose connections are
:class:`~claudehub.proxy.connection.ClientConnection` protocols (llhttp parsing, checks); forwarded
requests become :class:`~claudehub.proxy.exchange.Exchange` objects that use the server's pooled
keep-alive upstream connections. Local endpoints are answered by the ``local_handler``
(:mod:`claudehub.proxy.admin`).

Timeouts (slow headers, slow bodies, idle keep-alive, upstream first byte, upstream silence)
are enforced by one sweeper that runs four times a second, so the hot path only stores numbers.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from claudehub.proxy.auth import TokenAuthenticator
from claudehub.proxy.connection import ClientConnection
from claudehub.proxy.limits import Limits
from claudehub.proxy.metrics import Metrics
from claudehub.proxy.request import LocalHandler
from claudehub.proxy.settings import ProxySettings
from claudehub.proxy.tasks import cancel_and_wait
from claudehub.proxy.upstream import UpstreamPool, UpstreamTarget
from claudehub.proxy.usage import UsageRecorder

#: Request headers never copied upstream, whatever ``forward_headers`` says: credentials and
#: framing (the proxy sets the key, the Host and the length itself).
_NEVER_FORWARDED = frozenset(
    {
        "x-api-key",
        "authorization",
        "cookie",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
    }
)


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
        # Set by the service: records a forged sandbox token (client address, token) in the
        # audit log, which keeps the token only long enough to read the user it claims.
        self.report_forged: Callable[[str, str], None] | None = None
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
            if low in _NEVER_FORWARDED:
                continue
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
        if "\r" in key or "\n" in key:
            # checked before anything is replaced: the key in use stays in use
            raise ValueError("the API key contains a line break")
        self.settings.api_key = key
        self.fixed_head = (
            b"host: "
            + self.target.host_header
            + b"\r\nx-api-key: "
            + key.encode("latin-1")
            + b"\r\n"
        )

    @property
    def has_key(self) -> bool:
        """Whether a real key is configured (without one every request is refused)."""
        return bool(self.settings.api_key)

    # -- the connections -------------------------------------------------------------------
    def register(self, conn: ClientConnection) -> bool:
        """Hold a new connection; False when it must be closed at once (full, shutting down)."""
        if self.closing or len(self.connections) >= self.settings.max_connections:
            return False
        self.connections.add(conn)
        return True

    def forget(self, conn: ClientConnection) -> None:
        """A connection is closed (or closing): stop holding it."""
        self.connections.discard(conn)

    # -- life cycle --------------------------------------------------------------------------
    async def start(self, host: str, port: int, sock: socket.socket | None = None) -> None:
        """Listen on ``host:port`` (or the given socket) and start the sweeper."""
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
        """The port actually listened on (useful with port 0)."""
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
