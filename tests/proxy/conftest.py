"""Fixtures for the key proxy tests: an in-process proxy in front of the fake upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from claudehub.contract.tokens import mint_token
from claudehub.proxy.limits import Limits
from claudehub.proxy.service import KeyProxy, KeyProxyOptions
from claudehub.proxy.settings import ProxySettings
from tests.helpers import PATIENCE, postgres_server

REAL_KEY = "sk-ant-api03-real-key-for-tests-0123456789abcdefghij"
SECRET = b"claudehub-test-token-secret"

StartProxy = Callable[..., Awaitable[KeyProxy]]


def token(user: str = "alice", server: str = "", ttl: float | None = 3600, **kw: Any) -> str:
    """A sandbox token signed with the tests' secret."""
    return mint_token(SECRET, user, server, ttl=ttl, **kw)


def message_body(
    stream: bool = False, model: str = "claude-sonnet-4-5", **extra: Any
) -> dict[str, Any]:
    body = {
        "model": model,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Say hello."}],
        "stream": stream,
    }
    body.update(extra)
    return body


@pytest_asyncio.fixture
async def start_proxy(tmp_path: Path) -> AsyncIterator[StartProxy]:
    """Start a key proxy on a free port: ``await start_proxy(upstream_url, **options)``.

    Keyword arguments go to ProxySettings when they name one of its fields, else to
    KeyProxyOptions. Usage goes to a fresh SQLite file unless ``db_url`` is given.
    """
    started: list[KeyProxy] = []

    async def start(upstream_url: str, *, api_key: str = REAL_KEY, **kw: Any) -> KeyProxy:
        fields = ProxySettings.__dataclass_fields__
        settings = ProxySettings(
            upstream_url=upstream_url,
            api_key=api_key,
            **{k: kw.pop(k) for k in list(kw) if k in fields},
        )
        kw.setdefault("limits", Limits())
        kw.setdefault("db_url", f"sqlite:///{tmp_path}/usage-{len(started)}.sqlite")
        kw.setdefault("usage_flush_interval", 0.05)
        kw.setdefault("token_secret", SECRET)
        proxy = KeyProxy(KeyProxyOptions(settings=settings, **kw))
        await proxy.start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        await proxy.stop(0)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client that does not decompress or rewrite anything."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


@pytest.fixture
def alice_token() -> str:
    return token("alice")


async def eventually(condition: Callable[[], bool], within: float = PATIENCE) -> None:
    """Wait until ``condition()`` holds (checked every 20 ms); fail after ``within`` seconds
    (a ceiling for a hang: tests wait for conditions, not for times)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Every async proxy test runs on both loops: asyncio's own and uvloop (what the app uses)."""
    import uvloop

    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server for the tests that ask for it."""
    with postgres_server() as url:
        yield url
