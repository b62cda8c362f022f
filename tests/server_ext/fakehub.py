"""A stand-in for the JupyterHub REST API, as much as jupyterhub-singleuser needs to run.

Real HTTP on 127.0.0.1 in a background thread (stdlib only): the version check, token
authentication of the one user, activity reports and stopping the user's server. Used to run
a real `jupyterhub-singleuser` process with the claudehub extension, in tests and in
benchmarks/terminal/singleuser_rss.py.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeHub:
    def __init__(
        self,
        user: str = "alice",
        version: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if version is None:
            from jupyterhub import __version__ as version
        self.user = user
        self.version = version
        self.server_token = secrets.token_hex(16)  # the server's $JUPYTERHUB_API_TOKEN
        self.user_token = secrets.token_hex(16)  # a token the user (browser) presents
        self.server_token_scopes: list[str] = [
            "users:activity!user",
            "access:servers!server",
            "servers!server",
        ]
        self.activity: list[dict[str, Any]] = []
        self.stopped = threading.Event()
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: Any = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(code)
                self.send_header("X-JupyterHub-Version", hub.version)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _token(self) -> str:
                auth = self.headers.get("Authorization", "")
                return auth.split(None, 1)[1] if " " in auth else ""

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"null")

            def do_GET(self) -> None:
                hub.requests.append(("GET", self.path))
                if self.path.rstrip("/") == "/hub/api":
                    return self._reply(200, {"version": hub.version})
                if self.path.startswith("/hub/api/user"):
                    token = self._token()
                    if token == hub.user_token:
                        return self._reply(
                            200, hub.user_model(["access:servers!server=" + hub.user + "/"])
                        )
                    if token == hub.server_token:
                        return self._reply(
                            200, hub.user_model(hub.server_token_scopes, kind="server")
                        )
                    return self._reply(403, {"status": 403, "message": "bad token"})
                self._reply(404, {"status": 404, "message": "not found"})

            def do_POST(self) -> None:
                hub.requests.append(("POST", self.path))
                if (
                    self.path == f"/hub/api/users/{hub.user}/activity"
                    and self._token() == hub.server_token
                ):
                    hub.activity.append(self._body())
                    return self._reply(200, {})
                self._reply(403, {"status": 403, "message": "forbidden"})

            def do_DELETE(self) -> None:
                hub.requests.append(("DELETE", self.path))
                if (
                    self.path == f"/hub/api/users/{hub.user}/server"
                    and self._token() == hub.server_token
                ):
                    if "servers!server" not in hub.server_token_scopes:
                        return self._reply(403, {"status": 403, "message": "missing scope"})
                    hub.stopped.set()
                    return self._reply(202, {})
                self._reply(403, {"status": 403, "message": "forbidden"})

        # host: 127.0.0.1, or the gateway of a container network the test made (containers).
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def user_model(self, scopes: list[str], kind: str = "user") -> dict[str, Any]:
        return {
            "kind": kind,
            "name": self.user,
            "admin": False,
            "groups": [],
            "scopes": scopes,
            "session_id": None,
        }

    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def singleuser_env(self, port: int, **extra: str) -> dict[str, str]:
        """The environment a spawner gives jupyterhub-singleuser (listening on `port`)."""
        prefix = f"/user/{self.user}/"
        env = dict(os.environ)
        env.update(
            JUPYTERHUB_API_TOKEN=self.server_token,
            JUPYTERHUB_CLIENT_ID=f"jupyterhub-user-{self.user}",
            JUPYTERHUB_API_URL=f"{self.url}/hub/api",
            JUPYTERHUB_ACTIVITY_URL=f"{self.url}/hub/api/users/{self.user}/activity",
            JUPYTERHUB_BASE_URL="/",
            JUPYTERHUB_HOST="",
            JUPYTERHUB_SERVICE_PREFIX=prefix,
            JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}{prefix}",
            JUPYTERHUB_OAUTH_CALLBACK_URL=f"{prefix}oauth_callback",
            JUPYTERHUB_OAUTH_ACCESS_SCOPES=json.dumps([f"access:servers!server={self.user}/"]),
            JUPYTERHUB_USER=self.user,
            JUPYTERHUB_SERVER_NAME="",
            JUPYTERHUB_DEFAULT_URL="/claude",
        )
        env.update(extra)
        return env
