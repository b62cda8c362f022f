"""The idle culler keeps a session whose terminal is busy and stops an idle one.

A real JupyterHub with real single-user servers (local processes: this tests activity
reporting and culling, not pods), the claudehub server extension's terminal, and
jupyterhub-idle-culler's own ``cull_idle`` running with the role the Kubernetes hub
configuration gives the culler service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from jupyterhub_idle_culler import cull_idle

from claudehub.hub.kubernetes import CULLER_SERVICE, services_and_roles
from claudehub.hub.settings import validate
from tests.helpers import eventually
from tests.hub.hubproc import running_hub
from tests.hub.test_kubernetes import ENV, VALUES, hub_settings, secrets_from

pytestmark = [pytest.mark.slow]

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
CULLER_TOKEN = "test-culler-token-0123456789abcdef"
#: seconds without activity before the culler stops a server: well above the busy
#: server's activity reports (every 1 s), so a slow moment of the machine does not make a
#: busy server look idle
IDLE_LIMIT = 10
#: What each user's terminal runs: "busy" prints all the time, "quiet" has its terminal
#: open but silent, "idle" never opens one.
SCRIPTS = {"busy": "while :; do echo tick; sleep 0.3; done", "quiet": "sleep 600"}


def ticks(output: list[str]) -> int:
    """How many chunks of a terminal's output carried a tick."""
    return sum("tick" in chunk for chunk in output)


def culler_role() -> dict[str, Any]:
    _, roles = services_and_roles(validate(*hub_settings(VALUES)), secrets_from(ENV))
    [role] = [r for r in roles if r.get("services") == [CULLER_SERVICE]]
    return role


def hub_config(tmp: Path) -> str:
    singleuser_config = tmp / "singleuser_config.py"
    singleuser_config.write_text(
        "import os\n"
        'c.ClaudeHubApp.command = ["bash", "-c", os.environ["TEST_TERMINAL_SCRIPT"]]\n'
        "c.ClaudeHubApp.activity_interval = 0.5\n"
    )
    role = dict(culler_role(), services=["culler"])
    return f"""
import sys
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.Spawner.cmd = [str(__import__("pathlib").Path(sys.executable).with_name("jupyterhub-singleuser"))]
c.Spawner.args = ["--allow-root", "--config={singleuser_config}"]
c.Spawner.default_url = "/claude"
scripts = {SCRIPTS!r}
c.Spawner.environment = {{
    "JUPYTERHUB_ACTIVITY_INTERVAL": "1",
    "TEST_TERMINAL_SCRIPT": lambda spawner: scripts.get(spawner.user.name, "true"),
}}
c.SimpleLocalProcessSpawner.home_dir_template = "{tmp}/home/{{username}}"
c.JupyterHub.services = [
    {{"name": "admin", "api_token": {ADMIN_TOKEN!r}}},
    {{"name": "culler", "api_token": {CULLER_TOKEN!r}}},
]
c.JupyterHub.load_roles = [
    {{"name": "test-admin", "scopes": ["admin:users", "admin:servers", "tokens"], "services": ["admin"]}},
    {role!r},
]
"""


async def wait_ready(hub: Any, session: aiohttp.ClientSession, name: str) -> dict[str, Any]:
    for _ in range(300):
        status, user = await hub.api(session, "GET", f"users/{name}")
        server = (user.get("servers") or {}).get("")
        if status == 200 and server and server.get("ready"):
            return dict(server)
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{name}'s server never became ready:\n{hub.log.read_text()[-3000:]}")


async def open_terminal(
    hub: Any, session: aiohttp.ClientSession, name: str
) -> tuple[aiohttp.ClientWebSocketResponse, list[str]]:
    """Connect to ``name``'s Claude terminal straight at the server (not through the proxy,
    so only the server's own activity reports can keep it alive); collect its output."""
    status, token = await hub.api(session, "POST", f"users/{name}/tokens", {"expires_in": 600})
    assert status == 201
    target = await hub.route_target(session, f"/user/{name}/")
    ws = await session.ws_connect(
        f"{target}/user/{name}/claude/terminal", headers=hub.headers(token["token"])
    )
    output: list[str] = []

    async def read() -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                kind, *rest = json.loads(msg.data)
                if kind == "stdout":
                    output.append(rest[0])

    task = asyncio.ensure_future(read())
    ws._claudehub_reader = task  # type: ignore[attr-defined]  # keep a reference
    return ws, output


@pytest.mark.asyncio
async def test_a_busy_terminal_keeps_its_session_and_idle_ones_are_culled(tmp_path: Path) -> None:
    async with (
        running_hub(tmp_path, hub_config(tmp_path), ADMIN_TOKEN) as hub,
        aiohttp.ClientSession() as s,
    ):
        users = ("busy", "quiet", "idle")
        for name in users:
            (tmp_path / "home" / name).mkdir(parents=True)
            status, _ = await hub.api(s, "POST", f"users/{name}")
            assert status == 201
            status, _ = await hub.api(s, "POST", f"users/{name}/server")
            assert status in (201, 202)
        for name in users:
            await wait_ready(hub, s, name)

        busy_ws, busy_output = await open_terminal(hub, s, "busy")
        quiet_ws, _ = await open_terminal(hub, s, "quiet")
        # the quiet and idle servers must have been idle for longer than the limit: a lower
        # bound the culler's rule needs (a slow machine only makes it longer)
        await asyncio.sleep(IDLE_LIMIT + 3)
        await cull_idle(
            url=hub.api_url,
            api_token=CULLER_TOKEN,
            inactive_limit=IDLE_LIMIT,
            logger=logging.getLogger("culler"),
        )
        # the busy terminal's output kept arriving all along (counted, not timed)
        await eventually(lambda: ticks(busy_output) > 10, what="the busy terminal's ticks")
        before = ticks(busy_output)

        running = {}

        async def culled() -> bool:
            for name in users:
                _, model = await hub.api(s, "GET", f"users/{name}")
                running[name] = bool(model["servers"])
            return not running["quiet"] and not running["idle"]

        with contextlib.suppress(AssertionError):  # the assertion below says what is left
            await eventually(culled, what="the idle servers stopped")
        # and it still does after the culling: the busy session was kept
        await eventually(lambda: ticks(busy_output) > before, what="ticks after the culling")
        await busy_ws.close()
        await quiet_ws.close()
        assert running == {"busy": True, "quiet": False, "idle": False}, hub.log.read_text()[-3000:]
