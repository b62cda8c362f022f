"""Key proxies on one usage database enforce one budget and one rate limit between them.

A learner whose requests a load balancer spreads over two replicas must be refused at the
budget, not at twice the budget; the rate limit is split between the live replicas. The same
tests run on SQLite and (``-m postgres``) on a real PostgreSQL server.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from claudehub.proxy.limits import Limits
from claudehub.proxy.service import KeyProxy
from claudehub.proxy.usage import usage_table
from tests.fakes.upstream import FakeAnthropic
from tests.helpers import eventually, free_port
from tests.proxy.conftest import StartProxy, message_body, token

pytestmark = pytest.mark.asyncio

INTERVAL = 0.05  # seconds between syncs in these tests


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/shared-usage.sqlite"
    return str(request.getfixturevalue("postgres_url"))


async def ask(http: aiohttp.ClientSession, proxy: KeyProxy, user: str) -> tuple[int, dict]:
    h = {"x-api-key": token(user), "anthropic-version": "2023-06-01"}
    async with http.post(f"{proxy.url}/v1/messages", json=message_body(), headers=h) as r:
        return r.status, await r.json()


async def cost_of_one_answer(http: aiohttp.ClientSession, proxy: KeyProxy) -> int:
    status, data = await ask(http, proxy, f"probe-{uuid.uuid4().hex[:6]}")
    assert status == 200
    return int(data["usage"]["input_tokens"] + data["usage"]["output_tokens"])


async def two_replicas(
    start_proxy: StartProxy, upstream: FakeAnthropic, db_url: str, limits: dict, interval: float
) -> list[KeyProxy]:
    return [
        await start_proxy(
            upstream.url,
            db_url=db_url,
            limits=Limits(**limits),
            shared_limits_interval=interval,
        )
        for _ in range(2)
    ]


async def spend_across(
    http: aiohttp.ClientSession,
    proxies: list[KeyProxy],
    user: str,
    tries: int,
    cost: int,
    in_step: bool,
) -> list[int]:
    """One request at a time, alternating replicas; the statuses in order.

    ``in_step``: before the next request, wait until every replica counts what was answered
    so far (``cost`` each): a learner whose answers take longer than the replicas' syncs
    (Claude's do). Waiting for that, rather than sleeping a few sync intervals, keeps a slow
    moment of the machine from turning into a missed sync and an overspent budget."""
    statuses = []
    for i in range(tries):
        status, data = await ask(http, proxies[i % len(proxies)], user)
        statuses.append(status)
        if status == 403:
            assert "today's budget" in data["error"]["message"]
        if in_step:
            spent = statuses.count(200) * cost

            def synced(spent: int = spent) -> bool:
                used = {p.limits.used_today(user) for p in proxies}
                return len(used) == 1 and min(used) >= spent

            await eventually(synced, what="the replicas agreeing on the usage")
    return statuses


async def test_one_budget_across_two_replicas(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, db_url: str
) -> None:
    async with aiohttp.ClientSession() as http:
        probe = await start_proxy(fake_upstream.url, db_url=db_url, shared_limits_interval=0)
        cost = await cost_of_one_answer(http, probe)
        budget = 4 * cost
        proxies = await two_replicas(
            start_proxy, fake_upstream, db_url, {"daily_token_budget": budget}, INTERVAL
        )
        user = f"learner-{uuid.uuid4().hex[:8]}"
        statuses = await spend_across(http, proxies, user, tries=10, cost=cost, in_step=True)
    answered = statuses.count(200)
    # With the replicas in step between requests, the stated bound is the one request that
    # crossed the budget: at most budget + one answer in all.
    assert answered * cost <= budget + cost, statuses
    assert answered >= 4, statuses
    # both replicas now refuse, whichever the learner reaches
    assert statuses[-2:] == [403, 403]
    assert proxies[0].limits.used_today(user) == proxies[1].limits.used_today(user) >= budget


async def test_without_sharing_each_replica_would_allow_a_budget(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, tmp_path: Path
) -> None:
    """What the sharing prevents: replicas with their own limits allow twice the budget."""
    db_url = f"sqlite:///{tmp_path}/unshared.sqlite"
    async with aiohttp.ClientSession() as http:
        probe = await start_proxy(fake_upstream.url, db_url=db_url, shared_limits_interval=0)
        cost = await cost_of_one_answer(http, probe)
        proxies = await two_replicas(
            start_proxy, fake_upstream, db_url, {"daily_token_budget": 4 * cost}, 0
        )
        # no sharing, so nothing to wait for: each replica only ever knows its own answers
        statuses = await spend_across(http, proxies, "bob", tries=10, cost=cost, in_step=False)
    assert statuses.count(200) == 8


async def test_the_rate_limit_is_split_between_live_replicas(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, db_url: str
) -> None:
    proxies = await two_replicas(
        start_proxy, fake_upstream, db_url, {"rate_per_minute": 6, "burst": 6}, INTERVAL
    )
    for proxy in proxies:  # the first one synced before the second existed
        assert proxy.shared is not None
        await proxy.shared.sync()
    assert [p.shared.replicas for p in proxies if p.shared] == [2, 2]
    user = f"fast-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as http:
        statuses = [(await ask(http, proxies[i % 2], user))[0] for i in range(12)]
    # 6 per minute in all: 3 from each replica's share, then 429 from both
    assert statuses.count(200) == 6, statuses
    assert set(statuses[6:]) == {429}


async def test_a_stopped_replica_hands_its_share_back(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, db_url: str
) -> None:
    first, second = await two_replicas(
        start_proxy, fake_upstream, db_url, {"rate_per_minute": 6}, INTERVAL
    )
    assert first.shared is not None
    await first.shared.sync()
    assert first.limits.rate_share == 0.5
    await second.stop(0)
    await first.shared.sync()
    assert first.shared.replicas == 1 and first.limits.rate_share == 1.0


async def test_a_restarted_replica_keeps_the_days_spending(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, db_url: str
) -> None:
    user = f"back-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as http:
        proxy = await start_proxy(fake_upstream.url, db_url=db_url, limits=Limits())
        assert (await ask(http, proxy, user))[0] == 200
        spent = proxy.limits.used_today(user)
        await proxy.stop(0)
        again = await start_proxy(fake_upstream.url, db_url=db_url, limits=Limits())
    assert spent > 0 and again.limits.used_today(user) == spent


async def test_usage_recorded_before_the_daily_totals_existed_still_counts(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, tmp_path: Path
) -> None:
    """Upgrading a database that has usage rows but no daily totals keeps today's budgets."""
    db_url = f"sqlite:///{tmp_path}/old.sqlite"
    async with aiohttp.ClientSession() as http:
        proxy = await start_proxy(fake_upstream.url, db_url=db_url, limits=Limits())
        assert (await ask(http, proxy, "old-timer"))[0] == 200
        spent = proxy.limits.used_today("old-timer")
        await proxy.stop(0)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE claudehub_keyproxy_daily"))
        assert conn.execute(sa.select(sa.func.count()).select_from(usage_table)).scalar_one() >= 1
    engine.dispose()
    again = await start_proxy(fake_upstream.url, db_url=db_url, limits=Limits())
    assert again.limits.used_today("old-timer") == spent


async def test_replicas_keep_serving_while_the_database_is_down(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy
) -> None:
    dead = f"postgresql://test@127.0.0.1:{free_port()}/postgres"
    proxy = await start_proxy(
        fake_upstream.url,
        db_url=dead,
        limits=Limits(daily_token_budget=10_000),
        shared_limits_interval=3600,
        usage_flush_interval=3600,
    )
    async with aiohttp.ClientSession() as http:
        assert (await ask(http, proxy, "zoe"))[0] == 200
    assert proxy.shared is not None
    spent = proxy.limits.used_today("zoe")
    assert await proxy.shared.sync() is False
    # nothing forgotten: the usage still counts here and is still queued for the database
    assert proxy.limits.used_today("zoe") == spent and proxy.recorder.pending == 1
    assert proxy.limits.take_unsynced() == {"zoe": spent}
