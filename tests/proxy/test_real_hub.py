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

import aiohttp
import pytest
import requests

from tests.fakes.upstream import FakeAnthropic
from tests.helpers import free_port
from tests.proxy.conftest import StartProxy, message_body, token

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Hub:
    api_url: str
    service_token: str  # the key proxy's, with the documented scopes only
    admin_token: str  # a test-driver service with admin scopes

    def api(self, method: str, path: str) -> requests.Response:
        r = requests.request(
            method,
            f"{self.api_url}{path}",
            headers={"Authorization": f"token {self.admin_token}"},
            timeout=30,
        )
        r.raise_for_status()
        return r

    def wait_server(self, user: str, running: bool) -> dict:
        deadline = time.monotonic() + 30
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
                {{"name": "driver", "api_token": "{admin_token}"}},
            ]
            c.JupyterHub.load_roles = [
                {{"name": "claudehub-keyproxy", "scopes": ["list:users", "read:users:name", "read:servers"], "services": ["keyproxy"]}},
                {{"name": "driver", "scopes": ["admin:users", "admin:servers"], "services": ["driver"]}},
            ]
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
        yield Hub(api_url, service_token, admin_token)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def ask(url: str, tok: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/v1/messages", json=message_body(), headers={"x-api-key": tok}
        ) as r:
            return r.status


@pytest.mark.asyncio
async def test_tokens_follow_real_hub_servers(
    hub: Hub, fake_upstream: FakeAnthropic, start_proxy: StartProxy
) -> None:
    hub.api("POST", "/users/alice")
    old_token = token("alice", ttl=None)
    hub.api("POST", "/users/alice/server")
    hub.wait_server("alice", running=True)
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
