"""Tornado handlers of the course+progress service (a JupyterHub service).

Identity is the hub user the hub resolves the request's token to (HubAuth: the
``Authorization: token ...`` header). No handler ever takes a user name from the
request; admin endpoints require the hub's ``admin`` flag on that user.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from jupyterhub.services.auth import HubAuthenticated, HubOAuthenticated, UserNotAllowed
from tornado import web

from claudehub.contract.course import COURSE_ID_ROUTE

from . import service
from .assets import (
    CACHE_CONTROL,
    DEFAULT_MAX_ASSET_BYTES,
    MAX_ASSET_SETTING,
    THUMBNAIL_WIDTHS,
    Asset,
    AssetRefused,
    AssetSigner,
    read_asset,
    repository_root,
    scaled,
)
from .bundle import BundleTooLarge, build_bundle
from .classes import ALL, class_access
from .service import ServiceError, ServiceState

log = logging.getLogger(__name__)

COURSE_ID = COURSE_ID_ROUTE
QUIZ_ID = r"([^/]{1,255})"
#: an asset path: anything (tornado has URL-decoded it); assets.clean_relative_path checks it
ASSET_PATH = r"(.{1,1024})"
MAX_WAIT = 60.0


def sees_everything(user: dict[str, Any] | None) -> bool:
    """Whether ``user`` (a hub user model with its token's scopes) may see every learner's
    progress (the admin page and routes): a hub admin, or an operator."""
    return class_access(user) == ALL


async def resolve_hub_user(handler: Any) -> dict[str, Any] | None:
    """Who is asking, for a ``HubAuthenticated`` handler, resolved without blocking.

    HubAuth's sync mode would block the event loop on the hub round trip; ask
    asynchronously, then apply HubAuthenticated's own checks (access scopes) and cache the
    result where ``current_user`` looks for it.
    """
    model = await handler.hub_auth.get_user(handler, sync=False)
    user = None
    if model:
        try:
            user = handler.check_hub_user(model)
        except UserNotAllowed:
            user = None
    handler._hub_auth_user_cache = user
    return user


def asset_signer(handler: web.RequestHandler) -> AssetSigner:
    """The signer of this service's image URLs, keyed by its hub API token."""
    return AssetSigner.from_secret(str(handler.settings["hub_auth"].api_token or ""))


class BaseHandler(HubAuthenticated, web.RequestHandler):  # type: ignore[misc, unused-ignore]  # untyped base (no stubs)
    """JSON in and out; every request must carry a hub token."""

    @property
    def hub_auth(self) -> Any:
        return self.settings["hub_auth"]

    @property
    def state(self) -> ServiceState:
        state: ServiceState = self.settings["claudehub_state"]
        return state

    @property
    def user_name(self) -> str:
        model = self.current_user
        assert model is not None
        return str(model["name"])

    @property
    def is_admin(self) -> bool:
        """A hub admin, or an operator (every class's read scope: admins who may not attach
        to servers are operators, claudehub.hub.classes)."""
        return sees_everything(self.current_user)

    def check_xsrf_cookie(self) -> None:
        # token-authenticated API: no cookies are used, so there is nothing to forge
        return

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    async def prepare(self) -> None:
        user = await resolve_hub_user(self)
        if user is None:
            header = self.request.headers.get("Authorization", "")
            raise web.HTTPError(403 if header else 401, "a valid hub API token is required")
        if user.get("kind", "user") != "user":
            raise web.HTTPError(403, "only hub users have progress")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], web.HTTPError) and exc_info[1].log_message:
            message = exc_info[1].log_message
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"status": status_code, "message": message}))

    def send(self, data: Any) -> None:
        self.finish(json.dumps(data, ensure_ascii=False))

    def body_json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPError(400, "request body must be JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "request body must be a JSON object")
        return data

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(self.state, *args, **kwargs)
        except ServiceError as e:
            raise web.HTTPError(e.status, e.message) from None

    def require_admin(self) -> None:
        if not self.is_admin:
            raise web.HTTPError(403, "admins only")

    async def visible_courses(self) -> Callable[[str], bool]:
        """Which course ids the caller sees: every catalogue course, and the published
        (authored) ones shown to a class of theirs (``claudehub_authoring``'s rule)."""
        authoring = self.settings.get("claudehub_authoring")
        if authoring is None:
            return lambda _course_id: True
        visible: Callable[[str], bool] = await authoring.course_filter(
            self.user_name, self.is_admin
        )
        return visible

    async def require_visible(self, course_id: str) -> None:
        """404, as for a course that does not exist, when the caller may not see it."""
        if not (await self.visible_courses())(course_id):
            raise web.HTTPError(404, f"no course {course_id!r}")


class HealthHandler(web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": "ok"}))


class CoursesHandler(BaseHandler):
    async def get(self) -> None:
        prefix = self.settings["claudehub_prefix"]
        courses = await self.call(service.list_courses, prefix, asset_signer(self))
        visible = await self.visible_courses()
        self.send({"courses": [c for c in courses if visible(c["id"])]})


class CourseHandler(BaseHandler):
    async def get(self, course_id: str) -> None:
        await self.require_visible(course_id)
        prefix = self.settings["claudehub_prefix"]
        detail = await self.call(service.course_detail, course_id, prefix, asset_signer(self))
        self.send(detail)


class BundleHandler(BaseHandler):
    """tar.gz of the course folder, answers removed, with the caller's .learner/ snapshot."""

    async def get(self, course_id: str) -> None:
        course = self.state.catalogue.get(course_id)
        if course is None:
            raise web.HTTPError(404, f"no course {course_id!r}")
        await self.require_visible(course_id)
        files = await self.call(service.learner_files, self.user_name, course_id)
        try:
            data = await asyncio.to_thread(
                build_bundle, course, files, max_bytes=self.settings["claudehub_max_bundle"]
            )
        except BundleTooLarge as e:
            raise web.HTTPError(413, str(e)) from None
        self.set_header("Content-Type", "application/gzip")
        self.set_header("Content-Disposition", f'attachment; filename="{course_id}.tar.gz"')
        self.finish(data)


class AnswerHandler(BaseHandler):
    async def post(self, course_id: str, quiz_id: str) -> None:
        await self.require_visible(course_id)
        answer = self.body_json().get("answer")
        if not isinstance(answer, str):
            raise web.HTTPError(400, '"answer" must be a string')
        result = await self.call(service.submit_answer, self.user_name, course_id, quiz_id, answer)
        log.info(
            "Quiz answer: user=%s course=%s quiz=%s status=%s",
            self.user_name,
            course_id,
            quiz_id,
            result["status"],
        )
        self.send(result)


class CompletionHandler(BaseHandler):
    """Tutor markers only: quiz completions are earned by answering, never posted."""

    async def post(self, course_id: str) -> None:
        await self.require_visible(course_id)
        body = self.body_json()
        method = body.get("method", "tutor")
        if method != "tutor":
            raise web.HTTPError(
                403, "quiz completions are earned by answering the quiz, not by posting them"
            )
        marker = body.get("marker")
        stage = body.get("stage")
        if marker == "course" or marker == "[DUNGEON_COMPLETE]":
            stage = None
        elif not isinstance(stage, int) or isinstance(stage, bool):
            raise web.HTTPError(400, '"stage" must be an integer (or "marker": "course")')
        result = await self.call(service.record_tutor, self.user_name, course_id, stage=stage)
        log.info("Tutor completion: user=%s course=%s stage=%s", self.user_name, course_id, stage)
        self.send(result)


class ProgressHandler(BaseHandler):
    """Own progress. ``?wait=S&since=V`` waits up to S seconds for a change after V."""

    async def get(self, course_id: str | None = None) -> None:
        if course_id is not None:
            await self.require_visible(course_id)
        wait = self.get_argument("wait", "")
        if wait:
            try:
                timeout = min(max(float(wait), 0.0), MAX_WAIT)
                since = int(self.get_argument("since", "-1"))
            except ValueError:
                raise web.HTTPError(400, "wait and since must be numbers") from None
            await self.state.events.wait(self.user_name, since, timeout)
        if course_id is None:
            self.send(
                {
                    "user": self.user_name,
                    "progress": await self.call(service.user_progress_all, self.user_name),
                }
            )
        else:
            data = await self.call(service.user_progress, self.user_name, course_id)
            data["user"] = self.user_name
            self.send(data)


# jupyterhub ships no type information (see BaseHandler)
_SCALED: dict[str, Asset] = {}
_SCALED_MAX = 512


async def _scaled(asset: Asset, width: int) -> Asset:
    """:func:`assets.scaled`, remembered by ETag (a catalogue has a few dozen thumbnails)."""
    key = f"{asset.etag}-{width}"
    hit = _SCALED.get(key)
    if hit is None:
        hit = await asyncio.to_thread(scaled, asset, width)
        if len(_SCALED) >= _SCALED_MAX:
            _SCALED.pop(next(iter(_SCALED)))
        _SCALED[key] = hit
    return hit


class AssetHandler(HubOAuthenticated, web.RequestHandler):  # type: ignore[misc, unused-ignore]
    """``GET {prefix}api/courses/{course_id}/assets/{path}``: one checked course image.

    The checks are :func:`assets.read_asset`'s. Authentication is HubOAuth: an
    ``Authorization`` token (the extension's proxy, API clients) or else the service's hub
    login cookie, so a hub page can show a thumbnail with a plain ``<img>``. GET and HEAD
    only, so the cookie cannot be used to change anything.
    """

    @property
    def hub_auth(self) -> Any:
        return self.settings["hub_oauth"]

    def check_xsrf_cookie(self) -> None:
        # GET and HEAD only: nothing to forge
        return

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        # an image is never a document: even opened on its own it can run nothing
        self.set_header("Content-Security-Policy", "default-src 'none'")
        self.set_header("Cross-Origin-Resource-Policy", "same-origin")
        self.set_header("Cache-Control", "no-store")

    async def prepare(self) -> None:
        if self.signed():
            return  # a URL the service signed for a hub user (see AssetSigner)
        user = await resolve_hub_user(self)
        if user is None:
            if self.request.headers.get("Authorization"):
                raise web.HTTPError(403, "a valid hub API token is required")
            # a browser without the service's cookie yet: the hub's OAuth login, which
            # comes straight back here (oauth_no_confirm)
            self.redirect(self.get_login_url())
            return
        if user.get("kind", "user") != "user":
            raise web.HTTPError(403, "only hub users read course images")
        authoring = self.settings.get("claudehub_authoring")
        if authoring is not None and self.path_args:
            # a published course's images, like the course, only for the classes it is for
            visible = await authoring.course_filter(str(user["name"]), sees_everything(user))
            if not visible(str(self.path_args[0])):
                raise web.HTTPError(404, f"no course {self.path_args[0]!r}")

    def signed(self) -> bool:
        """Whether the request's ``exp`` and ``sig`` sign its course and path."""
        sig = self.get_query_argument("sig", "")
        if not sig or not self.path_args or len(self.path_args) != 2:
            return False
        course_id, path = (str(a) for a in self.path_args)
        expires = self.get_query_argument("exp", "")
        return asset_signer(self).verify(course_id, path, expires, sig, time.time())

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], web.HTTPError) and exc_info[1].log_message:
            message = exc_info[1].log_message
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"status": status_code, "message": message}))

    async def head(self, course_id: str, path: str) -> None:
        await self.get(course_id, path)  # tornado sends the headers, drops the body

    async def get(self, course_id: str, path: str) -> None:
        course = self.settings["claudehub_state"].catalogue.get(course_id)
        if course is None:
            raise web.HTTPError(404, f"no course {course_id!r}")
        max_bytes = int(self.settings.get(MAX_ASSET_SETTING, DEFAULT_MAX_ASSET_BYTES))
        width = self.get_query_argument("w", "")
        if width and width not in {str(w) for w in THUMBNAIL_WIDTHS}:
            raise web.HTTPError(400, f"w must be one of {', '.join(map(str, THUMBNAIL_WIDTHS))}")
        try:
            asset = await asyncio.to_thread(read_asset, repository_root(course), path, max_bytes)
            if width:
                asset = await _scaled(asset, int(width))
        except AssetRefused as e:
            raise web.HTTPError(e.status, e.reason) from None
        self.set_header("Content-Type", asset.content_type)
        self.set_header("Cache-Control", CACHE_CONTROL)
        self.set_header("ETag", asset.etag)
        self.set_header("Last-Modified", email.utils.formatdate(asset.mtime, usegmt=True))
        if self.check_etag_header():
            self.set_status(304)
            self.finish()
            return
        self.finish(asset.data)


