"""A lean RFC 6455 server connection, run on the raw socket after the HTTP handshake.

Why not tornado's ``WebSocketHandler``: for every frame it creates futures and a task, drops
and re-adds the socket's read interest and reads to EAGAIN a second time. Profiling a keystroke
round trip showed that machinery to be most of the server's share of the echo latency
(``benchmarks/terminal/RESULTS.md``). Here the socket is handed to an asyncio transport, a
frame is parsed in ``data_received`` and a message is written with one ``send``.

Scope: what the terminal needs, complete for that: text and binary messages, fragmentation,
ping/pong, keep-alive, the close handshake with code validation, a message size limit,
UTF-8 validation, write backpressure. A subprotocol is answered when the caller picks one of
the client's offers (the terminal picks ``claudehub.v2``: ``handshake_response``).
Extensions (permessage-deflate) are not negotiated; terminal frames are small and
compression costs more than it saves.

Conformance: ``tests/server_ext/test_ws_conformance.py``, a corpus modelled on the Autobahn
test suite's server cases. Errors are found as early as the bytes allow: a frame whose
header is wrong (out of place, oversized) is refused before its payload arrives, and a
fragmented text message is UTF-8 checked fragment by fragment (a single frame once it is
complete). A peer that floods pings without reading gets no more than the write buffer's
high-water mark of pongs queued (then only the latest ping is answered).
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import hashlib
import logging
import os
import socket
import struct
from collections.abc import Callable, Mapping

from tornado.iostream import IOStream, SSLIOStream, StreamClosedError

log = logging.getLogger(__name__)

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA_OPCODES = frozenset((CONTINUATION, TEXT, BINARY))
_CONTROL_OPCODES = frozenset((CLOSE, PING, PONG))

NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
#: codes a peer may send in a close frame (RFC 6455 7.4.1; 1004-1006 and 1015 are reserved)
_VALID_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                                1013, 1014))  # fmt: skip

#: how long a closing connection waits for the peer's close frame before dropping the socket
CLOSE_TIMEOUT = 5.0


class HandshakeError(Exception):
    """The request cannot be upgraded; ``status`` and ``message`` are the HTTP answer."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def requested_subprotocols(headers: Mapping[str, str]) -> list[str]:
    """The subprotocols the client offers (Sec-WebSocket-Protocol), in its order."""
    offered = headers.get("Sec-WebSocket-Protocol", "")
    return [name.strip() for name in offered.split(",") if name.strip()]


def handshake_response(
    method: str, headers: Mapping[str, str], subprotocol: str | None = None
) -> bytes:
    """The ``101 Switching Protocols`` answer to an upgrade request, or HandshakeError.

    ``subprotocol``: the one of the client's offers the server speaks, if any."""
    if method != "GET":
        raise HandshakeError(405, "A websocket is opened with GET.")
    if headers.get("Upgrade", "").lower() != "websocket":
        raise HandshakeError(400, 'Can "Upgrade" only to "WebSocket".')
    connection = [part.strip().lower() for part in headers.get("Connection", "").split(",")]
    if "upgrade" not in connection:
        raise HandshakeError(400, '"Connection" must be "Upgrade".')
    if headers.get("Sec-WebSocket-Version") != "13":
        raise HandshakeError(
            426, "Only websocket version 13 is supported.", {"Sec-WebSocket-Version": "13"}
        )
    key = headers.get("Sec-WebSocket-Key", "").strip()
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        valid_key = False
    if not valid_key:
        raise HandshakeError(400, "Missing or malformed Sec-WebSocket-Key.")
    accept = base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest())
    chosen = b"Sec-WebSocket-Protocol: " + subprotocol.encode() + b"\r\n" if subprotocol else b""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n" + chosen + b"\r\n"
    )


def _unmask(mask: bytes, payload: bytes) -> bytes:
    n = len(payload)
    if not n:
        return payload
    # one big-integer XOR: C speed without a per-byte Python loop
    key = int.from_bytes((mask * ((n >> 2) + 1))[:n], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


def _frame_header(opcode: int, length: int) -> bytes:
    if length < 126:
        return bytes((0x80 | opcode, length))
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, 127, length)


def _not_connected(data: bytes) -> None:
    raise RuntimeError("the websocket is not connected yet")


