"""The class view's rows, charts and CSV; tokens from the real key proxy; the tutor switch.

The store, catalogue and key proxy are real (SQLite, the test courses, an in-process key
proxy in front of the fake Anthropic upstream); only the hub's answers (members, running
sessions) are given, since the real-hub tests (test_class_page.py) cover asking the hub.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
import sqlalchemy as sa

from claudehub.contract.tokens import mint_token
from claudehub.progress import service
from claudehub.progress.app import ProgressService
from claudehub.progress.catalogue import load_catalogue
from claudehub.progress.classes import UsageSource, class_view, view_csv
from claudehub.progress.service import ServiceState
from claudehub.progress.store import Store
from claudehub.proxy.limits import Limits
from claudehub.proxy.service import KeyProxy, KeyProxyOptions
from claudehub.proxy.settings import ProxySettings
from tests.fakes.upstream import FakeAnthropic
from tests.helpers import postgres_server

from .conftest import course_sources

ADMIN = "keyproxy-admin-token-for-tests"
SECRET = b"claudehub-test-token-secret"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def state(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ServiceState]:
    courses, catalogues = course_sources(tmp_path / "courses")
    catalogue = await load_catalogue(courses, catalogues, tmp_path / "cache")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'progress.sqlite'}"
    else:
        # one server for the module, a fresh database per test
        base = request.getfixturevalue("pg_url")
        name = f"classview_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        url = base.rsplit("/", 1)[0] + "/" + name
    store = await Store.open(url)
    try:
        yield ServiceState(store=store, catalogue=catalogue)
    finally:
        await store.close()


TODAY = dt.datetime.now(dt.UTC).date()


@pytest.mark.asyncio
async def test_rows_say_how_each_stage_was_earned_and_whether_it_counts(
    state: ServiceState,
) -> None:
    await service.submit_answer(state, "alice", "t101", "q1", "1")  # wrong
    await service.submit_answer(state, "alice", "t101", "q1", "2")
    await service.record_tutor(state, "alice", "t101", stage=2)
    await service.record_tutor(state, "carol", "t101", stage=1)

    view = await class_view(state, "alpha", ["alice", "bob", "carol"], {"alice"}, None, TODAY)
    rows = {r["user"]: r for r in view["rows"]}
    assert rows["alice"]["completed"] == "1 (quiz), 2 (tutor)"
    assert rows["alice"]["attempts"] == 2
    assert rows["alice"]["current"] == "3: Reflection"
    assert rows["alice"]["session"] == "running" and rows["carol"]["session"] == "stopped"
    assert rows["bob"]["course"] == "(not started)"
    assert rows["alice"]["tokens"] == "unknown"
    [chart] = view["stage_chart"]
    assert [(b["done"], b["total"]) for b in chart["bars"]] == [(2, 2), (1, 2), (0, 2)]

    # the operator's switch: tutor-only completions stop counting, and the page says so
    state.tutor_completions_count = False
    view = await class_view(state, "alpha", ["alice", "carol"], set(), None, TODAY)
    rows = {r["user"]: r for r in view["rows"]}
    assert rows["alice"]["completed"] == "1 (quiz), 2 (tutor, not counted)"
    assert rows["alice"]["current"] == "2: Attention"
    assert rows["carol"]["completed"] == "1 (tutor, not counted)"
    [chart] = view["stage_chart"]
    assert [b["done"] for b in chart["bars"]] == [1, 0, 0]


@pytest.mark.asyncio
async def test_csv_is_the_table_and_formulas_are_defused(state: ServiceState) -> None:
    await service.record_tutor(state, "=cmd", "t101", stage=1)
    view = await class_view(state, "alpha", ["=cmd"], set(), None, TODAY)
    lines = view_csv(view).splitlines()
    assert lines[0].split(",")[0] == "Learner"
    assert lines[1].startswith("'=cmd,Transformers 101,")


@pytest.mark.asyncio
async def test_tokens_today_and_per_day_come_from_the_key_proxy(
    state: ServiceState, tmp_path: Path, fake_upstream: FakeAnthropic
) -> None:
    proxy = KeyProxy(
        KeyProxyOptions(
            settings=ProxySettings(upstream_url=fake_upstream.url, api_key="sk-ant-test-key"),
            limits=Limits(daily_token_budget=50_000),
            db_url=f"sqlite:///{tmp_path / 'usage.sqlite'}",
            usage_flush_interval=0.05,
            token_secret=SECRET,
            admin_tokens=[ADMIN],
        )
    )
    await proxy.start()
    try:
        async with aiohttp.ClientSession() as http:
            for user in ("alice", "alice", "bob"):
                headers = {"x-api-key": mint_token(SECRET, user, "", ttl=600)}
                body = {
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 100,
                    "messages": [{"role": "user", "content": "Say hello."}],
                }
                async with http.post(f"{proxy.url}/v1/messages", json=body, headers=headers) as r:
                    assert r.status == 200
        usage = await UsageSource(proxy.url, ADMIN).usage(TODAY)
        assert usage is not None
        view = await class_view(state, "alpha", ["alice", "carol"], set(), usage, TODAY)
        rows = {r["user"]: r for r in view["rows"]}
        used = usage.per_day["alice"][TODAY.isoformat()]
        assert used > 0
        assert rows["alice"]["tokens"] == f"{used} / 50000"
        assert rows["carol"]["tokens"] == "0"
        # the class's chart counts its own learners only (not bob)
        assert view["token_chart"]["bars"][-1]["tokens"] == used
        # a wrong admin token: tokens are unknown, the page still renders
        assert await UsageSource(proxy.url, "wrong").usage(TODAY) is None
    finally:
        await proxy.stop(0)


def test_tutor_completions_count_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ProgressService().tutor_completions_count is True
    monkeypatch.setenv("CLAUDEHUB_TUTOR_COMPLETIONS_COUNT", "false")
    assert ProgressService().tutor_completions_count is False
    monkeypatch.setenv("CLAUDEHUB_TUTOR_COMPLETIONS_COUNT", "sometimes")
    with pytest.raises(ValueError, match="CLAUDEHUB_TUTOR_COMPLETIONS_COUNT must be true or false"):
        ProgressService().tutor_completions_count  # noqa: B018
