"""The class page through the REAL JupyterHub, configured by claudehub.hub.classes.

Two classes: "alpha" (alice, carol; instructor tina) and "beta" (bob, carol; instructor
ben); root is a hub admin. Who may see what comes from each caller's own hub scopes
(the instructor role's custom scope filtered by group), through API tokens and through
the service's OAuth login in a real Chromium.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import pytest_asyncio
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from claudehub.contract.course_client import ProgressClient
from claudehub.progress.app import ProgressService
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, PATIENCE, eventually, free_port

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

HUB_CONFIG = """
c = get_config()  # noqa
from claudehub.contract.hub import service_roles
from claudehub.hub.classes import ClassSettings, configure_classes
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.auth_token = "proxy-token-0123456789abcdef"
c.JupyterHub.db_url = "sqlite:///{dir}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/cookie_secret"
c.JupyterHub.pid_file = "{dir}/hub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {{"root"}}
import sys
from pathlib import Path
c.JupyterHub.spawner_class = "simple"
c.Spawner.cmd = [str(Path(sys.executable).with_name("jupyterhub-singleuser"))]
c.Spawner.args = ["--allow-root"]
c.JupyterHub.extra_user_scopes = {{"access:services!service=progress"}}
c.JupyterHub.services = [
    {{"name": "progress", "url": "http://127.0.0.1:{service_port}", "api_token": "{service_token}",
      "oauth_no_confirm": True}},
    {{"name": "tester", "api_token": "{admin_token}"}},
]
c.JupyterHub.load_roles = [r for r in service_roles() if r["name"] == "claudehub-progress"] + [
    {{"name": "tester", "scopes": ["admin:users", "tokens", "admin:servers"], "services": ["tester"]}},
]
configure_classes(c, ClassSettings(classes={{
    "alpha": {{"learners": ["alice", "carol"], "instructors": ["tina"]}},
    "beta": {{"learners": ["bob", "carol"], "instructors": ["ben"]}},
}}))
# opal is staff who may not attach: the role configure_classes gives admins when
# admins_attach_servers is off (which the dummy authenticator here would also allow)
from claudehub.hub.classes import OPERATOR_SCOPES
c.JupyterHub.load_roles.append(
    {{"name": "claudehub-operator", "scopes": list(OPERATOR_SCOPES), "users": ["opal"]}}
)
"""

PREFIX = "/services/progress/"


@pytest_asyncio.fixture
async def class_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[RealHub, ProgressService]]:
    ports = {
        "port": free_port(),
        "hub_port": free_port(),
        "proxy_api_port": free_port(),
        "service_port": free_port(),
    }
    hubdir = tmp_path / "hub"
    hubdir.mkdir()
    (hubdir / "jupyterhub_config.py").write_text(
        HUB_CONFIG.format(dir=hubdir, service_token=SERVICE_TOKEN, admin_token=ADMIN_TOKEN, **ports)
    )
    env = {
        **os.environ,
        "PATH": f"{REPO / 'node_modules' / '.bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    hub = RealHub(f"http://127.0.0.1:{ports['port']}", f"http://127.0.0.1:{ports['port']}/hub/api")
    app = await _start_service(tmp_path, monkeypatch, hub, ports["service_port"])
    proc, log = _spawn_hub(hubdir, env)
    try:
        await _await_hub(proc, hubdir, hub.hub_api + "/")
        yield hub, app
    finally:
        await _stop_hub(app, proc, log)


async def _get(url: str, token: str) -> tuple[int, str]:
    req = HTTPRequest(url, headers={"Authorization": f"token {token}"}, follow_redirects=False)
    try:
        resp = await AsyncHTTPClient().fetch(req)
    except HTTPClientError as e:
        return e.code, e.response.body.decode() if e.response and e.response.body else ""
    return resp.code, resp.body.decode()


async def _first_event(url: str, token: str) -> tuple[int, str]:
    """Open the event stream and return its status and first ``update`` event."""
    chunks: list[bytes] = []
    got = asyncio.Event()

    def on_chunk(chunk: bytes) -> None:
        chunks.append(chunk)
        if b"\n\n" in b"".join(chunks):
            got.set()

    req = HTTPRequest(
        url,
        headers={"Authorization": f"token {token}"},
        streaming_callback=on_chunk,
        request_timeout=2 * PATIENCE,  # longer than the wait below
        follow_redirects=False,
    )
    fetch = asyncio.ensure_future(AsyncHTTPClient().fetch(req, raise_error=False))
    done, _ = await asyncio.wait(
        [fetch, asyncio.ensure_future(got.wait())], timeout=PATIENCE, return_when="FIRST_COMPLETED"
    )
    if fetch in done:
        resp = fetch.result()
        return resp.code, (resp.body or b"").decode()
    fetch.cancel()
    return 200, b"".join(chunks).decode()


class _Table(HTMLParser):
    """The cells of ``<table id="learners">``'s body rows."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.header: list[str] = []
        self._in_table = self._in_cell = False
        self._where = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and ("id", "learners") in attrs:
            self._in_table = True
        elif self._in_table and tag in ("thead", "tbody"):
            self._where = tag
        elif self._in_table and tag == "tr" and self._where == "tbody":
            self.rows.append([])
        elif self._in_table and tag in ("td", "th"):
            if ("class", "actions") in attrs:
                return  # the buttons' column is not data
            self._in_cell = True
            (self.header.append("") if self._where == "thead" else self.rows[-1].append(""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False
        elif tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_table and self._in_cell:
            if self._where == "thead":
                self.header[-1] += data
            else:
                self.rows[-1][-1] += data


def _table(html: str) -> tuple[list[str], list[list[str]]]:
    parser = _Table()
    parser.feed(html)
    return parser.header, parser.rows


@pytest.mark.asyncio
async def test_instructors_see_their_class_only_and_learners_none(
    class_hub: tuple[RealHub, ProgressService],
) -> None:
    hub, _app = class_hub
    tokens = {u: await hub.token_for(u) for u in ("alice", "bob", "carol", "tina", "ben", "root")}
    base = hub.public + PREFIX
    alice = ProgressClient(base, tokens["alice"])
    await alice.answer("t101", "q1", "2")
    await ProgressClient(base, tokens["carol"]).request(
        "POST", "courses/t101/completions", {"stage": 1}
    )

    def routes(name: str) -> list[str]:
        return [
            f"classes/{name}",
            f"classes/{name}/",
            f"classes/{name}.csv",
            f"api/classes/{name}",
        ]

    # tina teaches alpha: every route of alpha answers, every route of beta is refused
    for route in routes("alpha"):
        status, _ = await _get(base + route, tokens["tina"])
        assert status == 200, route
    for route in [*routes("beta"), "classes/nosuch"]:
        status, body = await _get(base + route, tokens["tina"])
        assert status == 403, route
        assert "bob" not in body
    assert (await _first_event(base + "classes/beta/events", tokens["tina"]))[0] == 403
    status, first = await _first_event(base + "classes/alpha/events", tokens["tina"])
    assert status == 200 and first.startswith("event: update\ndata: ")
    assert "alice" in json.loads(first.split("data: ", 1)[1].split("\n", 1)[0])["html"]
    status, body = await _get(base + "classes/", tokens["tina"])
    assert status == 200 and "alpha" in body and "beta" not in body

    # ben teaches beta only
    assert (await _get(base + "classes/alpha", tokens["ben"]))[0] == 403
    assert (await _get(base + "classes/beta", tokens["ben"]))[0] == 200

    # learners see no class page at all, not even their own class's
    for user in ("alice", "carol"):
        for route in [*routes("alpha"), "classes/"]:
            assert (await _get(base + route, tokens[user]))[0] == 403, (user, route)

    # the admin sees both; a class that does not exist is 404 for them
    for name in ("alpha", "beta"):
        assert (await _get(base + f"classes/{name}", tokens["root"]))[0] == 200
    # an operator (an admin who may not attach) sees every class and the admin routes,
    # which instructors and learners may not
    opal = await hub.token_for("opal")
    for route in ["classes/alpha", "classes/beta", "api/admin/progress", "api/admin/errors"]:
        assert (await _get(base + route, opal))[0] == 200, route
        if route.startswith("api/admin"):
            for user in ("tina", "alice"):
                assert (await _get(base + route, tokens[user]))[0] == 403, (user, route)
    assert (await _get(base + "classes/nosuch", tokens["root"]))[0] == 404
    status, body = await _get(base + "classes/", tokens["root"])
    assert "alpha" in body and "beta" in body

    # the page: one row per learner; carol (in both classes) in both; how each stage was earned
    status, html = await _get(base + "classes/alpha", tokens["tina"])
    header, rows = _table(html)
    by_user = {r[0]: r for r in rows}
    assert set(by_user) == {"alice", "carol"}
    assert by_user["alice"][1] == "Transformers 101"
    assert by_user["alice"][3] == "1 (quiz)"
    assert by_user["alice"][4] == "1"
    assert by_user["alice"][2].startswith("2: ")
    assert by_user["carol"][3] == "1 (tutor)"
    assert by_user["carol"][6] == "stopped"
    _, beta_rows = _table((await _get(base + "classes/beta", tokens["root"]))[1])
    assert {r[0] for r in beta_rows} == {"bob", "carol"}
    assert next(r for r in beta_rows if r[0] == "bob")[1] == "(not started)"

    # the CSV is exactly the page's table
    status, text = await _get(base + "classes/alpha.csv", tokens["tina"])
    assert list(csv.reader(io.StringIO(text))) == [header, *rows]


@pytest.mark.asyncio
async def test_class_page_in_chromium_updates_live_when_a_learner_answers(
    class_hub: tuple[RealHub, ProgressService],
) -> None:
    """tina logs in through the hub; alice answers a quiz; tina's row changes within 2 s."""
    from playwright.async_api import async_playwright

    hub, _app = class_hub
    alice = ProgressClient(hub.public + PREFIX, await hub.token_for("alice"))
    await alice.answer("t101", "q1", "2")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await _login(browser, hub, "tina")
            resp = await page.goto(hub.public + PREFIX + "classes/alpha")
            assert resp is not None and resp.status == 200
            await page.wait_for_selector("#live[data-state=live]", timeout=PATIENCE * 1000)
            row = page.locator('#learners tr[data-user="alice"] td')
            assert await row.nth(3).inner_text() == "1 (quiz)"
            bar = page.locator('#stage-chart g.bar[data-stage^="1."]')
            assert await bar.get_attribute("data-done") == "1"

            # alice completes stage 2 with its quiz, in "another browser" (her own token): the
            # open page shows it without a reload (how soon: benchmarks/classpage/bench.py)
            await alice.answer("t101", "q2", "1")
            await page.wait_for_function(
                """() => {
                    const td = document.querySelectorAll('#learners tr[data-user="alice"] td')[3];
                    return td && td.textContent === "1 (quiz), 2 (quiz)";
                }""",
                timeout=PATIENCE * 1000,
            )
            bar2 = page.locator('#stage-chart g.bar[data-stage^="2."]')
            assert await bar2.get_attribute("data-done") == "1"

            # the page's CSV link downloads what the page shows
            async with page.expect_download() as dl:
                await page.click("#csv")
            download = await dl.value
            text = await asyncio.to_thread(Path(await download.path()).read_text)
            shown = await page.locator("#learners tbody tr").evaluate_all(
                "rows => rows.map(r => [...r.cells].filter(c => !c.classList.contains('actions'))"
                ".map(c => c.textContent))"
            )
            assert list(csv.reader(io.StringIO(text)))[1:] == shown

            # beta is refused in the browser too
            resp = await page.goto(hub.public + PREFIX + "classes/beta")
            assert resp is not None and resp.status == 403
            await page.close()

            page = await _login(browser, hub, "alice")
            resp = await page.goto(hub.public + PREFIX + "classes/alpha")
            assert resp is not None and resp.status == 403
        finally:
            await browser.close()


async def _post(url: str, token: str | None, headers: dict[str, str] | None = None) -> int:
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"token {token}"
    req = HTTPRequest(url, method="POST", headers=h, body=b"", follow_redirects=False)
    try:
        resp = await AsyncHTTPClient().fetch(req)
    except HTTPClientError as e:
        return e.code
    return resp.code


async def _start_server(hub: RealHub, user: str) -> None:
    await hub.api("POST", f"users/{user}/server")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while loop.time() < deadline:
        model = await hub.api("GET", f"users/{user}")
        if model["servers"].get("", {}).get("ready"):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{user}'s server did not start")


async def _running(hub: RealHub, user: str) -> bool:
    model = await hub.api("GET", f"users/{user}")
    return bool(model["servers"])


async def _not_running(hub: RealHub, user: str) -> bool:
    return not await _running(hub, user)


@pytest.mark.asyncio
async def test_an_instructor_ends_sessions_of_their_class_only(
    class_hub: tuple[RealHub, ProgressService],
) -> None:
    from playwright.async_api import async_playwright

    hub, _app = class_hub
    tokens = {u: await hub.token_for(u) for u in ("alice", "bob", "carol", "tina")}
    base = hub.public + PREFIX
    await asyncio.gather(*(_start_server(hub, u) for u in ("alice", "bob", "carol")))

    # not tina's class, not tina's class's learner, a learner asking: refused, nothing stops
    assert await _post(base + "classes/beta/sessions/bob/stop", tokens["tina"]) == 403
    assert await _post(base + "classes/alpha/sessions/bob/stop", tokens["tina"]) == 404
    assert await _post(base + "classes/alpha/sessions/carol/stop", tokens["alice"]) == 403
    # nor does the hub let tina stop bob's server directly
    req = HTTPRequest(
        hub.hub_api + "/users/bob/server",
        method="DELETE",
        headers={"Authorization": f"token {tokens['tina']}"},
    )
    with pytest.raises(HTTPClientError) as refused:
        await AsyncHTTPClient().fetch(req)
    assert refused.value.code in (403, 404)
    assert await _running(hub, "bob") and await _running(hub, "carol")

    # with her token, tina ends carol's session (carol is in alpha, and in beta too)
    assert await _post(base + "classes/alpha/sessions/carol/stop", tokens["tina"]) == 200
    await eventually(lambda: _not_running(hub, "carol"), what="the end of carol's server")

    # in the browser: the row shows the session; "End session" ends it and the row says so
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await _login(browser, hub, "tina")
            await page.goto(base + "classes/alpha")
            await page.wait_for_selector("#live[data-state=live]", timeout=PATIENCE * 1000)
            cell = page.locator('#learners tr[data-user="alice"] td').nth(6)
            assert await cell.inner_text() == "running"
            # a cross-site style POST with the cookie but without the page's XSRF token
            status = await page.evaluate(
                "url => fetch(url, {method: 'POST', credentials: 'same-origin'})"
                ".then(r => r.status)",
                base + "classes/alpha/sessions/alice/stop",
            )
            assert status == 403 and await _running(hub, "alice")
            page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            await page.click('button.end-session[data-user="alice"]')
            await page.wait_for_function(
                """() => {
                    const td = document.querySelectorAll('#learners tr[data-user="alice"] td')[6];
                    return td && td.textContent === "stopped";
                }""",
                timeout=PATIENCE * 1000,
            )
            assert not await _running(hub, "alice")
        finally:
            await browser.close()
    assert await _running(hub, "bob")
