"""An author session's draft: kept in step with the course service, checked, previewed,
judged and published (docs/authoring.md, the API in docs/api.md).

The sandbox holds a scratch copy of the draft in ``CLAUDEHUB_DRAFT_DIR``, the one folder its
Claude may write. :class:`DraftBackend` makes it from the course service's copy as the server
starts (``GET api/drafts/<id>/bundle``; the folder appears whole, by a rename, so the launcher,
which waits for it, never starts Claude on half a draft), then watches it: a moment after
files stop changing it sends the folder back (``PUT api/drafts/<id>/files``), and keeps what
the service answered (the check's errors and warnings, the preview the learner's panels
render). The page long-polls that state, asks for a check now, has quizzes judged against the
saved draft and publishes (a save first, so what is published is what Claude last wrote).

The course service is called with the server's own hub token, which it resolves to the
instructor; it decides who is an author, and whose draft this is, itself.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import shutil
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from claudehub.contract.course_client import unpack_draft
from claudehub.contract.hub import AUTH_RESOURCE

log = logging.getLogger(__name__)

#: tornado settings: this server's DraftBackend (None in a learner's session)
DRAFT_BACKEND_SETTING = "claudehub_draft_backend"
#: the course service's own part of the draft: not sent back (it keeps its copy anyway)
SERVICE_OWNED = ("paper",)
#: seconds one long poll of the page waits for a new state
POLL_WAIT = 25.0


class DraftAPIError(Exception):
    """The course service refused a draft call: ``status``, its ``message`` and any
    checker ``errors`` it named."""

    def __init__(self, status: int, message: str, errors: list[Any] | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.errors = errors or []


@dataclass
class DraftBackend:
    """This author session's draft: the folder, the service's copy and the last check."""

    progress_url: str
    token: str
    draft_id: str
    draft_dir: str
    #: seconds between two looks at the folder
    watch_interval: float = 1.0
    #: the largest draft sent back (compressed), as the service's ``max_draft_bytes``
    max_bytes: int = 50 * 1024 * 1024
    state: dict[str, Any] = field(default_factory=dict)
    _version: int = 0
    _changed: asyncio.Event | None = None
    _lock: asyncio.Lock | None = None
    _saved_signature: tuple[Any, ...] | None = None
    #: the files as they were when a save failed: tried again once they change (or on Check)
    _failed_signature: tuple[Any, ...] | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.state = {"ready": False, "saving": False, "error": None, "check": None}

    # -- the folder ------------------------------------------------------------------

    def clear(self) -> None:
        """Remove an earlier copy of the draft (blocking; at server start, before anything
        runs in it): the service's copy is the durable one, and the launcher must not start
        Claude in a folder that is about to be replaced."""
        path = Path(self.draft_dir)
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)

    def signature(self) -> tuple[Any, ...]:
        """What the draft's files are now (name, size, modification time), ``paper/`` aside."""
        root = Path(self.draft_dir)
        entries = []
        for rel, full in _draft_files(root):
            try:
                st = full.stat()
            except OSError:
                continue
            entries.append((rel, st.st_size, st.st_mtime_ns))
        return tuple(sorted(entries))

    def archive(self) -> bytes:
        """The draft folder as the ``PUT .../files`` body: a gzipped tar of its folders and
        regular files (no links, ``paper/`` left to the service). Blocking."""
        buf = io.BytesIO()
        root = Path(self.draft_dir)
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for rel, full in _draft_files(root):
                info = tar.gettarinfo(str(full), arcname=rel)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                with full.open("rb") as f:
                    tar.addfile(info, f)
        return buf.getvalue()

    # -- the course service ------------------------------------------------------------

    async def _call(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> Any:
        url = f"{self.progress_url.rstrip('/')}/api/drafts/{quote(self.draft_id)}{path}"
        headers = {"Authorization": f"token {self.token}", "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        request = HTTPRequest(
            url,
            method=method,
            headers=headers,
            body=body if body is not None else (b"" if method in ("POST", "PUT") else None),
            request_timeout=120,
            follow_redirects=False,
        )
        try:
            resp = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as e:
            data: Any = None
            if e.response is not None and e.response.body:
                try:
                    data = json.loads(e.response.body)
                except ValueError:
                    data = None
            data = data if isinstance(data, dict) else {}
            message = str(data.get("error") or data.get("message") or e.message or "refused")
            errors = data.get("errors") if isinstance(data.get("errors"), list) else None
            raise DraftAPIError(e.code, message, errors) from None
        if resp.headers.get("Content-Type", "").startswith("application/json"):
            return json.loads(resp.body)
        return resp.body

    # -- start, watch, save --------------------------------------------------------------

    def start(self) -> None:
        """Fetch the draft, then watch it (in a task of its own)."""
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()
        task = asyncio.get_running_loop().create_task(self._run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        try:
            data = await self._call("GET", "/bundle")
            await asyncio.to_thread(unpack_draft, bytes(data), Path(self.draft_dir))
        except DraftAPIError as e:
            self._update(error=f"The draft could not be fetched: {e.message}")
            log.warning("fetching draft %s failed: %s", self.draft_id, e)
            return
        except (OSError, ValueError, tarfile.TarError) as e:
            self._update(error=f"The draft could not be fetched: {e}")
            log.warning("fetching draft %s failed: %s", self.draft_id, e)
            return
        self._saved_signature = await asyncio.to_thread(self.signature)
        self._update(ready=True)
        await self.save()  # the first check and preview
        last = self._saved_signature
        while True:
            await asyncio.sleep(self.watch_interval)
            now = await asyncio.to_thread(self.signature)
            # saved once the files have stood still for one interval: Claude writes a file
            # at a time, and a course is several files
            if now == last and now not in (self._saved_signature, self._failed_signature):
                await self.save()
            last = now

    async def save(self) -> dict[str, Any]:
        """Send the folder to the course service and keep its check and preview."""
        assert self._lock is not None, "start() first"
        async with self._lock:
            self._update(saving=True)
            signature = await asyncio.to_thread(self.signature)
            try:
                # a file Claude removes meanwhile: the next look at the folder saves again
                body = await asyncio.to_thread(self.archive)
            except OSError as e:
                return self._failed(signature, f"The draft folder could not be read: {e}")
            try:
                if len(body) > self.max_bytes:
                    raise DraftAPIError(413, f"the draft is larger than {self.max_bytes} bytes")
                result = await self._call("PUT", "/files", body, "application/gzip")
            except DraftAPIError as e:
                return self._failed(signature, f"Saving the draft failed: {e.message}")
            except OSError as e:
                return self._failed(signature, f"The course service is unreachable: {e}")
            if not isinstance(result, dict):
                return self._failed(signature, "The course service answered something else")
            self._saved_signature = signature
            self._update(
                saving=False,
                error=None,
                check=result.get("check"),
                preview=result.get("preview"),
                skipped=result.get("skipped") or [],
                updated=result.get("updated"),
                saved_at=time.time(),
            )
            return self.snapshot()

    def _failed(self, signature: tuple[Any, ...], error: str) -> dict[str, Any]:
        self._failed_signature = signature
        self._update(saving=False, error=error)
        return self.snapshot()

    def _update(self, **changes: Any) -> None:
        self.state.update(changes)
        self._version += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    def snapshot(self) -> dict[str, Any]:
        """The state the page shows, with its version (for the long poll)."""
        return {"draft_id": self.draft_id, "version": self._version, **self.state}

    async def wait(self, since: int) -> dict[str, Any]:
        """The state, once its version is past ``since`` (the caller bounds the wait)."""
        if since == self._version and self._changed is not None:
            await self._changed.wait()
        return self.snapshot()

    async def judge(self, quiz: str, answer: str) -> dict[str, Any]:
        """A quiz of the saved draft judged as a learner's answer would be (nothing kept)."""
        body = json.dumps({"quiz": quiz, "answer": answer}).encode()
        return dict(await self._call("POST", "/judge", body, "application/json"))

    async def publish(self, classes: list[str], course: str = "") -> dict[str, Any]:
        """Save what Claude last wrote, then publish it for ``classes``."""
        await self.save()
        payload: dict[str, Any] = {"classes": classes}
        if course:
            payload["course"] = course
        result = dict(
            await self._call("POST", "/publish", json.dumps(payload).encode(), "application/json")
        )
        self._update(published=result)
        return result

    async def close(self) -> None:
        """The server stops: so do the fetch and the watcher."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _draft_files(root: Path) -> Iterator[tuple[str, Path]]:
    """The draft's regular files (relative name, path), ``paper/`` and links left out."""
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel_dir = here.relative_to(root)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d not in SERVICE_OWNED]
        dirnames[:] = [d for d in sorted(dirnames) if not (here / d).is_symlink()]
        for name in sorted(filenames):
            full = here / name
            if full.is_symlink() or not full.is_file():
                continue
            yield (rel_dir / name).as_posix(), full


class _DraftHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def backend(self) -> DraftBackend:
        backend: DraftBackend | None = self.settings.get(DRAFT_BACKEND_SETTING)
        if backend is None:
            raise web.HTTPError(404, "this session has no draft")
        return backend

    def send(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data, ensure_ascii=False))

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the body must be JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        return data

    def refused(self, e: DraftAPIError) -> None:
        status = e.status if 400 <= e.status < 600 and e.status != 599 else 502
        self.send({"message": e.message, "errors": e.errors}, status)


