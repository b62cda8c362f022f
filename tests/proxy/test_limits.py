"""Per-user limits: request rate, daily token budget, model allowlist, max_tokens cap."""

from __future__ import annotations

import aiohttp
import pytest

from claudehub.proxy.limits import Limits
from tests.fakes.upstream import FakeAnthropic
from tests.proxy.conftest import StartProxy, message_body, token

pytestmark = pytest.mark.asyncio


async def post(
    http: aiohttp.ClientSession, url: str, tok: str, body: dict | bytes
) -> tuple[int, dict, dict]:
    h = {"x-api-key": tok, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    kw = {"data": body} if isinstance(body, bytes) else {"json": body}
    async with http.post(f"{url}/v1/messages", headers=h, **kw) as r:
        return r.status, dict(r.headers), await r.json()


async def test_rate_limit_is_per_user_with_retry_after(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(fake_upstream.url, limits=Limits(rate_per_minute=3))
    alice, bob = token("alice"), token("bob")
    for _ in range(3):
        assert (await post(http, proxy.url, alice, message_body()))[0] == 200
    status, headers, data = await post(http, proxy.url, alice, message_body())
    assert status == 429
    assert data["error"]["type"] == "rate_limit_error"
    assert "3 requests per minute" in data["error"]["message"]
    assert 1 <= int(headers["Retry-After"]) <= 20
    # another user is not affected
    assert (await post(http, proxy.url, bob, message_body()))[0] == 200
    assert len(fake_upstream.requests) == 4


async def test_daily_budget_refuses_with_a_clear_message_once_spent(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(
        fake_upstream.url, limits=Limits(daily_token_budget=20, budget_overrides={"bob": 0})
    )
    alice = token("alice")
    status, _, data = await post(http, proxy.url, alice, message_body())
    assert status == 200
    spent = data["usage"]["input_tokens"] + data["usage"]["output_tokens"]
    assert spent >= 20, "the fake's reply should use the whole small budget"
    status, _, data = await post(http, proxy.url, alice, message_body())
    assert status == 403
    assert data["error"]["type"] == "permission_error"
    assert (
        "budget of 20 tokens" in data["error"]["message"]
        and "00:00 UTC" in data["error"]["message"]
    )
    # an override of 0 means unlimited
    for _ in range(2):
        assert (await post(http, proxy.url, token("bob"), message_body()))[0] == 200


async def test_streamed_usage_counts_against_the_budget(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(fake_upstream.url, limits=Limits(daily_token_budget=20))
    h = {"x-api-key": token("carol"), "anthropic-version": "2023-06-01"}
    async with http.post(
        f"{proxy.url}/v1/messages", json=message_body(stream=True), headers=h
    ) as r:
        assert r.status == 200
        await r.read()
    assert proxy.limits.used_today("carol") >= 20
    assert (await post(http, proxy.url, token("carol"), message_body()))[0] == 403


async def test_model_allowlist(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(
        fake_upstream.url, limits=Limits(allowed_models=["claude-sonnet-4-5", "claude-haiku-*"])
    )
    tok = token()
    assert (await post(http, proxy.url, tok, message_body(model="claude-sonnet-4-5")))[0] == 200
    assert (await post(http, proxy.url, tok, message_body(model="claude-haiku-4-5-20251001")))[
        0
    ] == 200
    status, _, data = await post(http, proxy.url, tok, message_body(model="claude-opus-4-1"))
    assert status == 403
    assert data["error"]["type"] == "permission_error"
    assert (
        "claude-opus-4-1" in data["error"]["message"]
        and "claude-sonnet-4-5" in data["error"]["message"]
    )
    assert [(r.body or {})["model"] for r in fake_upstream.requests] == [
        "claude-sonnet-4-5",
        "claude-haiku-4-5-20251001",
    ]


async def test_max_tokens_is_clamped_to_the_cap(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(fake_upstream.url, limits=Limits(max_tokens_cap=4096))
    tok = token()
    body = message_body(max_tokens=32000, thinking={"type": "enabled", "budget_tokens": 10000})
    assert (await post(http, proxy.url, tok, body))[0] == 200
    assert (await post(http, proxy.url, tok, message_body(max_tokens=100)))[0] == 200
    first, second = (r.body or {} for r in fake_upstream.requests)
    assert first["max_tokens"] == 4096 and first["thinking"]["budget_tokens"] == 4095
    assert first["messages"] == body["messages"]
    assert second["max_tokens"] == 100


async def test_max_tokens_over_the_cap_can_be_refused(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(
        fake_upstream.url, limits=Limits(max_tokens_cap=4096, max_tokens_policy="reject")
    )
    status, _, data = await post(http, proxy.url, token(), message_body(max_tokens=8192))
    assert status == 403
    assert "4096" in data["error"]["message"]
    assert fake_upstream.requests == []


@pytest.mark.parametrize(
    "body", [b"{not json", b"[1, 2]", b"", b'{"model": "claude-sonnet-4-5", "max_tokens": 1']
)
async def test_malformed_json_is_refused_when_the_body_must_be_read(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession, body: bytes
) -> None:
    proxy = await start_proxy(
        fake_upstream.url, limits=Limits(allowed_models=["claude-sonnet-4-5"])
    )
    status, _, data = await post(http, proxy.url, token(), body)
    assert status == 400
    assert data["error"]["type"] == "invalid_request_error"
    assert fake_upstream.requests == []
    # and the proxy keeps serving
    assert (await post(http, proxy.url, token(), message_body()))[0] == 200
