"""Through the REAL JupyterHub: the service knows users only by the hub's word.

A real hub (with configurable-http-proxy) runs as a subprocess with the progress
service registered; the test makes API tokens for two users and an admin and calls
the service through the hub's proxy at /services/progress/.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets.config import Config

from claudehub.contract.course_client import ProgressAPIError, ProgressClient
from claudehub.progress.app import ProgressService
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, free_port

from .conftest import course_sources

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SERVICE_TOKEN = "progress-service-token-0123456789"
ADMIN_TOKEN = "test-admin-service-token-0123456789"

HUB_CONFIG = """
c = get_config()  # noqa
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
# what claudehub's hub config grants: every user may use the progress service
c.JupyterHub.extra_user_scopes = {{"access:services!service=progress"}}
c.JupyterHub.services = [
    {{"name": "progress", "url": "http://127.0.0.1:{service_port}", "api_token": "{service_token}",
      "oauth_no_confirm": True}},
    {{"name": "tester", "api_token": "{admin_token}"}},
]
c.JupyterHub.load_roles = [
    {{"name": "tester", "scopes": ["admin:users", "tokens"], "services": ["tester"]}},
]
"""


class RealHub:
    def __init__(self, public: str, hub_api: str) -> None:
        self.public = public
        self.hub_api = hub_api

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        req = HTTPRequest(
            f"{self.hub_api}/{path}",
            method=method,
            headers={"Authorization": f"token {ADMIN_TOKEN}"},
            body=json.dumps(body) if body is not None else None,
            allow_nonstandard_methods=True,
        )
        resp = await AsyncHTTPClient().fetch(req)
        return json.loads(resp.body) if resp.body else None

    async def token_for(self, user: str, scopes: list[str] | None = None) -> str:
        try:
            await self.api("POST", f"users/{user}")
        except HTTPClientError as e:
            if e.code != 409:  # already exists
                raise
        body: dict[str, Any] = {"note": "test"}
        if scopes is not None:
            body["scopes"] = scopes
        return str((await self.api("POST", f"users/{user}/tokens", body))["token"])


async def _start_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub: RealHub, port: int
) -> ProgressService:
    # the environment a hub-managed service gets
    monkeypatch.setenv("JUPYTERHUB_API_URL", hub.hub_api)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", SERVICE_TOKEN)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_NAME", "progress")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/services/progress/")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("JUPYTERHUB_CLIENT_ID", "service-progress")
    monkeypatch.setenv("JUPYTERHUB_OAUTH_CALLBACK_URL", "/services/progress/oauth_callback")
    courses, catalogues = course_sources(tmp_path / "courses")
    cfg = Config()
    cfg.ProgressService.courses = courses
    cfg.ProgressService.catalogues = catalogues
    cfg.ProgressService.db_url = f"sqlite:///{tmp_path / 'progress.sqlite'}"
    cfg.ProgressService.cache_dir = str(tmp_path / "cache")
    app = ProgressService(config=cfg)
    await app.start_async()
    return app


def _spawn_hub(hubdir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Any]:
    log = (hubdir / "hub.log").open("wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "jupyterhub"),
            "-f",
            str(hubdir / "jupyterhub_config.py"),
        ],
        cwd=hubdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, log


async def _await_hub(proc: subprocess.Popen[bytes], hubdir: Path, *urls: str) -> None:
    """Until every one of ``urls`` answers (the hub's API first); fail with the hub's log."""
    for _ in range(300):
        if proc.poll() is not None:
            raise AssertionError((hubdir / "hub.log").read_text()[-3000:])
        try:
            for url in urls:
                await AsyncHTTPClient().fetch(url, request_timeout=2)
            return
        except (HTTPClientError, OSError):
            await asyncio.sleep(0.2)
    raise AssertionError("hub did not start: " + (hubdir / "hub.log").read_text()[-3000:])


async def _stop_hub(app: ProgressService, proc: subprocess.Popen[bytes], log: Any) -> None:
    """Stop the course service, then the hub and everything in its session."""
    await app.stop_async()
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


@pytest_asyncio.fixture
async def real_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[RealHub, ProgressService]]:
    """The progress service (started first: the hub checks its services at start-up),
    then the hub with the service registered."""
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


@pytest.mark.asyncio
async def test_users_reach_only_their_own_progress_through_real_hub_auth(
    real_hub: tuple[RealHub, ProgressService],
) -> None:
    hub, _app = real_hub
    alice_token = await hub.token_for("alice")
    bob_token = await hub.token_for("bob")
    root_token = await hub.token_for("root")
    # a token of alice's that was not granted access to the service
    narrow_token = await hub.token_for("alice", scopes=["read:users:name!user"])
    url = hub.public + "/services/progress/"  # through the hub's proxy
    alice, bob, root = (ProgressClient(url, t) for t in (alice_token, bob_token, root_token))

    # alice earns stage 1; a "user" field in the request is ignored
    result = await alice.request(
        "POST", "courses/t101/quizzes/q1/answer", {"answer": "2", "user": "bob"}
    )
    assert result["correct"]
    await alice.request(
        "POST", "courses/t101/completions", {"stage": 2, "method": "tutor", "user": "bob"}
    )
    assert (await alice.progress("t101"))["completed_stages"] == [1, 2]
    mine = await bob.progress("t101")
    assert mine["user"] == "bob" and mine["completed_stages"] == []
    # bob cannot reach the admin views, and the progress API has no "other user" at all
    for path in ("admin/progress", "admin/progress.csv"):
        with pytest.raises(ProgressAPIError) as err:
            await bob.request("GET", path, raw=True)
        assert err.value.status == 403
    sneaky = await bob.request("GET", "progress/t101?user=alice")
    assert sneaky["user"] == "bob" and sneaky["completed_stages"] == []

    # the hub's admin reads everyone's
    everyone = (await root.request("GET", "admin/progress"))["completions"]
    assert {(c["user"], c["stage"], c["method"]) for c in everyone} == {
        ("alice", 1, "quiz"),
        ("alice", 2, "tutor"),
    }
    for bad in (narrow_token, "no-such-token"):
        with pytest.raises(ProgressAPIError) as err:
            await ProgressClient(url, bad).progress("t101")
        assert err.value.status == 403


async def _login(browser: Any, hub: RealHub, user: str) -> Any:
    """Log ``user`` in through the real login form; the page is left on /hub/home.

    Without ``next`` the hub sends a new login to /hub/spawn, which starts the server and
    leaves a spawn-pending page whose script navigates by itself when the server is ready:
    a caller's own ``goto`` would then be interrupted by it.
    """
    page = await browser.new_page()
    await page.goto(hub.public + "/hub/login?next=%2Fhub%2Fhome")
    await page.fill("#username_input", user)
    await page.fill("#password_input", "any")
    await page.click("#login_submit")
    await page.wait_for_url("**/hub/home")
    return page


@pytest.mark.asyncio
async def test_admin_page_through_hub_oauth(real_hub: tuple[RealHub, ProgressService]) -> None:
    from playwright.async_api import async_playwright

    hub, _app = real_hub
    alice = ProgressClient(hub.public + "/services/progress/", await hub.token_for("alice"))
    await alice.answer("t101", "q1", "2")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await _login(browser, hub, "root")
            resp = await page.goto(hub.public + "/services/progress/admin")
            assert resp is not None and resp.status == 200
            rows = await page.locator("#progress tbody tr").all_inner_texts()
            assert len(rows) == 1 and "alice" in rows[0] and "quiz" in rows[0]
            async with page.expect_download() as dl:
                await page.click("#csv")
            download = await dl.value
            csv_text = await asyncio.to_thread(Path(await download.path()).read_text)
            assert csv_text.splitlines()[1].startswith("alice,t101,Transformers 101,1,Tokens,quiz")
            await page.close()

            page = await _login(browser, hub, "bob")
            resp = await page.goto(hub.public + "/services/progress/admin")
            assert resp is not None and resp.status == 403
            assert "alice" not in await page.content()
        finally:
            await browser.close()
