"""Author sessions' usage is metered and limited apart from learners' (docs/authoring.md).

An instructor's author session holds a token with ``knd: author``; the key proxy applies
``author_limits`` to it (budget, rate, models), not the default or a class's limits, and
records its usage as ``<user>/author``, so the same person's learning keeps its own budget.
"""

from __future__ import annotations

import datetime

import aiohttp
import pytest
from traitlets import TraitError

from claudehub.proxy.app import KeyProxyApp
from claudehub.proxy.limits import Limits
from tests.fakes.upstream import FakeAnthropic
from tests.proxy.conftest import StartProxy, eventually, message_body, token
from tests.proxy.test_limits import post


@pytest.mark.asyncio
async def test_author_sessions_have_their_own_budget_rate_and_models(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    limits = Limits(
        daily_token_budget=20,
        allowed_models=["claude-haiku-4-5"],
        author_limits={
            "daily_token_budget": 0,
            "rate_limit_per_minute": 2,
            "allowed_models": ["claude-sonnet-4-5"],
        },
    )
    # a class of Ines's with its own limits does not reach her author sessions
    limits.set_classes({"physics": (["ines"], {"daily_token_budget": 5})})
    proxy = await start_proxy(fake_upstream.url, limits=limits)
    learner, author = token("ines"), token("ines", kind="author")

    # the learner's session: haiku only, and the class's budget of 5 is spent by one answer
    status, _, data = await post(http, proxy.url, learner, message_body())
    assert status == 403 and "claude-sonnet-4-5" in data["error"]["message"]
    assert (await post(http, proxy.url, learner, message_body(model="claude-haiku-4-5")))[0] == 200
    status, _, data = await post(http, proxy.url, learner, message_body(model="claude-haiku-4-5"))
    assert status == 403 and "budget of 5 tokens" in data["error"]["message"]

    # the author session: sonnet, no budget, its own rate of 2 a minute
    for _ in range(2):
        assert (await post(http, proxy.url, author, message_body()))[0] == 200
    status, _, data = await post(http, proxy.url, author, message_body())
    assert status == 429 and "2 requests per minute" in data["error"]["message"]
    status, _, data = await post(http, proxy.url, author, message_body(model="claude-haiku-4-5"))
    assert status in (403, 429)  # the rate is spent before the model is looked at

    # usage recorded by kind: the author's apart from the learner's
    assert proxy.store is not None
    store = proxy.store
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")

    def users() -> dict[str, int]:
        out: dict[str, int] = {}
        for row in store.summary(today, today):
            out[row["user"]] = out.get(row["user"], 0) + row["requests"]
        return out

    await eventually(lambda: users().get("ines/author", 0) >= 3 and users().get("ines", 0) >= 3)
    assert proxy.limits.used_today("ines") >= 5
    assert proxy.limits.used_today("ines/author") > 0


@pytest.mark.asyncio
async def test_an_author_override_and_the_defaults_for_unset_fields(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    limits = Limits(
        daily_token_budget=20,
        author_limits={"rate_limit_per_minute": 100},
        user_limits={"omar/author": {"daily_token_budget": 0}},
    )
    proxy = await start_proxy(fake_upstream.url, limits=limits)
    # unset in author_limits: the key proxy's default budget (20) applies to authors too
    assert (await post(http, proxy.url, token("ines", kind="author"), message_body()))[0] == 200
    status, _, data = await post(http, proxy.url, token("ines", kind="author"), message_body())
    assert status == 403 and "budget of 20 tokens" in data["error"]["message"]
    # Omar's author override lifts the budget; his learning keeps the default
    for _ in range(2):
        assert (await post(http, proxy.url, token("omar", kind="author"), message_body()))[0] == 200
    assert (await post(http, proxy.url, token("omar"), message_body()))[0] == 200
    assert (await post(http, proxy.url, token("omar"), message_body()))[0] == 403


def test_author_limits_are_checked_naming_the_field() -> None:
    app = KeyProxyApp(author_limits={"daily_token_budget": 100, "allowed_models": []})
    assert app.author_limits == {"daily_token_budget": 100, "allowed_models": []}
    with pytest.raises(TraitError, match=r"KeyProxyApp\.author_limits.*unknown limit.*budget"):
        KeyProxyApp(author_limits={"budget": 5})
    with pytest.raises(TraitError, match=r"KeyProxyApp\.author_limits"):
        KeyProxyApp(author_limits={"rate_limit_per_minute": -1})
