"""The cluster side of the thousand-learner benchmark: the Kubernetes API emulator, and a
simulated node whose pods' servers are answered by one lightweight process.

    python benchmarks/scale/cluster.py api PORT
        the test suite's Kubernetes API emulator (tests/spawner/emulator.py) over real HTTP

    python benchmarks/scale/cluster.py node API_URL NAMESPACE CONTROL_PORT [--activity-interval S]
        the node: watches the namespace's pods; for each new pod it listens on a loopback
        address of its own (127.10.x.y, the pod's "IP") on the pod's container port, with a
        stand-in single-user server, then reports the pod Running (phase, podIP, ready
        condition, container statuses) as a kubelet does; a deleted pod's address is closed.

The stand-in single-user server does what the hub and the browser need of a real one, read
from the pod's own environment (as jupyterhub-singleuser reads it): ``/user/<name>/api``
answers the hub's readiness check; any other page without the server's cookie starts the hub
OAuth handshake (redirect to ``/hub/api/oauth2/authorize``; on ``oauth_callback`` the code is
exchanged at ``/hub/api/oauth2/token`` with the server's client id and API token, and the
user is read from ``/hub/api/user`` and must be the server's own); then a cookie and a small
page. It reports activity to ``JUPYTERHUB_ACTIVITY_URL`` with the server's token once it
listens and every ``--activity-interval`` seconds, as jupyterhub-singleuser does.

``GET http://127.0.0.1:CONTROL_PORT/servers`` lists the running servers with what the
benchmark needs of their environment (the sandbox token, the key proxy URL);
``/stats`` counts handshakes, activity reports and errors.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import random
import secrets
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import aiohttp.web

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.spawner.emulator import running_status  # noqa: E402

ENV_KEPT = (
    "JUPYTERHUB_USER",
    "JUPYTERHUB_API_TOKEN",
    "JUPYTERHUB_API_URL",
    "JUPYTERHUB_CLIENT_ID",
    "JUPYTERHUB_OAUTH_CALLBACK_URL",
    "JUPYTERHUB_ACTIVITY_URL",
    "JUPYTERHUB_SERVICE_PREFIX",
    "JUPYTERHUB_SERVER_NAME",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
)


async def serve_api(port: int) -> None:
    """The emulated Kubernetes API server, until killed."""
    import kmock

    from tests.spawner.emulator import ClusterEmulator

    async with ClusterEmulator() as emulator, kmock.Server(emulator, port=port):
        await asyncio.Event().wait()


class Server:
    """One pod's stand-in single-user server."""

    def __init__(self, pod: dict[str, Any], ip: str) -> None:
        container = pod["spec"]["containers"][0]
        self.env = {
            e["name"]: e.get("value", "") for e in container.get("env") or [] if "name" in e
        }
        self.env = {k: v for k, v in self.env.items() if k in ENV_KEPT}
        self.user = self.env.get("JUPYTERHUB_USER", "")
        self.prefix = self.env.get("JUPYTERHUB_SERVICE_PREFIX") or f"/user/{self.user}/"
        ports = [p.get("containerPort") for p in container.get("ports") or []]
        self.port = int(ports[0] if ports and ports[0] else 8888)
        self.ip = ip
        self.cookie = f"standin-{secrets.token_hex(4)}"
        self.sessions: set[str] = set()
        self.states: dict[str, str] = {}
        self.site: aiohttp.web.TCPSite | None = None
        self.reporter: asyncio.Task[None] | None = None


