"""A stand-in hub API for a single-user server started outside a hub, and that server's
environment as a spawner gives it (the fork server's tests and benchmark)."""

from __future__ import annotations

import os
from pathlib import Path

import jupyterhub
from tornado import web
from tornado.httpserver import HTTPServer


class HubVersion(web.RequestHandler):
    """The one request a starting server makes: the hub's version check."""

    def get(self) -> None:
        self.set_header("X-JupyterHub-Version", jupyterhub.__version__)
        self.finish({"version": jupyterhub.__version__})


def start_hub_api(port: int) -> HTTPServer:
    """Listen on 127.0.0.1:``port`` with the hub's API at ``/hub/api`` (stop() it after)."""
    server = HTTPServer(web.Application([(r"/hub/api/?", HubVersion)]))
    server.listen(port, "127.0.0.1")
    return server


def base_env(hub_api_url: str) -> dict[str, str]:
    """What every server's environment starts from, as the local spawner builds it."""
    env = {
        k: os.environ[k] for k in ("PATH", "PYTHONPATH", "LANG", "VIRTUAL_ENV") if k in os.environ
    }
    env["JUPYTERHUB_API_URL"] = hub_api_url
    return env


def server_env(base: dict[str, str], user: str, port: int, home: Path) -> dict[str, str]:
    """``user``'s server environment: ``base`` and the variables the hub sets."""
    return {
        **base,
        "HOME": str(home),
        "JUPYTERHUB_USER": user,
        "JUPYTERHUB_API_TOKEN": "t" * 32,
        "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{user}",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVICE_PREFIX": f"/user/{user}/",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}/user/{user}/",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"/user/{user}/oauth_callback",
    }
