"""Our RFC 6455 server (claudehub.server_ext.websocket) on the wire: the terminal's upgrade
(status codes, credentials, origin), frames built by hand (fragmentation, control frames,
extended lengths, byte-by-byte delivery), protocol errors and their close codes, the close
handshake, keep-alive, and interop with an independent client (websockets) over TCP and TLS."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import itertools
import json
import os
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from tornado import web
from tornado.httpserver import HTTPServer
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from claudehub.server_ext import websocket
from tests.helpers import PATIENCE, free_port

# no pytest.mark.asyncio: pytest-jupyter runs these coroutines on the server's own loop

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
LIMIT = 4096
SMALL_LIMIT = {"ServerApp": {"tornado_settings": {"websocket_max_message_size": LIMIT}}}
#: Fast keep-alive for these tests, but not so fast that a slow moment on a shared machine
#: (the client answering late) looks like a dead peer to the server.
PING_INTERVAL = 1.0
FAST_PINGS = {"ClaudeHubApp": {"ping_interval": PING_INTERVAL}}


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], request: pytest.FixtureRequest) -> Any:
    for section, values in getattr(request, "param", {}).items():
        jp_server_config.setdefault(section, {}).update(values)
    return jp_server_config


# ---------------------------------------------------------------------- a raw client


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True
) -> bytes:
    """One client frame, built by hand (masked with a random key unless ``mask=False``)."""
    b0 = (0x80 if fin else 0) | rsv | opcode
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = bytes((b0, bit | n))
    elif n < 1 << 16:
        head = struct.pack("!BBH", b0, bit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, bit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ k for b, k in zip(payload, itertools.cycle(key), strict=False))


def msg(*items: Any, pad_to: int = 0) -> bytes:
    """A JSON message of the terminal protocol (padded with spaces: still valid JSON)."""
    return json.dumps(list(items)).encode().ljust(pad_to)


def close_body(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


class Client:
    """One raw TCP connection: the HTTP upgrade by hand, then frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.output = ""
        self.events: list[list[Any]] = []
        self.kinds: set[int] = set()  # opcodes of the data frames received
        self.pongs: list[bytes] = []
        self.pings = 0
        self.answer_pings = True

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    async def read_head(self) -> None:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = [(k, v.strip()) for k, _, v in (ln.partition(":") for ln in lines if ln)]

    async def send(self, *frames: bytes) -> None:
        self.writer.write(b"".join(frames))
        await self.writer.drain()

    async def trickle(self, data: bytes) -> None:
        """One TCP write per byte."""
        for i in range(len(data)):
            self.writer.write(data[i : i + 1])
            await self.writer.drain()
            await asyncio.sleep(0.001)

    async def read_frame(self, wait: float = PATIENCE) -> tuple[bool, int, bytes]:
        async with asyncio.timeout(wait):
            b0, b1 = await self.reader.readexactly(2)
            assert not b1 & 0x80, "a server frame was masked"
            assert not b0 & 0x70, "a server frame had reserved bits set"
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return bool(b0 & 0x80), b0 & 0x0F, await self.reader.readexactly(n)

    async def next(self, wait: float = PATIENCE) -> tuple[int, bytes]:
        """The next frame (pings are answered unless ``answer_pings`` is off)."""
        fin, opcode, payload = await self.read_frame(wait)
        assert fin, "the server fragmented a message"
        if opcode == PING:
            self.pings += 1
            if self.answer_pings:
                await self.send(frame(PONG, payload))
        elif opcode == PONG:
            self.pongs.append(payload)
        elif opcode in (TEXT, BINARY):
            self.kinds.add(opcode)
            self._record(opcode, payload)
        return opcode, payload

    def _record(self, opcode: int, payload: bytes) -> None:
        if opcode == BINARY:
            self.output += payload.decode()
            return
        message = json.loads(payload)
        if message[0] == "stdout":
            self.output += message[1]
        else:
            self.events.append(message)

    async def setup(self) -> dict[str, Any]:
        opcode, payload = await self.next()
        assert opcode == TEXT
        kind, info = json.loads(payload)
        assert kind == "setup"
        self.events.clear()
        self.kinds.clear()
        return info

    async def expect(self, text: str, wait: float = PATIENCE) -> None:
        async with asyncio.timeout(wait):
            while text not in self.output:
                opcode, _ = await self.next(wait)
                assert opcode != CLOSE, f"closed while waiting for {text!r}"

    async def expect_pong(self, payload: bytes, wait: float = PATIENCE) -> None:
        async with asyncio.timeout(wait):
            while payload not in self.pongs:
                opcode, _ = await self.next(wait)
                assert opcode != CLOSE

    async def expect_close(self, code: int | None, wait: float = PATIENCE) -> bytes:
        """Read up to the server's close frame; check its code; then the TCP connection ends."""
        async with asyncio.timeout(wait):
            while True:
                opcode, payload = await self.next(wait)
                if opcode == CLOSE:
                    break
        if code is None:
            assert payload == b""
        else:
            assert len(payload) >= 2 and struct.unpack("!H", payload[:2])[0] == code, payload
            payload[2:].decode()  # the reason is UTF-8
        async with asyncio.timeout(wait):
            rest = await self.reader.read()  # up to EOF: the server closed TCP
        assert rest == b"", f"data after the close frame: {rest[:40]!r}"
        return payload


