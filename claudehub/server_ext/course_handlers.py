"""The extension's course REST API under ``{base_url}claude/api/`` (see docs/api.md).

The browser talks only to its own server; these handlers call the course+progress
service server-side with the server's ``JUPYTERHUB_API_TOKEN``, which the service
resolves (through the hub) to the server's owner. So a page can only ever read and
write its owner's progress, and the service alone judges answers.

Wiring: the extension app builds one :class:`CourseBackend` from its configuration
(``ClaudeHubApp.progress_url``, ``course_id``, ``course_dir``, ``api_token``, whose
defaults are the spawner's environment: ``CLAUDEHUB_PROGRESS_URL``,
``CLAUDEHUB_COURSE_ID``, ``CLAUDEHUB_COURSE_DIR``, ``JUPYTERHUB_API_TOKEN``), puts it in the
tornado settings (``settings["claudehub_course_backend"]``, read by these handlers) and
passes :meth:`CourseBackend.on_marker` to the terminal sessions, which call it with each
tutor marker found in the terminal's output. ``default_handlers`` have relative patterns:
``ExtensionApp`` prefixes base_url.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient
from tornado.iostream import StreamClosedError

from claudehub.contract.course import COURSE_ID_ROUTE
from claudehub.contract.course_client import (
    ProgressAPIError,
    ProgressClient,
    write_progress_snapshot,
)
from claudehub.contract.hub import AUTH_RESOURCE

log = logging.getLogger(__name__)

COURSE_ID = COURSE_ID_ROUTE
#: seconds one long-poll of the service waits for a change (SSE heartbeat period)
POLL_WAIT = 25.0
#: tornado settings: this server's CourseBackend
COURSE_BACKEND_SETTING = "claudehub_course_backend"


@dataclass
class CourseBackend:
    """This server's link to the progress service."""

    progress_url: str
    token: str
    course_id: str = ""
    course_dir: str = ""
    recorded: set[tuple[str, str, int | None]] = field(default_factory=set)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def configured(self) -> bool:
        """Whether there is a service to call (and a token to call it with)."""
        return bool(self.progress_url and self.token)

    @property
    def client(self) -> ProgressClient:
        """A client of the service, authenticated as this server."""
        return ProgressClient(self.progress_url, self.token)

    async def after_change(self, course_id: str, progress: dict[str, Any]) -> None:
        """Keep the sandbox's read-only ``.learner/progress.json`` current."""
        snapshot = progress.get("learner_snapshot")
        if course_id == self.course_id and self.course_dir and isinstance(snapshot, dict):
            await asyncio.to_thread(write_progress_snapshot, self.course_dir, snapshot)

    async def record_marker(self, kind: str, stage: int | None) -> None:
        """Report a tutor marker seen in the terminal (once per marker per server)."""
        if not self.configured or not self.course_id:
            return
        key = (self.course_id, kind, stage)
        if key in self.recorded:
            return  # the terminal UI redraws: the same marker shows up many times
        self.recorded.add(key)
        try:
            result = await self.client.tutor_completion(
                self.course_id, stage if kind == "stage" else None
            )
        except ProgressAPIError as e:
            self.recorded.discard(key)
            log.warning("Recording tutor marker %s %s failed: %s", kind, stage, e.message)
            return
        except OSError as e:
            self.recorded.discard(key)
            log.warning("Recording tutor marker %s %s failed: %s", kind, stage, e)
            return
        await self.after_change(self.course_id, result.get("progress", {}))

    def schedule_marker(self, kind: str, stage: int | None) -> None:
        """Fire-and-forget :meth:`record_marker` from synchronous terminal code."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self.record_marker(kind, stage))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_marker(self, event: dict[str, Any]) -> None:
        """The terminal sessions' marker hook: records a tutor completion.

        ``event`` is ``{"kind": "stage", "stage": N}`` or ``{"kind": "course"}``.
        """
        kind = event.get("kind")
        stage = event.get("stage")
        if kind == "stage" and isinstance(stage, int):
            self.schedule_marker("stage", stage)
        elif kind == "course":
            self.schedule_marker("course", None)

    async def close(self) -> None:
        """The server stops: cancel the recordings still under way."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _CourseAPIHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def backend(self) -> CourseBackend:
        """This server's course backend (from the tornado settings)."""
        backend: CourseBackend = self.settings[COURSE_BACKEND_SETTING]
        return backend

    def _client(self) -> ProgressClient:
        if not self.backend.configured:
            raise web.HTTPError(503, "the course service is not configured for this server")
        return self.backend.client

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except ProgressAPIError as e:
            status = e.status if 400 <= e.status < 600 and e.status != 599 else 502
            raise web.HTTPError(status, e.message) from None
        except OSError as e:
            raise web.HTTPError(502, f"course service unreachable: {e}") from None

    def send(self, data: Any) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data, ensure_ascii=False))


