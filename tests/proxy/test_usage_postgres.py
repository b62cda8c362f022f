"""Usage records on PostgreSQL (a real server started for this module)."""

from __future__ import annotations

import uuid

import aiohttp
import pytest

from tests.fakes.upstream import FakeAnthropic
from tests.helpers import free_port
from tests.proxy.conftest import StartProxy, message_body, token

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.mark.asyncio
async def test_usage_is_written_to_postgresql_and_reported(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, postgres_url: str
) -> None:
    proxy = await start_proxy(fake_upstream.url, db_url=postgres_url, admin_tokens=["adm"])
    user = f"pg-user-{uuid.uuid4().hex[:8]}"  # the database outlives one test
    async with aiohttp.ClientSession() as http:
        for stream in (False, True):
            async with http.post(
                f"{proxy.url}/v1/messages",
                json=message_body(stream=stream),
                headers={"x-api-key": token(user)},
            ) as r:
                assert r.status == 200
                await r.read()
        async with http.get(
            f"{proxy.url}/usage?user={user}", headers={"Authorization": "Bearer adm"}
        ) as r:
            data = await r.json()
    (row,) = data["usage"]
    assert row["requests"] == 2 and row["errors"] == 0 and row["output_tokens"] > 0
    assert proxy.recorder.written == 2


@pytest.mark.asyncio
async def test_proxy_serves_while_the_database_is_down(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy
) -> None:
    dead = f"postgresql://test@127.0.0.1:{free_port()}/postgres"
    proxy = await start_proxy(fake_upstream.url, db_url=dead, usage_flush_interval=3600)
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{proxy.url}/v1/messages", json=message_body(), headers={"x-api-key": token("zoe")}
        ) as r:
            assert r.status == 200
    await proxy.recorder.flush()
    assert proxy.recorder.errors == 1 and proxy.recorder.pending == 1  # kept for a retry
