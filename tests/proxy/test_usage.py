"""Usage metering (JSON and SSE), the admin usage endpoint, metrics, health and readiness."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3

import aiohttp
import pytest
import sqlalchemy as sa

from claudehub.proxy.service import KeyProxy
from claudehub.proxy.usage import SSEUsage, json_usage, usage_table
from tests.fakes.upstream import FakeAnthropic
from tests.proxy.conftest import StartProxy, message_body, token

ADMIN = "admin-token-for-tests"

STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"claude-x",'
    b'"usage":{"input_tokens":11,"output_tokens":1,"cache_creation_input_tokens":5,"cache_read_input_tokens":7}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"message_delta in text"}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":42}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


@pytest.mark.parametrize("size", [1, 3, 7, 64, len(STREAM)])
def test_sse_usage_survives_any_chunking(size: int) -> None:
    scanner = SSEUsage()
    for i in range(0, len(STREAM), size):
        scanner.feed(STREAM[i : i + size])
    assert scanner.model == "claude-x"
    assert scanner.usage == [11, 42, 5, 7]


def test_json_usage_reads_only_the_top_level_usage() -> None:
    body = json.dumps(
        {
            "id": "m",
            "model": "claude-y",
            "content": [
                {"type": "tool_use", "input": {"model": "fake", "usage": {"output_tokens": 999}}}
            ],
            "usage": {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 2},
        }
    ).encode()
    assert json_usage(body) == ("claude-y", [3, 4, 0, 2])
    assert json_usage(b"not json") == ("", [0, 0, 0, 0])


async def rows(proxy: KeyProxy) -> list[dict]:
    await proxy.recorder.flush()
    assert proxy.store is not None
    with proxy.store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(usage_table))]


@pytest.mark.asyncio
async def test_usage_is_recorded_per_user_for_json_and_streams(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(fake_upstream.url)
    for user, stream in (("alice", False), ("alice", True), ("bob", True)):
        h = {"x-api-key": token(user), "anthropic-version": "2023-06-01"}
        async with http.post(
            f"{proxy.url}/v1/messages", json=message_body(stream=stream), headers=h
        ) as r:
            reply = await r.read()
        assert r.status == 200
    recorded = await rows(proxy)
    assert [(r["user"], r["stream"], r["status"], r["model"]) for r in recorded] == [
        ("alice", False, 200, "claude-sonnet-4-5"),
        ("alice", True, 200, "claude-sonnet-4-5"),
        ("bob", True, 200, "claude-sonnet-4-5"),
    ]
    assert all(
        r["requests"] == 1
        and r["input_tokens"] > 0
        and r["output_tokens"] > 0
        and r["latency_ms_sum"] > 0
        for r in recorded
    )
    assert b"Hello from" in reply and b"message_stop" in reply
    # nothing of the conversation is stored
    assert "Say hello" not in json.dumps(recorded) and "Hello from" not in json.dumps(recorded)


@pytest.mark.asyncio
async def test_usage_endpoint_is_admin_only(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(
        fake_upstream.url, admin_tokens=[ADMIN], service_prefix="/services/keyproxy/"
    )
    alice = token("alice")
    async with http.post(
        f"{proxy.url}/v1/messages", json=message_body(), headers={"x-api-key": alice}
    ) as r:
        assert r.status == 200
    for creds in ({}, {"Authorization": f"Bearer {alice}"}, {"Authorization": "token wrong"}):
        async with http.get(f"{proxy.url}/usage", headers=creds) as r:
            assert r.status == 403
            assert (await r.json())["error"]["type"] == "permission_error"
    async with http.get(
        f"{proxy.url}/services/keyproxy/usage?user=alice",
        headers={"Authorization": f"token {ADMIN}"},
    ) as r:
        assert r.status == 200
        data = await r.json()
    (row,) = data["usage"]
    assert row["user"] == "alice" and row["requests"] == 1 and row["output_tokens"] > 0
    assert data["budgets"]["alice"]["used_today"] > 0
    async with http.get(
        f"{proxy.url}/usage?since=yesterday", headers={"Authorization": f"Bearer {ADMIN}"}
    ) as r:
        assert r.status == 400


@pytest.mark.asyncio
async def test_metrics_health_and_ready(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(fake_upstream.url, admin_tokens=[ADMIN])
    async with http.post(
        f"{proxy.url}/v1/messages", json=message_body(), headers={"x-api-key": token()}
    ) as r:
        assert r.status == 200
    async with http.post(
        f"{proxy.url}/v1/messages", json=message_body(), headers={"x-api-key": "nope"}
    ) as r:
        assert r.status == 401
    async with http.get(f"{proxy.url}/metrics") as r:
        assert r.status == 403
    async with http.get(f"{proxy.url}/metrics", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
        assert r.status == 200
        text = await r.text()
    assert 'claudehub_keyproxy_requests_total{path="/v1/messages",status="200"} 1' in text
    assert 'claudehub_keyproxy_refusals_total{reason="invalid_token"} 1' in text
    assert 'claudehub_keyproxy_tokens_total{model="claude-sonnet-4-5",kind="output"}' in text
    assert "claudehub_keyproxy_upstream_ttfb_seconds_count 1" in text
    async with http.get(f"{proxy.url}/health") as r:
        assert r.status == 200 and (await r.json())["status"] == "ok"
    async with http.get(f"{proxy.url}/ready") as r:
        ready = await r.json()
        assert r.status == 200
    assert ready == {
        "ready": True,
        "shutting_down": False,
        "hub": "not used",
        "key_configured": True,
    }


@pytest.mark.asyncio
async def test_usage_survives_a_restart_and_keeps_budgets(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession, tmp_path
) -> None:
    from claudehub.proxy.limits import Limits

    db = f"sqlite:///{tmp_path}/persist.sqlite"
    first = await start_proxy(fake_upstream.url, db_url=db, limits=Limits(daily_token_budget=20))
    async with http.post(
        f"{first.url}/v1/messages", json=message_body(), headers={"x-api-key": token("dave")}
    ) as r:
        assert r.status == 200
    await first.stop(0)
    await asyncio.sleep(0)
    # the file is in WAL mode: a budgeted request's reservation commit is no fsync storm
    with contextlib.closing(sqlite3.connect(tmp_path / "persist.sqlite")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    second = await start_proxy(fake_upstream.url, db_url=db, limits=Limits(daily_token_budget=20))
    assert second.limits.used_today("dave") >= 20
    async with http.post(
        f"{second.url}/v1/messages", json=message_body(), headers={"x-api-key": token("dave")}
    ) as r:
        assert r.status == 403


@pytest.mark.asyncio
async def test_usage_rows_sum_a_window_and_include_refusals(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    from claudehub.proxy.limits import Limits

    proxy = await start_proxy(
        fake_upstream.url, usage_flush_interval=3600, limits=Limits(rate_per_minute=5)
    )
    statuses = []
    for _ in range(7):
        async with http.post(
            f"{proxy.url}/v1/messages", json=message_body(), headers={"x-api-key": token("eve")}
        ) as r:
            statuses.append(r.status)
            await r.read()
    assert statuses == [200] * 5 + [429] * 2
    recorded = {r["status"]: r for r in await rows(proxy)}
    assert recorded[200]["requests"] == 5 and recorded[200]["user"] == "eve"
    assert recorded[200]["latency_ms_max"] * 5 >= recorded[200]["latency_ms_sum"] > 0
    assert recorded[429]["requests"] == 2 and recorded[429]["output_tokens"] == 0


@pytest.mark.asyncio
async def test_concurrent_flushes_write_each_window_once(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(fake_upstream.url, usage_flush_interval=3600)
    async with http.post(
        f"{proxy.url}/v1/messages", json=message_body(), headers={"x-api-key": token("fay")}
    ) as r:
        assert r.status == 200
    await asyncio.gather(*(proxy.recorder.flush() for _ in range(5)))
    assert [r["requests"] for r in await rows(proxy)] == [1]
