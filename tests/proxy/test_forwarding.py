"""Forwarding: only the two Messages endpoints, real key swapped in, bytes passed through."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.fakes.upstream import FakeAnthropic
from tests.proxy.conftest import REAL_KEY, StartProxy, message_body, token

pytestmark = pytest.mark.asyncio

BETA = "interleaved-thinking-2025-05-14, fine-grained-tool-streaming-2025-05-14"


def headers(tok: str, **extra: str) -> dict[str, str]:
    h = {"x-api-key": tok, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    h.update(extra)
    return h


async def test_json_reply_passes_through_with_the_real_key(
    fake_upstream: FakeAnthropic,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    alice_token: str,
) -> None:
    fake_upstream.require_key = REAL_KEY
    proxy = await start_proxy(fake_upstream.url)
    async with http.post(
        f"{proxy.url}/v1/messages?beta=true", json=message_body(), headers=headers(alice_token)
    ) as r:
        assert r.status == 200
        data = await r.json()
        assert r.headers["request-id"] == "req_fake"
    assert data["content"][0]["text"] == "Hello from the fake upstream."
    (req,) = fake_upstream.requests
    assert (req.path, req.query) == ("/v1/messages", "beta=true")
    assert fake_upstream.keys_seen() == {REAL_KEY}


async def test_sse_stream_arrives_event_by_event_unchanged(
    fake_upstream: FakeAnthropic,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    alice_token: str,
) -> None:
    fake_upstream.script("abcdefghijklmnopqrstuvwxyz0123456789")
    proxy = await start_proxy(fake_upstream.url)
    direct = []
    async with http.post(
        f"{fake_upstream.url}/v1/messages",
        json=message_body(stream=True, tools=[{"name": "Read"}]),
        headers=headers(REAL_KEY),
    ) as r:
        async for line in r.content:
            direct.append(line)
    fake_upstream.script("abcdefghijklmnopqrstuvwxyz0123456789")
    via = []
    async with http.post(
        f"{proxy.url}/v1/messages",
        json=message_body(stream=True, tools=[{"name": "Read"}]),
        headers=headers(alice_token),
    ) as r:
        assert r.status == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        async for line in r.content:
            via.append(line)

    def normalize(lines: list[bytes]) -> list[bytes]:
        return [x.replace(b"msg_fake000001", b"X").replace(b"msg_fake000002", b"X") for x in lines]

    assert normalize(via) == normalize(direct)
    assert b"event: message_stop\n" in via
    assert fake_upstream.keys_seen() == {REAL_KEY}


async def test_count_tokens_is_forwarded(
    fake_upstream: FakeAnthropic,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    alice_token: str,
) -> None:
    proxy = await start_proxy(fake_upstream.url)
    async with http.post(
        f"{proxy.url}/v1/messages/count_tokens", json=message_body(), headers=headers(alice_token)
    ) as r:
        assert r.status == 200
        assert "input_tokens" in await r.json()
    assert fake_upstream.requests[0].path == "/v1/messages/count_tokens"


async def test_allowlisted_headers_arrive_byte_identical_and_credentials_do_not(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, alice_token: str
) -> None:
    import asyncio

    proxy = await start_proxy(fake_upstream.url)
    body = json.dumps(message_body()).encode()
    raw = (
        b"POST /v1/messages?beta=true HTTP/1.1\r\n"
        b"Host: evil.example\r\n"
        b"X-Api-Key: " + alice_token.encode() + b"\r\n"
        b"Authorization: Bearer also-not-forwarded\r\n"
        b"Cookie: session=secret\r\n"
        b"Anthropic-Version: 2023-06-01\r\n"
        b"anthropic-beta: " + BETA.encode() + b"\r\n"
        b"User-Agent: claude-cli/2.1.328 (external, cli)\r\n"
        b"X-Stainless-Retry-Count: 0\r\n"
        b"x-claude-code-session-id: 5f0c-aa\r\n"
        b"X-Forwarded-For: 10.0.0.1\r\n"
        b"anthropic-dangerous-direct-browser-access: true\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()
    (req,) = fake_upstream.requests
    h = req.headers
    assert h["anthropic-beta"] == BETA
    assert h["anthropic-version"] == "2023-06-01"
    assert h["user-agent"] == "claude-cli/2.1.328 (external, cli)"
    assert h["x-stainless-retry-count"] == "0"
    assert h["x-claude-code-session-id"] == "5f0c-aa"
    assert h["x-api-key"] == REAL_KEY
    assert h["host"] == f"127.0.0.1:{fake_upstream.port}"
    for dropped in (
        "authorization",
        "cookie",
        "x-forwarded-for",
        "anthropic-dangerous-direct-browser-access",
    ):
        assert dropped not in h
    assert req.raw == body


async def test_bearer_token_is_accepted_and_replaced(
    fake_upstream: FakeAnthropic,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    alice_token: str,
) -> None:
    proxy = await start_proxy(fake_upstream.url)
    h = {"authorization": f"Bearer {alice_token}", "anthropic-version": "2023-06-01"}
    async with http.post(f"{proxy.url}/v1/messages", json=message_body(), headers=h) as r:
        assert r.status == 200
    assert fake_upstream.keys_seen() == {REAL_KEY}
    assert "authorization" not in fake_upstream.requests[0].headers


async def test_upstream_errors_come_back_as_they_were(
    fake_upstream: FakeAnthropic,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    alice_token: str,
) -> None:
    fake_upstream.require_key = "sk-some-other-key"
    proxy = await start_proxy(fake_upstream.url)
    async with http.post(
        f"{proxy.url}/v1/messages", json=message_body(), headers=headers(alice_token)
    ) as r:
        assert r.status == 401
        assert await r.json() == {
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        }


async def test_without_a_real_key_every_request_is_told_what_to_set(
    fake_upstream: FakeAnthropic,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    alice_token: str,
) -> None:
    proxy = await start_proxy(fake_upstream.url, api_key="")
    for tok in (alice_token, "garbage"):
        async with http.post(
            f"{proxy.url}/v1/messages", json=message_body(), headers=headers(tok)
        ) as r:
            assert r.status == 401
            err = (await r.json())["error"]
        assert err["type"] == "authentication_error"
        assert "ANTHROPIC_API_KEY" in err["message"]
    assert fake_upstream.requests == []


@pytest.mark.parametrize(
    ("tok", "fragment"),
    [
        (None, "No sandbox token"),
        ("sk-ant-api03-not-a-sandbox-token", "malformed"),
        (token("alice", ttl=-1), "expired"),
    ],
)
async def test_bad_tokens_get_401_and_never_reach_upstream(
    fake_upstream: FakeAnthropic,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    tok: str | None,
    fragment: str,
) -> None:
    proxy = await start_proxy(fake_upstream.url)
    h = {"anthropic-version": "2023-06-01"} if tok is None else headers(tok)
    async with http.post(f"{proxy.url}/v1/messages", json=message_body(), headers=h) as r:
        assert r.status == 401
        err = (await r.json())["error"]
    assert err["type"] == "authentication_error" and fragment in err["message"]
    assert fake_upstream.requests == []


async def test_forged_token_from_another_secret_is_refused(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    from claudehub.contract.tokens import mint_token

    proxy = await start_proxy(fake_upstream.url)
    forged = mint_token(b"guessed-secret", "admin", ttl=3600)
    async with http.post(
        f"{proxy.url}/v1/messages", json=message_body(), headers=headers(forged)
    ) as r:
        assert r.status == 401
    assert fake_upstream.requests == []


@pytest.mark.parametrize(
    ("method", "path", "status", "kind"),
    [
        ("GET", "/v1/messages", 405, "invalid_request_error"),
        ("PUT", "/v1/messages/count_tokens", 405, "invalid_request_error"),
        ("GET", "/v1/models", 404, "not_found_error"),
        ("POST", "/v1/complete", 404, "not_found_error"),
        ("POST", "/v1/messages/batches", 404, "not_found_error"),
        ("POST", "/v1/messages/", 404, "not_found_error"),
        ("POST", "/services/keyproxy/v1/messages", 404, "not_found_error"),
        ("DELETE", "/", 404, "not_found_error"),
    ],
)
async def test_everything_else_is_an_anthropic_style_error(
    fake_upstream: FakeAnthropic,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    alice_token: str,
    method: str,
    path: str,
    status: int,
    kind: str,
) -> None:
    proxy = await start_proxy(fake_upstream.url)
    async with http.request(
        method, f"{proxy.url}{path}", json=message_body(), headers=headers(alice_token)
    ) as r:
        assert r.status == status
        data = await r.json()
    assert data["type"] == "error" and data["error"]["type"] == kind and data["error"]["message"]
    assert fake_upstream.requests == []


async def test_keep_alive_connection_serves_many_requests(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, alice_token: str
) -> None:
    proxy = await start_proxy(fake_upstream.url)
    conn = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=conn) as s:
        for i in range(5):
            async with s.post(
                f"{proxy.url}/v1/messages",
                json=message_body(stream=bool(i % 2)),
                headers=headers(alice_token),
            ) as r:
                assert r.status == 200
                await r.read()
        assert len(proxy.server.connections) == 1
    assert len(proxy.server.pool.open) == 1


async def test_without_a_token_secret_the_operator_is_told_what_to_set(
    fake_upstream: FakeAnthropic,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    alice_token: str,
) -> None:
    proxy = await start_proxy(fake_upstream.url, token_secret=b"")
    async with http.post(
        f"{proxy.url}/v1/messages", json=message_body(), headers=headers(alice_token)
    ) as r:
        assert r.status == 401 and r.headers["x-should-retry"] == "false"
        err = (await r.json())["error"]
    assert "CLAUDEHUB_TOKEN_SECRET" in err["message"]
    assert fake_upstream.requests == []
