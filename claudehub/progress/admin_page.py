"""A read-only admin page in the browser: everyone's progress, the course errors, a CSV link.

``{prefix}admin`` logs the visitor in through the hub (OAuth, ``HubOAuth``) and shows the
page to hub admins only (403 for everyone else). It only has GET endpoints, so the login
cookie cannot be used to change anything; the JSON API keeps token-only authentication.
"""

from __future__ import annotations

from typing import Any

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web
from tornado.escape import xhtml_escape

from . import service
from .handlers import resolve_hub_user
from .service import ServiceState

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 12px 0 24px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
th { background: #f3f3f3; }
.quiz { color: #1b6e2c; } .tutor { color: #3346a0; } .no { color: #999; }
"""


class _OAuthPage(HubOAuthenticated, web.RequestHandler):
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
        if not (user and user.get("kind", "user") == "user" and user.get("admin")):
            raise web.HTTPError(403, "admins only")
        completions = await service.all_progress(self.state)
        errors = service.course_errors(self.state)
        catalogue = self.state.catalogue
        e = xhtml_escape
        rows = []
        for c in completions:
            course = catalogue.get(c["course_id"])
            stage = course.stage(c["stage"]) if course else None
            stage_title = "(whole course)" if c["stage"] == 0 else (stage.title if stage else "")
            rows.append(
                "<tr>"
                f"<td>{e(c['user'])}</td><td>{e(course.title if course else c['course_id'])}</td>"
                f"<td>{c['stage']}: {e(stage_title)}</td>"
                f"<td class='{e(c['method'])}'>{e(c['method'])}</td>"
                f"<td>{e(c['completed_at'] or '')}</td>"
                "</tr>"
            )
        error_rows = [
            f"<tr><td>{e(x['course_id'])}</td><td>{e(x['source'])}</td><td>{e(x['file'])}</td>"
            f"<td>{e(x['reason'])}</td></tr>"
            for x in errors
        ]
        html = (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>claudehub progress</title><style>{_STYLE}</style></head><body>"
            f"<h1>Learner progress</h1><p>{len(catalogue.courses)} courses · "
            f"{len(completions)} completions · "
            f"<a id='csv' href='{e(self.settings['claudehub_prefix'])}admin/progress.csv'>"
            "Download CSV</a></p>"
            "<table id='progress'><thead><tr><th>User</th><th>Course</th><th>Stage</th>"
            "<th>How</th><th>When (UTC)</th></tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table><h2>Course errors</h2>"
            + (
                "<table id='errors'><thead><tr><th>Course</th><th>Source</th><th>File</th>"
                "<th>Reason</th></tr></thead><tbody>" + "".join(error_rows) + "</tbody></table>"
                if error_rows
                else "<p class='no'>None.</p>"
            )
            + "</body></html>"
        )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        self.finish(html)


class AdminPageCSVHandler(_OAuthPage):
    @web.authenticated
    async def get(self) -> None:
        user = self.current_user
        if not (user and user.get("kind", "user") == "user" and user.get("admin")):
            raise web.HTTPError(403, "admins only")
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="claudehub-progress.csv"')
        self.finish(await service.export_csv(self.state))


class OAuthCallbackHandler(HubOAuthCallbackHandler):
    @property
    def hub_auth(self) -> Any:
        return self.settings["hub_oauth"]


def admin_page_handlers(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    base = prefix.rstrip("/")
    return [
        (rf"{base}/oauth_callback", OAuthCallbackHandler),
        (rf"{base}/admin/?", AdminPageHandler),
        (rf"{base}/admin/progress\.csv", AdminPageCSVHandler),
    ]
