"""Fixtures of the course/progress tests.

``fake_hub_api`` answers the one hub endpoint HubAuth uses (``GET /hub/api/user`` with
the request's token), over real HTTP, so the service's real HubAuth code runs. The
tests that need the real JupyterHub start it themselves (test_hub_auth.py).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest_asyncio
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets.config import Config

from claudehub.contract.course_client import ProgressClient
from claudehub.progress.app import ProgressService
from tests.helpers import free_port

from .coursekit import PAPER, write_catalogue_course, write_claude_md_course

ACCESS_SCOPE = "access:services!service=progress"


@dataclass
class FakeHubAPI:
    url: str
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: every token the service asked about, in order
    checks: list[str] = field(default_factory=list)

    def add_user(self, token: str, name: str, *, admin: bool = False, scopes: Any = None) -> None:
        self.tokens[token] = {
            "kind": "user",
            "name": name,
            "admin": admin,
            "groups": [],
            "scopes": [ACCESS_SCOPE] if scopes is None else scopes,
        }


class _UserHandler(web.RequestHandler):
    def get(self) -> None:
        header = self.request.headers.get("Authorization", "")
        token = header.split(None, 1)[1] if " " in header else ""
        self.settings["checks"].append(token)
        model = self.settings["tokens"].get(token)
        if model is None:
            raise web.HTTPError(403)
        self.finish(json.dumps(model))


@contextlib.asynccontextmanager
async def running_fake_hub() -> AsyncIterator[FakeHubAPI]:
    """Serve the fake hub API on the current event loop."""
    port = free_port()
    hub = FakeHubAPI(url=f"http://127.0.0.1:{port}/hub/api")
    server = HTTPServer(
        web.Application([(r"/hub/api/user", _UserHandler)], tokens=hub.tokens, checks=hub.checks)
    )
    server.listen(port, "127.0.0.1")
    try:
        yield hub
    finally:
        server.stop()


@pytest_asyncio.fixture
async def fake_hub_api() -> AsyncIterator[FakeHubAPI]:
    async with running_fake_hub() as hub:
        yield hub


@dataclass
class RunningService:
    app: ProgressService
    url: str  # service base URL, ends with /

    def client(self, token: str) -> ProgressClient:
        return ProgressClient(self.url, token)


def course_sources(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One course of each layout, as local-directory sources."""
    t101 = write_claude_md_course(root / "t101")
    write_catalogue_course(root / "catalogue" / "bitcoin", "core", paper=PAPER)
    return (
        [{"id": "t101", "repo": str(t101)}],
        [{"id": "papers", "repo": str(root / "catalogue")}],
    )


ServiceFactory = Callable[..., Awaitable[RunningService]]


@contextlib.asynccontextmanager
async def service_starter(tmp_path: Path, hub: FakeHubAPI) -> AsyncIterator[ServiceFactory]:
    """``start(**ProgressService traits)`` starts the real service app on the current loop."""
    started: list[ProgressService] = []

    async def start(**traits: Any) -> RunningService:
        courses, catalogues = course_sources(tmp_path / "courses")
        port = free_port()
        cfg = Config()
        cfg.ProgressService.courses = courses
        cfg.ProgressService.catalogues = catalogues
        cfg.ProgressService.db_url = f"sqlite:///{tmp_path / 'progress.sqlite'}"
        cfg.ProgressService.cache_dir = str(tmp_path / "cache")
        cfg.ProgressService.ip = "127.0.0.1"
        cfg.ProgressService.port = port
        cfg.ProgressService.service_prefix = "/services/progress/"
        cfg.HubAuth.api_url = hub.url
        cfg.HubAuth.api_token = "service-token"
        cfg.HubAuth.access_scopes = {ACCESS_SCOPE}
        cfg.HubAuth.cache_max_age = 0
        for key, value in traits.items():
            setattr(cfg.ProgressService, key, value)
        app = ProgressService(config=cfg)
        await app.start_async()
        started.append(app)
        return RunningService(app, f"http://127.0.0.1:{port}/services/progress/")

    try:
        yield start
    finally:
        for app in started:
            await app.stop_async()


@pytest_asyncio.fixture
async def start_service(tmp_path: Path, fake_hub_api: FakeHubAPI) -> AsyncIterator[ServiceFactory]:
    """Start the real service app in-process: ``await start_service(**ProgressService traits)``."""
    async with service_starter(tmp_path, fake_hub_api) as start:
        yield start
