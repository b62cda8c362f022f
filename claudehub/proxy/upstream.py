"""Pooled keep-alive HTTP/1.1 connections to the upstream Messages API.

A small client on asyncio protocols with llhttp (httptools) for response parsing: responses are
handed to the waiting exchange chunk by chunk as they arrive (no buffering), and connections go
back to a LIFO idle pool when the upstream allows keep-alive.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Protocol, cast

import httptools


class ResponseHandler(Protocol):
    """What an upstream connection reports to (the exchange that sent the request)."""

    def on_upstream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...
    def on_upstream_body(self, data: bytes) -> None: ...
    def on_upstream_complete(self, keep_alive: bool) -> None: ...
    def on_upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None: ...
    def on_upstream_data_end(self) -> None: ...


@dataclass(frozen=True)
class UpstreamTarget:
    """Where requests go: scheme, host, port, the Host header to send, TLS context."""

    scheme: str
    host: str
    port: int
    host_header: bytes
    base_path: bytes
    ssl_context: ssl.SSLContext | None

    @classmethod
    def from_url(cls, url: str, ca_file: str = "") -> UpstreamTarget:
        """Parse ``url``; ``ca_file`` replaces the system CAs for verifying an https upstream."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream URL must be http(s)://host[:port][/path], not {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        default_port = port == (443 if tls else 80)
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        host_header = (shown if default_port else f"{shown}:{port}").encode("idna")
        return cls(
            scheme=parts.scheme,
            host=host,
            port=port,
            host_header=host_header,
            base_path=parts.path.rstrip("/").encode(),
            ssl_context=ssl.create_default_context(cafile=ca_file or None) if tls else None,
        )


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection; serves one request at a time for its current handler."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser: Any = httptools.HttpResponseParser(self)
        self.handler: ResponseHandler | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.reused = False
        self.closed = False
        self.idle_since = 0.0

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        handler = self.handler
        if handler is None:
            # bytes on an idle connection: the upstream is not speaking HTTP as we know it
            self.abort()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self.abort()
            if self.handler is not None:
                self.handler = None
                handler.on_upstream_lost(self, e)
            return
        if self.handler is not None:
            self.handler.on_upstream_data_end()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        handler = self.handler
        if handler is not None:
            self.handler = None
            handler.on_upstream_lost(self, exc)
        self.parser = None  # break the parser <-> protocol cycle

    def pause_writing(self) -> None:  # request bodies are small; nothing to throttle
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.handler is not None:
            self.handler.on_upstream_head(self.parser.get_status_code(), self.headers)

    def on_body(self, body: bytes) -> None:
        if self.handler is not None:
            self.handler.on_upstream_body(body)

    def on_message_complete(self) -> None:
        handler = self.handler
        keep = self.parser.should_keep_alive()
        self.handler = None
        if handler is not None:
            handler.on_upstream_complete(keep)
        self.pool.release(self, keep)

    # -- used by the exchange --------------------------------------------------------------
    def send(self, handler: ResponseHandler, parts: list[bytes]) -> None:
        self.handler = handler
        assert self.transport is not None
        self.transport.writelines(parts)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class UpstreamPool:
    """Idle keep-alive connections to one upstream, newest first."""

    def __init__(
        self,
        target: UpstreamTarget,
        *,
        connect_timeout: float = 10.0,
        max_idle: int = 256,
        idle_timeout: float = 30.0,
    ) -> None:
        self.target = target
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.idle: list[UpstreamConnection] = []
        self.open: set[UpstreamConnection] = set()
        self.closing = False

    def acquire(self) -> UpstreamConnection | None:
        """An idle connection, or None (then :meth:`connect`)."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.reused = True
                return conn
        return None

    async def connect(self) -> UpstreamConnection:
        """Open a new connection (raises OSError or TimeoutError)."""
        t = self.target
        loop = asyncio.get_running_loop()
        # asyncio.timeout, unlike wait_for, needs no extra task per connection
        async with asyncio.timeout(self.connect_timeout):
            _, conn = await loop.create_connection(
                lambda: UpstreamConnection(self),
                t.host,
                t.port,
                ssl=t.ssl_context,
                server_hostname=t.host if t.ssl_context else None,
            )
        self.open.add(conn)
        if self.closing:
            conn.abort()
            raise ConnectionError("key proxy is shutting down")
        return conn

    def release(self, conn: UpstreamConnection, keep_alive: bool) -> None:
        if keep_alive and not conn.closed and not self.closing and len(self.idle) < self.max_idle:
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
        elif not conn.closed:
            conn.closed = True
            if conn.transport is not None:
                conn.transport.close()

    def forget(self, conn: UpstreamConnection) -> None:
        self.open.discard(conn)

    def sweep(self, now: float) -> None:
        """Close connections idle for longer than ``idle_timeout`` (oldest are first)."""
        idle = self.idle
        cut = 0
        while cut < len(idle) and (
            idle[cut].closed or now - idle[cut].idle_since > self.idle_timeout
        ):
            cut += 1
        if cut:
            stale, self.idle = idle[:cut], idle[cut:]
            for conn in stale:
                if not conn.closed:
                    conn.closed = True
                    if conn.transport is not None:
                        conn.transport.close()

    def close(self) -> None:
        self.closing = True
        for conn in list(self.open):
            conn.abort()
        self.idle.clear()
