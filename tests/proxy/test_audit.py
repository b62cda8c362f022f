"""The audit log: the event check, the key proxy's /audit endpoints, retention, forged tokens."""

from __future__ import annotations

import csv
import io
import json
import secrets
import time
from pathlib import Path

import aiohttp
import pytest

from claudehub.contract.audit import AuditEventError, check_event
from claudehub.contract.tokens import mint_token
from claudehub.proxy.audit import FORGED_WINDOW, AuditLog, AuditStore
from claudehub.proxy.usage import UsageRecorder, UsageStore
from tests.fakes.upstream import FakeAnthropic
from tests.proxy.conftest import REAL_KEY, StartProxy, message_body, token

ADMIN = "admin-token-for-audit-tests"
EVENT = {
    "action": "session.end",
    "actor": "tina",
    "actor_kind": "user",
    "target": "carol",
    "source": "10.0.0.7",
    "detail": {"server": "", "actor_admin": False},
}


# -- check_event ----------------------------------------------------------------------------
def test_a_good_event_passes_with_its_fields() -> None:
    checked = check_event({**EVENT, "ts": "2025-05-01T12:00:00Z"})
    assert checked["action"] == "session.end" and checked["target"] == "carol"
    assert checked["ts"] == 1746100800.0
    assert checked["detail"] == {"server": "", "actor_admin": False}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"action": "server.delete"}, "action"),
        ({"action": 3}, "action"),
        ({"actor": ""}, "actor"),
        ({"actor": "x" * 256}, "actor"),
        ({"target": "t" * 300}, "target"),
        ({"actor_kind": "robot"}, "actor_kind"),
        ({"ts": "yesterday"}, "ts"),
        ({"detail": {"note": "n" * 201}}, "detail.note"),
        ({"detail": {"nested": {"a": 1}}}, "detail.nested"),
        ({"prompt": "hello"}, "prompt"),
    ],
)
def test_a_bad_event_is_refused_naming_the_field(change: dict, field: str) -> None:
    with pytest.raises(AuditEventError) as refused:
        check_event({**EVENT, **change})
    assert refused.value.field == field
    assert field in str(refused.value)


@pytest.mark.parametrize(
    ("field", "secret"),
    [
        ("target", REAL_KEY),
        ("actor", "sk-ant-api03-abc"),
        ("source", mint_token(b"s", "carol")[:60]),
        ("detail.note", "token " + secrets.token_urlsafe(32)),
        ("detail.note", secrets.token_hex(16)),  # JupyterHub's API tokens are 32 hex digits
        ("detail.models[1]", ["claude-haiku-4-5", "sk-ant-oops"]),
    ],
)
def test_a_secret_looking_value_is_refused_naming_the_field(field: str, secret: object) -> None:
    event: dict = {**EVENT, "detail": dict(EVENT["detail"])}  # type: ignore[arg-type]
    if field.startswith("detail."):
        event["detail"][field.split(".", 1)[1].split("[")[0]] = secret
    else:
        event[field] = secret
    with pytest.raises(AuditEventError) as refused:
        check_event(event)
    assert refused.value.field == field
    assert str(secret)[:20] not in str(refused.value)


def test_model_names_user_names_and_paths_are_not_taken_for_secrets() -> None:
    detail = {
        "allowed_models": ["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"],
        "key_file": "/etc/claudehub/anthropic/api-key",
        "client_id": "jupyterhub-user-alice.smith",
    }
    assert check_event({**EVENT, "detail": detail})["detail"] == detail


# -- the store: retention -------------------------------------------------------------------
@pytest.mark.asyncio
async def test_retention_prunes_old_events_and_zero_keeps_them(tmp_path: Path) -> None:
    usage = UsageStore(f"sqlite:///{tmp_path}/u.sqlite")
    recorder = UsageRecorder(usage)
    now = time.time()
    log = AuditLog(AuditStore(usage), recorder, retention_days=30)
    for age_days in (400, 31, 29, 0):
        log.record({**EVENT, "target": f"aged{age_days}", "ts": _iso(now - age_days * 86400)})
    await log.flush()
    assert await log.prune(now) == 2
    assert sorted(e["target"] for e in await log.query()) == ["aged0", "aged29"]

    keep = AuditLog(AuditStore(usage), recorder, retention_days=0)
    keep.record({**EVENT, "target": "ancient", "ts": _iso(now - 5000 * 86400)})
    await keep.flush()
    assert await keep.prune(now) == 0
    assert "ancient" in [e["target"] for e in await keep.query()]
    await recorder.stop()


def _iso(ts: float) -> str:
    from claudehub.contract.audit import format_ts

    return format_ts(ts)