class WebSocketConnection(asyncio.Protocol):
    """The server end of one websocket. Subclasses override the ``on_*`` hooks.

    Keep-alive: a ping is sent every ``ping_interval`` seconds; a peer that has sent nothing
    at all (not even the pong) by the next tick is dropped. Backpressure: while more than
    ``high_water`` bytes are waiting for the socket, ``on_congestion(True)``; once it is down
    to ``low_water``, ``on_congestion(False)``.
    """

    def __init__(
        self,
        *,
        max_message_size: int = 10 << 20,
        ping_interval: float = 30.0,
        high_water: int = 1 << 20,
        low_water: int = 256 << 10,
    ) -> None:
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self._high_water, self._low_water = high_water, low_water
        self.transport: asyncio.BaseTransport | None = None
        self._preamble = b""  # the handshake response, written first
        self._initial = b""  # what the client sent after its request, read by tornado already
        self._write: Callable[[bytes], None] = _not_connected
        self._buf = bytearray()
        # a fragmented message being received: binary fragments as they came, text fragments
        # decoded as they come (so invalid UTF-8 fails the connection without waiting for
        # the end of the message)
        self._fragments: list[bytes] = []
        self._text: list[str] = []
        self._decoder: codecs.IncrementalDecoder | None = None
        self._fragment_opcode: int | None = None
        self._fragment_size = 0
        self._write_congested = False  # the transport is over its high-water mark
        self._pending_pong: bytes | None = None  # the latest ping not answered while congested
        self._close_sent = False
        self._input_done = False  # a close frame was received, or the input was bad
        self._heard = True  # something arrived since the last keep-alive ping
        self._keepalive: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._lost = False

    # ------------------------------------------------------------------ hooks

    def on_open(self) -> None:
        """The connection is up (the handshake response is on its way)."""

    def on_message(self, message: str | bytes) -> None:
        """A whole message: ``str`` for text frames, ``bytes`` for binary ones."""

    def on_congestion(self, congested: bool) -> None:
        """The socket is (no longer) taking what is written as fast as it comes."""

    def on_close(self) -> None:
        """The connection is gone (called once)."""

    # ------------------------------------------------------------------ sending

    @property
    def open(self) -> bool:
        """Messages can still be sent."""
        return not self._close_sent and not self._lost

    def send_text(self, text: str) -> None:
        """Send a text message (dropped silently once the connection is closing)."""
        self._send_frame(TEXT, text.encode("utf-8", "surrogatepass"))

    def send_bytes(self, data: bytes) -> None:
        """Send a binary message (dropped silently once the connection is closing)."""
        self._send_frame(BINARY, data)

    def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the close handshake; the socket is dropped if the peer does not answer."""
        if self._lost or self._close_sent:
            return
        self._send_close(code, reason)
        if self._input_done:
            self._drop()
        else:
            loop = asyncio.get_running_loop()
            self._close_timer = loop.call_later(CLOSE_TIMEOUT, self._drop)

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        if self._close_sent or self._lost:
            return
        self._write(_frame_header(opcode, len(payload)) + payload)

    def _send_close(self, code: int | None, reason: str = "") -> None:
        # at most 123 bytes of reason, cut at a character boundary (it must stay valid UTF-8)
        text = reason.encode()[:123].decode("utf-8", "ignore").encode()
        payload = b"" if code is None else struct.pack("!H", code) + text
        self._send_frame(CLOSE, payload)
        self._close_sent = True

    def _drop(self) -> None:
        if self.transport is not None and not self._lost:
            self.transport.close()  # what is buffered is still written, then the socket closes

    def _fail(self, code: int, why: str) -> None:
        """The peer broke the protocol: say why in a close frame and drop the connection."""
        log.info("closing a websocket (%s): %s", code, why)
        self._input_done = True
        if not self._close_sent:
            self._send_close(code, why)
        self._drop()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._write = transport.write  # type: ignore[attr-defined]
        if isinstance(transport, asyncio.WriteTransport):
            # (TCP_NODELAY: asyncio's and uvloop's TCP transports set it themselves)
            transport.set_write_buffer_limits(high=self._high_water, low=self._low_water)
        if self._preamble:
            self._write(self._preamble)
        if self.ping_interval > 0:
            loop = asyncio.get_running_loop()
            self._keepalive = loop.call_later(self.ping_interval, self._keepalive_tick)
        self.on_open()
        initial, self._initial = self._initial, b""
        if initial:
            self.data_received(initial)

    def _keepalive_tick(self) -> None:
        if self._lost:
            return
        if not self._heard:  # not even the pong of the last ping
            log.info("closing a websocket: no answer to a ping in %ss", self.ping_interval)
            if self.transport is not None:
                self.transport.abort()  # type: ignore[attr-defined]
            return
        self._heard = False
        self._send_frame(PING, b"")
        self._keepalive = asyncio.get_running_loop().call_later(
            self.ping_interval, self._keepalive_tick
        )

    def pause_writing(self) -> None:
        self._write_congested = True
        self.on_congestion(True)

    def resume_writing(self) -> None:
        self._write_congested = False
        pong, self._pending_pong = self._pending_pong, None
        if pong is not None:
            self._send_frame(PONG, pong)
        self.on_congestion(False)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        for timer in (self._keepalive, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._buf.clear()
        self._fragments.clear()
        self._text.clear()
        self.on_close()

    def eof_received(self) -> bool:
        return False  # a half-closed peer is gone: close our side too

    def data_received(self, data: bytes) -> None:
        self._heard = True
        if self._input_done:
            return
        if self._buf:
            self._buf += data
            buf: bytes | bytearray = self._buf
        else:
            buf = data
        pos, end_of_data = 0, len(buf)
        while end_of_data - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            start = pos + 2
            if length == 126:
                if end_of_data - pos < 4:
                    break
                length = int.from_bytes(buf[start : start + 2], "big")
                start += 2
            elif length == 127:
                if end_of_data - pos < 10:
                    break
                length = int.from_bytes(buf[start : start + 8], "big")
                start += 8
            opcode = b0 & 0x0F
            if not self._header_ok(b0, b1, opcode, length):
                return
            end = start + 4 + length
            if end > end_of_data:
                break
            payload = _unmask(bytes(buf[start : start + 4]), bytes(buf[start + 4 : end]))
            pos = end
            self._on_frame(bool(b0 & 0x80), opcode, payload)
            if self._input_done:
                return
        if pos == end_of_data:
            self._buf = bytearray()
        elif buf is self._buf:
            del self._buf[:pos]
        else:
            self._buf = bytearray(buf[pos:])

    # ------------------------------------------------------------------ frames

    def _header_ok(self, b0: int, b1: int, opcode: int, length: int) -> bool:
        """Check a frame on its header alone (before its payload is waited for). The
        fragmentation state is that after every earlier frame: frames are handled in order."""
        if b0 & 0x70:
            self._fail(PROTOCOL_ERROR, "reserved bits set (no extension was negotiated)")
        elif not b1 & 0x80:
            self._fail(PROTOCOL_ERROR, "a frame from the client was not masked")
        elif length >> 63:
            self._fail(PROTOCOL_ERROR, "the top bit of a 64-bit length was set")
        elif opcode in _CONTROL_OPCODES:
            if not b0 & 0x80 or length > 125:
                self._fail(PROTOCOL_ERROR, "a control frame was fragmented or too long")
        elif opcode not in _DATA_OPCODES:
            self._fail(PROTOCOL_ERROR, f"unknown opcode {opcode}")
        elif opcode == CONTINUATION and self._fragment_opcode is None:
            self._fail(PROTOCOL_ERROR, "a continuation frame without a message to continue")
        elif opcode != CONTINUATION and self._fragment_opcode is not None:
            self._fail(PROTOCOL_ERROR, "a new message inside a fragmented one")
        elif self._fragment_size + length > self.max_message_size:
            self._fail(MESSAGE_TOO_BIG, f"message over {self.max_message_size} bytes")
        return not self._input_done

    def _on_frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        # (_header_ok has refused frames out of place: a continuation here continues a
        # message, any other data frame starts one)
        if opcode == PING:
            if self._write_congested:
                # a peer that pings and does not read: queue no answer per ping (a flood would
                # pile up in memory); RFC 6455 5.5.3 allows answering only the most recent one
                self._pending_pong = payload
            else:
                self._send_frame(PONG, payload)
        elif opcode == PONG:
            pass  # its arrival already counted as heard (data_received)
        elif opcode == CLOSE:
            self._on_close_frame(payload)
        elif fin and opcode != CONTINUATION:
            self._deliver(opcode, payload)
        else:
            self._on_fragment(fin, opcode, payload)

    def _on_fragment(self, fin: bool, opcode: int, payload: bytes) -> None:
        """A frame of a fragmented message: the first (TEXT or BINARY) or a continuation."""
        if opcode != CONTINUATION:
            self._fragment_opcode = opcode
            if opcode == TEXT:
                self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._fragment_size += len(payload)
        if self._decoder is not None:
            try:
                self._text.append(self._decoder.decode(payload, final=fin))
            except UnicodeDecodeError:
                self._fail(INVALID_DATA, "a text message was not valid UTF-8")
                return
        else:
            self._fragments.append(payload)
        if not fin:
            return
        message: str | bytes
        if self._decoder is not None:
            message = "".join(self._text)
        else:
            message = b"".join(self._fragments)
        self._fragments, self._text, self._decoder = [], [], None
        self._fragment_opcode, self._fragment_size = None, 0
        self.on_message(message)

    def _deliver(self, opcode: int, payload: bytes) -> None:
        if opcode == TEXT:
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(INVALID_DATA, "a text message was not valid UTF-8")
                return
            self.on_message(text)
        else:
            self.on_message(payload)

    def _on_close_frame(self, payload: bytes) -> None:
        code: int | None = None
        if len(payload) == 1:
            self._fail(PROTOCOL_ERROR, "a close frame with a one-byte body")
            return
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if code not in _VALID_CLOSE_CODES and not 3000 <= code <= 4999:
                self._fail(PROTOCOL_ERROR, f"close code {code} is not one a peer may send")
                return
            try:
                payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                self._fail(INVALID_DATA, "the close reason was not valid UTF-8")
                return
        self._input_done = True
        if not self._close_sent:
            self._send_close(code)
        self._drop()  # the server closes the TCP connection first (RFC 6455 7.1.1)


class _StreamTransport:
    """Carries a WebSocketConnection over a tornado IOStream, for TLS sockets.

    asyncio cannot take over a socket whose TLS session another library set up, so with
    ``ServerApp.certfile`` (JupyterHub's internal_ssl) frames go through tornado's SSLIOStream.
    """

    def __init__(self, stream: IOStream, protocol: WebSocketConnection) -> None:
        self.stream = stream
        self.protocol = protocol
        self._unsent = 0
        self._congested = False
        self._closing = False
        self._reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.protocol.connection_made(self)  # type: ignore[arg-type]
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())  # kept: not GCed

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.stream.read_bytes(65536, partial=True)
                self.protocol.data_received(data)
        except StreamClosedError:
            pass
        finally:
            self.protocol.connection_lost(None)

    def write(self, data: bytes) -> None:
        if self._closing or self.stream.closed():
            return
        size = len(data)
        self._unsent += size
        try:
            future = self.stream.write(data)
        except StreamClosedError:
            return
        if not self._congested and self._unsent > self.protocol._high_water:
            self._congested = True
            self.protocol.pause_writing()
        future.add_done_callback(lambda f: self._written(f, size))

    def _written(self, future: asyncio.Future[None], size: int) -> None:
        if not future.cancelled():
            future.exception()  # retrieved: a write racing a closed socket is not an error
        self._unsent -= size
        if self._congested and self._unsent <= self.protocol._low_water:
            self._congested = False
            self.protocol.resume_writing()
        if self._closing and not self._unsent:
            self.stream.close()

    def get_write_buffer_size(self) -> int:
        return self._unsent

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True
        if not self._unsent:
            self.stream.close()

    def abort(self) -> None:
        self._closing = True
        self.stream.close()


async def serve(
    stream: IOStream, protocol: WebSocketConnection, handshake: bytes, initial: bytes = b""
) -> None:
    """Run ``protocol`` on a stream detached from tornado's HTTP server.

    ``handshake`` (the 101 response) is written first; ``initial`` is what the client sent
    after its request and tornado had already read.
    """
    protocol._preamble, protocol._initial = handshake, initial
    if isinstance(stream, SSLIOStream):
        _StreamTransport(stream, protocol).start()
        return
    original = stream.socket
    if original is None or stream.closed():
        return  # the client went away during the handshake: nothing was started
    # a second descriptor for the same connection: tornado closes its own one as usual
    sock = socket.socket(fileno=os.dup(original.fileno()))
    stream.close()
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.connect_accepted_socket(lambda: protocol, sock=sock)
