"""100 users start a session at once, through a real JupyterHub configured by claudehub's
Kubernetes hub config, against the Kubernetes API emulator: the concurrency limits refuse
some with HTTP 429 and a reason, and every accepted spawn ends with a running sandbox."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import kmock
import pytest
import pytest_asyncio
import yaml

from tests.helm.charts import KEY_SECRET, render, write_hub_files
from tests.helpers import free_port
from tests.hub.hubproc import running_hub
from tests.hub.test_kubernetes import ENV
from tests.spawner.conftest import KUBECONFIG
from tests.spawner.emulator import ClusterEmulator, Kubelet
from tests.spawner.pss import restricted_violations

pytestmark = [pytest.mark.slow]

USERS = 100
MAX_ACTIVE = 30
CONCURRENT = 10
TOKEN = "test-admin-token-0123456789abcdef"
REFUSALS = (
    "Too many users trying to log in right now. Try again in",
    "Active user limit exceeded. Try again in a few minutes.",
)


@pytest_asyncio.fixture
async def sandbox_server() -> AsyncIterator[int]:
    """Answers for every sandbox pod (all pods get podIP 127.0.0.1): the hub checks the
    server responds before it routes users to it."""

    async def ok(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"version": "2.x"})

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()


def hub_files(tmp: Path, api_url: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The chart's hub settings for a password-login hub with the test's limits, written as
    the hub pod mounts them; the token secret where this machine has it."""
    values: dict[str, Any] = {
        **KEY_SECRET,
        "auth": {"type": "password"},
        "limits": {"maxActiveSessions": MAX_ACTIVE, "concurrentSpawnLimit": CONCURRENT},
        "culling": {"enabled": False},
    }
    path = write_hub_files(render(values), tmp / "hub-config")
    settings = yaml.safe_load(path.read_text())
    settings["chart"]["tokenSecretFile"] = str(tmp / "token-secret")
    path.write_text(yaml.safe_dump(settings))
    (tmp / "token-secret").write_text("0123456789abcdef0123456789abcdef\n")
    (tmp / "kubeconfig").write_text(KUBECONFIG.replace("http://127.0.0.1:1", api_url))
    env = {**ENV, "CLAUDEHUB_CONFIG": str(path), "KUBECONFIG": str(tmp / "kubeconfig")}
    return settings, env


@pytest.mark.asyncio
async def test_100_concurrent_spawns_only_refused_by_the_limits(
    tmp_path: Path, sandbox_server: int
) -> None:
    async with ClusterEmulator() as emulator, kmock.Server(emulator) as server:
        api_url = str(server.url).rstrip("/")
        _, env = hub_files(tmp_path, api_url)
        config = f"""
from claudehub.hub.kubernetes import HubEnvironment, configure_kubernetes
from claudehub.hub.settings import load
environment = HubEnvironment(config=c)
configure_kubernetes(c, load(environment.config_file), environment)
c.ClaudeSpawner.port = {sandbox_server}
c.ClaudeSpawner.start_timeout = 60
c.JupyterHub.services.append({{"name": "tester", "api_token": {TOKEN!r}}})
c.JupyterHub.load_roles.append(
    {{"name": "tester", "scopes": ["admin:users", "admin:servers"], "services": ["tester"]}}
)
"""
        async with Kubelet(api_url) as kubelet:
            node = asyncio.ensure_future(kubelet.serve("claudehub", pod_ip="127.0.0.1"))
            try:
                async with running_hub(tmp_path, config, TOKEN, env=env) as hub:
                    await spawn_all_at_once(hub, emulator)
            finally:
                node.cancel()


async def wait_ready(hub: Any, s: aiohttp.ClientSession, expected: list[str]) -> None:
    """Every accepted spawn finishes with a ready server; nothing else runs."""
    ready: list[str] = []
    for _ in range(600):
        _, users = await hub.api(s, "GET", "users?state=ready&limit=200")
        ready = sorted(u["name"] for u in users)
        if len(ready) >= len(expected):
            break
        await asyncio.sleep(0.1)
    assert ready == sorted(expected), hub.log.read_text()[-3000:]
    _, active = await hub.api(s, "GET", "users?state=active&limit=200")
    assert sorted(u["name"] for u in active) == sorted(expected)


async def spawn_all_at_once(hub: Any, emulator: ClusterEmulator) -> None:
    names = [f"user{i:03d}" for i in range(USERS)]
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=USERS)
    accepted: list[str] = []
    refusals: collections.Counter[str] = collections.Counter()
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as s:
        status, _ = await hub.api(s, "POST", "users", {"usernames": names})
        assert status == 201

        # Everyone who has no session asks for one at the same moment; the refused try
        # again once the accepted ones are up, until the cluster-wide limit is reached.
        for wave in range(1, 10):
            waiting = [n for n in names if n not in accepted]
            results = await asyncio.gather(
                *(hub.api(s, "POST", f"users/{name}/server", {}) for name in waiting)
            )
            statuses = collections.Counter(status for status, _ in results)
            print(f"wave {wave}: {len(waiting)} requests -> {dict(statuses)}")
            assert set(statuses) <= {201, 202, 429}, (statuses, hub.log.read_text()[-3000:])
            new = [n for n, (status, _) in zip(waiting, results, strict=True) if status != 429]
            for status, body in results:
                if status == 429:
                    assert body["message"].startswith(REFUSALS), body
                    refusals[body["message"].split(".")[0]] += 1
            assert len(new) <= CONCURRENT
            accepted += new
            await wait_ready(hub, s, accepted)
            if not new:
                break
        assert len(accepted) == MAX_ACTIVE
        assert set(refusals) == {r.split(".")[0] for r in REFUSALS}, refusals

    pods = emulator.created("pods")
    assert sorted(p["metadata"]["labels"]["claudehub.io/user"] for p in pods) == sorted(accepted)
    for pod in pods:
        assert restricted_violations(pod) == []
    log = hub.log.read_text()
    assert "Unhandled error" not in log and "Traceback" not in log, log[-3000:]