class Node:
    """The simulated node: a kubelet for status, one process for every pod's server."""

    def __init__(self, api_url: str, namespace: str, activity_interval: float) -> None:
        self.api_url = api_url.rstrip("/")
        self.namespace = namespace
        self.activity_interval = activity_interval
        self.servers: dict[str, Server] = {}  # pod name -> server
        self.by_user: dict[str, Server] = {}
        self.free_ips: list[str] = []
        self.next_ip = 0
        self.stats: dict[str, int] = {
            "pods_running": 0,
            "handshakes": 0,
            "pages": 0,
            "activity_reports": 0,
            "errors": 0,
        }
        self.errors: list[str] = []
        self.session: aiohttp.ClientSession | None = None
        app = aiohttp.web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = aiohttp.web.AppRunner(app, access_log=None)

    def _ip(self) -> str:
        if self.free_ips:
            return self.free_ips.pop()
        self.next_ip += 1
        i = self.next_ip
        return f"127.10.{i // 250}.{i % 250 + 1}"

    def _error(self, what: str) -> None:
        self.stats["errors"] += 1
        if len(self.errors) < 50:
            self.errors.append(what)

    # -- the kubelet ---------------------------------------------------------------------

    async def run(self) -> None:
        await self.runner.setup()
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=connector) as self.session:
            url = f"{self.api_url}/api/v1/namespaces/{self.namespace}/pods"
            timeout = aiohttp.ClientTimeout(total=None)
            pending: set[asyncio.Task[None]] = set()
            while True:
                try:
                    async with self.session.get(
                        url, params={"watch": "true"}, timeout=timeout
                    ) as resp:
                        async for line in resp.content:
                            if not line.strip():
                                continue
                            event = json.loads(line)
                            task = asyncio.ensure_future(self.on_event(event))
                            pending.add(task)
                            task.add_done_callback(pending.discard)
                except aiohttp.ClientError as e:
                    self._error(f"watch: {e!r}")
                    await asyncio.sleep(1)

    async def on_event(self, event: dict[str, Any]) -> None:
        pod = event.get("object") or {}
        name = (pod.get("metadata") or {}).get("name", "")
        kind = event.get("type")
        if kind == "DELETED":
            await self.remove(name)
            return
        if kind != "ADDED" or (pod.get("status") or {}).get("phase") != "Pending":
            return
        if name in self.servers:
            return
        server = Server(pod, self._ip())
        self.servers[name] = server
        self.by_user[server.user] = server
        try:
            server.site = aiohttp.web.TCPSite(self.runner, server.ip, server.port)
            await server.site.start()
        except OSError as e:
            self._error(f"listen {server.ip}:{server.port}: {e!r}")
            return
        server.reporter = asyncio.ensure_future(self.report_activity(server))
        assert self.session is not None
        status_url = f"{self.api_url}/api/v1/namespaces/{self.namespace}/pods/{name}/status"
        body = {"status": running_status(pod, server.ip)}
        headers = {"Content-Type": "application/merge-patch+json"}
        try:
            async with self.session.patch(status_url, json=body, headers=headers) as resp:
                if resp.status == 404:
                    return  # deleted meanwhile
                resp.raise_for_status()
            self.stats["pods_running"] += 1
        except aiohttp.ClientError as e:
            self._error(f"status of {name}: {e!r}")

    async def remove(self, name: str) -> None:
        server = self.servers.pop(name, None)
        if server is None:
            return
        if self.by_user.get(server.user) is server:
            del self.by_user[server.user]
        if server.reporter:
            server.reporter.cancel()
        if server.site is not None:
            await server.site.stop()
        self.free_ips.append(server.ip)

    async def report_activity(self, server: Server) -> None:
        """As jupyterhub-singleuser: at start, then every interval (with jitter)."""
        url = server.env.get("JUPYTERHUB_ACTIVITY_URL")
        if not url:
            return
        assert self.session is not None
        headers = {"Authorization": f"token {server.env.get('JUPYTERHUB_API_TOKEN', '')}"}
        await asyncio.sleep(random.uniform(0, 2))
        while True:
            now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
            body = {"last_activity": now, "servers": {"": {"last_activity": now}}}
            try:
                async with self.session.post(url, json=body, headers=headers) as resp:
                    if resp.status >= 400:
                        self._error(f"activity of {server.user}: {resp.status}")
                    else:
                        self.stats["activity_reports"] += 1
            except aiohttp.ClientError as e:
                self._error(f"activity of {server.user}: {e!r}")
            await asyncio.sleep(self.activity_interval * random.uniform(0.9, 1.1))

    # -- the stand-in single-user server ------------------------------------------------

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        server = None
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        parts = request.path.split("/")
        if len(parts) > 2 and parts[1] == "user":
            server = self.by_user.get(parts[2])
        if server is None or (sockname and sockname[0] != server.ip):
            return aiohttp.web.json_response({"message": "no such server here"}, status=404)
        rest = request.path[len(server.prefix) :]
        if rest == "api" or rest.startswith("api/status"):
            # what jupyter-server answers without authentication: the hub's readiness check
            return aiohttp.web.json_response({"version": "2.14.0"})
        if rest == "oauth_callback":
            return await self.oauth_callback(request, server)
        if request.cookies.get(server.cookie) in server.sessions:
            self.stats["pages"] += 1
            return aiohttp.web.Response(
                text=f"<html><body>stand-in server of {server.user}</body></html>",
                content_type="text/html",
            )
        state = secrets.token_urlsafe(16)
        server.states[state] = request.path_qs
        query = urlencode(
            {
                "client_id": server.env.get("JUPYTERHUB_CLIENT_ID", ""),
                "redirect_uri": server.env.get("JUPYTERHUB_OAUTH_CALLBACK_URL", ""),
                "response_type": "code",
                "state": state,
            }
        )
        raise aiohttp.web.HTTPFound(f"/hub/api/oauth2/authorize?{query}")

    async def oauth_callback(
        self, request: aiohttp.web.Request, server: Server
    ) -> aiohttp.web.StreamResponse:
        code = request.query.get("code", "")
        target = server.states.pop(request.query.get("state", ""), None)
        if not code or target is None:
            self._error(f"oauth callback of {server.user}: no code or unknown state")
            return aiohttp.web.json_response({"message": "bad OAuth state"}, status=400)
        api = server.env.get("JUPYTERHUB_API_URL", "").rstrip("/")
        form = {
            "client_id": server.env.get("JUPYTERHUB_CLIENT_ID", ""),
            "client_secret": server.env.get("JUPYTERHUB_API_TOKEN", ""),
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": server.env.get("JUPYTERHUB_OAUTH_CALLBACK_URL", ""),
        }
        assert self.session is not None
        async with self.session.post(f"{api}/oauth2/token", data=form) as resp:
            if resp.status != 200:
                self._error(f"token exchange of {server.user}: {resp.status}")
                return aiohttp.web.json_response({"message": "token exchange"}, status=500)
            token = (await resp.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        async with self.session.get(f"{api}/user", headers=headers) as resp:
            model = await resp.json() if resp.status == 200 else {}
        if model.get("name") != server.user:
            self._error(f"oauth of {server.user}: identified as {model.get('name')!r}")
            return aiohttp.web.json_response({"message": "not your server"}, status=403)
        session = secrets.token_urlsafe(16)
        server.sessions.add(session)
        self.stats["handshakes"] += 1
        response = aiohttp.web.HTTPFound(target)
        response.set_cookie(server.cookie, session, path=server.prefix, httponly=True)
        raise response


async def serve_node(api_url: str, namespace: str, control_port: int, interval: float) -> None:
    node = Node(api_url, namespace, interval)

    async def servers(request: aiohttp.web.Request) -> aiohttp.web.Response:
        rows = [
            {
                "user": s.user,
                "ip": s.ip,
                "port": s.port,
                "token": s.env.get("ANTHROPIC_API_KEY", ""),
                "keyproxy": s.env.get("ANTHROPIC_BASE_URL", ""),
            }
            for s in node.servers.values()
        ]
        return aiohttp.web.json_response(rows)

    async def stats(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({**node.stats, "error_samples": node.errors})

    control = aiohttp.web.Application()
    control.router.add_get("/servers", servers)
    control.router.add_get("/stats", stats)
    runner = aiohttp.web.AppRunner(control, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", control_port).start()
    await node.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    api = sub.add_parser("api")
    api.add_argument("port", type=int)
    node = sub.add_parser("node")
    node.add_argument("api_url")
    node.add_argument("namespace")
    node.add_argument("control_port", type=int)
    node.add_argument("--activity-interval", type=float, default=300.0)
    args = parser.parse_args()
    if args.what == "api":
        asyncio.run(serve_api(args.port))
    else:
        asyncio.run(
            serve_node(args.api_url, args.namespace, args.control_port, args.activity_interval)
        )


if __name__ == "__main__":
    main()
