"""The class page: ``{prefix}classes/<class>`` and its CSV, live updates and JSON.

Every route logs the visitor in through the hub (HubOAuth: the service's cookie, or an
``Authorization`` token) and answers 403 unless the caller's own hub scopes let them see
that class (:func:`classes.may_read`), before anything about the class is looked up: an
instructor of class A learns nothing of class B, not even whether it exists. GET only, so
the login cookie cannot change anything.

Live updates are server-sent events (``{prefix}classes/<class>/events``): the stream
sends the page's body again whenever a learner of the class changes progress (at once,
through :class:`service.ProgressEvents`) or, checked every few seconds, when sessions or
tokens change.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.iostream import StreamClosedError

from .admin_page import _OAuthPage
from .classes import (
    ALL,
    HubDirectory,
    HubUnavailable,
    UsageSource,
    class_access,
    gather_view,
    may_read,
    view_csv,
)

log = logging.getLogger(__name__)

#: A class name in a URL (checked against the caller's scopes before use).
CLASS_ROUTE = r"([a-z0-9][a-z0-9_-]{0,62})"

#: Seconds between checks of sessions and tokens while a page is open.
POLL_SECONDS = 5.0

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def render_class_body(view: dict[str, Any], prefix: str) -> str:
    """The part of the page the live updates replace: summary, charts, table."""
    return _TEMPLATES.get_template("class_body.html").render(view=view, prefix=prefix)


def render_class_page(view: dict[str, Any], prefix: str, nonce: str, xsrf: str = "") -> str:
    """The whole class page (``xsrf``: the token its "End session" buttons post with)."""
    return _TEMPLATES.get_template("class.html").render(
        view=view, prefix=prefix, nonce=nonce, xsrf=xsrf, body=render_class_body(view, prefix)
    )


class _ClassHandler(_OAuthPage):
    """Shared: the caller's access, the hub directory and the usage source."""

    @property
    def hub(self) -> HubDirectory:
        hub: HubDirectory = self.settings["claudehub_hub_directory"]
        return hub

    @property
    def usage_source(self) -> UsageSource | None:
        source: UsageSource | None = self.settings.get("claudehub_usage_source")
        return source

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def check_xsrf_cookie(self) -> None:
        # GET only: nothing to forge
        return

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], web.HTTPError) and exc_info[1].log_message:
            message = exc_info[1].log_message
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code}: {message}\n")

    def require_class(self, name: str) -> None:
        user = self.current_user
        if not user or user.get("kind", "user") != "user":
            raise web.HTTPError(403, "only hub users see classes")
        if not may_read(user, name):
            raise web.HTTPError(403, "you are not an instructor of this class")

    async def view(self, name: str) -> dict[str, Any]:
        self.require_class(name)
        try:
            view = await gather_view(self.state, self.hub, self.usage_source, name)
        except HubUnavailable as e:
            raise web.HTTPError(503, str(e)) from None
        if view is None:
            raise web.HTTPError(404, f"no class {name!r}")
        return view


class ClassListHandler(_ClassHandler):
    """``{prefix}classes/``: links to the classes the caller may see."""

    @web.authenticated
    async def get(self) -> None:
        access = class_access(self.current_user)
        if access == ALL:
            try:
                names = await self.hub.classes()
            except HubUnavailable as e:
                raise web.HTTPError(503, str(e)) from None
        else:
            names = sorted(access)
        if not names and access != ALL:
            raise web.HTTPError(403, "you are not an instructor of any class")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        html = _TEMPLATES.get_template("class_list.html").render(
            names=names, prefix=self.settings["claudehub_prefix"]
        )
        self.finish(html)


class ClassPageHandler(_ClassHandler):
    @web.authenticated
    async def get(self, name: str) -> None:
        view = await self.view(name)
        nonce = secrets.token_urlsafe(16)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header(
            "Content-Security-Policy",
            f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
            "connect-src 'self'",
        )
        xsrf = self.xsrf_token
        xsrf_text = xsrf.decode() if isinstance(xsrf, bytes) else str(xsrf)
        self.finish(render_class_page(view, self.settings["claudehub_prefix"], nonce, xsrf_text))


class ClassCSVHandler(_ClassHandler):
    @web.authenticated
    async def get(self, name: str) -> None:
        view = await self.view(name)
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="class-{name}.csv"')
        self.finish(view_csv(view))


