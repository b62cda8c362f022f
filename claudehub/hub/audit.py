"""The hub's part of the audit log: what only the hub sees, reported to the key proxy.

Tornado calls its ``log_function`` once per finished request; :class:`AuditHook` is that
function. It lets JupyterHub log the request as always (:func:`jupyterhub.log.log_request`),
then recognises, on successful requests only:

- ``DELETE /hub/api/users/<u>/server`` (or a named server) by anyone but ``<u>``:
  ``session.end`` (the idle culler's routine stops are left to the hub's log);
- ``PUT|PATCH /hub/api/groups/<g>/properties``: ``limits.change`` (which properties and which
  limit fields, with their values: class limits are not secret);
- an OAuth authorization (``/hub/api/oauth2/authorize`` answered with a code) for another
  user's server, or ``/hub/user/<u>/...`` followed by someone else: ``server.access``.

Events go to the key proxy's ``POST /audit`` (:mod:`claudehub.contract.audit`) from a small
bounded queue, in the background: a slow or absent key proxy never delays or fails a hub
request, it costs a warning. Who ended whose session is also kept in the hub process
(:mod:`claudehub.hub.ended`), so the learner's page can say so.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import time
from typing import Any
from urllib.parse import unquote

from jupyterhub.log import log_request
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from claudehub.contract import env
from claudehub.contract.audit import (
    LIMITS_CHANGE,
    SERVER_ACCESS,
    SESSION_END,
    AuditEventError,
    check_event,
    format_ts,
)
from claudehub.contract.hub import CULLER_SERVICE, KEYPROXY_SERVICE
from claudehub.contract.limits import GROUP_LIMITS_PROPERTY

from .ended import ENDED, SessionEndedHandler
from .pages import TEMPLATES_DIR

log = logging.getLogger("claudehub.hub.audit")

#: The key proxy's admin token in the hub's environment (the chart's hub Secret,
#: ``keyproxy-admin-token``; local mode generates one).
ADMIN_TOKEN_ENV = env.KEYPROXY_ADMIN_TOKEN
QUEUE_MAX = 500
#: The same (actor, action, target) within this many seconds is one event: following
#: ``/hub/user/<u>/`` leads to an OAuth authorization for the same server a moment later.
DEDUPE_SECONDS = 60.0

_SERVER = re.compile(r"api/users/([^/]+)/server(?:s/([^/]*))?/?$")
_PROPERTIES = re.compile(r"api/groups/([^/]+)/properties/?$")
_AUTHORIZE = re.compile(r"api/oauth2/authorize/?$")
_USER_URL = re.compile(r"user/([^/]+)(?:/.*)?$")
_SPAWN = re.compile(r"spawn(?:/([^/]+))?(?:/.*)?$")
_CLIENT = "jupyterhub-user-"


class AuditReporter:
    """Posts events to the key proxy's ``/audit``, one at a time, from a bounded queue."""

    def __init__(self, url: str, token: str, *, queue_max: int = QUEUE_MAX) -> None:
        self.url = url.rstrip("/") + "/audit"
        self.token = token
        self.queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=queue_max)
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    def report(self, event: dict[str, Any]) -> None:
        """Queue ``event`` and make sure it is sent; never raises, never waits."""
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1  # the oldest goes: the key proxy has been away a while
        self.queue.append(event)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        client = AsyncHTTPClient()
        while self.queue:
            event = self.queue[0]
            req = HTTPRequest(
                self.url,
                method="POST",
                body=json.dumps(event),
                headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/json",
                },
                request_timeout=10,
            )
            try:
                await client.fetch(req)
            except asyncio.CancelledError:
                raise
            except HTTPClientError as e:
                if e.code == 400:  # refused (the message names the field): not worth a retry
                    log.warning("The key proxy refused an audit event (%s): %s", event["action"], e)
                    self.queue.popleft()
                    continue
                self._unreachable(e)
                return
            except OSError as e:
                self._unreachable(e)
                return
            self.queue.popleft()
            self._warned = False

    def _unreachable(self, error: Exception) -> None:
        # kept queued: the next event tries again (the message names no token)
        if not self._warned:
            log.warning(
                "Cannot report to the key proxy's audit log at %s (%d events queued): %s",
                self.url,
                len(self.queue),
                error,
            )
            self._warned = True


