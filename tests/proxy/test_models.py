"""The model allowlist holds at the key proxy, for every spelling, header and endpoint.

The walk that found the leak: with only ``claude-haiku-4-5`` allowed, a learner's own sandbox
token sent other models, other spellings of the allowed one, another credential header and a
model in the query string. Each must be refused with an Anthropic-shaped error before
anything goes upstream, by the HTTP client and by the Anthropic SDK alike.
"""

from __future__ import annotations

import json

import aiohttp
import anthropic
import pytest

from claudehub.contract.models import Allowlist, check_allowlist, check_entry, check_model_ids
from claudehub.proxy.limits import Limits
from tests.fakes.upstream import FakeAnthropic
from tests.proxy.conftest import StartProxy, token

ALLOWED = "claude-haiku-4-5"

#: (name, path, headers(token), body model): every way the walk tried to reach another model.
LEAKS = [
    ("opus", "/v1/messages", "x-api-key", "claude-opus-4-1"),
    ("sonnet", "/v1/messages", "x-api-key", "claude-sonnet-4-5"),
    ("upper-case", "/v1/messages", "x-api-key", "CLAUDE-OPUS-4-1"),
    ("trailing-space", "/v1/messages", "x-api-key", "claude-haiku-4-5 "),
    ("bearer", "/v1/messages", "bearer", "claude-opus-4-1"),
    ("query", "/v1/messages?model=claude-opus-4-1", "x-api-key", "claude-haiku-4-5"),
    ("count-tokens", "/v1/messages/count_tokens", "x-api-key", "claude-opus-4-1"),
    ("beta-flag", "/v1/messages?beta=true", "x-api-key", "claude-opus-4-1"),
    ("upper-allowed", "/v1/messages", "x-api-key", "Claude-Haiku-4-5"),
    ("leading-space", "/v1/messages", "x-api-key", " claude-haiku-4-5"),
    ("suffix", "/v1/messages", "x-api-key", "claude-haiku-4-5x"),
    ("latest", "/v1/messages", "x-api-key", "claude-haiku-4-5-latest"),
    ("nul", "/v1/messages", "x-api-key", "claude-haiku-4-5\u0000"),
]


def _headers(kind: str, tok: str) -> dict[str, str]:
    auth = {"authorization": f"Bearer {tok}"} if kind == "bearer" else {"x-api-key": tok}
    return {**auth, "anthropic-version": "2023-06-01", "content-type": "application/json"}


async def _send(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict]:
    async with http.post(url, headers=headers, data=body) as r:
        return r.status, await r.json(content_type=None)


def _body(model: object, **extra: object) -> bytes:
    data = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}
    data.update(extra)
    return json.dumps(data).encode()


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "path", "auth", "model"), LEAKS, ids=[x[0] for x in LEAKS])
async def test_every_leak_is_refused_before_the_upstream(
    fake_upstream: FakeAnthropic,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    name: str,
    path: str,
    auth: str,
    model: str,
) -> None:
    proxy = await start_proxy(fake_upstream.url, limits=Limits(allowed_models=[ALLOWED]))
    status, data = await _send(http, proxy.url + path, _headers(auth, token()), _body(model))
    assert status in (400, 403), (status, data)
    assert data["type"] == "error"
    assert data["error"]["type"] in ("invalid_request_error", "permission_error")
    if status == 403:
        assert ALLOWED in data["error"]["message"], "the refusal names the allowed models"
    assert fake_upstream.requests == [], "nothing of a refused request went upstream"
    # the allowed model, on the same endpoint, still goes through
    ok_path = path.split("?")[0]
    status, _ = await _send(http, proxy.url + ok_path, _headers(auth, token()), _body(ALLOWED))
    assert status == 200
    assert [(r.body or {})["model"] for r in fake_upstream.requests] == [ALLOWED]