class ClassJSONHandler(_ClassHandler):
    """``{prefix}api/classes/<class>``: the rows and charts as JSON (token or cookie)."""

    @web.authenticated
    async def get(self, name: str) -> None:
        view = await self.view(name)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(view, ensure_ascii=False))


class ClassEventsHandler(_ClassHandler):
    """Server-sent events: ``update`` with the page's body each time it changes."""

    @web.authenticated
    async def get(self, name: str) -> None:
        view = await self.view(name)
        prefix = self.settings["claudehub_prefix"]
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("X-Accel-Buffering", "no")  # nginx in front: do not buffer
        events = self.state.events
        since = {u: events.version(u) for u in _members(view)}
        last = render_class_body(view, prefix)
        try:
            self.write(_event(last))
            await self.flush()
            while True:
                await events.wait_any(since, POLL_SECONDS)
                try:
                    fresh = await gather_view(self.state, self.hub, self.usage_source, name)
                except HubUnavailable as e:
                    log.warning("Class %s: %s", name, e)
                    fresh = None
                if fresh is not None:
                    for user in _members(fresh):
                        since.setdefault(user, events.version(user))
                    body = render_class_body(fresh, prefix)
                    if body != last:
                        last = body
                        self.write(_event(body))
                self.write(": keep-alive\n\n")
                await self.flush()
        except StreamClosedError:
            return  # the page was closed


class ClassStopHandler(_ClassHandler):
    """``POST {prefix}classes/<class>/sessions/<learner>/stop``: end a learner's session.

    The hub is asked with the caller's own token (from the OAuth login or the request), so
    it is the hub that decides: an instructor's ``delete:servers!group=<class>`` covers the
    class's learners only. The service first refuses anyone who may not see the class and
    any learner not in it. A cookie-authenticated POST must carry the page's XSRF token
    (HubOAuth checks it before it accepts the cookie).
    """

    def check_xsrf_cookie(self) -> None:
        # unlike the GET pages: this changes something, so JupyterHub's check applies
        self.hub_auth.check_xsrf_cookie(self)

    async def post(self, name: str, learner: str) -> None:
        if self.current_user is None:
            raise web.HTTPError(403, "log in through the hub (and send the page's XSRF token)")
        self.require_class(name)
        try:
            members = await self.hub.members(name)
        except HubUnavailable as e:
            raise web.HTTPError(503, str(e)) from None
        if members is None:
            raise web.HTTPError(404, f"no class {name!r}")
        if learner not in members:
            raise web.HTTPError(404, f"no learner {learner!r} in class {name!r}")
        token = self.hub_auth.get_token(self)
        req = HTTPRequest(
            f"{self.hub.api_url.rstrip('/')}/users/{quote(learner, safe='')}/server",
            method="DELETE",
            headers={"Authorization": f"token {token}"},
            request_timeout=30,
        )
        try:
            resp = await AsyncHTTPClient().fetch(req)
        except HTTPClientError as e:
            if e.code in (401, 403):
                raise web.HTTPError(403, "the hub does not let you end this session") from None
            if e.code == 400:  # no server running
                raise web.HTTPError(409, f"{learner} has no session running") from None
            raise web.HTTPError(502, f"the hub answered {e.code}") from None
        except OSError as e:
            raise web.HTTPError(503, f"the hub is unreachable: {e}") from None
        log.info("Session ended from the class page: class=%s learner=%s", name, learner)
        self.hub.forget_running()
        # wake the class pages' live updates now, not at their next check
        await self.state.events.changed(learner)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"learner": learner, "pending": resp.code == 202}))


def _members(view: dict[str, Any]) -> list[str]:
    return sorted({row["user"] for row in view["rows"]})


def _event(body: str) -> str:
    return "event: update\ndata: " + json.dumps({"html": body}) + "\n\n"


def class_page_handlers(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """The class page's routes under ``prefix`` (ends in '/')."""
    base = prefix.rstrip("/")
    return [
        (rf"{base}/classes/?", ClassListHandler),
        (rf"{base}/classes/{CLASS_ROUTE}/?", ClassPageHandler),
        (rf"{base}/classes/{CLASS_ROUTE}\.csv", ClassCSVHandler),
        (rf"{base}/classes/{CLASS_ROUTE}/events", ClassEventsHandler),
        (rf"{base}/classes/{CLASS_ROUTE}/sessions/([^/]{{1,255}})/stop", ClassStopHandler),
        (rf"{base}/api/classes/{CLASS_ROUTE}", ClassJSONHandler),
    ]
