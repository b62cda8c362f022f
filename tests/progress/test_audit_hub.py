"""The audit log through the REAL JupyterHub, the key proxy as its managed service, and the
course service's class page: every privileged action lands in GET /audit, and nothing secret
(the real key, sandbox tokens, hub tokens, prompts, answers) lands anywhere in it.

The hub is the class page's (tests/progress/test_class_page.py: classes alpha and beta,
instructor tina, admin root) plus the key proxy (hub mode, a key file, a fresh SQLite usage
database) and the audit hook (claudehub.hub.audit.configure_audit).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_asyncio
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from claudehub.contract.tokens import mint_token
from claudehub.progress.app import ProgressService
from tests.fakes.upstream import FakeAnthropic
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, PATIENCE, free_port

from .test_class_page import HUB_CONFIG, PREFIX, _post, _running, _start_server
from .test_hub_auth import (
    ADMIN_TOKEN,
    SERVICE_TOKEN,
    RealHub,
    _await_hub,
    _login,
    _spawn_hub,
    _start_service,
    _stop_hub,
)

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
KP_ADMIN = "keyproxy-admin-token-for-the-audit-test-0123"
KP_API_TOKEN = "keyproxy-hub-api-token-for-the-audit-test"
SECRET = "token-secret-for-the-audit-test-0123456789"
OLD_KEY = "sk-ant-api03-old-real-key-0123456789abcdefghijklmnop"
NEW_KEY = "sk-ant-api03-new-real-key-9876543210zyxwvutsrqponml"
PROMPT = "Please explain photosynthesis to the audit test, zebra-quartz-17."
ANSWER = "Hello from the fake upstream."  # what the fake answers a tool-less request

AUDIT_CONFIG = """
import sys as _sys
c.JupyterHub.services.append({{
    "name": "keyproxy",
    "url": "http://127.0.0.1:{kp_port}",
    "api_token": "{kp_api_token}",
    "command": [_sys.executable, "-m", "claudehub.proxy.app",
                "--KeyProxyApp.file_poll_interval=0.2", "--KeyProxyApp.hub_poll_interval=1"],
    "environment": {{
        "ANTHROPIC_API_KEY_FILE": "{key_file}",
        "ANTHROPIC_UPSTREAM_URL": "{upstream}",
        "CLAUDEHUB_TOKEN_SECRET": "{secret}",
        "CLAUDEHUB_KEYPROXY_DB_URL": "sqlite:///{db}",
        "CLAUDEHUB_KEYPROXY_ADMIN_TOKEN": "{kp_admin}",
    }},
}})
c.JupyterHub.load_roles += [r for r in service_roles() if r["name"] == "claudehub-keyproxy"]
from claudehub.hub.audit import configure_audit, keyproxy_admin
configure_audit(c, *keyproxy_admin(c))
"""


@dataclass
class AuditHub:
    hub: RealHub
    app: ProgressService
    kp_url: str
    key_file: Path
    db: Path
    hubdir: Path
    upstream: FakeAnthropic


@pytest_asyncio.fixture
async def audit_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_upstream: FakeAnthropic
) -> AsyncIterator[AuditHub]:
    ports = {
        "port": free_port(),
        "hub_port": free_port(),
        "proxy_api_port": free_port(),
        "service_port": free_port(),
    }
    kp_port = free_port()
    hubdir = tmp_path / "hub"
    hubdir.mkdir()
    key_file = tmp_path / "api-key"
    key_file.write_text(OLD_KEY + "\n")
    db = tmp_path / "usage.sqlite"
    config = HUB_CONFIG.format(
        dir=hubdir, service_token=SERVICE_TOKEN, admin_token=ADMIN_TOKEN, **ports
    ) + AUDIT_CONFIG.format(
        kp_port=kp_port,
        kp_api_token=KP_API_TOKEN,
        key_file=key_file,
        upstream=fake_upstream.url,
        secret=SECRET,
        db=db,
        kp_admin=KP_ADMIN,
    )
    (hubdir / "jupyterhub_config.py").write_text(config)
    env = {
        **os.environ,
        "PATH": f"{REPO / 'node_modules' / '.bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    hub = RealHub(f"http://127.0.0.1:{ports['port']}", f"http://127.0.0.1:{ports['port']}/hub/api")
    monkeypatch.setenv("CLAUDEHUB_KEYPROXY_URL", f"http://127.0.0.1:{kp_port}")
    monkeypatch.setenv("CLAUDEHUB_KEYPROXY_ADMIN_TOKEN", KP_ADMIN)
    app = await _start_service(tmp_path, monkeypatch, hub, ports["service_port"])
    proc, log = _spawn_hub(hubdir, env)
    kp_url = f"http://127.0.0.1:{kp_port}"
    try:
        await _await_hub(proc, hubdir, hub.hub_api + "/", kp_url + "/ready")
        yield AuditHub(hub, app, kp_url, key_file, db, hubdir, fake_upstream)
    finally:
        await _stop_hub(app, proc, log)


async def _fetch(
    url: str, token: str, method: str = "GET", body: Any = None, **kw: Any
) -> tuple[int, str]:
    req = HTTPRequest(
        url,
        method=method,
        headers={"Authorization": f"token {token}", **kw.pop("headers", {})},
        body=body,
        follow_redirects=False,
        allow_nonstandard_methods=True,
        **kw,
    )
    try:
        resp = await AsyncHTTPClient().fetch(req)
    except HTTPClientError as e:
        return e.code, (e.response.body or b"").decode() if e.response else ""
    return resp.code, resp.body.decode()


async def _audit(kp_url: str, query: str = "") -> tuple[list[dict[str, Any]], str]:
    """The audit log as JSON and as CSV (with the key proxy's admin token)."""
    status, body = await _fetch(f"{kp_url}/audit?{query}", KP_ADMIN)
    assert status == 200, body
    status, text = await _fetch(f"{kp_url}/audit?format=csv&{query}", KP_ADMIN)
    assert status == 200, text
    return json.loads(body)["events"], text


async def _eventually_event(kp_url: str, action: str, within: float = PATIENCE) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        events, _ = await _audit(kp_url, urlencode({"action": action}))
        if events:
            return events[0]
        if loop.time() > deadline:
            raise AssertionError(f"no {action} event in the audit log")
        await asyncio.sleep(0.2)


@pytest.mark.asyncio
async def test_privileged_actions_are_audited_and_nothing_secret_is_recorded(
    audit_hub: AuditHub,
) -> None:
    hub, kp = audit_hub.hub, audit_hub.kp_url
    tokens = {u: await hub.token_for(u) for u in ("alice", "carol", "tina", "root")}
    await asyncio.gather(*(_start_server(hub, u) for u in ("alice", "carol")))

    # A learner's real request through the key proxy: its prompt and answer must stay out.
    alice_sandbox = mint_token(SECRET.encode(), "alice")
    status, body = await _fetch(
        f"{kp}/v1/messages",
        "",
        "POST",
        json.dumps(
            {
                "model": "claude-sonnet-4-5",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": PROMPT}],
            }
        ),
        headers={
            "x-api-key": alice_sandbox,
            "Authorization": "",
            "content-type": "application/json",
        },
    )
    assert status == 200 and ANSWER in body, body

    # 1. the instructor ends a learner's session through the class page
    assert (
        await _post(hub.public + PREFIX + "classes/alpha/sessions/carol/stop", tokens["tina"])
        == 200
    )
    ended = await _eventually_event(kp, "session.end")
    assert (ended["actor"], ended["actor_kind"], ended["target"]) == ("tina", "user", "carol")
    assert ended["source"] == "127.0.0.1" and ended["ts"].endswith("+00:00")
    assert ended["detail"]["actor_admin"] is False
    assert not await _running(hub, "carol")
    # ...while a learner's own stop is no privileged action
    assert await _fetch(f"{hub.hub_api}/users/alice/server", tokens["alice"], "DELETE") in (
        (204, ""),
        (202, ""),
    )
    await _start_server(hub, "alice")

    # 2. the admin opens a learner's server in a browser: the hub asks root to authorize
    # access to alice's server (JupyterHub's confirmation page), root does
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await _login(browser, hub, "root")
            await page.goto(f"{hub.public}/user/alice/claude")
            await page.click("button[type=submit]")
            await page.wait_for_url("**/user/alice/claude*")
        finally:
            await browser.close()
    access = await _eventually_event(kp, "server.access")
    assert (access["actor"], access["target"], access["detail"]["via"]) == (
        "root",
        "alice",
        "oauth",
    )
    assert access["detail"]["actor_admin"] is True

    # 3. a class's limits change through the hub API
    status, _ = await _fetch(
        f"{hub.hub_api}/groups/alpha/properties",
        tokens["root"],
        "PUT",
        json.dumps({"claudehub.limits": {"daily_token_budget": 5000, "rate_limit_per_minute": 6}}),
    )
    assert status == 200
    change = await _eventually_event(kp, "limits.change")
    assert (change["actor"], change["actor_kind"], change["target"]) == ("root", "user", "alpha")
    assert change["detail"]["limit_fields"] == ["daily_token_budget", "rate_limit_per_minute"]
    assert change["detail"]["limits.daily_token_budget"] == 5000

    # 4. the operator rotates the real key
    tmp = audit_hub.key_file.with_suffix(".new")
    tmp.write_text(NEW_KEY + "\n")
    tmp.replace(audit_hub.key_file)
    rotate = await _eventually_event(kp, "key.rotate")
    assert rotate["actor"] == "operator (key file)" and rotate["actor_kind"] == "operator"

    # 5. a forged sandbox token (signed with a guessed secret, claiming carol)
    forged = mint_token(b"guessed-secret", "carol")
    for _ in range(5):
        status, _ = await _fetch(
            f"{kp}/v1/messages",
            "",
            "POST",
            json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": []}),
            headers={"x-api-key": forged, "Authorization": ""},
        )
        assert status == 401
    forgery = await _eventually_event(kp, "token.forged")
    assert forgery["source"] == "127.0.0.1" and forgery["target"] == "carol"
    assert forgery["detail"]["target_claimed"] is True

    # every action in the JSON and in the CSV export, with who, what, whom, when, from where
    events, csv_text = await _audit(kp)
    actions = {e["action"] for e in events}
    assert actions == {
        "session.end",
        "server.access",
        "limits.change",
        "key.rotate",
        "token.forged",
    }
    assert [e for e in events if e["action"] == "session.end"] == [ended]  # alice's own: none
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert {r["action"] for r in rows} == actions
    for row in rows:
        assert row["ts"] and row["actor"] and row["actor_kind"]
    by_action = {r["action"]: r for r in rows}
    assert by_action["session.end"]["target"] == "carol"
    assert by_action["session.end"]["source"] == "127.0.0.1"

    # nothing secret anywhere: not in the records, the export, nor the database file
    secrets_and_content = [
        OLD_KEY,
        NEW_KEY,
        SECRET,
        alice_sandbox,
        alice_sandbox.split(".")[2],
        forged,
        forged.split(".")[2],
        SERVICE_TOKEN,
        ADMIN_TOKEN,
        KP_ADMIN,
        KP_API_TOKEN,
        *tokens.values(),
        PROMPT,
        "zebra-quartz",
        ANSWER,
    ]
    everything = json.dumps(events) + csv_text + audit_hub.db.read_bytes().decode("latin-1")
    for value in secrets_and_content:
        assert value not in everything, f"{value[:12]}... is in the audit log"

    # the course service's admin page lists them, and serves the exports to admins only
    page = f"{hub.public}{PREFIX}admin"
    status, html = await _fetch(page, tokens["root"])
    assert status == 200, html
    assert 'id="audit"' in html and "session.end" in html and "tina" in html
    status, exported = await _fetch(page + "/audit.csv", tokens["root"])
    assert status == 200 and "token.forged" in exported and OLD_KEY not in exported
    status, exported = await _fetch(page + "/audit.json", tokens["root"])
    assert status == 200 and {e["action"] for e in json.loads(exported)["events"]} == actions
    assert (await _fetch(page + "/audit.csv", tokens["tina"]))[0] == 403


@pytest.mark.asyncio
async def test_a_learner_is_told_in_plain_words_that_their_instructor_ended_the_session(
    audit_hub: AuditHub,
) -> None:
    """carol's page (a real claudehub page in Chromium) loses its server when tina ends the
    session from the class page; it then says who ended it."""
    from playwright.async_api import async_playwright

    hub = audit_hub.hub
    tina = await hub.token_for("tina")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await _login(browser, hub, "carol")
            await _start_server(hub, "carol")
            await page.goto(f"{hub.public}/user/carol/claude")
            await page.wait_for_function(
                "() => window.claudehub && window.claudehub.ready", timeout=PATIENCE * 1000
            )
            await page.wait_for_function(
                "() => !document.getElementById('status').textContent.includes('connecting')",
                timeout=PATIENCE * 1000,
            )
            assert (
                await _post(hub.public + PREFIX + "classes/alpha/sessions/carol/stop", tina) == 200
            )
            # the page finds its server gone and says who ended it, in plain words
            await page.wait_for_selector("#claudehub-ended-by", timeout=60_000)
            text = await page.inner_text("#claudehub-session-ended")
            assert "Your session was ended by your instructor tina at" in text, text
            assert "UTC" in text and "Start again" in text
        finally:
            await browser.close()
