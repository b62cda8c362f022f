"""Run a real JupyterHub (and its configurable-http-proxy) as a subprocess for a test."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
NODE_BIN = REPO / "node_modules" / ".bin"


PROXY_TOKEN = "proxy-token-0123456789abcdef"


class Hub:
    """A running hub: its public URL, API URL and the token of the test's admin service."""

    def __init__(self, public_url: str, token: str, log: Path, proxy_api_url: str = "") -> None:
        self.public_url = public_url
        self.proxy_api_url = proxy_api_url
        self.api_url = f"{public_url}/hub/api"
        self.token = token
        self.log = log

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"token {token or self.token}"}

    async def api(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
    ) -> tuple[int, Any]:
        async with session.request(
            method, f"{self.api_url}/{path}", json=body, headers=self.headers(token)
        ) as resp:
            text = await resp.text()
            try:
                import json

                return resp.status, json.loads(text) if text else None
            except ValueError:
                return resp.status, text

    async def route_target(self, session: aiohttp.ClientSession, prefix: str) -> str:
        """Where the proxy sends ``prefix`` (a server's own http://host:port)."""
        headers = {"Authorization": f"token {PROXY_TOKEN}"}
        async with session.get(f"{self.proxy_api_url}/api/routes", headers=headers) as resp:
            routes = await resp.json()
        return str(routes[prefix.rstrip("/")]["target"])


def base_config(tmp: Path, public_port: int, api_port: int, hub_port: int) -> str:
    """Config lines every test hub needs: ports on 127.0.0.1, state in ``tmp``."""
    return f"""
c.JupyterHub.bind_url = "http://127.0.0.1:{public_port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.JupyterHub.hub_connect_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.should_start = True
c.ConfigurableHTTPProxy.command = [{str(NODE_BIN / "configurable-http-proxy")!r}]
c.ConfigurableHTTPProxy.pid_file = {str(tmp / "proxy.pid")!r}
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.db_url = "sqlite:///{tmp / "jupyterhub.sqlite"}"
c.JupyterHub.cookie_secret_file = {str(tmp / "cookie_secret")!r}
c.JupyterHub.pid_file = {str(tmp / "jupyterhub.pid")!r}
"""


@asynccontextmanager
async def running_hub(
    tmp: Path, config: str, token: str, env: dict[str, str] | None = None, within: float = 60
) -> AsyncIterator[Hub]:
    """Start ``jupyterhub -f <config>`` (``config`` appended to :func:`base_config`)."""
    public_port, api_port, hub_port = free_port(), free_port(), free_port()
    config_file = tmp / "jupyterhub_config.py"
    config_file.write_text(
        # The test's own config first; the ports and state locations last, so they win.
        "c = get_config()  # noqa\n" + config + base_config(tmp, public_port, api_port, hub_port)
    )
    log = tmp / "hub.log"
    full_env = {
        **os.environ,
        "PATH": f"{NODE_BIN}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "CONFIGPROXY_AUTH_TOKEN": PROXY_TOKEN,
        **(env or {}),
    }
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jupyterhub",
            "-f",
            str(config_file),
            cwd=tmp,
            env=full_env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    hub = Hub(f"http://127.0.0.1:{public_port}", token, log, f"http://127.0.0.1:{api_port}")
    try:
        async with aiohttp.ClientSession() as session:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + within
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"hub exited:\n{log.read_text()[-4000:]}")
                try:
                    status, _ = await hub.api(session, "GET", "")
                    if status == 200:
                        break
                except aiohttp.ClientError:
                    pass
                if loop.time() > deadline:
                    raise TimeoutError(f"hub did not start:\n{log.read_text()[-4000:]}")
                await asyncio.sleep(0.2)
        yield hub
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        # The hub's own children (proxy, local servers) share its process group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
