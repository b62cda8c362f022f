"""Hostile and broken requests: each gets a clear error, nothing reaches the upstream, and the
proxy keeps serving."""

from __future__ import annotations

import asyncio
import json
import resource
import socket

import pytest
import pytest_asyncio

from claudehub.proxy.service import KeyProxy
from tests.fakes.upstream import FakeAnthropic
from tests.helpers import PATIENCE
from tests.proxy.conftest import StartProxy, eventually, message_body, token

pytestmark = pytest.mark.asyncio

BODY = json.dumps(message_body()).encode()


@pytest_asyncio.fixture
async def proxy(fake_upstream: FakeAnthropic, start_proxy: StartProxy) -> KeyProxy:
    return await start_proxy(
        fake_upstream.url,
        max_body_bytes=4096,
        max_header_bytes=8192,
        header_timeout=0.5,
        body_timeout=0.5,
    )


def request(
    target: bytes = b"/v1/messages",
    *,
    method: bytes = b"POST",
    headers: bytes = b"",
    body: bytes = BODY,
    host: bytes = b"127.0.0.1",
) -> bytes:
    return (
        method
        + b" "
        + target
        + b" HTTP/1.1\r\nHost: "
        + host
        + b"\r\nx-api-key: "
        + token().encode()
        + b"\r\ncontent-type: application/json\r\n"
        + headers
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


async def exchange(port: int, data: bytes, *, close_after: bool = True) -> bytes:
    """Send raw bytes, return everything the proxy answers until it closes (at most PATIENCE s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        if close_after:
            return await asyncio.wait_for(_read_response(reader), PATIENCE)
        return await asyncio.wait_for(reader.read(), PATIENCE)
    finally:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def status_and_error(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body) if body else {}


async def still_serving(proxy: KeyProxy) -> None:
    status, data = status_and_error(await exchange(proxy.server.port, request()))
    assert status == 200 and data["type"] == "message"


@pytest.mark.parametrize(
    "target",
    [
        b"/v1/messages/../models",
        b"/v1/models/../messages",
        b"/v1/%2e%2e/v1/messages",
        b"/v1/messages%2fcount_tokens",
        b"/v1/messages%2Fcount_tokens",
        b"/v1//messages",
        b"/./v1/messages",
        b"/v1/messages;count_tokens",
        b"/v1/messages/count_tokens/..",
        b"//v1/messages",
        b"/V1/MESSAGES",
    ],
)
async def test_path_tricks_are_not_found(
    proxy: KeyProxy, fake_upstream: FakeAnthropic, target: bytes
) -> None:
    status, data = status_and_error(await exchange(proxy.server.port, request(target)))
    assert status == 404 and data["error"]["type"] == "not_found_error"
    assert fake_upstream.requests == []
    await still_serving(proxy)


@pytest.mark.parametrize(
    ("target", "method"),
    [
        (b"http://127.0.0.1/v1/messages", b"POST"),
        (b"http://api.anthropic.com/v1/messages", b"POST"),
        (b"https://evil.example/v1/messages?beta=true", b"POST"),
        (b"api.anthropic.com:443", b"CONNECT"),
        (b"*", b"OPTIONS"),
    ],
)
async def test_absolute_uri_and_proxy_style_requests_are_refused(
    proxy: KeyProxy, fake_upstream: FakeAnthropic, target: bytes, method: bytes
) -> None:
    status, data = status_and_error(
        await exchange(proxy.server.port, request(target, method=method))
    )
    assert status == 400 and data["error"]["type"] == "invalid_request_error"
    assert fake_upstream.requests == []
    await still_serving(proxy)


async def test_host_header_never_steers_the_request(
    proxy: KeyProxy, fake_upstream: FakeAnthropic
) -> None:
    for host in (b"api.anthropic.com", b"169.254.169.254", b"evil.example:8080", b""):
        status, _ = status_and_error(await exchange(proxy.server.port, request(host=host)))
        assert status == 200
    assert {r.headers["host"] for r in fake_upstream.requests} == {
        f"127.0.0.1:{fake_upstream.port}"
    }
    two_hosts = request(headers=b"Host: evil.example\r\n")
    status, data = status_and_error(await exchange(proxy.server.port, two_hosts))
    assert status == 400 and "Host" in data["error"]["message"]
    assert len(fake_upstream.requests) == 4


async def test_unknown_methods_are_refused(proxy: KeyProxy, fake_upstream: FakeAnthropic) -> None:
    for method in (b"BREW", b"PATCH", b"TRACE"):
        status, data = status_and_error(await exchange(proxy.server.port, request(method=method)))
        assert status in (400, 405) and data["type"] == "error"
    assert fake_upstream.requests == []
    await still_serving(proxy)


async def test_body_over_the_limit_is_413(proxy: KeyProxy, fake_upstream: FakeAnthropic) -> None:
    big = json.dumps(message_body(system="x" * 10000)).encode()
    status, data = status_and_error(await exchange(proxy.server.port, request(body=big)))
    assert status == 413 and data["error"]["type"] == "request_too_large"
    # the same through chunked encoding (no length announced up front)
    chunked = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: "
        + token().encode()
        + b"\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (1000, b"y" * 1000) for _ in range(6))
        + b"0\r\n\r\n"
    )
    status, data = status_and_error(await exchange(proxy.server.port, chunked))
    assert status == 413
    assert fake_upstream.requests == []
    await still_serving(proxy)


async def test_small_chunked_body_is_forwarded_with_a_length(
    proxy: KeyProxy, fake_upstream: FakeAnthropic
) -> None:
    chunked = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: "
        + token().encode()
        + b"\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n" % (len(BODY[:10]), BODY[:10])
        + b"%x\r\n%s\r\n" % (len(BODY[10:]), BODY[10:])
        + b"0\r\n\r\n"
    )
    status, _ = status_and_error(await exchange(proxy.server.port, chunked))
    assert status == 200
    (req,) = fake_upstream.requests
    assert req.raw == BODY and req.headers["content-length"] == str(len(BODY))
    assert "transfer-encoding" not in req.headers


@pytest.mark.parametrize(
    "framing",
    [
        b"content-length: 10\r\ntransfer-encoding: chunked\r\n",
        b"transfer-encoding: chunked\r\ncontent-length: 10\r\n",
        b"content-length: 10\r\ncontent-length: 11\r\n",
        b"content-length: -1\r\n",
        b"content-length: 1e3\r\n",
        b"transfer-encoding: gzip, chunked, identity\r\n",
    ],
)
async def test_conflicting_or_invalid_framing_is_refused(
    proxy: KeyProxy, fake_upstream: FakeAnthropic, framing: bytes
) -> None:
    raw = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: "
        + token().encode()
        + b"\r\n"
        + framing
        + b"\r\n"
        + b"0\r\n\r\n"
    )
    status, data = status_and_error(await exchange(proxy.server.port, raw))
    assert status == 400 and data["error"]["type"] == "invalid_request_error"
    assert fake_upstream.requests == []
    await still_serving(proxy)


@pytest.mark.parametrize(
    "injected",
    [
        b"anthropic-beta: a\rX-Api-Key: sk-stolen\r\n",
        b"anthropic-beta: a\nX-Api-Key: sk-stolen\r\n",
        b"anthropic-beta: a\x00b\r\n",
        b"anthropic beta: a\r\n",
        b" anthropic-beta: folded\r\n",
    ],
)
async def test_header_injection_is_refused(
    proxy: KeyProxy, fake_upstream: FakeAnthropic, injected: bytes
) -> None:
    status, data = status_and_error(await exchange(proxy.server.port, request(headers=injected)))
    assert status == 400 and data["type"] == "error"
    assert fake_upstream.requests == []
    await still_serving(proxy)


async def test_crlf_in_the_request_target_is_refused(
    proxy: KeyProxy, fake_upstream: FakeAnthropic
) -> None:
    status, _ = status_and_error(
        await exchange(proxy.server.port, request(b"/v1/messages?x=1\r\nX-Api-Key: a"))
    )
    assert status == 400
    assert fake_upstream.requests == []


async def test_oversized_headers_are_431(proxy: KeyProxy, fake_upstream: FakeAnthropic) -> None:
    status, _ = status_and_error(
        await exchange(
            proxy.server.port, request(headers=b"anthropic-beta: " + b"b" * 20000 + b"\r\n")
        )
    )
    assert status == 431
    many = b"".join(b"x-stainless-h%d: v\r\n" % i for i in range(2000))
    status, _ = status_and_error(await exchange(proxy.server.port, request(headers=many)))
    assert status == 431
    status, _ = status_and_error(
        await exchange(proxy.server.port, request(b"/v1/messages?" + b"q" * 20000))
    )
    assert status == 414
    assert fake_upstream.requests == []
    await still_serving(proxy)


async def test_slowloris_gets_cut_off(proxy: KeyProxy, fake_upstream: FakeAnthropic) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    raw = request()
    answer = b""
    for i in range(len(raw)):  # one byte at a time, slower than the header timeout allows
        try:
            writer.write(raw[i : i + 1])
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.sleep(0.1)
        if reader.at_eof() or len(reader._buffer):  # type: ignore[attr-defined]
            break
    answer = await asyncio.wait_for(reader.read(), PATIENCE)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    # a slow body is cut off as well
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    writer.write(request()[:-10])
    answer = await asyncio.wait_for(reader.read(), PATIENCE)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert fake_upstream.requests == []
    await still_serving(proxy)


async def test_garbage_is_400(proxy: KeyProxy, fake_upstream: FakeAnthropic) -> None:
    for junk in (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET / HTTP/9.9\r\n\r\n",
        b"hello\r\n\r\n",
    ):
        status, _ = status_and_error(await exchange(proxy.server.port, junk))
        assert status == 400
    assert fake_upstream.requests == []
    await still_serving(proxy)


@pytest.mark.slow
async def test_thousands_of_idle_connections_are_bounded_and_reaped(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy
) -> None:
    # client and proxy share this process: each idle connection costs two descriptors
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * 2000 + 500
    if soft < wanted and (hard == resource.RLIM_INFINITY or hard >= wanted):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    usable = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    sockets = min(2000, (usable - 500) // 2)
    bound = sockets * 3 // 4
    # The header timeout must outlast opening every socket (this loop also runs the proxy):
    # reaped early, the open connections would never reach the bound on a loaded machine.
    proxy = await start_proxy(fake_upstream.url, max_connections=bound, header_timeout=5.0)
    loop = asyncio.get_running_loop()
    socks = []
    try:
        for _ in range(sockets):
            s = socket.socket()
            s.setblocking(False)
            await loop.sock_connect(s, ("127.0.0.1", proxy.server.port))
            socks.append(s)
        await eventually(lambda: len(proxy.server.connections) >= bound)
        assert len(proxy.server.connections) == bound  # the rest were closed at accept
        # idle connections are reaped after the header timeout, and the proxy serves again
        await eventually(lambda: not proxy.server.connections)
        await still_serving(proxy)
    finally:
        for s in socks:
            s.close()


async def test_pipelined_requests_are_answered_in_order(
    proxy: KeyProxy, fake_upstream: FakeAnthropic
) -> None:
    stream_body = json.dumps(message_body(stream=True)).encode()
    raw = request() + request(b"/v1/models", method=b"GET", body=b"") + request(body=stream_body)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    writer.write(raw)
    first = await asyncio.wait_for(_read_response(reader), PATIENCE)
    second = await asyncio.wait_for(_read_response(reader), PATIENCE)
    third = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), PATIENCE)
    writer.close()
    assert status_and_error(first)[1]["type"] == "message"
    assert status_and_error(second)[0] == 404
    assert third.startswith(b"HTTP/1.1 200") and b"event: message_stop" in third
    assert len(fake_upstream.requests) == 2


async def test_expect_100_continue(proxy: KeyProxy, fake_upstream: FakeAnthropic) -> None:
    head = request(headers=b"Expect: 100-continue\r\n").split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    writer.write(head)
    assert (
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
        == b"HTTP/1.1 100 Continue\r\n\r\n"
    )
    writer.write(BODY)
    status, data = status_and_error(await asyncio.wait_for(_read_response(reader), PATIENCE))
    writer.close()
    assert status == 200 and data["type"] == "message"
    # a refused request is answered at once, without waiting for the body
    bad = head.replace(token().encode()[:20], b"x" * 20)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    writer.write(bad)
    status, data = status_and_error(await asyncio.wait_for(_read_response(reader), PATIENCE))
    writer.close()
    assert status == 401 and data["error"]["type"] == "authentication_error"
    assert len(fake_upstream.requests) == 1


async def test_http10_clients_get_streams_without_chunked_encoding(
    proxy: KeyProxy, fake_upstream: FakeAnthropic
) -> None:
    stream_body = json.dumps(message_body(stream=True)).encode()
    raw = request(body=stream_body).replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
    answer = await exchange(proxy.server.port, raw, close_after=False)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head
    assert b"transfer-encoding" not in head.lower()
    assert body.startswith(b"event: message_start") and body.endswith(
        b'event: message_stop\ndata: {"type": "message_stop"}\n\n'
    )
