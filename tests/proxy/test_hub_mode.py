"""Hub mode: a token works only while its server runs, and only for the current session.

The hub side is a small stand-in for JupyterHub's REST API (``GET /users?state=active`` and
``GET /groups`` with pagination, ``GET /user``), shaped like JupyterHub 5/6 answers it.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from claudehub.proxy.service import KeyProxy
from tests.fakes.upstream import FakeAnthropic
from tests.helpers import PATIENCE
from tests.proxy.conftest import StartProxy, eventually, message_body, token

pytestmark = pytest.mark.asyncio
HUB_TOKEN = "service-token-keyproxy"


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat().replace("+00:00", "Z")


@dataclass
class FakeHub:
    servers: dict[str, dict[str, float]] = field(default_factory=dict)  # user -> server -> started
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)  # api token -> user model
    groups: list[dict[str, Any]] = field(default_factory=list)  # group models, as the hub's
    polls: int = 0
    down: bool = False
    url: str = ""

    async def users(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"token {HUB_TOKEN}":
            return web.json_response({"status": 403}, status=403)
        if self.down:
            return web.json_response({"status": 500}, status=500)
        assert request.query["state"] == "active"
        self.polls += 1
        offset, limit = int(request.query.get("offset", 0)), int(request.query.get("limit", 200))
        names = sorted(self.servers)
        items = [
            {
                "name": n,
                "admin": False,
                "servers": {
                    s: {
                        "name": s,
                        "started": iso(t),
                        "ready": True,
                        "pending": None,
                        "stopped": False,
                    }
                    for s, t in self.servers[n].items()
                },
            }
            for n in names[offset : offset + limit]
        ]
        nxt = {"offset": offset + limit, "limit": limit} if offset + limit < len(names) else None
        return web.json_response(
            {
                "items": items,
                "_pagination": {"offset": offset, "limit": limit, "total": len(names), "next": nxt},
            }
        )

    async def groups_list(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"token {HUB_TOKEN}":
            return web.json_response({"status": 403}, status=403)
        offset, limit = int(request.query.get("offset", 0)), int(request.query.get("limit", 200))
        page = self.groups[offset : offset + limit]
        more = offset + limit < len(self.groups)
        nxt = {"offset": offset + limit, "limit": limit} if more else None
        return web.json_response(
            {
                "items": page,
                "_pagination": {
                    "offset": offset,
                    "limit": limit,
                    "total": len(self.groups),
                    "next": nxt,
                },
            }
        )

    async def user(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        model = self.tokens.get(auth.removeprefix("token "))
        if model is None:
            return web.json_response({"status": 403}, status=403)
        return web.json_response(model)


@pytest_asyncio.fixture
async def hub() -> AsyncIterator[FakeHub]:
    fake = FakeHub()
    app = web.Application()
    app.router.add_get("/hub/api/users", fake.users)
    app.router.add_get("/hub/api/user", fake.user)
    app.router.add_get("/hub/api/groups", fake.groups_list)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}/hub/api"
    yield fake
    await runner.cleanup()


async def start_hub_proxy(
    start_proxy: StartProxy, upstream: str, hub: FakeHub, **kw: Any
) -> KeyProxy:
    proxy = await start_proxy(
        upstream, hub_api_url=hub.url, hub_api_token=HUB_TOKEN, hub_poll_interval=30, **kw
    )
    assert proxy.poller is not None
    await proxy.poller.poll_once()
    return proxy


async def status_for(http: aiohttp.ClientSession, url: str, tok: str) -> tuple[int, str]:
    async with http.post(
        f"{url}/v1/messages", json=message_body(), headers={"x-api-key": tok}
    ) as r:
        data = await r.json()
        return r.status, data.get("error", {}).get("message", "")


async def test_token_works_while_its_server_runs_and_stops_when_it_stops(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession, hub: FakeHub
) -> None:
    hub.servers = {"alice": {"": time.time() - 5}}
    proxy = await start_hub_proxy(start_proxy, fake_upstream.url, hub)
    tok = token("alice")
    assert (await status_for(http, proxy.url, tok))[0] == 200
    # bob has a valid signature but no running server
    status, message = await status_for(http, proxy.url, token("bob"))
    assert status == 401 and "not running" in message
    hub.servers = {}
    await proxy.poller.poll_once()  # type: ignore[union-attr]  # what the background poll does every hub_poll_interval
    status, message = await status_for(http, proxy.url, tok)
    assert status == 401 and "not running" in message
    assert len(fake_upstream.requests) == 1


async def test_token_from_an_earlier_session_is_rejected(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession, hub: FakeHub
) -> None:
    old = token("alice", now=time.time() - 600, ttl=None)
    hub.servers = {"alice": {"": time.time() - 60}}  # restarted after `old` was minted
    proxy = await start_hub_proxy(start_proxy, fake_upstream.url, hub)
    status, message = await status_for(http, proxy.url, old)
    assert status == 401 and "earlier session" in message
    assert (await status_for(http, proxy.url, token("alice")))[0] == 200


async def test_a_server_started_after_the_last_poll_is_accepted_at_once(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession, hub: FakeHub
) -> None:
    """A fresh server's first request must not wait for the next background poll."""
    proxy = await start_hub_proxy(start_proxy, fake_upstream.url, hub)  # polls every 30 s
    polls = hub.polls
    hub.servers = {"carol": {"": time.time()}}  # carol's server starts now
    status, message = await status_for(http, proxy.url, token("carol"))
    assert status == 200, message
    assert hub.polls == polls + 1, "one on-demand look at the hub"
    assert len(fake_upstream.message_requests()) == 1


