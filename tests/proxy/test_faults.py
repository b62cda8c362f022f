"""Faults: upstream down, slow, or dying mid-stream; clients leaving; shutdown; key rotation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.upstream import FakeAnthropic
from tests.helpers import PATIENCE, free_port
from tests.proxy.conftest import StartProxy, eventually, message_body, token

pytestmark = pytest.mark.asyncio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
START_EVENT = b'event: message_start\ndata: {"type":"message_start","message":{"model":"m","usage":{"input_tokens":3,"output_tokens":1}}}\n\n'


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


@contextlib.asynccontextmanager
async def raw_upstream(handler: Handler) -> AsyncIterator[str]:
    """An upstream that misbehaves exactly as ``handler`` says."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def call(http: aiohttp.ClientSession, url: str, stream: bool = False) -> tuple[int, bytes]:
    async with http.post(
        f"{url}/v1/messages", json=message_body(stream=stream), headers={"x-api-key": token()}
    ) as r:
        return r.status, await r.read()


async def test_upstream_refusing_connections_is_a_502(
    start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(f"http://127.0.0.1:{free_port()}")
    status, body = await call(http, proxy.url)
    assert status == 502
    err = json.loads(body)
    assert err["type"] == "error" and err["error"]["type"] == "api_error"
    assert "could not reach" in err["error"]["message"]
    assert proxy.metrics.upstream_errors == {"connect": 1}


async def test_upstream_that_never_answers_is_a_504(
    start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # until the proxy gives up

    async with raw_upstream(silent) as url:
        proxy = await start_proxy(url, upstream_timeout=0.3)
        status, body = await call(http, proxy.url)
    assert status == 504
    assert json.loads(body)["error"]["type"] == "timeout_error"


async def test_upstream_reset_mid_stream_ends_the_client_stream_cleanly(
    start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    async def dies(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            SSE_HEAD
            + chunk(START_EVENT)
            + chunk(b'event: content_block_delta\ndata: {"type":"cont')
        )
        await writer.drain()
        writer.transport.abort()  # reset, mid-event

    async with raw_upstream(dies) as url:
        proxy = await start_proxy(url)
        status, body = await asyncio.wait_for(call(http, proxy.url, stream=True), PATIENCE)
        assert status == 200
        assert body.startswith(START_EVENT)
        last = body.rstrip(b"\n").split(b"\n\n")[-1]
        assert last.startswith(b"event: error\ndata: ")
        assert json.loads(last.split(b"data: ", 1)[1])["error"]["type"] == "api_error"
        # the proxy keeps serving, and the partial stream's usage was still recorded
        assert proxy.metrics.upstream_errors == {"reset": 1}
        await proxy.recorder.flush()


async def test_upstream_dying_mid_json_closes_the_client_connection(
    start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"id":'
        )
        await writer.drain()
        writer.transport.abort()

    async with raw_upstream(truncated) as url:
        proxy = await start_proxy(url)
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(call(http, proxy.url), PATIENCE)


async def test_upstream_error_statuses_pass_through_unchanged(
    start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'

    async def overloaded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(
                b"HTTP/1.1 529 \r\ncontent-type: application/json\r\nx-should-retry: true\r\n"
                b"retry-after: 7\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()

    async with raw_upstream(overloaded) as url:
        proxy = await start_proxy(url)
        async with http.post(
            f"{proxy.url}/v1/messages", json=message_body(), headers={"x-api-key": token()}
        ) as r:
            assert r.status == 529
            assert r.headers["retry-after"] == "7" and r.headers["x-should-retry"] == "true"
            assert await r.read() == body


async def test_client_leaving_mid_stream_cancels_the_upstream_request(
    start_proxy: StartProxy,
) -> None:
    upstream_closed = asyncio.Event()

    async def slow_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(SSE_HEAD + chunk(START_EVENT))
        await writer.drain()
        await reader.read()  # returns when the proxy closes its side
        upstream_closed.set()

    async with raw_upstream(slow_stream) as url:
        proxy = await start_proxy(url)
        async with aiohttp.ClientSession() as s:
            resp = await s.post(
                f"{proxy.url}/v1/messages",
                json=message_body(stream=True),
                headers={"x-api-key": token()},
            )
            assert (await resp.content.readline()).startswith(b"event: message_start")
            resp.close()  # the user pressed Esc; the client drops the connection
        await asyncio.wait_for(upstream_closed.wait(), PATIENCE)
        assert proxy.metrics.client_disconnects == 1
        await proxy.recorder.flush()


async def test_graceful_shutdown_lets_open_streams_finish(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy
) -> None:
    fake_upstream.delay_between_events = 0.05
    proxy = await start_proxy(fake_upstream.url)
    async with aiohttp.ClientSession() as s:
        resp = await s.post(
            f"{proxy.url}/v1/messages",
            json=message_body(stream=True),
            headers={"x-api-key": token()},
        )
        first = await resp.content.readline()
        stopping = asyncio.ensure_future(proxy.stop(30))
        # the stop has begun (the listener is closing), however long that took to start
        await eventually(lambda: proxy.server.closing)
        # no new connections while draining
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as other:
                await other.post(
                    f"{proxy.url}/v1/messages", json=message_body(), headers={"x-api-key": token()}
                )
        rest = await resp.read()
        resp.close()
        await asyncio.wait_for(stopping, PATIENCE)
    assert first.startswith(b"event: message_start")
    assert b"event: message_stop" in rest


async def test_key_file_is_re_read_when_it_changes(
    fake_upstream: FakeAnthropic,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "anthropic-key"
    key_file.write_text("sk-ant-first-key\n")
    proxy = await start_proxy(
        fake_upstream.url, api_key="", api_key_file=str(key_file), file_poll_interval=0.05
    )
    assert (await call(http, proxy.url))[0] == 200
    # rotate the way a Kubernetes Secret volume does: a new file swapped in
    new = tmp_path / "anthropic-key.new"
    new.write_text("sk-ant-second-key\n")
    new.replace(key_file)
    reloads = proxy.metrics.key_reloads
    await eventually(lambda: proxy.metrics.key_reloads != reloads)
    fake_upstream.require_key = "sk-ant-second-key"
    assert (await call(http, proxy.url))[0] == 200
    assert [r.credential for r in fake_upstream.requests] == [
        "sk-ant-first-key",
        "sk-ant-second-key",
    ]


async def test_a_broken_key_file_keeps_the_key_in_use(
    fake_upstream: FakeAnthropic,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rotated file holding two lines (a botched copy) is refused as a whole."""
    key_file = tmp_path / "anthropic-key"
    key_file.write_text("sk-ant-first-key\n")
    proxy = await start_proxy(
        fake_upstream.url, api_key="", api_key_file=str(key_file), file_poll_interval=0.05
    )
    caplog.set_level("ERROR", logger="claudehub.proxy")
    new = tmp_path / "anthropic-key.new"
    new.write_text("sk-ant-second-key\nsk-ant-third-key\n")
    new.replace(key_file)
    await eventually(lambda: any("line break" in r.getMessage() for r in caplog.records))
    assert proxy.server.has_key
    assert (await call(http, proxy.url))[0] == 200
    assert [r.credential for r in fake_upstream.requests] == ["sk-ant-first-key"]
    assert not any("sk-ant-" in r.getMessage() for r in caplog.records)  # never logged

    # a proxy that had no key yet still has none: the operator's message, not an upstream 401
    empty = tmp_path / "empty-key"
    empty.write_text("")
    keyless = await start_proxy(
        fake_upstream.url, api_key="", api_key_file=str(empty), file_poll_interval=0.05
    )
    broken = tmp_path / "empty-key.new"
    broken.write_text("sk-ant-a\r\nsk-ant-b\n")
    broken.replace(empty)
    errors = sum("line break" in r.getMessage() for r in caplog.records)
    await eventually(lambda: sum("line break" in r.getMessage() for r in caplog.records) > errors)
    assert not keyless.server.has_key
    status, body = await call(http, keyless.url)
    assert status == 401 and b"no Anthropic API key configured" in body
    assert len(fake_upstream.requests) == 1


@pytest.fixture
def tls_cert(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_upstream_is_verified_and_kept_alive(
    start_proxy: StartProxy, http: aiohttp.ClientSession, tls_cert: tuple[Path, Path]
) -> None:
    cert, key = tls_cert
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    connections = []
    seen: list[bytes] = []
    body = (
        b'{"type":"message","model":"m","content":[],"usage":{"input_tokens":1,"output_tokens":2}}'
    )

    async def tls_api(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while True:
            try:
                seen.append(await read_request(reader))
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()

    server = await asyncio.start_server(tls_api, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        proxy = await start_proxy(f"https://localhost:{port}", upstream_ca_file=str(cert))
        for _ in range(3):
            assert (await call(http, proxy.url))[0] == 200
        assert len(connections) == 1  # one TLS handshake, then keep-alive
        assert all(b"\r\nhost: localhost:%d\r\n" % port in req for req in seen)
        # without the CA the certificate is rejected: no request goes out with the key
        untrusting = await start_proxy(f"https://localhost:{port}")
        status, answer = await call(http, untrusting.url)
        assert status == 502 and b"could not reach" in answer
        assert len(seen) == 3
    finally:
        server.close()


async def test_upstream_url_path_prefix_is_kept(
    start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    """An egress gateway at https://gateway/anthropic gets /anthropic/v1/messages?beta=true."""
    seen: list[bytes] = []
    body = (
        b'{"type":"message","model":"m","content":[],"usage":{"input_tokens":1,"output_tokens":1}}'
    )

    async def gateway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    async with raw_upstream(gateway) as url:
        proxy = await start_proxy(url + "/anthropic/")
        async with http.post(
            f"{proxy.url}/v1/messages?beta=true",
            json=message_body(),
            headers={"x-api-key": token()},
        ) as r:
            assert r.status == 200 and await r.read() == body
    assert seen[0].startswith(b"POST /anthropic/v1/messages?beta=true HTTP/1.1\r\n")


async def test_slow_reader_pauses_the_upstream_instead_of_buffering(
    start_proxy: StartProxy,
) -> None:
    total, piece = 64 << 20, 1 << 20
    sent = [0]

    async def firehose(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(SSE_HEAD)
        event = b"event: content_block_delta\ndata: " + b"x" * (piece - 40) + b"\n\n"
        while sent[0] < total:
            writer.write(chunk(event))
            await writer.drain()  # blocks while the proxy is not reading
            sent[0] += len(event)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with raw_upstream(firehose) as url:
        proxy = await start_proxy(url)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
        body = json.dumps(message_body(stream=True)).encode()
        writer.write(
            b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: %s\r\ncontent-length: %d\r\n\r\n%s"
            % (token().encode(), len(body), body)
        )
        # the client reads nothing: the upstream must stall long before it has sent everything
        last = -1
        while sent[0] != last:
            last = sent[0]
            await asyncio.sleep(0.3)
        assert sent[0] < total // 2
        (conn,) = proxy.server.connections
        assert conn.transport is not None and conn.transport.get_write_buffer_size() < 4 * piece
        # now read it all: nothing was lost
        received = 0
        while True:
            data = await asyncio.wait_for(reader.read(1 << 20), PATIENCE)
            received += len(data)
            if data.endswith(b"0\r\n\r\n"):
                break
        writer.close()
    assert sent[0] >= total and received > total