def _actor(handler: Any) -> tuple[str, str, bool] | None:
    """(name, kind, is admin) of the request's user or service; None when nobody."""
    try:
        who = handler.current_user
    except RuntimeError:  # the request ended before JupyterHub looked (a 404, say)
        return None
    if who is None:
        return None
    kind = getattr(who, "kind", "user")
    return (
        str(who.name),
        "service" if kind == "service" else "user",
        bool(getattr(who, "admin", False)),
    )


def _relative(handler: Any) -> str:
    """The request path under the hub's prefix (``api/users/...``), or "" outside it."""
    prefix = handler.settings.get("hub_prefix", "/hub/")
    path: str = handler.request.path
    return path[len(prefix) :] if path.startswith(prefix) else ""


def _limits_detail(body: bytes) -> dict[str, Any]:
    """Which group properties a request set, and the limit fields with their values."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    detail: dict[str, Any] = {"properties": sorted(str(k)[:100] for k in data)[:20]}
    limits = data.get(GROUP_LIMITS_PROPERTY)
    if isinstance(limits, dict):
        detail["limit_fields"] = sorted(str(k)[:100] for k in limits)[:20]
        for name, value in list(limits.items())[:10]:
            key = "limits." + re.sub(r"[^a-z0-9_]", "_", str(name).lower())[:50]
            if isinstance(value, bool | int | float | str) or value is None:
                detail[key] = value
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                detail[key] = value[:20]
    elif GROUP_LIMITS_PROPERTY in data:
        detail["limit_fields"] = []  # limits removed
    return detail


def _oauth_target(handler: Any) -> str:
    """The user whose server an authorized OAuth client belongs to ("" for a service)."""
    client_id = handler.get_argument("client_id", "")
    if not client_id.startswith(_CLIENT):
        return ""
    try:  # the hub's own record: named servers make the client id ambiguous
        client = handler.oauth_provider.fetch_by_client_id(client_id)
    except (AttributeError, LookupError, ValueError):
        client = None
    spawner = getattr(client, "spawner", None) if client is not None else None
    user = getattr(spawner, "user", None)
    if user is not None:
        return str(user.name)
    return unquote(client_id[len(_CLIENT) :])


class AuditHook:
    """Tornado's ``log_function`` for the hub: JupyterHub's request log, then the audit log."""

    def __init__(self, reporter: AuditReporter | None) -> None:
        self.reporter = reporter
        self._recent: dict[tuple[str, str, str], float] = {}

    def __call__(self, handler: Any) -> None:
        log_request(handler)
        try:
            self.inspect(handler)
        except (AttributeError, LookupError, TypeError, ValueError) as e:
            # a logging hook must never break the hub's answer; say what went wrong
            log.error(
                "Audit hook failed on %s %s: %s", handler.request.method, handler.request.path, e
            )

    def inspect(self, handler: Any) -> None:
        """Recognise a privileged action in a finished request and report it."""
        status = handler.get_status()
        method = handler.request.method
        path = _relative(handler)
        if not path or status >= 400:
            return
        if status < 300 and method == "DELETE" and (m := _SERVER.match(path)):
            self._session_end(handler, unquote(m[1]), unquote(m[2] or ""))
        elif status < 300 and method in ("PUT", "PATCH") and (m := _PROPERTIES.match(path)):
            self._limits_change(handler, unquote(m[1]))
        elif method in ("GET", "POST") and status in (301, 302, 303) and _AUTHORIZE.match(path):
            location = handler._headers.get("Location", "")  # what log_request reads too
            if "code=" in location:
                self._access(handler, _oauth_target(handler), "oauth")
        elif method == "GET" and status in (301, 302, 303) and (m := _USER_URL.match(path)):
            self._access(handler, unquote(m[1]), "hub/user")
        elif method in ("POST", "GET") and status < 400 and (m := _SPAWN.match(path)):
            self._started(handler, unquote(m[1] or ""))
        elif method == "POST" and status < 300 and (m := _SERVER.match(path)):
            self._started(handler, unquote(m[1]))

    def _session_end(self, handler: Any, target: str, server: str) -> None:
        actor = _actor(handler)
        if actor is None or (actor[1] == "user" and actor[0] == target):
            return  # the learner's own End session
        if actor[1] == "service" and actor[0] == CULLER_SERVICE:
            return
        now = time.time()
        if actor[1] == "user":
            ENDED.remember(target, actor[0], is_admin=actor[2], when=now)
        self._report(
            handler,
            SESSION_END,
            actor,
            target,
            {"server": server, "actor_admin": actor[2], "status": handler.get_status()},
            now,
        )

    def _limits_change(self, handler: Any, group: str) -> None:
        actor = _actor(handler)
        if actor is None:
            return
        detail = {"group": group, **_limits_detail(handler.request.body)}
        self._report(handler, LIMITS_CHANGE, actor, group, detail, time.time())

    def _access(self, handler: Any, target: str, via: str) -> None:
        actor = _actor(handler)
        if not target or actor is None or actor[0] == target:
            return
        self._report(
            handler,
            SERVER_ACCESS,
            actor,
            target,
            {"via": via, "actor_admin": actor[2]},
            time.time(),
        )

    def _started(self, handler: Any, name: str) -> None:
        actor = _actor(handler)
        if actor is not None:
            ENDED.forget(name or actor[0])

    def _report(
        self,
        handler: Any,
        action: str,
        actor: tuple[str, str, bool],
        target: str,
        detail: dict[str, Any],
        now: float,
    ) -> None:
        key = (actor[0], action, target)
        if action == SERVER_ACCESS and now - self._recent.get(key, 0.0) < DEDUPE_SECONDS:
            return
        if len(self._recent) > 10_000:
            self._recent.clear()
        self._recent[key] = now
        event = {
            "action": action,
            "actor": actor[0],
            "actor_kind": actor[1],
            "target": target,
            "source": str(handler.request.remote_ip or "")[:64],
            "ts": format_ts(now),
            "detail": detail,
        }
        try:
            check_event(event)  # here too, so a bad one is logged where it was made
        except AuditEventError as e:
            log.warning("Not reporting %s by %s: %s", action, actor[0], e)
            return
        log.info("audit: %s by %s %s on %s", action, actor[1], actor[0], target)
        if self.reporter is not None:
            self.reporter.report(event)


def keyproxy_admin(c: Any) -> tuple[str, str]:
    """The key proxy's URL and admin token for a hub that runs it as a managed service (local
    mode): the token the course service already shares, else a new one for both."""
    import secrets

    services = c.JupyterHub.get("services", [])
    for service in services if isinstance(services, list) else []:
        if service.get("name") == KEYPROXY_SERVICE and "command" in service and service.get("url"):
            environment = dict(service.get("environment", {}))
            token = environment.get(ADMIN_TOKEN_ENV) or secrets.token_urlsafe(32)
            environment[ADMIN_TOKEN_ENV] = token
            service["environment"] = environment
            c.JupyterHub.services = services
            return str(service["url"]), token
    return "", ""


def configure_audit(c: Any, keyproxy_url: str, admin_token: str) -> None:
    """Install the audit hook (and the learner's "who ended my session" page) in config ``c``.

    Without a key proxy URL or admin token the hook still tells learners who ended their
    session, but reports nothing (with a warning at start-up).
    """
    reporter = AuditReporter(keyproxy_url, admin_token) if keyproxy_url and admin_token else None
    if reporter is None:
        log.warning(
            "No key proxy URL or %s: privileged actions are not recorded in the audit log",
            ADMIN_TOKEN_ENV,
        )
    tornado_settings = dict(c.JupyterHub.get("tornado_settings", {}))
    tornado_settings["log_function"] = AuditHook(reporter)
    c.JupyterHub.tornado_settings = tornado_settings
    # the learner's page is one of claudehub's templates (both modes have them already)
    paths = list(c.JupyterHub.get("template_paths", []))
    if str(TEMPLATES_DIR) not in paths:
        c.JupyterHub.template_paths = [*paths, str(TEMPLATES_DIR)]
    handlers = list(c.JupyterHub.get("extra_handlers", []))
    handlers.append((r"/claudehub/session-ended", SessionEndedHandler))
    c.JupyterHub.extra_handlers = handlers
