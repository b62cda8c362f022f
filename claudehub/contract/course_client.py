"""Client helpers for the course+progress service, used by the other parts.

- the spawners call :func:`fetch_course_bundle` at spawn time (local mode) or in an init
  container (Kubernetes) to fill ``CLAUDEHUB_COURSE_DIR``;
- the launcher may call :func:`resume_hint` (or read ``.learner/RESUME.md`` in the
  course folder) to tell Claude where the learner resumes;
- the server extension's course handlers use :class:`ProgressClient`.

``service_url`` is the service's base URL (``CLAUDEHUB_PROGRESS_URL``, e.g.
``http://127.0.0.1:8081/services/progress/``); ``token`` is a hub API token whose
owner is the learner (the single-user server's ``JUPYTERHUB_API_TOKEN`` or a token the
hub minted for that user). The service resolves it to the user with the hub.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

LEARNER_DIR = ".learner"


class ProgressAPIError(Exception):
    """The service answered with an error (``status``, ``message`` from its JSON)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ProgressClient:
    """A small async client of the service's REST API (see docs/api.md)."""

    def __init__(self, service_url: str, token: str, *, request_timeout: float = 30.0) -> None:
        self.api = service_url.rstrip("/") + "/api/"
        self.token = token
        self.request_timeout = request_timeout

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bool = False,
        request_timeout: float | None = None,
        long_poll: bool = False,
    ) -> Any:
        req = HTTPRequest(
            self.api + path,
            method=method,
            headers={
                "Authorization": f"token {self.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            body=json.dumps(body) if body is not None else (b"" if method == "POST" else None),
            request_timeout=request_timeout or self.request_timeout,
            follow_redirects=False,
        )
        # A long poll gets its own client: the shared one allows only 10 requests at a
        # time per loop, and waiting polls must never queue a learner's quiz answer.
        http = AsyncHTTPClient(force_instance=True) if long_poll else AsyncHTTPClient()
        try:
            resp = await http.fetch(req)
        except HTTPClientError as e:
            message = e.message or ""
            if e.response is not None and e.response.body:
                try:
                    message = json.loads(e.response.body).get("message", message)
                except (ValueError, AttributeError):
                    pass
            raise ProgressAPIError(e.code, message) from None
        finally:
            if long_poll:
                http.close()
        if raw:
            return resp.body
        return json.loads(resp.body)

    async def courses(self) -> list[dict[str, Any]]:
        data = await self.request("GET", "courses")
        return list(data["courses"])

    async def course(self, course_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"courses/{quote(course_id)}"))

    async def progress(
        self, course_id: str, *, wait: float | None = None, since: int | None = None
    ) -> dict[str, Any]:
        path = f"progress/{quote(course_id)}"
        timeout = None
        if wait is not None:
            path += f"?wait={wait:g}&since={since if since is not None else -1}"
            timeout = wait + self.request_timeout
        return dict(
            await self.request("GET", path, request_timeout=timeout, long_poll=wait is not None)
        )

    async def answer(self, course_id: str, quiz_id: str, answer: str) -> dict[str, Any]:
        path = f"courses/{quote(course_id)}/quizzes/{quote(quiz_id, safe='')}/answer"
        return dict(await self.request("POST", path, {"answer": answer}))

    async def tutor_completion(self, course_id: str, stage: int | None) -> dict[str, Any]:
        """Record a tutor marker: ``stage`` N, or None for the whole course."""
        body: dict[str, Any] = (
            {"marker": "course"} if stage is None else {"stage": stage, "method": "tutor"}
        )
        return dict(await self.request("POST", f"courses/{quote(course_id)}/completions", body))

    async def bundle(self, course_id: str) -> bytes:
        data = await self.request("GET", f"courses/{quote(course_id)}/bundle", raw=True)
        return bytes(data)