class AdminProgressHandler(BaseHandler):
    async def get(self) -> None:
        self.require_admin()
        self.send({"completions": await self.call(service.all_progress)})


class AdminCSVHandler(BaseHandler):
    async def get(self) -> None:
        self.require_admin()
        text = await self.call(service.export_csv)
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="claudehub-progress.csv"')
        self.finish(text)


class AdminErrorsHandler(BaseHandler):
    async def get(self) -> None:
        self.require_admin()
        self.send({"errors": service.course_errors(self.state)})


class AdminReloadHandler(BaseHandler):
    async def post(self) -> None:
        self.require_admin()
        reload = self.settings["claudehub_reload"]
        await reload(force=True)
        self.send(
            {
                "courses": len(self.state.catalogue.courses),
                "errors": service.course_errors(self.state),
            }
        )


def service_handlers(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """URL patterns under ``prefix`` (the service prefix, e.g. /services/progress/)."""
    api = prefix.rstrip("/") + "/api"
    return [
        (rf"{api}/health", HealthHandler),
        (rf"{api}/courses", CoursesHandler),
        (rf"{api}/courses/{COURSE_ID}", CourseHandler),
        (rf"{api}/courses/{COURSE_ID}/bundle", BundleHandler),
        (rf"{api}/courses/{COURSE_ID}/assets/{ASSET_PATH}", AssetHandler),
        (rf"{api}/courses/{COURSE_ID}/quizzes/{QUIZ_ID}/answer", AnswerHandler),
        (rf"{api}/courses/{COURSE_ID}/completions", CompletionHandler),
        (rf"{api}/progress", ProgressHandler),
        (rf"{api}/progress/{COURSE_ID}", ProgressHandler),
        (rf"{api}/admin/progress", AdminProgressHandler),
        (rf"{api}/admin/progress\.csv", AdminCSVHandler),
        (rf"{api}/admin/errors", AdminErrorsHandler),
        (rf"{api}/admin/reload", AdminReloadHandler),
    ]
