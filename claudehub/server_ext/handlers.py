"""The Claude page and the session endpoint of the claudehub extension.

Ending a session: the page's "End session" button sends ``DELETE {base_url}claude/api/session``
(xsrf-protected like every jupyter-server API call). The extension then asks the hub to stop
this server, with the server's own token ($JUPYTERHUB_API_TOKEN). The browser cannot do it
directly: its hub cookie is scoped to /hub/ and the hub requires the hub's own xsrf token for
cookie-authenticated API calls. The hub must grant that token the scope to stop its own
server (``servers!server``, one of ``claudehub.contract.hub.SERVER_TOKEN_SCOPES``, which
both hub configurations grant).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerJinjaMixin, ExtensionHandlerMixin
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from claudehub.contract.hub import AUTH_RESOURCE

from .course_handlers import COURSE_BACKEND_SETTING, CourseBackend
from .drafts import DRAFT_BACKEND_SETTING, DraftBackend
from .sessions import SessionManager
from .terminal import SESSIONS_SETTING, TerminalSocket


class ClaudePageHandler(ExtensionHandlerJinjaMixin, ExtensionHandlerMixin, JupyterHandler):
    """The page users live in: the terminal beside the stage and progress panels."""

    auth_resource = AUTH_RESOURCE

    @web.authenticated
    @authorized
    def get(self) -> None:
        app = self.extensionapp
        user = self.current_user
        backend: CourseBackend = self.settings[COURSE_BACKEND_SETTING]
        page_config = {
            "baseUrl": self.base_url,
            "terminalUrl": self.base_url + "claude/terminal",
            "apiUrl": self.base_url + "claude/api/",
            "xsrfToken": self.xsrf_token.decode("ascii"),
            "hubPrefix": getattr(app, "hub_prefix", "/hub/"),
            "hubHost": getattr(app, "hub_host", ""),
            "user": getattr(user, "username", ""),
            "serverName": getattr(app, "server_name", ""),
            "courseId": backend.course_id,
        }
        template = "claude.html"
        drafts: DraftBackend | None = self.settings.get(DRAFT_BACKEND_SETTING)
        if drafts is not None:  # an author session: the draft's page
            template = "author.html"
            page_config["draftId"] = drafts.draft_id
            page_config["authorClasses"] = list(getattr(app, "author_classes", []))
        html = self.render_template(
            template,
            page_config_json=json.dumps(page_config).replace("</", "<\\/"),
            static=self.static_url,
            user=page_config["user"],
        )
        self.set_header("Cache-Control", "no-store")
        self.finish(html)


class SessionHandler(ExtensionHandlerMixin, APIHandler):
    """GET: the state of the Claude process. DELETE: end the session (stop this server)."""

    auth_resource = AUTH_RESOURCE

    @property
    def sessions(self) -> SessionManager:
        """The terminal sessions of this server (from the tornado settings)."""
        sessions: SessionManager = self.settings[SESSIONS_SETTING]
        return sessions

    @web.authenticated
    @authorized
    def get(self) -> None:
        session = self.sessions.shared
        state: dict[str, Any] = {"started": session is not None}
        if session is not None:
            state.update(pid=session.pid, alive=session.alive, exit=session.exit_info())
        self.finish(json.dumps(state))

    @web.authenticated
    @authorized
    async def delete(self) -> None:
        app = self.extensionapp
        api_url = getattr(app, "hub_api_url", "")
        token = getattr(app, "api_token", "")  # ClaudeHubApp.api_token: $JUPYTERHUB_API_TOKEN
        user = getattr(app, "hub_user", "")  # ClaudeHubApp.hub_user: $JUPYTERHUB_USER
        if not (api_url and token and user):
            raise web.HTTPError(501, "This server is not running under JupyterHub")
        server_name = getattr(app, "server_name", "")
        path = f"/users/{quote(user, safe='')}/server"
        if server_name:
            path = f"/users/{quote(user, safe='')}/servers/{quote(server_name, safe='')}"
        request = HTTPRequest(
            api_url.rstrip("/") + path,
            method="DELETE",
            headers={"Authorization": f"token {token}"},
            request_timeout=30,
        )
        try:
            await AsyncHTTPClient().fetch(request)
        except HTTPClientError as e:
            if e.code == 403:
                self.log.error(
                    "the hub refused to stop this server: its token needs the scope "
                    "servers!server (Spawner.server_token_scopes)"
                )
                raise web.HTTPError(
                    502, "The hub does not allow this server to end the session"
                ) from None
            self.log.error("stopping this server through the hub failed: HTTP %s", e.code)
            raise web.HTTPError(502, "The hub could not end the session") from None
        except OSError as e:
            self.log.error("could not reach the hub to end the session: %s", e)
            raise web.HTTPError(502, "The hub could not be reached") from None
        self.log.info("session ended by the user: the hub is stopping this server")
        self.set_status(202)
        self.finish(json.dumps({"ending": True, "hubPrefix": getattr(app, "hub_prefix", "")}))


default_handlers: list[tuple[str, Any] | tuple[str, Any, dict[str, Any]]] = [
    (r"/claude/?", ClaudePageHandler),
    (r"/claude/terminal", TerminalSocket),
    (r"/claude/api/session", SessionHandler),
]