def _chmod_tree(root: Path, writable: bool) -> None:
    """Make ``root`` read-only (files 0444, dirs 0555; .learner/ stays 0755) or writable."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath, name)
            if not p.is_symlink():
                p.chmod(0o644 if writable else 0o444)
        for name in dirnames:
            p = Path(dirpath, name)
            if not p.is_symlink():
                keep = p == root / LEARNER_DIR
                p.chmod(0o755 if writable or keep else 0o555)
    root.chmod(0o755 if writable else 0o555)


def _remove_tree(path: Path) -> None:
    if path.exists():
        _chmod_tree(path, writable=True)
        shutil.rmtree(path)


class UnsafeBundleError(ValueError):
    """A bundle member would land outside the course folder or is not a plain file."""


def _extract(tar: tarfile.TarFile, dest: Path) -> None:
    """Extract with the "data" filter: no absolute paths, no ``..``, no device files, no
    links leaving the tree, no set-uid bits.

    Python 3.11.4 added the filter; the sandbox image runs Debian bookworm's 3.11.2, where
    the same rules are applied here, stricter still (only folders and regular files)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    members = []
    for member in tar.getmembers():
        parts = Path(member.name).parts
        if member.name.startswith("/") or ".." in parts:
            raise UnsafeBundleError(f"bundle member {member.name!r} leaves the course folder")
        if not (member.isfile() or member.isdir()):
            raise UnsafeBundleError(f"bundle member {member.name!r} is not a file or folder")
        member.mode &= 0o755
        member.uid = member.gid = 0
        member.uname = member.gname = ""
        members.append(member)
    tar.extractall(dest, members=members)  # every member checked above


def unpack_bundle(data: bytes, dest_dir: Path) -> Path:
    """Unpack a bundle into ``dest_dir`` (replacing it), read-only. Blocking."""
    dest_dir = Path(dest_dir)
    if dest_dir.is_dir() and os.path.ismount(dest_dir):
        # a volume mount point (e.g. an init container's emptyDir) cannot be swapped
        # by rename: empty it and unpack in place
        dest_dir.chmod(0o755)
        for child in dest_dir.iterdir():
            if child.is_dir() and not child.is_symlink():
                _remove_tree(child)
            else:
                child.unlink()
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            _extract(tar, dest_dir)
        _chmod_tree(dest_dir, writable=False)
        return dest_dir
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".course-", dir=dest_dir.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            _extract(tar, tmp)
        _chmod_tree(tmp, writable=False)
        _remove_tree(dest_dir)
        tmp.rename(dest_dir)
    except BaseException:
        _remove_tree(tmp)
        raise
    return dest_dir


def unpack_draft(data: bytes, dest_dir: Path) -> Path:
    """Unpack an author session's draft bundle (``GET api/drafts/<id>/bundle``) into
    ``dest_dir``, writable, under the same rules as a course bundle. Blocking.

    ``dest_dir`` appears only once it is complete (unpacked beside it, then renamed), so a
    program waiting for it (the launcher) never starts on half a draft; it must not exist.
    """
    dest_dir = Path(dest_dir)
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".draft-", dir=dest_dir.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            _extract(tar, tmp)
        _chmod_tree(tmp, writable=True)
        tmp.rename(dest_dir)
    except BaseException:
        _remove_tree(tmp)
        raise
    return dest_dir


async def fetch_course_bundle(
    service_url: str, token: str, course_id: str, dest_dir: str | os.PathLike[str]
) -> Path:
    """Download ``course_id``'s bundle (answers removed, with the learner's
    ``.learner/progress.json`` and ``.learner/RESUME.md``) and unpack it read-only
    into ``dest_dir``. Returns the folder."""
    data = await ProgressClient(service_url, token).bundle(course_id)
    return await asyncio.to_thread(unpack_bundle, data, Path(dest_dir))


async def list_courses(service_url: str, token: str) -> list[dict[str, Any]]:
    """Course cards (id, title, description, paper card data) for a spawn form."""
    return await ProgressClient(service_url, token).courses()


async def resume_hint(service_url: str, token: str, course_id: str) -> str:
    """A short text telling Claude where the learner resumes (for an appended prompt)."""
    data = await ProgressClient(service_url, token).progress(course_id)
    return str(data.get("resume_hint", ""))


def write_progress_snapshot(course_dir: str | os.PathLike[str], snapshot: dict[str, Any]) -> bool:
    """Replace ``.learner/progress.json`` in an unpacked course folder (atomically).

    Returns False (and changes nothing) when the folder has no writable ``.learner/``.
    """
    learner = Path(course_dir) / LEARNER_DIR
    if not learner.is_dir() or not os.access(learner, os.W_OK):
        return False
    fd, tmp = tempfile.mkstemp(prefix=".progress-", dir=learner)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(snapshot, f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.chmod(tmp, 0o444)
        os.replace(tmp, learner / "progress.json")
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        return False
    return True