async def test_tokens_of_stopped_servers_cannot_make_the_proxy_hammer_the_hub(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession, hub: FakeHub
) -> None:
    proxy = await start_hub_proxy(start_proxy, fake_upstream.url, hub)
    assert proxy.poller is not None
    polls = hub.polls
    status, message = await status_for(http, proxy.url, token("mallory"))
    assert status == 401 and "not running" in message
    assert hub.polls == polls + 1, "an unknown token makes the proxy look at the hub"
    # the rate limit, made longer than the requests can take on any machine (its 1 s
    # default would let a slow moment between requests through)
    proxy.poller.min_refresh_interval = 10 * PATIENCE
    for _ in range(20):
        status, message = await status_for(http, proxy.url, token("mallory"))
        assert status == 401 and "not running" in message
    assert hub.polls == polls + 1, "on-demand polls are rate limited"
    assert fake_upstream.message_requests() == []


async def test_named_servers_are_told_apart(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession, hub: FakeHub
) -> None:
    hub.servers = {"alice": {"lab": time.time() - 5}}
    proxy = await start_hub_proxy(start_proxy, fake_upstream.url, hub)
    assert (await status_for(http, proxy.url, token("alice", "lab")))[0] == 200
    assert (await status_for(http, proxy.url, token("alice", "")))[0] == 401


async def test_all_pages_of_users_are_read(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession, hub: FakeHub
) -> None:
    hub.servers = {f"user{i:03d}": {"": time.time() - 5} for i in range(450)}
    proxy = await start_hub_proxy(start_proxy, fake_upstream.url, hub)
    assert len(proxy.authenticator.active) == 450
    assert (await status_for(http, proxy.url, token("user449")))[0] == 200


async def test_fails_closed_when_the_hub_cannot_be_reached(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession, hub: FakeHub
) -> None:
    hub.servers = {"alice": {"": time.time() - 5}}
    proxy = await start_proxy(
        fake_upstream.url,
        hub_api_url=hub.url,
        hub_api_token=HUB_TOKEN,
        hub_poll_interval=0.05,
        hub_stale_after=0.3,
    )
    # not ready (and refusing) until the first successful poll
    await eventually(lambda: proxy.authenticator.hub_updated is not None)
    async with http.get(f"{proxy.url}/ready") as r:
        assert r.status == 200
    assert (await status_for(http, proxy.url, token("alice")))[0] == 200
    hub.down = True
    await eventually(lambda: not proxy.authenticator.hub_fresh())
    status, message = await status_for(http, proxy.url, token("alice"))
    assert status == 503 and "hub" in message
    async with http.get(f"{proxy.url}/ready") as r:
        assert r.status == 503 and (await r.json())["hub"] == "unreachable"
    hub.down = False
    await eventually(proxy.authenticator.hub_fresh)
    assert (await status_for(http, proxy.url, token("alice")))[0] == 200
    assert proxy.metrics.hub_poll_errors > 0


async def test_hub_admins_may_read_usage_and_others_may_not(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession, hub: FakeHub
) -> None:
    hub.tokens = {
        "tok-admin": {"name": "root", "admin": True, "scopes": ["admin:users"]},
        "tok-user": {"name": "alice", "admin": False, "scopes": ["read:users!user=alice"]},
        "tok-prom": {"kind": "service", "name": "prometheus", "scopes": ["read:metrics"]},
    }
    proxy = await start_hub_proxy(start_proxy, fake_upstream.url, hub)
    expected = {
        "tok-admin": (200, 200),
        "tok-user": (403, 403),
        "tok-prom": (403, 200),
        "nonsense": (403, 403),
    }
    for tok, (usage_status, metrics_status) in expected.items():
        async with http.get(f"{proxy.url}/usage", headers={"Authorization": f"token {tok}"}) as r:
            assert r.status == usage_status, tok
        async with http.get(
            f"{proxy.url}/metrics", headers={"Authorization": f"Bearer {tok}"}
        ) as r:
            assert r.status == metrics_status, tok