class DraftStateHandler(_DraftHandler):
    """``GET claude/api/draft[?since=N]``: the draft's state, after a change past version N."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        backend = self.backend
        since = self.get_argument("since", "")
        if since.lstrip("-").isdigit():
            try:
                async with asyncio.timeout(POLL_WAIT):
                    await backend.wait(int(since))
            except TimeoutError:
                pass
            self.send(backend.snapshot())
        else:
            self.send(backend.snapshot())


class DraftCheckHandler(_DraftHandler):
    """``POST claude/api/draft/check``: save and check the draft now (the page's "Check")."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        backend = self.backend
        if not backend.state.get("ready"):
            raise web.HTTPError(409, backend.state.get("error") or "the draft is not ready yet")
        self.send(await backend.save())


class DraftJudgeHandler(_DraftHandler):
    """``POST claude/api/draft/judge`` ``{"quiz", "answer"}``: judged against the saved draft."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        data = self.body()
        quiz, answer = data.get("quiz"), data.get("answer")
        if not isinstance(quiz, str) or not quiz or not isinstance(answer, str):
            raise web.HTTPError(400, "give the quiz id and the answer as strings")
        try:
            self.send(await self.backend.judge(quiz, answer))
        except DraftAPIError as e:
            self.refused(e)
        except OSError as e:
            raise web.HTTPError(502, f"course service unreachable: {e}") from None


class DraftPublishHandler(_DraftHandler):
    """``POST claude/api/draft/publish`` ``{"classes", "course"?}``: save, then publish."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        data = self.body()
        classes, course = data.get("classes"), data.get("course") or ""
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise web.HTTPError(400, "classes must be a list of class names")
        if not classes:
            raise web.HTTPError(400, "choose at least one class to publish the course for")
        if not isinstance(course, str):
            raise web.HTTPError(400, "course must be a course id")
        try:
            self.send(await self.backend.publish(classes, course))
        except DraftAPIError as e:
            self.refused(e)
        except OSError as e:
            raise web.HTTPError(502, f"course service unreachable: {e}") from None


#: relative patterns: ExtensionApp.initialize_handlers prefixes them with base_url
default_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (r"/claude/api/draft", DraftStateHandler),
    (r"/claude/api/draft/check", DraftCheckHandler),
    (r"/claude/api/draft/judge", DraftJudgeHandler),
    (r"/claude/api/draft/publish", DraftPublishHandler),
]
