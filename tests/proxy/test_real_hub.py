"""Hub mode against a real JupyterHub: the service's scopes are enough, tokens die with servers.

The spawner here starts no process: it reports an existing HTTP server (the fake upstream) as
the user's server, which is all the hub needs to mark the server running.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from claudehub.contract.hub import service_roles
from claudehub.proxy.limits import Limits
from tests.fakes.upstream import FakeAnthropic
from tests.helpers import PATIENCE, free_port
from tests.proxy.conftest import StartProxy, message_body, token

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


#: The key proxy's role as the hub configurations grant it (claudehub.contract.hub).
KEYPROXY_SCOPES = next(r for r in service_roles() if r["name"] == "claudehub-keyproxy")["scopes"]
#: The role an older hub configuration gave it: no groups.
OLD_KEYPROXY_SCOPES = ["list:users", "read:users:name", "read:servers"]

#: Classes as claudehub.hub.classes.configure_classes writes them for JupyterHub.
GROUPS = {
    "small": {
        "users": ["alice", "carol"],
        "properties": {"claudehub.limits": {"daily_token_budget": 20}},
    },
    "big": {
        "users": ["bob", "carol"],
        "properties": {"claudehub.limits": {"daily_token_budget": 100000}},
    },
    "book-club": {"users": ["alice"], "properties": {}},  # a group that is not a class
}


@dataclass
class Hub:
    api_url: str
    service_token: str  # the key proxy's, with the documented scopes only
    admin_token: str  # a test-driver service with admin scopes
    old_service_token: str  # a key proxy token with an older configuration's scopes

    def api(self, method: str, path: str, body: Any = None) -> requests.Response:
        r = requests.request(
            method,
            f"{self.api_url}{path}",
            headers={"Authorization": f"token {self.admin_token}"},
            json=body,
            timeout=PATIENCE,
        )
        r.raise_for_status()
        return r

    def start_server(self, user: str) -> None:
        """Create ``user`` unless a class made them already; start their server."""
        if (
            requests.get(
                f"{self.api_url}/users/{user}",
                headers={"Authorization": f"token {self.admin_token}"},
                timeout=PATIENCE,
            ).status_code
            == 404
        ):
            self.api("POST", f"/users/{user}")
        self.api("POST", f"/users/{user}/server")
        self.wait_server(user, running=True)

    def wait_server(self, user: str, running: bool) -> dict:
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            model = self.api("GET", f"/users/{user}").json()
            server = model.get("servers", {}).get("")
            if (server is not None and server.get("ready")) == running and (
                running or server is None
            ):
                return model
            time.sleep(0.1)
        raise AssertionError(f"server of {user} never became running={running}")


@pytest.fixture
def hub(tmp_path: Path, fake_upstream: FakeAnthropic) -> Iterator[Hub]:
    port, hub_port, api_port = free_port(), free_port(), free_port()
    service_token, admin_token = secrets.token_hex(16), secrets.token_hex(16)
    old_service_token = secrets.token_hex(16)
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(
        textwrap.dedent(
            f"""
            from jupyterhub.spawner import Spawner

            class ExistingServerSpawner(Spawner):
                async def start(self):
                    return "{fake_upstream.url}"
                async def poll(self):
                    return None
                async def stop(self, now=False):
                    pass

            c.JupyterHub.ip = "127.0.0.1"
            c.JupyterHub.port = {port}
            c.JupyterHub.hub_ip = "127.0.0.1"
            c.JupyterHub.hub_port = {hub_port}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
            c.ConfigurableHTTPProxy.command = ["{REPO / "node_modules/.bin/configurable-http-proxy"}"]
            c.JupyterHub.db_url = "sqlite:///{tmp_path / "hub.sqlite"}"
            c.JupyterHub.cookie_secret_file = "{tmp_path / "cookie_secret"}"
            c.JupyterHub.authenticator_class = "dummy"
            c.Authenticator.allow_all = True
            c.JupyterHub.spawner_class = ExistingServerSpawner
            c.Spawner.http_timeout = 20
            c.JupyterHub.services = [
                {{"name": "keyproxy", "api_token": "{service_token}"}},
                {{"name": "keyproxy-old", "api_token": "{old_service_token}"}},
                {{"name": "driver", "api_token": "{admin_token}"}},
            ]
            c.JupyterHub.load_roles = [
                {{"name": "claudehub-keyproxy", "scopes": {KEYPROXY_SCOPES!r}, "services": ["keyproxy"]}},
                {{"name": "keyproxy-old", "scopes": {OLD_KEYPROXY_SCOPES!r}, "services": ["keyproxy-old"]}},
                {{"name": "driver", "scopes": ["admin:users", "admin:servers", "admin:groups"], "services": ["driver"]}},
            ]
            c.JupyterHub.load_groups = {GROUPS!r}
            """
        )
    )
    env = dict(
        os.environ,
        PATH=f"{REPO / 'node_modules/.bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(config)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "hub.log", "wb"),
    )
    api_url = f"http://127.0.0.1:{hub_port}/hub/api"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(api_url, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError((tmp_path / "hub.log").read_text()[-3000:])
            time.sleep(0.2)
        yield Hub(api_url, service_token, admin_token, old_service_token)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def ask(url: str, tok: str) -> int:
    return (await ask_for_message(url, tok))[0]


async def ask_for_message(url: str, tok: str) -> tuple[int, str]:
    """POST a message; (status, the error message or "")."""
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/v1/messages", json=message_body(), headers={"x-api-key": tok}
        ) as r:
            data = await r.json()
            return r.status, (data.get("error") or {}).get("message", "")


@pytest.mark.asyncio
async def test_tokens_follow_real_hub_servers(
    hub: Hub, fake_upstream: FakeAnthropic, start_proxy: StartProxy
) -> None:
    old_token = token("alice", ttl=None)
    hub.start_server("alice")
    current = token("alice", ttl=None)
    proxy = await start_proxy(
        fake_upstream.url,
        hub_api_url=hub.api_url,
        hub_api_token=hub.service_token,
        hub_poll_interval=30,
    )
    assert proxy.poller is not None
    await proxy.poller.poll_once()
    assert await ask(proxy.url, current) == 200
    assert await ask(proxy.url, token("bob")) == 401  # no running server
    # minted before this run of the server started (1 s rounding tolerance aside)
    stale = token("alice", ttl=None, now=time.time() - 120)
    assert await ask(proxy.url, stale) == 401
    hub.api("DELETE", "/users/alice/server")
    hub.wait_server("alice", running=False)
    await proxy.poller.poll_once()
    assert await ask(proxy.url, current) == 401
    assert await ask(proxy.url, old_token) == 401
    assert len(fake_upstream.message_requests()) == 1
    # a hub admin's token opens the usage API; the key proxy's own service token does not
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{proxy.url}/usage", headers={"Authorization": f"token {hub.admin_token}"}
        ) as r:
            assert r.status == 200
        async with http.get(
            f"{proxy.url}/usage", headers={"Authorization": f"token {hub.service_token}"}
        ) as r:
            assert r.status == 403


@pytest.mark.asyncio
async def test_class_budgets_come_from_the_hubs_groups(
    hub: Hub,
    fake_upstream: FakeAnthropic,
    start_proxy: StartProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Per-class budgets, read from the real hub with the key proxy's own scopes: the small
    class is refused with the plain-words message, the big one is not, a learner in both
    gets the more generous, a learner in none the default; a change of a class's limits or
    members through the hub's API applies at the next poll, without a restart."""
    for user in ("alice", "bob", "carol", "dave"):
        hub.start_server(user)
    proxy = await start_proxy(
        fake_upstream.url,
        hub_api_url=hub.api_url,
        hub_api_token=hub.service_token,
        hub_poll_interval=30,
        limits=Limits(daily_token_budget=1000),
    )
    assert proxy.poller is not None
    await proxy.poller.poll_once()
    alice, bob, carol, dave = (token(u, ttl=None) for u in ("alice", "bob", "carol", "dave"))
    # each answer of the fake upstream costs at least 20 tokens: alice's class budget
    assert await ask(proxy.url, alice) == 200
    status, message = await ask_for_message(proxy.url, alice)
    assert status == 403
    assert "today's budget of 20 tokens" in message and "00:00 UTC" in message
    for _ in range(2):
        assert await ask(proxy.url, bob) == 200
        assert await ask(proxy.url, carol) == 200  # in both classes: the big one's budget
    assert await ask(proxy.url, dave) == 200
    budgets = {u: proxy.limits.budget_for(u) for u in ("alice", "bob", "carol", "dave")}
    assert budgets == {"alice": 20, "bob": 100000, "carol": 100000, "dave": 1000}

    # the operator raises the small class's budget and adds dave to it: no restart
    hub.api(
        "PUT",
        "/groups/small/properties",
        {"claudehub.limits": {"daily_token_budget": 50000}},
    )
    hub.api("POST", "/groups/small/users", {"users": ["dave"]})
    await proxy.poller.poll_once()  # what the background poll does every hub_poll_interval
    assert await ask(proxy.url, alice) == 200
    assert proxy.limits.budget_for("dave") == 50000
    # a class whose limits are removed gives its learners the default again
    hub.api("PUT", "/groups/big/properties", {})
    await proxy.poller.poll_once()
    assert proxy.limits.budget_for("bob") == 1000
    assert proxy.limits.budget_for("carol") == 50000  # still in the small class

    # a key proxy whose hub token may not read groups says so and applies the defaults
    caplog.set_level("WARNING", logger="claudehub.proxy")
    old = await start_proxy(
        fake_upstream.url,
        hub_api_url=hub.api_url,
        hub_api_token=hub.old_service_token,
        hub_poll_interval=30,
        limits=Limits(daily_token_budget=1000),
    )
    assert old.poller is not None
    await old.poller.poll_once()
    assert old.limits.budget_for("alice") == 1000
    assert await ask(old.url, alice) == 200  # its servers are still checked
    assert any("may not read groups" in r.getMessage() for r in caplog.records)
