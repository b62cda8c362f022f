"""Make the jupyter server serve the Claude page and nothing a user could turn into a shell.

Three layers, applied by the extension (see ``ClaudeHubApp.lockdown``):

1. configuration, at link time, before the server builds its managers and routes: no
   terminals, only the harmless core services (``api``, ``auth``), a kernel manager that
   refuses to start kernels, a contents manager that refuses to write;
2. an allow-list gate in front of every route: a request for anything that is not the Claude
   page, its terminal, its REST API, static files or the hub's login plumbing gets 403 and
   a log line, whatever other extension registered it;
3. the terminal itself runs only the configured command (the launcher), never a shell.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web
from tornado.httputil import HTTPServerRequest
from tornado.routing import Matcher, Rule

if TYPE_CHECKING:
    from jupyter_server.serverapp import ServerApp

#: the core jupyter-server services kept (everything else is never routed)
KEPT_SERVICES = ("api", "auth")

#: paths (regexes, relative to base_url, anchored) a user may reach
DEFAULT_ALLOWED_PATHS = (
    r"",  # redirects to the default URL (the Claude page)
    r"claude(/.*)?",  # the page, its terminal websocket, the claudehub REST API
    r"static/.*",  # the extension's and the server's static files (read-only)
    r"api/?",  # version
    r"api/status",  # activity, for monitoring
    r"api/me",  # who am I
    r"oauth_callback",  # JupyterHub login
    r"logout",
    r"login",
)


class RefusingKernelManager(AsyncMappingKernelManager):
    """Never starts a kernel: a kernel is a shell with extra steps."""

    async def start_kernel(self, *args: Any, **kwargs: Any) -> str:  # type: ignore[override]
        self.log.warning("refused to start a kernel: kernels are disabled in this server")
        raise web.HTTPError(403, "Kernels are disabled in this server")


class ReadOnlyContentsManager(AsyncLargeFileManager):
    """Reads like the default manager; every write is refused."""

    def _refuse(self, what: str, path: str) -> None:
        self.log.warning("refused contents %s of %r: the server is read-only", what, path)
        raise web.HTTPError(403, "This server is read-only")

    async def save(self, model: dict[str, Any], path: str = "") -> dict[str, Any]:
        self._refuse("save", path)
        raise AssertionError  # unreachable; keeps the signature honest for type checkers

    async def delete_file(self, path: str) -> None:
        self._refuse("delete", path)

    async def rename_file(self, old_path: str, new_path: str) -> None:
        self._refuse("rename", old_path)

    async def new(self, model: Any = None, path: str = "") -> Any:
        self._refuse("new", path)

    async def new_untitled(self, path: str = "", type: str = "", ext: str = "") -> Any:
        self._refuse("new", path)

    async def copy(self, from_path: str, to_path: str | None = None) -> Any:
        self._refuse("copy", from_path)

    async def create_checkpoint(self, path: str) -> Any:
        self._refuse("checkpoint", path)

    async def restore_checkpoint(self, checkpoint_id: str, path: str) -> None:
        self._refuse("restore", path)

    async def delete_checkpoint(self, checkpoint_id: str, path: str) -> None:
        self._refuse("delete checkpoint of", path)


def configure_server(serverapp: ServerApp) -> None:
    """Layer 1: called when the extension is linked, before managers and routes exist."""
    serverapp.terminals_enabled = False
    kept = tuple(s for s in serverapp.default_services if s in KEPT_SERVICES)
    serverapp.default_services = kept  # type: ignore[assignment]
    serverapp.kernel_manager_class = RefusingKernelManager
    serverapp.contents_manager_class = ReadOnlyContentsManager


class _NotAllowed(Matcher):
    """Matches every request whose path is not on the allow-list."""

    def __init__(self, base_url: str, allowed: Iterable[str]) -> None:
        prefix = re.escape(base_url.rstrip("/"))
        alternatives = "|".join(f"(?:{p})" for p in allowed)
        # the base URL itself (with or without its slash) redirects to the Claude page
        self.allowed = re.compile(f"{prefix}(?:/(?:{alternatives}))?\\Z")

    def match(self, request: HTTPServerRequest) -> dict[str, Any] | None:
        if self.allowed.match(request.path or "/"):
            return None
        return {}


class RefusedHandler(web.RequestHandler):
    """Answers 403 to anything not on the allow-list, and logs it."""

    def prepare(self) -> None:
        req = self.request
        self.application.settings.get("claude_lockdown_log", _fallback_log()).warning(
            "refused %s %s from %s: not available in this server (claudehub lockdown)",
            req.method,
            req.path,
            req.remote_ip,
        )
        self.set_status(403)
        self.set_header("Content-Type", "application/json")
        self.finish(
            '{"message": "Forbidden: this server only serves the Claude page", "reason": null}'
        )

    def check_xsrf_cookie(self) -> None:
        """Nothing to protect: every request is refused."""


def _fallback_log() -> Any:
    import logging

    return logging.getLogger("claudehub.lockdown")


def install_gate(web_app: web.Application, base_url: str, allowed: Iterable[str]) -> None:
    """Layer 2: put the allow-list gate in front of every route, including other extensions'."""
    rule = Rule(_NotAllowed(base_url, allowed), RefusedHandler)
    web_app.default_router.rules.insert(0, rule)
