"""A read-only admin page in the browser: everyone's progress, the course errors and each
loaded course's warnings, a CSV link.

``{prefix}admin`` logs the visitor in through the hub (OAuth, ``HubOAuth``) and shows the
page to hub admins only (403 for everyone else). It only has GET endpoints, so the login
cookie cannot be used to change anything; the JSON API keeps token-only authentication.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web

from . import service
from .audit_view import fetch_audit, recent_events
from .catalogue import Catalogue
from .handlers import resolve_hub_user, sees_everything
from .service import ServiceState

#: The admin page's template (``templates/admin.html``), loaded once. Autoescaped: user
#: names, course titles and error text come from users and course repositories.
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def render_admin_page(
    catalogue: Catalogue,
    completions: list[dict[str, Any]],
    errors: list[dict[str, Any]],
    prefix: str,
    audit: list[dict[str, Any]] | None = None,
) -> str:
    """The admin page's HTML: one row per completion, one per course error, and per loaded
    course one row per warning (file, JSON path, reason: what was left out or handed to
    the tutor).

    ``completions`` and ``errors`` are :func:`service.all_progress` and
    :func:`service.course_errors` (its warning entries are shown from ``catalogue``, with
    their JSON path); ``prefix`` is the service's URL prefix (ends in '/'); ``audit`` the
    newest audit events (:func:`~claudehub.progress.audit_view.recent_events`; None: the key
    proxy's log is not configured or unreachable).
    """
    rows = []
    for c in completions:
        course = catalogue.get(c["course_id"])
        stage = course.stage(c["stage"]) if course else None
        stage_title = "(whole course)" if c["stage"] == 0 else (stage.title if stage else "")
        rows.append(
            {
                "user": c["user"],
                "course": course.title if course else c["course_id"],
                "stage": c["stage"],
                "stage_title": stage_title,
                "method": c["method"],
                "completed_at": c["completed_at"] or "",
            }
        )
    warnings = [
        {"course_id": course.id, "course": course.title, **issue.as_dict()}
        for course in catalogue.courses.values()
        for issue in course.issues
    ]
    return _TEMPLATES.get_template("admin.html").render(
        course_count=len(catalogue.courses),
        rows=rows,
        errors=[e for e in errors if e.get("severity") != "warning"],
        warnings=warnings,
        prefix=prefix,
        audit=audit,
    )


# jupyterhub ships no type information, so its classes are Any to mypy and --strict refuses
# subclassing them; subclassing is the documented way to use HubOAuth. (unused-ignore: the
# project's mypy config is not strict yet, and then this ignore has nothing to silence.)
class _OAuthPage(HubOAuthenticated, web.RequestHandler):  # type: ignore[misc, unused-ignore]
    @property
    def hub_auth(self) -> Any:
        return self.settings["hub_oauth"]

    @property
    def state(self) -> ServiceState:
        state: ServiceState = self.settings["claudehub_state"]
        return state

    async def prepare(self) -> None:
        await resolve_hub_user(self)


class AdminPageHandler(_OAuthPage):
    @web.authenticated
    async def get(self) -> None:
        user = self.current_user
        if not sees_everything(user):
            raise web.HTTPError(403, "admins only")
        html = render_admin_page(
            self.state.catalogue,
            await service.all_progress(self.state),
            service.course_errors(self.state),
            self.settings["claudehub_prefix"],
            await recent_events(self.settings.get("claudehub_usage_source")),
        )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        self.finish(html)


class AdminPageCSVHandler(_OAuthPage):
    @web.authenticated
    async def get(self) -> None:
        user = self.current_user
        if not sees_everything(user):
            raise web.HTTPError(403, "admins only")
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="claudehub-progress.csv"')
        self.finish(await service.export_csv(self.state))


class AdminAuditExportHandler(_OAuthPage):
    """``{prefix}admin/audit.(csv|json)``: the key proxy's audit export, for admins only."""

    @web.authenticated
    async def get(self, fmt: str) -> None:
        if not sees_everything(self.current_user):
            raise web.HTTPError(403, "admins only")
        source = self.settings.get("claudehub_usage_source")
        if source is None:
            raise web.HTTPError(404, "no key proxy audit log is configured")
        query = {
            k: self.get_argument(k, "") for k in ("since", "until", "action", "actor", "limit")
        }
        status, body = await fetch_audit(source, query, fmt)
        if status != 200:
            raise web.HTTPError(502, "the key proxy's audit log is unavailable")
        kind = "text/csv" if fmt == "csv" else "application/json"
        self.set_header("Content-Type", f"{kind}; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="claudehub-audit.{fmt}"')
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


# untyped jupyterhub base, as for _OAuthPage
class OAuthCallbackHandler(HubOAuthCallbackHandler):  # type: ignore[misc, unused-ignore]
    @property
    def hub_auth(self) -> Any:
        return self.settings["hub_oauth"]


def admin_page_handlers(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    base = prefix.rstrip("/")
    return [
        (rf"{base}/oauth_callback", OAuthCallbackHandler),
        (rf"{base}/admin/?", AdminPageHandler),
        (rf"{base}/admin/progress\.csv", AdminPageCSVHandler),
        (rf"{base}/admin/audit\.(csv|json)", AdminAuditExportHandler),
    ]