@pytest.mark.asyncio
async def test_the_anthropic_sdk_is_told_which_models_are_allowed(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(fake_upstream.url, limits=Limits(allowed_models=[ALLOWED]))
    client = anthropic.AsyncAnthropic(base_url=proxy.url, api_key=token(), max_retries=0)
    try:
        with pytest.raises(anthropic.PermissionDeniedError) as err:
            await client.messages.create(
                model="claude-opus-4-1",
                max_tokens=64,
                messages=[{"role": "user", "content": "Hi"}],
            )
        assert "claude-opus-4-1" in str(err.value) and ALLOWED in str(err.value)
        with pytest.raises(anthropic.PermissionDeniedError):
            await client.messages.count_tokens(
                model="claude-sonnet-4-5", messages=[{"role": "user", "content": "Hi"}]
            )
        with pytest.raises(anthropic.PermissionDeniedError):
            await client.beta.messages.create(
                model="claude-opus-4-1",
                max_tokens=64,
                messages=[{"role": "user", "content": "Hi"}],
            )
        reply = await client.messages.create(
            model="claude-haiku-4-5-20251001",  # a dated snapshot of the allowed alias
            max_tokens=64,
            messages=[{"role": "user", "content": "Hi"}],
        )
        assert reply.content
    finally:
        await client.close()
    assert [(r.body or {})["model"] for r in fake_upstream.requests] == [
        "claude-haiku-4-5-20251001"
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "says"),
    [
        (_body(42), "model: 42 is not a model id"),
        (_body(["claude-haiku-4-5"]), "is not a model id"),
        (_body(None), "None is not a model id"),
        (json.dumps({"max_tokens": 5, "messages": []}).encode(), "None is not a model id"),
        (_body({"id": "claude-haiku-4-5"}), "is not a model id"),
        (_body("claude-" + "x" * 100_000), "…"),
        (b'{"model": "claude-haiku-4-5", "model": "claude-opus-4-1", "max_tokens": 5}', "twice"),
        (
            b'{"model": "claude-haiku-4-5", "metadata": {"a": 1, "a": 2}, "max_tokens": 5}',
            "twice",
        ),
        ('{"model": "claude-opus-4-1"}'.encode("utf-16"), "not UTF-8"),
        (b'{"model": "claude-haiku-4-5", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", ""),
    ],
    ids=[
        "number",
        "list",
        "null",
        "missing",
        "object",
        "huge",
        "duplicate",
        "nested-duplicate",
        "utf-16",
        "deep",
    ],
)
async def test_a_malformed_model_field_is_refused_by_name(
    fake_upstream: FakeAnthropic,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    body: bytes,
    says: str,
) -> None:
    proxy = await start_proxy(fake_upstream.url, limits=Limits(allowed_models=[ALLOWED]))
    status, data = await _send(http, proxy.url + "/v1/messages", _headers("", token()), body)
    assert status == 400, data
    assert data["error"]["type"] == "invalid_request_error"
    assert says in data["error"]["message"]
    assert len(data["error"]["message"]) < 300, "a huge model is not echoed back whole"
    assert fake_upstream.requests == []
    status, _ = await _send(http, proxy.url + "/v1/messages", _headers("", token()), _body(ALLOWED))
    assert status == 200, "the proxy keeps serving"


@pytest.mark.asyncio
async def test_a_class_list_narrows_or_widens_the_hub_wide_one(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    limits = Limits(allowed_models=[ALLOWED])
    limits.set_classes(
        {
            "advanced": (["ada"], {"allowed_models": ["claude-opus-4-1"]}),
            "open": (["olga"], {"allowed_models": []}),
        }
    )
    proxy = await start_proxy(fake_upstream.url, limits=limits)

    async def status(user: str, model: str) -> int:
        code, _ = await _send(
            http, proxy.url + "/v1/messages", _headers("", token(user)), _body(model)
        )
        return code

    assert await status("ada", "claude-opus-4-1") == 200  # widened
    assert await status("ada", ALLOWED) == 403  # ...and replaced: the class's list is hers
    assert await status("olga", "claude-sonnet-4-5") == 200  # [] allows every model
    assert await status("bob", "claude-opus-4-1") == 403  # no class: the hub-wide list


# -- the rule itself (claudehub.contract.models) ----------------------------------------------


@pytest.mark.parametrize(
    ("entries", "model", "allowed"),
    [
        (["claude-haiku-4-5"], "claude-haiku-4-5", True),
        (["claude-haiku-4-5"], "claude-haiku-4-5-20251001", True),
        (["claude-haiku-4-5"], "claude-haiku-4-5-2025100", False),
        (["claude-haiku-4-5"], "claude-haiku-4-5-202510011", False),
        (["claude-haiku-4-5"], "claude-haiku-4-5-latest", False),
        (["claude-haiku-4-5"], "claude-haiku-4", False),
        (["claude-haiku-4-5-20251001"], "claude-haiku-4-5", False),
        (["claude-haiku-*"], "claude-haiku-4-5", True),
        (["claude-haiku-*"], "claude-opus-4-1", False),
        (["claude-*-4-5"], "claude-sonnet-4-5", True),
        (["claude-*-4-5"], "claude-opus-4-1", False),
        ([], "claude-opus-4-1", True),
    ],
)
def test_how_a_model_is_compared(entries: list[str], model: str, allowed: bool) -> None:
    assert Allowlist(check_allowlist(entries, "test")).allows(model) is allowed


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("*", "must start with 'claude-'"),
        ("claude-*", "would allow every model"),
        ("claude-?*", "would allow every model"),
        ("claude-*-*", "would allow every model"),
        ("*haiku*", "must start with 'claude-'"),
        ("claude-[a-z]*", "must start with 'claude-'"),
        ("Claude-Haiku-4-5", "is not a model id"),
        ("claude haiku", "is not a model id"),
        ("", "an empty model name"),
        ("   ", "an empty model name"),
        ("claude-" + "x" * 200, "longer than 128"),
        (7, "is not a model name"),
    ],
)
def test_a_bad_allowlist_entry_is_refused_with_one_line(entry: object, says: str) -> None:
    with pytest.raises(ValueError, match=r"^KeyProxyApp\.allowed_models: ") as err:
        check_entry(entry, "KeyProxyApp.allowed_models")
    assert says in str(err.value)
    assert "\n" not in str(err.value)


def test_white_space_around_an_entry_is_configuration_not_a_model() -> None:
    assert check_allowlist([" claude-haiku-4-5 ", "claude-haiku-4-5"], "x") == ["claude-haiku-4-5"]


def test_models_to_choose_from_are_ids_not_patterns() -> None:
    with pytest.raises(ValueError, match="is a pattern"):
        check_model_ids(["claude-haiku-*"], "CLAUDEHUB_MODELS")
