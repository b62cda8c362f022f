"""One forwarded request: the upstream exchange, the response relay, usage and timeouts.

An :class:`Exchange` owns a request from the moment it is forwarded until its response has been
relayed completely (or has failed); it is driven by callbacks from the upstream connection and
by the client connection (disconnects, back-pressure, the timeout sweeper).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from claudehub.proxy.errors import error_response, reason, sse_error_event
from claudehub.proxy.upstream import UpstreamConnection
from claudehub.proxy.usage import SSEUsage, json_usage

if TYPE_CHECKING:
    from claudehub.proxy.server import ClientConnection, Request

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
        "head",
        "idle_mark",
        "json_chunks",
        "last_data",
        "paused",
        "req",
        "retried",
        "sent_at",
        "srv",
        "sse",
        "status",
        "ttfb",
        "upstream",
        "wrote_head",
    )

    def __init__(self, client: ClientConnection, req: Request) -> None:
        self.client = client
        self.srv = client.srv
        self.req = req
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
        self.last_data = b""
        self.deadline_idle = 0.0

    # -- sending -----------------------------------------------------------------------------
    def start(self) -> None:
        conn = self.srv.pool.acquire()
        if conn is not None:
            self._send(conn)
        else:
            self.srv.spawn(self._connect_and_send())

    async def _connect_and_send(self) -> None:
        try:
            conn = await self.srv.pool.connect()
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
        if self.done:
            self.srv.pool.release(conn, True)
            return
        self._send(conn)

    def _send(self, conn: UpstreamConnection) -> None:
        req = self.req
        srv = self.srv
        self.upstream = conn
        self.sent_at = time.monotonic()
        self.deadline = self.sent_at + srv.settings.upstream_timeout
        base = srv.target.base_path
        parts = [
            b"POST "
            + base
            + req.url
            + b" HTTP/1.1\r\n"
            + srv.fixed_head
            + b"".join(req.forward)
            + b"content-length: %d\r\n\r\n" % req.body_len
        ]
        parts.extend(req.body)
        conn.send(self, parts)
        if self.client.write_paused:  # the client is still draining an earlier response
            self.pause_upstream()

    # -- upstream callbacks ------------------------------------------------------------------
    def on_upstream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        now = time.monotonic()
        self.ttfb = now - self.sent_at
        self.srv.metrics.observe_ttfb(self.ttfb)
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
        keep = self.req.keep_alive and not self.srv.closing
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
        if self.done:
            return
        self.upstream = None
        if self.status == 0:
            if conn.reused and not self.retried and self.bytes_in == 0:
                # a keep-alive connection the upstream had just closed: try a fresh one once
                self.retried = True
                self.srv.spawn(self._connect_and_send())
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
        srv = self.srv
        srv.metrics.upstream_errors[kind] = srv.metrics.upstream_errors.get(kind, 0) + 1
        log.warning(
            "Upstream failure (%s) for %s %s: %s", kind, self.req.user, self.req.route, message
        )
        if self.upstream is not None:
            self.upstream.handler = None
            self.upstream.abort()
            self.upstream = None
        self.status = status
        self._write(
            error_response(
                status,
                "api_error" if status != 504 else "timeout_error",
                message,
                keep_alive=self.req.keep_alive and not srv.closing,
            )
        )
        self.wrote_head = True
        self._end(status)
        self.client.finish(self.req.keep_alive)

    def _fail_mid_stream(self, kind: str, message: str) -> None:
        srv = self.srv
        srv.metrics.upstream_errors[kind] = srv.metrics.upstream_errors.get(kind, 0) + 1
        log.warning("Upstream failure mid-response (%s) for %s: %s", kind, self.req.user, message)
        if self.upstream is not None:
            self.upstream.handler = None
            self.upstream.abort()
            self.upstream = None
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
            self._end(self.status)
            client.exchange = None
            client.abort()

    def cancel(self) -> None:
        """The client went away: stop the upstream request."""
        if self.done:
            return
        self.srv.metrics.client_disconnects += 1
        if self.upstream is not None:
            self.upstream.handler = None
            self.upstream.abort()
            self.upstream = None
        self._end(499)

    def check_deadline(self, now: float) -> None:
        if self.done:
            return
        if self.deadline and now >= self.deadline:
            self._fail_before_head(504, "timeout", "The Anthropic API did not answer in time.")
            return
        if self.status and self.upstream is not None:
            if self.bytes_in != self.idle_mark:
                self.idle_mark = self.bytes_in
                self.deadline_idle = now
            elif now - self.deadline_idle > self.srv.settings.upstream_idle_timeout:
                self._fail_mid_stream("timeout", "The Anthropic API stopped sending mid-response.")

    # -- flow control ----------------------------------------------------------------------------
    def pause_upstream(self) -> None:
        up = self.upstream
        if up is not None and up.transport is not None and not self.paused:
            self.paused = True
            up.transport.pause_reading()

    def resume_upstream(self) -> None:
        up = self.upstream
        if up is not None and up.transport is not None and self.paused:
            self.paused = False
            up.transport.resume_reading()

    def _resume_for_pool(self) -> None:
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
        srv = self.srv
        metrics = srv.metrics
        key = (req.route, status)
        metrics.requests[key] = metrics.requests.get(key, 0) + 1
        model = ""
        usage: list[int] | None = None
        if self.sse is not None:
            model, usage = self.sse.model, self.sse.usage
        elif self.json_chunks:
            body = self.json_chunks[0] if len(self.json_chunks) == 1 else b"".join(self.json_chunks)
            model, usage = json_usage(body)
        now = time.monotonic()
        if usage is not None:
            if any(usage):
                tokens = metrics.tokens
                for kind, n in zip(
                    ("input", "output", "cache_creation", "cache_read"), usage, strict=True
                ):
                    if n:
                        k = (model, kind)
                        tokens[k] = tokens.get(k, 0) + n
                srv.limits.add_usage(req.user, srv.limits.budget_tokens(usage))
        else:
            usage = [0, 0, 0, 0]
        srv.usage.record(
            (req.user, req.server, model, req.route, status, self.sse is not None),
            usage,
            (now - req.started) * 1000,
            0.0 if self.ttfb is None else self.ttfb * 1000,
        )
        if srv.settings.access_log:
            access_log.info(
                "%s %s %d user=%s model=%s %.1fms",
                "POST",
                req.route,
                status,
                req.user,
                model,
                (now - req.started) * 1000,
            )
