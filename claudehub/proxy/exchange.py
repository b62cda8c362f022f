"""One forwarded request: the upstream exchange, the response relay, usage and timeouts.

An :class:`Exchange` owns a request from the moment it is forwarded until its response has been
relayed completely (or has failed); it is driven by callbacks from the upstream connection and
by the client connection (disconnects, back-pressure, the timeout sweeper).

It knows its client connection only as a :class:`Downstream` (the few things it reads and calls
there), and is handed its collaborators (pool, settings, metrics, limits, usage) when it is
made, so this module depends on neither the connection nor the listener.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from claudehub.proxy.errors import error_response, reason, sse_error_event
from claudehub.proxy.limits import Limits
from claudehub.proxy.metrics import Metrics
from claudehub.proxy.request import Request
from claudehub.proxy.settings import ProxySettings
from claudehub.proxy.upstream import UpstreamConnection, UpstreamPool
from claudehub.proxy.usage import SSEUsage, UsageRecorder, json_usage

log = logging.getLogger("claudehub.proxy")
access_log = logging.getLogger("claudehub.proxy.access")

# Response headers that describe the upstream hop, not the response.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"content-length",
        b"te",
        b"trailer",
        b"upgrade",
        b"set-cookie",
        b"alt-svc",
    }
)

#: Runs a background task for the exchange (the listener holds a reference until it ends).
Spawn = Callable[[Coroutine[Any, Any, None]], None]


class Downstream(Protocol):
    """What an exchange needs from the client connection it answers.

    The exchange writes the response straight to ``transport`` (one call per chunk: no layer in
    between on the hot path) and hands the connection back with :meth:`finish` or :meth:`drop`.
    """

    @property
    def transport(self) -> asyncio.Transport | None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def write_paused(self) -> bool: ...
    @property
    def shutting_down(self) -> bool: ...

    def finish(self, keep_alive: bool) -> None:
        """The response is completely written; go on with the next request (or close)."""
        ...

    def drop(self) -> None:
        """The response cannot be completed: forget this exchange and abort the connection."""
        ...


class Exchange:
    """One forwarded request: upstream connection, response relay, usage, timeouts."""

    __slots__ = (
        "bytes_in",
        "chunked_out",
        "client",
        "close_delimited",
        "deadline",
        "deadline_idle",
        "done",
        "fixed_head",
        "head",
        "idle_mark",
        "json_chunks",
        "last_data",
        "limits",
        "metrics",
        "paused",
        "pool",
        "req",
        "reservation",
        "retried",
        "sent_at",
        "settings",
        "spawn",
        "sse",
        "status",
        "ttfb",
        "upstream",
        "usage",
        "wrote_head",
    )

    def __init__(
        self,
        client: Downstream,
        req: Request,
        *,
        pool: UpstreamPool,
        fixed_head: bytes,
        settings: ProxySettings,
        metrics: Metrics,
        limits: Limits,
        usage: UsageRecorder,
        spawn: Spawn,
    ) -> None:
        """``fixed_head``: the header lines every upstream request starts with (host, real key)."""
        self.client = client
        self.req = req
        self.pool = pool
        self.fixed_head = fixed_head
        self.settings = settings
        self.metrics = metrics
        self.limits = limits
        self.usage = usage
        self.spawn = spawn
        self.upstream: UpstreamConnection | None = None
        self.status = 0
        self.head = b""
        self.wrote_head = False
        self.chunked_out = False
        self.close_delimited = False
        self.sse: SSEUsage | None = None
        self.json_chunks: list[bytes] | None = None
        self.bytes_in = 0
        self.idle_mark = -1
        self.deadline = 0.0
        self.sent_at = 0.0
        self.ttfb: float | None = None
        self.retried = False
        self.done = False
        self.paused = False
        self.reservation: str | None = None
        self.last_data = b""
        self.deadline_idle = 0.0

    # -- sending -----------------------------------------------------------------------------
    def start(self) -> None:
        """Send the request on an idle pooled connection, or on a new one."""
        conn = self.pool.acquire()
        if conn is not None:
            self._send(conn)
        else:
            self.spawn(self._connect_and_send())

    async def reserve_and_start(self, tokens: int) -> None:
        """Reserve ``tokens`` of the user's usage in the database, then :meth:`start`: a key
        proxy killed mid-answer leaves the reservation behind, charged in its stead."""
        reservation = await self.usage.reserve(
            self.req.user, self.req.server, self.req.route, tokens
        )
        if self.done:  # the client left while the reservation was written
            if reservation is not None:
                self.usage.release(reservation)
            return
        self.reservation = reservation
        self.start()

    async def _connect_and_send(self) -> None:
        try:
            conn = await self.pool.connect()
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._fail_before_head(
                504, "timeout", "The Anthropic API did not accept a connection in time."
            )
            return
        except OSError as e:
            self._fail_before_head(
                502,
                "connect",
                f"The key proxy could not reach the Anthropic API ({e.strerror or type(e).__name__}).",
            )
            return
        if self.done:  # the client left while we connected: keep the connection for others
            self.pool.release(conn, True)
            return
        self._send(conn)

    def _send(self, conn: UpstreamConnection) -> None:
        req = self.req
        self.upstream = conn
        self.sent_at = time.monotonic()
        self.deadline = self.sent_at + self.settings.upstream_timeout
        parts = [
            b"POST "
            + self.pool.target.base_path
            + req.url
            + b" HTTP/1.1\r\n"
            + self.fixed_head
            + b"".join(req.forward)
            + b"content-length: %d\r\n\r\n" % req.body_len
        ]
        parts.extend(req.body)
        conn.send(self, parts)
        if self.client.write_paused:  # the client is still draining an earlier response
            self.pause_upstream()

    # -- upstream callbacks ------------------------------------------------------------------
    def on_upstream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Response headers: build the client's head now, write it with the first body bytes."""
        now = time.monotonic()
        self.ttfb = now - self.sent_at
        self.metrics.observe_ttfb(self.ttfb)
        self.deadline = 0.0
        self.status = status
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason(status))]
        length: bytes | None = None
        chunked = False
        event_stream = False
        for name, value in headers:
            low = name.lower()
            if low in _HOP_BY_HOP:
                if low == b"content-length":
                    length = value
                elif low == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                continue
            if low == b"content-type" and value.startswith(b"text/event-stream"):
                event_stream = True
            lines.append(name + b": " + value + b"\r\n")
        keep = self.req.keep_alive and not self.client.shutting_down
        if length is not None and not chunked:
            lines.append(b"content-length: " + length + b"\r\n")
        else:
            self.close_delimited = not chunked
            if self.req.http10:
                keep = False  # HTTP/1.0 has no chunked encoding: the end is the close
                self.req.keep_alive = False
            else:
                self.chunked_out = True
                lines.append(b"transfer-encoding: chunked\r\n")
        lines.append(b"connection: keep-alive\r\n\r\n" if keep else b"connection: close\r\n\r\n")
        self.head = b"".join(lines)
        if status == 200 and self.req.route == "/v1/messages":
            if event_stream:
                self.sse = SSEUsage()
            else:
                self.json_chunks = []

    def on_upstream_data_end(self) -> None:
        # flush response headers that no body bytes came with (e.g. a stream's first wait)
        if self.head and not self.wrote_head:
            self._write(self.head)
            self.wrote_head = True
            self.head = b""

    def on_upstream_body(self, data: bytes) -> None:
        """A piece of the response body: relay it at once, then meter it."""
        self.bytes_in += len(data)
        transport = self.client.transport
        if transport is not None and not self.client.closed:
            # relay first, meter afterwards: usage scanning never delays the bytes
            if self.wrote_head:
                if not self.chunked_out:
                    transport.write(data)
                elif len(data) < 16384:  # one small copy beats a vectored write for SSE events
                    transport.write(b"%x\r\n%s\r\n" % (len(data), data))
                else:
                    transport.writelines([b"%x\r\n" % len(data), data, b"\r\n"])
            else:
                if self.chunked_out:
                    transport.writelines([self.head, b"%x\r\n" % len(data), data, b"\r\n"])
                else:
                    transport.writelines([self.head, data])
                self.wrote_head = True
                self.head = b""
        if self.sse is not None:
            self.sse.feed(data)
            self.last_data = data
        elif self.json_chunks is not None and self.bytes_in <= 4 << 20:
            self.json_chunks.append(data)

    def on_upstream_complete(self, keep_alive: bool) -> None:
        """The response ended: finish the client's response and account for it."""
        self._resume_for_pool()
        self.upstream = None
        tail = b"0\r\n\r\n" if self.chunked_out else b""
        if not self.wrote_head:
            tail = self.head + tail
            self.wrote_head = True
        if tail:
            self._write(tail)
        self._end(self.status)
        self.client.finish(self.req.keep_alive)

    def on_upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None:
        """The upstream connection broke: retry once, or end the client's response with an error."""
        if self.done:
            return
        self.upstream = None
        if self.status == 0:
            if conn.reused and not self.retried and self.bytes_in == 0:
                # a keep-alive connection the upstream had just closed: try a fresh one once
                self.retried = True
                self.spawn(self._connect_and_send())
                return
            self._fail_before_head(
                502, "reset", "The connection to the Anthropic API was lost before it answered."
            )
            return
        if self.close_delimited:
            self.on_upstream_complete(False)
            return
        self._fail_mid_stream("reset", "The connection to the Anthropic API was lost mid-response.")

    # -- failure paths -------------------------------------------------------------------------
    def _fail_before_head(self, status: int, kind: str, message: str) -> None:
        if self.done:
            return
        self.metrics.count_upstream_error(kind)
        log.warning(
            "Upstream failure (%s) for %s %s: %s", kind, self.req.user, self.req.route, message
        )
        self._drop_upstream()
        self.status = status
        self._write(
            error_response(
                status,
                "api_error" if status != 504 else "timeout_error",
                message,
                keep_alive=self.req.keep_alive and not self.client.shutting_down,
            )
        )
        self.wrote_head = True
        self._end(status)
        self.client.finish(self.req.keep_alive)

    def _fail_mid_stream(self, kind: str, message: str) -> None:
        self.metrics.count_upstream_error(kind)
        log.warning("Upstream failure mid-response (%s) for %s: %s", kind, self.req.user, message)
        self._drop_upstream()
        client = self.client
        if self.sse is not None and client.transport is not None:
            # end the stream the way the API does when it fails mid-stream: an error event
            event = sse_error_event("api_error", message)
            if not self.last_data.endswith(b"\n\n"):
                event = b"\n\n" + event
            out = b"%x\r\n%s\r\n0\r\n\r\n" % (len(event), event) if self.chunked_out else event
            if not self.wrote_head:
                out = self.head + out
                self.wrote_head = True
            self._write(out)
            self._end(self.status)
            client.finish(False)
        else:
            # a body with a length cannot be ended early: only a broken connection says so
            self._end(self.status)
            client.drop()

    def cancel(self) -> None:
        """The client went away: stop the upstream request."""
        if self.done:
            return
        self.metrics.count_client_disconnect()
        self._drop_upstream()
        self._end(499)

    def _drop_upstream(self) -> None:
        """Abort the upstream request, if one is open, and hear nothing more from it.

        Aborting (not closing) makes the API stop generating, and billing, the response.
        """
        up = self.upstream
        if up is not None:
            self.upstream = None
            up.handler = None
            up.abort()

    def check_deadline(self, now: float) -> None:
        """Called by the sweeper: enforce the first-byte and the idle timeouts."""
        if self.done:
            return
        if self.deadline and now >= self.deadline:
            self._fail_before_head(504, "timeout", "The Anthropic API did not answer in time.")
            return
        if self.status and self.upstream is not None:
            if self.bytes_in != self.idle_mark:
                self.idle_mark = self.bytes_in
                self.deadline_idle = now
            elif now - self.deadline_idle > self.settings.upstream_idle_timeout:
                self._fail_mid_stream("timeout", "The Anthropic API stopped sending mid-response.")

    # -- flow control ----------------------------------------------------------------------------
    def pause_upstream(self) -> None:
        """The client stopped reading: stop reading the upstream (back-pressure)."""
        up = self.upstream
        if up is not None and up.transport is not None and not self.paused:
            self.paused = True
            up.transport.pause_reading()

    def resume_upstream(self) -> None:
        """The client reads again: so do we."""
        up = self.upstream
        if up is not None and up.transport is not None and self.paused:
            self.paused = False
            up.transport.resume_reading()

    def _resume_for_pool(self) -> None:
        # a connection going back to the pool must not stay paused
        if self.paused:
            self.resume_upstream()

    # -- helpers ----------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        transport = self.client.transport
        if transport is not None and not self.client.closed:
            transport.write(data)

    def _end(self, status: int) -> None:
        """Account for the finished exchange (metrics, usage, budget, access log)."""
        self.done = True
        req = self.req
        self.metrics.count_request(req.route, status)
        model = ""
        counts: list[int] | None = None
        if self.sse is not None:
            model, counts = self.sse.model, self.sse.usage
        elif self.json_chunks:
            body = self.json_chunks[0] if len(self.json_chunks) == 1 else b"".join(self.json_chunks)
            model, counts = json_usage(body)
        now = time.monotonic()
        if counts is not None:
            if any(counts):
                self.metrics.count_tokens(model, counts)
                self.limits.add_usage(req.user, self.limits.budget_tokens(counts))
        else:
            counts = [0, 0, 0, 0]
        self.usage.record(
            (req.user, req.server, model, req.route, status, self.sse is not None),
            counts,
            (now - req.started) * 1000,
            0.0 if self.ttfb is None else self.ttfb * 1000,
            self.reservation,
        )
        if self.settings.access_log:
            access_log.info(
                "%s %s %d user=%s model=%s %.1fms",
                "POST",
                req.route,
                status,
                req.user,
                model,
                (now - req.started) * 1000,
            )