class CoursesHandler(_CourseAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.send({"courses": await self._call(self._client().courses())})


class CurrentCourseHandler(_CourseAPIHandler):
    """The course this session was started with, its stages and the owner's progress."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        course_id = self.backend.course_id
        if not course_id:
            self.send({"course_id": None, "course": None, "progress": None})
            return
        client = self._client()
        course, progress = await asyncio.gather(
            self._call(client.course(course_id)), self._call(client.progress(course_id))
        )
        self.send({"course_id": course_id, "course": course, "progress": progress})


class CourseHandler(_CourseAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, course_id: str) -> None:
        self.send(await self._call(self._client().course(course_id)))


class ProgressHandler(_CourseAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, course_id: str) -> None:
        self.send(await self._call(self._client().progress(course_id)))


class AnswerHandler(_CourseAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, course_id: str, quiz_id: str) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPError(400, "request body must be JSON") from None
        answer = body.get("answer") if isinstance(body, dict) else None
        if not isinstance(answer, str):
            raise web.HTTPError(400, '"answer" must be a string')
        result = await self._call(self._client().answer(course_id, quiz_id, answer))
        await self.backend.after_change(course_id, result.get("progress", {}))
        self.send(result)


class EventsHandler(_CourseAPIHandler):
    """Server-sent events: ``event: progress`` with the progress JSON whenever it changes.

    Backed by the service's long-poll, so changes made anywhere (a quiz answer in
    another tab, a tutor marker in the terminal) arrive within a moment.
    """

    _closed = False

    def on_connection_close(self) -> None:
        self._closed = True

    @web.authenticated
    @authorized
    async def get(self, course_id: str) -> None:
        client = self._client()
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")
        version = -1
        last = None
        try:
            while not self._closed:
                try:
                    progress = await client.progress(course_id, wait=POLL_WAIT, since=version)
                except ProgressAPIError as e:
                    if e.status in (401, 403, 404):
                        self.write(f"event: error\ndata: {json.dumps(e.message)}\n\n")
                        await self.flush()
                        return
                    await asyncio.sleep(3)
                    progress = None
                except OSError:
                    await asyncio.sleep(3)
                    progress = None
                if progress is not None:
                    version = int(progress.get("version", -1))
                    progress.pop("version", None)
                    payload = json.dumps(progress, ensure_ascii=False, sort_keys=True)
                    if payload != last:
                        last = payload
                        self.write(f"event: progress\ndata: {payload}\n\n")
                        await self.after_progress(course_id, progress)
                self.write(": keep-alive\n\n")
                await self.flush()
        except StreamClosedError:
            return

    async def after_progress(self, course_id: str, progress: dict[str, Any]) -> None:
        await self.backend.after_change(course_id, progress)


#: image types the asset proxy passes on, by their first bytes (the service checks the same)
_IMAGE_MAGIC: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}


class AssetHandler(_CourseAPIHandler):
    """A course image, fetched from the service with this server's token.

    The page's ``<img>`` cannot send the server's token, and the service is another origin
    in tests and with subdomains, so the page loads images through its own server. The
    service does every check (path inside the repository, raster type by content, size
    cap); this proxy passes on only what it answered as an image, and nothing else.
    """

    @web.authenticated
    @authorized
    async def get(self, course_id: str, path: str) -> None:
        if any(part in ("", ".", "..") for part in path.split("/")) or "\\" in path:
            raise web.HTTPError(404, "not a path inside the course repository")
        self._client()  # 503 when the service is not configured
        headers = {"Authorization": f"token {self.backend.token}"}
        etag = self.request.headers.get("If-None-Match")
        if etag:
            headers["If-None-Match"] = etag
        url = (
            f"{self.backend.progress_url.rstrip('/')}/api/courses/{quote(course_id)}"
            f"/assets/{quote(path, safe='/')}"
        )
        try:
            resp = await AsyncHTTPClient().fetch(
                url, headers=headers, raise_error=False, follow_redirects=False
            )
        except OSError as e:
            raise web.HTTPError(502, f"course service unreachable: {e}") from None
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "default-src 'none'")
        if resp.code == 304:
            self.set_status(304)
            self.finish()
            return
        if resp.code != 200:
            raise web.HTTPError(resp.code if 400 <= resp.code < 600 else 502, "image refused")
        mime = resp.headers.get("Content-Type", "")
        if not resp.body.startswith(_IMAGE_MAGIC.get(mime, (b"\0invalid",))):
            raise web.HTTPError(502, "the course service answered with something not an image")
        for name in ("ETag", "Last-Modified", "Cache-Control"):
            if name in resp.headers:
                self.set_header(name, resp.headers[name])
        self.finish(resp.body, set_content_type=mime)


#: relative patterns: ExtensionApp.initialize_handlers prefixes them with base_url
default_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (r"/claude/api/courses", CoursesHandler),
    (r"/claude/api/course", CurrentCourseHandler),
    (rf"/claude/api/courses/{COURSE_ID}", CourseHandler),
    (rf"/claude/api/courses/{COURSE_ID}/progress", ProgressHandler),
    (rf"/claude/api/courses/{COURSE_ID}/quizzes/([^/]{{1,255}})/answer", AnswerHandler),
    (rf"/claude/api/courses/{COURSE_ID}/events", EventsHandler),
    (rf"/claude/api/courses/{COURSE_ID}/assets/(.{{1,1024}})", AssetHandler),
]