async def http_request(port: int, lines: list[str], body: bytes = b"") -> Client:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = Client(reader, writer)
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()
    await client.read_head()
    return client


def upgrade_lines(port: int, path: str, headers: dict[str, str | None]) -> list[str]:
    base: dict[str, str | None] = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": RFC_KEY,
        "Sec-WebSocket-Version": "13",
    }
    base.update(headers)
    return [f"GET {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in base.items() if v is not None]


Open = Callable[..., Awaitable[Client]]


@pytest.fixture
def connect(
    jp_serverapp: Any,
    http_server: Any,
    jp_http_port: int,
    jp_base_url: str,
    jp_auth_header: dict[str, str],
) -> Any:
    """Opens a raw connection to the terminal websocket (token auth unless ``auth=False``).
    ``http_server``: pytest-jupyter's server listening on jp_http_port."""
    clients: list[Client] = []

    async def _open(
        headers: dict[str, str | None] | None = None, *, auth: bool = True, extra: bytes = b""
    ) -> Client:
        all_headers: dict[str, str | None] = dict(jp_auth_header) if auth else {}
        all_headers.update(headers or {})
        lines = upgrade_lines(jp_http_port, f"{jp_base_url}claude/terminal", all_headers)
        client = await http_request(jp_http_port, lines, extra)
        clients.append(client)
        return client

    yield _open
    for client in clients:
        client.writer.transport.abort()


async def opened(connect: Open, **kwargs: Any) -> Client:
    client = await connect(**kwargs)
    assert client.status == 101
    await client.setup()
    return client


async def assert_healthy(connect: Open, n: int) -> None:
    """A new connection works: the terminal echoes (``n`` keeps the marker unique)."""
    client = await opened(connect)
    await client.send(frame(TEXT, msg("stdin", f"echo ok-$(({n}+1000))\r")))
    await client.expect(f"ok-{n + 1000}")


def sessions(jp_serverapp: Any) -> Any:
    return jp_serverapp.web_app.settings["claude_sessions"]


async def no_connections(jp_serverapp: Any) -> None:
    """The server forgot its connections (on_close ran)."""
    async with asyncio.timeout(PATIENCE):
        while sessions(jp_serverapp).connections:  # noqa: ASYNC110 (polling the server)
            await asyncio.sleep(0.02)


# ---------------------------------------------------------------------- the upgrade


async def test_handshake_answers_the_rfc_key_and_negotiates_no_extension(connect: Open) -> None:
    deflate = "permessage-deflate; client_max_window_bits"
    # Upgrade is case-insensitive; Connection is a list (Firefox: "keep-alive, Upgrade")
    headers = {"Upgrade": "WebSocket", "Connection": "keep-alive, Upgrade"}
    client = await connect({**headers, "Sec-WebSocket-Extensions": deflate})
    assert client.status == 101
    assert client.header("Sec-WebSocket-Accept") == RFC_ACCEPT
    assert (client.header("Upgrade") or "").lower() == "websocket"
    assert client.header("Sec-WebSocket-Extensions") is None
    assert client.header("Sec-WebSocket-Protocol") is None
    info = await client.setup()
    assert info["alive"] is True and info["pid"] > 0 and info["mode"] == "shared"
    await client.send(frame(TEXT, msg("stdin", "echo plain-$((3*4))\r")))
    await client.expect("plain-12")  # read_frame checks that no frame has RSV1 (compressed)
    assert client.kinds == {TEXT}  # terminado JSON: ["stdout", text]


@pytest.mark.parametrize(
    ("offer", "chosen"),
    [("foo, claudehub.v2", "claudehub.v2"), ("claudehub.v2", "claudehub.v2"), ("foo", None)],
)
async def test_the_subprotocol_is_answered_only_when_claudehub_v2_is_offered(
    connect: Open, offer: str, chosen: str | None
) -> None:
    client = await connect({"Sec-WebSocket-Protocol": offer})
    assert client.status == 101
    assert client.header("Sec-WebSocket-Protocol") == chosen
    await client.setup()
    await client.send(frame(TEXT, msg("stdin", "echo sub-$((5*5))\r")))
    await client.expect("sub-25")
    assert client.kinds == ({BINARY} if chosen else {TEXT})


P = pytest.param


@pytest.mark.parametrize(
    ("headers", "auth", "status"),
    [
        P({"Upgrade": None}, True, 400, id="no-upgrade"),
        P({"Upgrade": "h2c"}, True, 400, id="upgrade-h2c"),
        P({"Connection": "keep-alive"}, True, 400, id="connection-keep-alive"),
        P({"Connection": None}, True, 400, id="no-connection"),
        P({"Sec-WebSocket-Version": "8"}, True, 426, id="version-8"),
        P({"Sec-WebSocket-Version": None}, True, 426, id="no-version"),
        P({"Sec-WebSocket-Key": None}, True, 400, id="no-key"),
        P({"Sec-WebSocket-Key": "not base64!"}, True, 400, id="key-not-base64"),
        P({"Sec-WebSocket-Key": base64.b64encode(b"x" * 15).decode()}, True, 400, id="key-15"),
        P({}, False, 403, id="no-credentials"),
        P({"Authorization": "token wrong"}, False, 403, id="wrong-token"),
    ],
)
async def test_bad_upgrades_are_refused_without_starting_a_terminal(
    connect: Open, jp_serverapp: Any, headers: dict[str, str | None], auth: bool, status: int
) -> None:
    client = await connect(headers, auth=auth)
    assert client.status == status
    assert client.header("Sec-WebSocket-Accept") is None
    if status == 426:
        assert client.header("Sec-WebSocket-Version") == "13"
    assert sessions(jp_serverapp).shared is None
    assert not sessions(jp_serverapp).connections


def set_cookies(response: Client, cookies: dict[str, str]) -> None:
    for name, value in response.headers:
        if name.lower() == "set-cookie":
            key, _, val = value.split(";")[0].partition("=")
            cookies[key] = val


async def cookie_login(port: int, base_url: str, token: str) -> str:
    """Log in with jupyter-server's login form (as a browser does): the Cookie header."""
    host = f"Host: 127.0.0.1:{port}"
    page = await http_request(port, [f"GET {base_url}login HTTP/1.1", host, "Connection: close"])
    page.writer.close()
    assert page.status == 200
    cookies: dict[str, str] = {}
    set_cookies(page, cookies)
    body = urlencode({"password": token, "_xsrf": cookies["_xsrf"]}).encode()
    form = [
        f"POST {base_url}login HTTP/1.1",
        host,
        "Connection: close",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {len(body)}",
        f"Cookie: _xsrf={cookies['_xsrf']}",
    ]
    post = await http_request(port, form, body)
    post.writer.close()
    assert post.status == 302, post.status
    set_cookies(post, cookies)
    assert any(key.startswith("username-") for key in cookies), cookies
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


async def test_a_cookie_login_cannot_be_used_from_another_site(
    connect: Open, jp_serverapp: Any, jp_http_port: int, jp_base_url: str
) -> None:
    """Cross-site websocket hijacking: a page elsewhere opens the socket with the user's
    cookie; the browser sends its own Origin, which the server must check."""
    cookie = await cookie_login(jp_http_port, jp_base_url, jp_serverapp.identity_provider.token)
    evil = await connect({"Cookie": cookie, "Origin": "http://evil.example"}, auth=False)
    assert evil.status == 403
    assert evil.header("Sec-WebSocket-Accept") is None
    assert sessions(jp_serverapp).shared is None
    same = await connect(
        {"Cookie": cookie, "Origin": f"http://127.0.0.1:{jp_http_port}"}, auth=False
    )
    assert same.status == 101
    assert same.header("Sec-WebSocket-Accept") == RFC_ACCEPT
    await same.setup()
    await same.send(frame(TEXT, msg("stdin", "echo cookie-$((8*8))\r")))
    await same.expect("cookie-64")


# ---------------------------------------------------------------------- frames


async def test_a_ping_is_answered_with_its_payload(connect: Open) -> None:
    client = await opened(connect)
    await client.send(frame(PING, b"hello\x00\xff"), frame(PING, b""))
    await client.expect_pong(b"hello\x00\xff")
    await client.expect_pong(b"")
    await client.send(frame(PING, b"p" * 125))  # the largest control frame
    await client.expect_pong(b"p" * 125)


async def test_a_fragmented_message_reaches_the_terminal(connect: Open) -> None:
    client = await opened(connect)
    data = json.dumps(["stdin", "echo frag-$((6*7))-é\r"], ensure_ascii=False).encode()
    cut = data.index("é".encode()) + 1  # a fragment boundary inside a UTF-8 character
    await client.send(
        frame(TEXT, data[:5], fin=False),
        frame(CONT, b"", fin=False),
        frame(CONT, data[5:cut], fin=False),
        frame(CONT, data[cut:]),
    )
    await client.expect("frag-42-é")


async def test_a_ping_between_fragments_is_answered_and_the_message_arrives(
    connect: Open,
) -> None:
    client = await opened(connect)
    data = msg("stdin", "echo mid-$((9*9))\r")
    await client.send(frame(TEXT, data[:7], fin=False))
    await client.send(frame(PING, b"between"))
    await client.expect_pong(b"between")  # answered while the message is incomplete
    await client.send(
        frame(CONT, data[7:12], fin=False), frame(PING, b"again"), frame(CONT, data[12:])
    )
    await client.expect("mid-81")
    await client.expect_pong(b"again")


async def test_a_frame_delivered_one_byte_per_write_works(connect: Open) -> None:
    client = await opened(connect)
    small = frame(TEXT, msg("stdin", "echo tiny-$((2*3))\r"))
    extended = frame(TEXT, msg("stdin", "echo slow-$((2*7))\r", pad_to=200))  # 16-bit length
    await client.trickle(small + extended)
    await client.expect("tiny-6")
    await client.expect("slow-14")


async def test_several_frames_in_one_write_all_work(connect: Open) -> None:
    client = await opened(connect)
    await client.send(
        frame(PING, b"one"),
        frame(TEXT, msg("set_size", 31, 97)),
        frame(TEXT, msg("stdin", "stty size; ")),
        frame(TEXT, msg("stdin", "echo many-$((3*11))\r")),
        frame(PING, b"two"),
    )
    await client.expect("many-33")
    assert "31 97" in client.output
    await client.expect_pong(b"two")
    assert client.pongs[:2] == [b"one", b"two"]


async def test_frames_sent_with_the_upgrade_request_are_not_lost(connect: Open) -> None:
    """Tornado has read them with the request; they must reach the connection first."""
    early = frame(TEXT, msg("stdin", "echo early-$((4*4))\r")) + frame(PING, b"early")
    client = await connect(extra=early)
    assert client.status == 101
    await client.setup()
    await client.expect("early-16")
    await client.expect_pong(b"early")


@pytest.mark.parametrize("length", [125, 126, 65535, 65536, 70000])
async def test_extended_payload_lengths(connect: Open, length: int) -> None:
    """7-bit, 16-bit and 64-bit lengths, at their boundaries (a padded set_size message)."""
    rows, cols = 10 + length % 37, 40 + length % 53
    client = await opened(connect)
    big = frame(TEXT, msg("set_size", rows, cols, pad_to=length))
    await client.trickle(big[:14])  # the header, its extended length and the mask, bit by bit
    await client.send(big[14:], frame(TEXT, msg("stdin", "stty size\r")))
    await client.expect(f"{rows} {cols}")


async def test_binary_frames_from_the_client_are_messages_too(connect: Open) -> None:
    client = await opened(connect)
    await client.send(frame(BINARY, msg("stdin", "echo bin-$((7*6))\r")))
    await client.expect("bin-42")


# ---------------------------------------------------------------------- protocol errors

PROTOCOL_ERRORS = {
    "unmasked": (frame(TEXT, msg("stdin", ""), mask=False), 1002),
    "rsv1": (frame(TEXT, msg("stdin", ""), rsv=0x40), 1002),
    "rsv3": (frame(PING, b"", rsv=0x10), 1002),
    "opcode-3": (frame(3, b"x"), 1002),
    "opcode-11": (frame(11, b""), 1002),
    "control-126-bytes": (frame(PING, b"x" * 126), 1002),
    "fragmented-ping": (frame(PING, b"x", fin=False), 1002),
    "orphan-continuation": (frame(CONT, b"x"), 1002),
    "text-inside-fragmented": (frame(TEXT, b'["st', fin=False) + frame(TEXT, b"[]"), 1002),
    "binary-inside-fragmented": (frame(TEXT, b"[", fin=False) + frame(BINARY, b"]"), 1002),
    "invalid-utf8": (frame(TEXT, b'["stdin", "\xff"]'), 1007),
    "surrogate-utf8": (frame(TEXT, b'["stdin", "\xed\xa0\x80"]'), 1007),
    "invalid-utf8-fragmented": (frame(TEXT, b'["\xc3', fin=False) + frame(CONT, b'("]'), 1007),
    "close-1005": (frame(CLOSE, close_body(1005)), 1002),
    "close-999": (frame(CLOSE, close_body(999)), 1002),
    "close-2000": (frame(CLOSE, close_body(2000)), 1002),
    "close-5000": (frame(CLOSE, close_body(5000)), 1002),
    "close-one-byte": (frame(CLOSE, b"\x03"), 1002),
    "close-invalid-reason": (frame(CLOSE, close_body(1000, b"bye\xff")), 1007),
}


@pytest.mark.parametrize("case", list(PROTOCOL_ERRORS))
async def test_protocol_errors_close_with_the_right_code(
    connect: Open, jp_serverapp: Any, case: str
) -> None:
    data, code = PROTOCOL_ERRORS[case]
    client = await opened(connect)
    await client.send(data)
    await client.expect_close(code)
    await no_connections(jp_serverapp)
    await assert_healthy(connect, 1)


@pytest.mark.parametrize("jp_server_config", [SMALL_LIMIT], indirect=True, ids=["limit"])
@pytest.mark.parametrize(
    "fragments", [[LIMIT + 1], [3000, LIMIT - 3000 + 1], [1, 1, LIMIT]], ids=str
)
async def test_a_message_over_the_limit_closes_with_1009(
    connect: Open, jp_serverapp: Any, fragments: list[int]
) -> None:
    client = await opened(connect)
    frames = [
        frame(CONT if i else TEXT, b" " * n, fin=i == len(fragments) - 1)
        for i, n in enumerate(fragments)
    ]
    await client.send(*frames)
    await client.expect_close(1009)
    await no_connections(jp_serverapp)
    await assert_healthy(connect, 2)


@pytest.mark.parametrize("jp_server_config", [SMALL_LIMIT], indirect=True, ids=["limit"])
async def test_a_message_of_exactly_the_limit_is_accepted(connect: Open) -> None:
    client = await opened(connect)
    whole = msg("stdin", "echo limit-$((2*2))\r", pad_to=LIMIT)
    await client.send(frame(TEXT, whole))
    await client.expect("limit-4")
    whole = msg("stdin", "echo limit-$((3*3))\r", pad_to=LIMIT)  # the same, in fragments
    await client.send(frame(TEXT, whole[:1000], fin=False), frame(CONT, whole[1000:]))
    await client.expect("limit-9")


# ---------------------------------------------------------------------- closing


@pytest.mark.parametrize(
    ("body", "code"),
    [
        P(close_body(1000, b"bye"), 1000, id="1000"),
        P(close_body(4000), 4000, id="4000"),
        P(close_body(3001, "é".encode()), 3001, id="3001-utf8-reason"),
        P(b"", None, id="empty"),
    ],
)
async def test_a_client_close_is_echoed_then_the_server_closes_tcp(
    connect: Open, jp_serverapp: Any, body: bytes, code: int | None
) -> None:
    client = await opened(connect)
    await client.send(frame(CLOSE, body))
    answer = await client.expect_close(code)
    assert answer == (b"" if code is None else struct.pack("!H", code))
    await no_connections(jp_serverapp)
    assert sessions(jp_serverapp).shared.alive  # the terminal lives on for the next tab


async def test_frames_after_the_close_frame_are_ignored(connect: Open) -> None:
    client = await opened(connect)
    late = frame(TEXT, msg("stdin", "echo late-$((5*9))\r"))
    await client.send(frame(CLOSE, close_body(1000)), late)
    await client.expect_close(1000)
    again = await opened(connect)  # the replay would show it, had it run
    await again.send(frame(TEXT, msg("stdin", "echo next-$((1+2))\r")))
    await again.expect("next-3")
    assert "late-45" not in again.output


# ---------------------------------------------------------------------- keep-alive


@pytest.mark.parametrize("jp_server_config", [FAST_PINGS], indirect=True, ids=["pings"])
async def test_a_client_that_answers_pings_stays_connected(connect: Open) -> None:
    client = await opened(connect)
    # read (and answer) until the third ping: still connected after it (counted in pings,
    # not in seconds, so a slow moment only makes this take longer)
    async with asyncio.timeout(PATIENCE):
        while client.pings < 3:
            opcode, _ = await client.next()
            assert opcode != CLOSE
    await client.send(frame(TEXT, msg("stdin", "echo alive-$((1+6))\r")))
    await client.expect("alive-7")


@pytest.mark.parametrize("jp_server_config", [FAST_PINGS], indirect=True, ids=["pings"])
async def test_a_silent_client_is_dropped(connect: Open, jp_serverapp: Any) -> None:
    client = await opened(connect)
    client.answer_pings = False
    with pytest.raises(asyncio.IncompleteReadError) as eof:
        async with asyncio.timeout(PATIENCE):
            while True:
                opcode, _ = await client.next()
                assert opcode != CLOSE  # dropped, not closed politely: the peer is gone
    assert eof.value.partial == b""
    # dropped for not answering a ping it was sent, not before one
    assert client.pings >= 1
    await no_connections(jp_serverapp)


# ---------------------------------------------------------------------- interop and TLS


class EchoConnection(websocket.WebSocketConnection):
    """Echoes every message; "close:<reason>" makes it close the connection (code 4002)."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = asyncio.Event()
        self.congestion: list[bool] = []

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.send_bytes(message)
        elif message.startswith("close:"):
            self.close(4002, message[6:])
        else:
            self.send_text(message)

    def on_congestion(self, congested: bool) -> None:
        self.congestion.append(congested)

    def on_close(self) -> None:
        self.closed.set()


@contextlib.asynccontextmanager
async def echo_server(
    ssl_ctx: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[int, list[EchoConnection]]]:
    """A minimal tornado server running EchoConnection behind ``websocket.serve``."""
    connections: list[EchoConnection] = []

    class Handler(web.RequestHandler):
        async def get(self) -> None:
            try:
                handshake = websocket.handshake_response(
                    self.request.method or "", self.request.headers
                )
            except websocket.HandshakeError as e:
                raise web.HTTPError(e.status, e.message) from None
            connection = EchoConnection()
            connections.append(connection)
            await websocket.serve(self.detach(), connection, handshake)

    server = HTTPServer(web.Application([(r"/echo", Handler)]), ssl_options=ssl_ctx)
    port = free_port()
    server.listen(port, "127.0.0.1")
    try:
        yield port, connections
    finally:
        server.stop()
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
        await server.close_all_connections()


def self_signed_cert(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_rfc4514_string("CN=127.0.0.1")
    now = datetime.datetime.now(datetime.UTC)
    one_day = datetime.timedelta(days=1)
    builder = x509.CertificateBuilder(
        name, name, key.public_key(), x509.random_serial_number(), now - one_day, now + one_day
    )
    ip = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    builder = builder.add_extension(x509.SubjectAlternativeName([ip]), critical=False)
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(ser.Encoding.PEM))
    pkcs8, plain = ser.PrivateFormat.PKCS8, ser.NoEncryption()
    key_file.write_bytes(key.private_bytes(ser.Encoding.PEM, pkcs8, plain))
    return cert_file, key_file


async def test_tls_echo_over_tornados_ssl_stream(tmp_path: Path) -> None:
    """With TLS the connection runs over tornado's SSLIOStream (_StreamTransport)."""
    cert, key = self_signed_cert(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    async with echo_server(server_ctx) as (port, connections):
        async with ws_connect(
            f"wss://127.0.0.1:{port}/echo", ssl=client_ctx, max_size=None, ping_interval=None
        ) as ws:
            await ws.send("héllo over tls")
            assert await ws.recv() == "héllo over tls"
            big = os.urandom(100 * 1024).hex()  # 200 KB of text
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send(b"\x00\xffbin")
            assert await ws.recv() == b"\x00\xffbin"
            huge = os.urandom(3 << 20)  # more than high_water: the transport congests
            await ws.send(huge)
            assert await ws.recv() == huge
            latency = await asyncio.wait_for(await ws.ping(b"tls-ping"), PATIENCE)
            assert latency >= 0
            assert connections[0].congestion == [True, False]
            await ws.close()
            assert ws.close_code == 1000
            assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000
        assert len(connections) == 1
        assert isinstance(connections[0].transport, websocket._StreamTransport)
        await asyncio.wait_for(connections[0].closed.wait(), PATIENCE)


async def test_interop_with_the_websockets_client_over_tcp() -> None:
    async with echo_server() as (port, connections):
        async with ws_connect(
            f"ws://127.0.0.1:{port}/echo", max_size=None, ping_interval=None
        ) as ws:
            assert ws.response is not None
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None  # none accepted
            await ws.send("text ✓")
            assert await ws.recv() == "text ✓"
            await ws.send(b"\x00\x01\xfe\xff")
            assert await ws.recv() == b"\x00\x01\xfe\xff"
            big = os.urandom(1 << 20)
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send([b"frag", b"ments"])  # a fragmented message
            assert await ws.recv() == b"fragments"
            await asyncio.wait_for(await ws.ping(b"tcp-ping"), PATIENCE)
            await ws.close(4001, "done")
            assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 4001
        assert not isinstance(connections[0].transport, websocket._StreamTransport)
        await asyncio.wait_for(connections[0].closed.wait(), PATIENCE)


async def test_a_server_close_is_answered_or_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """``close()``: a close frame, then TCP is dropped when the client answers, or after
    CLOSE_TIMEOUT when it does not."""
    monkeypatch.setattr(websocket, "CLOSE_TIMEOUT", 0.3)
    async with echo_server() as (port, connections):
        async with ws_connect(f"ws://127.0.0.1:{port}/echo", ping_interval=None) as ws:
            await ws.send("close:server says bye")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4002 and ws.close_reason == "server says bye"
        silent = await http_request(port, upgrade_lines(port, "/echo", {}))
        assert silent.status == 101
        t0 = time.monotonic()
        await silent.send(frame(TEXT, b"close:no answer"))
        assert await silent.expect_close(4002) == close_body(4002, b"no answer")
        # the TCP connection ended (expect_close waits for that) only after the server had
        # waited CLOSE_TIMEOUT for an answer. A lower bound only: t0 is taken before the
        # server can see the request, so a slow machine only makes this longer; how much
        # longer is not this test's business (no upper bound).
        assert time.monotonic() - t0 >= 0.25  # CLOSE_TIMEOUT, less the timer's slack
        await asyncio.wait_for(connections[1].closed.wait(), PATIENCE)


async def test_a_long_close_reason_is_cut_at_a_character_boundary() -> None:
    """A close frame's body is at most 125 bytes; the reason must stay valid UTF-8 when it
    is cut (or the client fails the connection with 1007 instead of seeing 4002)."""
    async with echo_server() as (port, _):
        async with ws_connect(f"ws://127.0.0.1:{port}/echo", ping_interval=None) as ws:
            await ws.send("close:" + "é" * 100)  # 200 bytes of UTF-8, two per character
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4002
            assert ws.close_reason and set(ws.close_reason) == {"é"}