# -- forged tokens: rate limited ------------------------------------------------------------
@pytest.mark.asyncio
async def test_forged_tokens_are_recorded_once_per_source_per_minute_with_a_count(
    tmp_path: Path,
) -> None:
    usage = UsageStore(f"sqlite:///{tmp_path}/u.sqlite")
    recorder = UsageRecorder(usage)
    clock = [1_000_000.0]
    log = AuditLog(AuditStore(usage), recorder, clock=lambda: clock[0])
    forged = mint_token(b"not-the-secret", "carol")
    for _ in range(500):
        log.token_forged("192.0.2.1", forged)
    log.token_forged("192.0.2.2", forged)
    await log.flush()
    events = await log.query(action="token.forged")
    assert len(events) == 2  # one per source, however many came
    assert {e["source"] for e in events} == {"192.0.2.1", "192.0.2.2"}
    assert all(e["target"] == "carol" and e["detail"]["target_claimed"] for e in events)

    clock[0] += FORGED_WINDOW + 1  # a minute later the rest of the flood is counted
    await log.flush()
    events = await log.query(action="token.forged", actor="192.0.2.1")
    assert [e["detail"]["count"] for e in events] == [499, 1]
    serialised = json.dumps(events)
    assert forged not in serialised and forged.split(".")[2] not in serialised
    await recorder.stop()


# -- the endpoints ---------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_post_audit_refuses_non_admins_anthropic_style(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(fake_upstream.url, admin_tokens=[ADMIN])
    url = f"{proxy.url}/audit"
    async with http.post(url, json=EVENT) as resp:
        assert resp.status == 401
        body = await resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    # a sandbox token is no admin token
    async with http.post(url, json=EVENT, headers={"x-api-key": token("carol")}) as resp:
        assert resp.status == 403
        body = await resp.json()
    assert body["error"]["type"] == "permission_error"
    async with http.get(url, headers={"Authorization": "Bearer wrong"}) as resp:
        assert resp.status == 403
    assert await proxy.audit.query() == []


@pytest.mark.asyncio
async def test_post_then_get_audit_as_json_and_csv_with_filters(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(
        fake_upstream.url, admin_tokens=[ADMIN], service_prefix="/services/keyproxy/"
    )
    admin = {"Authorization": f"Bearer {ADMIN}"}
    for event in (
        EVENT,
        {**EVENT, "action": "limits.change", "target": "alpha", "detail": {"fields": ["x"]}},
    ):
        async with http.post(f"{proxy.url}/audit", json=event, headers=admin) as resp:
            assert resp.status == 201, await resp.text()
    # a bad event: refused with the field named, Anthropic-style, nothing stored
    bad = {**EVENT, "target": REAL_KEY}
    async with http.post(f"{proxy.url}/audit", json=bad, headers=admin) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error" and "target" in error["message"]
    assert REAL_KEY not in error["message"]

    async with http.get(f"{proxy.url}/services/keyproxy/audit", headers=admin) as resp:
        assert resp.status == 200
        data = await resp.json()
    assert [e["action"] for e in data["events"]] == ["limits.change", "session.end"]
    first = data["events"][1]
    assert first["actor"] == "tina" and first["target"] == "carol"
    assert first["source"] == "10.0.0.7" and first["ts"].endswith("+00:00")

    async with http.get(
        f"{proxy.url}/audit?action=session.end&actor=tina&since=2000-01-01", headers=admin
    ) as resp:
        assert [e["target"] for e in (await resp.json())["events"]] == ["carol"]
    async with http.get(f"{proxy.url}/audit?until=2000-01-01", headers=admin) as resp:
        assert (await resp.json())["events"] == []
    async with http.get(f"{proxy.url}/audit?limit=1", headers=admin) as resp:
        data = await resp.json()
    assert len(data["events"]) == 1 and data["truncated"] is True
    for query in ("limit=0", "limit=100000", "action=nope", "since=soon", "format=xml"):
        async with http.get(f"{proxy.url}/audit?{query}", headers=admin) as resp:
            assert resp.status == 400, query
            assert (await resp.json())["type"] == "error"

    async with http.get(f"{proxy.url}/audit?format=csv", headers=admin) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert [r["action"] for r in rows] == ["limits.change", "session.end"]
    assert json.loads(rows[1]["detail"]) == {"server": "", "actor_admin": False}


@pytest.mark.asyncio
async def test_a_forged_token_is_refused_and_recorded_without_the_token(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(fake_upstream.url, admin_tokens=[ADMIN])
    forged = mint_token(b"a-guessed-secret", "carol")
    for _ in range(20):
        async with http.post(
            f"{proxy.url}/v1/messages", json=message_body(), headers={"x-api-key": forged}
        ) as resp:
            assert resp.status == 401
    # a merely expired or malformed token is no forgery
    for bad in (token("carol", ttl=-1), "chs1.garbage"):
        async with http.post(
            f"{proxy.url}/v1/messages", json=message_body(), headers={"x-api-key": bad}
        ) as resp:
            assert resp.status == 401
    async with http.get(f"{proxy.url}/audit", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
        events = (await r.json())["events"]
    assert len(events) == 1
    (event,) = events
    assert event["action"] == "token.forged" and event["source"] == "127.0.0.1"
    assert event["target"] == "carol" and event["detail"]["target_claimed"] is True
    assert forged.split(".")[2] not in json.dumps(events)
    assert fake_upstream.message_requests() == []
