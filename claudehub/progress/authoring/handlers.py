"""The authoring API under ``{prefix}api/drafts`` (docs/api.md, "Course authoring").

Every route takes a hub token (``Authorization: token ...``; the author sandbox's server
token works), and answers 403 unless the hub says the caller instructs some class
(:mod:`.access`): learners are refused everywhere. A draft is its creator's alone (403 for
another instructor's). Errors are ``{"error": "...", "status": N}``; a refused publish adds
the checker's ``errors``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tornado import httputil, web

from ..assets import DEFAULT_MAX_ASSET_BYTES, MAX_ASSET_SETTING, AssetRefused, read_asset
from ..handlers import BaseHandler, asset_signer
from ..render import ImageLinks
from .access import HubPeople, PeopleUnavailable, Person
from .config import Authoring
from .drafts import DRAFT_ID, Draft, DraftError, DraftStore
from .extract import check_pdf
from .intake import IntakeError, fetch_paper, parse_networks
from .isolate import extract_isolated
from .preview import (
    DRAFT_ASSET_KEY,
    check_draft,
    draft_asset_path,
    draft_links,
    judge_draft,
    preview_of,
)
from .publish import Publisher, PublishError

log = logging.getLogger(__name__)

#: room for a multipart envelope around the largest paper
_MULTIPART_SLACK = 64 * 1024
MAX_JSON_BODY = 64 * 1024


@dataclass
class AuthoringRuntime:
    """What the handlers share: the settings, drafts, publisher and the hub's answers."""

    settings: Authoring
    drafts: DraftStore
    publisher: Publisher
    people: HubPeople

    async def course_filter(self, user: str, admin: bool) -> Callable[[str], bool]:
        """Which course ids ``user`` sees (:meth:`Publisher.may_see`); asks the hub only
        while some course is restricted. A hub that does not answer hides them."""
        publisher = self.publisher
        if not publisher.restricted() or admin:
            return lambda _course_id: True
        try:
            person: Person | None = await self.people.person(user)
        except PeopleUnavailable as e:
            log.warning("Published courses hidden from %s: %s", user, e)
            person = None
        return lambda course_id: publisher.may_see(course_id, person)


class _AuthorHandler(BaseHandler):
    """An instructor's request; ``self.person`` is who the hub says they are."""

    person: Person
    body_limit = MAX_JSON_BODY

    @property
    def authoring(self) -> AuthoringRuntime:
        runtime: AuthoringRuntime | None = self.settings.get("claudehub_authoring")
        if runtime is None:
            raise web.HTTPError(404, "course authoring is not enabled on this hub")
        return runtime

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        extra: dict[str, Any] = {}
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message
        if isinstance(exc, PublishError):
            message = exc.message
            extra["errors"] = exc.errors
        self.set_header("Content-Type", "application/json; charset=utf-8")
        # "message" too: what the course service's other errors and its Python client use
        body = {"error": message, "message": message, "status": status_code, **extra}
        self.finish(json.dumps(body))

    def _handle_request_exception(self, e: BaseException) -> None:
        # a refused publish answers with its own status and the checker's errors
        if isinstance(e, PublishError):
            if not self._finished:
                self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

    def fail(self, status: int, message: str) -> web.HTTPError:
        return web.HTTPError(status, message.replace("%", "%%"))

    async def prepare(self) -> None:
        runtime = self.authoring
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self.body_limit:
            raise self.fail(413, f"the request body is larger than {self.body_limit} bytes")
        set_max = getattr(self.request.connection, "set_max_body_size", None)
        if set_max is not None:
            set_max(self.body_limit)
        await super().prepare()
        try:
            self.person = await runtime.people.person(self.user_name)
        except PeopleUnavailable as e:
            raise self.fail(503, str(e)) from None
        if not self.person.is_author:
            raise web.HTTPError(403, "only instructors author courses")

    async def draft(self, draft_id: str) -> Draft:
        try:
            return await self.authoring.drafts.get(draft_id, self.user_name)
        except DraftError as e:
            raise self.fail(e.status, e.message) from None

    def links(self, draft: Draft) -> ImageLinks:
        """Signed links to ``draft``'s images, for its preview."""
        prefix = self.settings["claudehub_prefix"]
        return draft_links(prefix, draft.id, asset_signer(self), time.time())

    def published(self, draft: Draft) -> list[dict[str, Any]]:
        return [
            {"course": p.course_id, "version": p.version, "classes": list(p.classes)}
            for p in self.authoring.publisher.of_draft(draft.id)
        ]


@web.stream_request_body
class DraftsHandler(_AuthorHandler):
    """``POST api/drafts`` (a paper: upload or URL), ``GET api/drafts`` (the caller's)."""

    def initialize(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0

    async def prepare(self) -> None:
        if self.request.method == "POST":
            self.body_limit = self.authoring.settings.max_upload_bytes + _MULTIPART_SLACK
        await super().prepare()

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= self.body_limit:
            self._chunks.append(chunk)

    async def get(self) -> None:
        drafts = await self.authoring.drafts.list_for(self.user_name)
        self.send(
            {
                "drafts": [
                    {
                        "id": d.id,
                        "title": d.title,
                        "created": d.created,
                        "updated": d.updated,
                        "paper": d.paper,
                        "published": self.published(d),
                    }
                    for d in drafts
                ],
                # the classes a course may be published for (the publish form's choices)
                "classes": sorted(self.person.instructs),
            }
        )

    async def post(self) -> None:
        cfg = self.authoring.settings
        if self._size > self.body_limit:
            raise self.fail(413, f"the paper is larger than {cfg.max_upload_bytes} bytes")
        body = b"".join(self._chunks)
        args: dict[str, list[bytes]] = {}
        files: dict[str, list[httputil.HTTPFile]] = {}
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            httputil.parse_body_arguments(content_type, body, args, files)
        else:
            raise self.fail(415, "send multipart/form-data with a 'paper' file or a 'url' field")
        title = args["title"][0].decode("utf-8", "replace").strip()[:200] if "title" in args else ""
        url = args["url"][0].decode("utf-8", "replace").strip() if "url" in args else ""
        try:
            if files.get("paper"):
                data = files["paper"][0].body
                source = {"kind": "upload", "filename": files["paper"][0].filename[:255]}
            elif url:
                data = await fetch_paper(
                    url,
                    max_bytes=cfg.max_upload_bytes,
                    time_limit=cfg.fetch_timeout,
                    max_redirects=cfg.max_redirects,
                    allowed=parse_networks(cfg.fetch_allowed_networks),
                )
                source = {"kind": "url", "url": url[:2000]}
            else:
                raise IntakeError(400, "send a 'paper' file (a PDF) or a 'url' to fetch it from")
            check_pdf(data, cfg.max_upload_bytes)  # cheap refusals before a process starts
            paper = await extract_isolated(
                data,
                max_bytes=cfg.max_upload_bytes,
                max_pages=cfg.max_pages,
                max_figures=cfg.max_figures,
                title=title,
                source=source,
                time_limit=cfg.extract_timeout,
                memory_limit=cfg.extract_memory_bytes,
            )
        except IntakeError as e:
            log.info("Paper refused for %s: %s", self.user_name, e.message)
            raise self.fail(e.status, e.message) from None
        draft = await self.authoring.drafts.create(
            self.user_name, paper.title, paper.summary(), paper.files
        )
        log.info(
            "Draft %s created by %s (%d pages, %d figures)",
            draft.id, self.user_name, paper.pages, len(paper.figures),
        )  # fmt: skip
        self.set_status(201)
        self.send({"id": draft.id, "title": draft.title, "paper": paper.summary()})


class DraftHandler(_AuthorHandler):
    """``GET api/drafts/<id>``: the draft, its check and its preview as last saved."""

    async def get(self, draft_id: str) -> None:
        draft = await self.draft(draft_id)
        course_id = self.authoring.publisher.default_course_id(draft)
        checked = await asyncio.to_thread(check_draft, draft.files, course_id)
        self.send(
            {
                **draft.as_dict(),
                "course": course_id,
                "published": self.published(draft),
                "check": checked.report(),
                "preview": preview_of(checked, self.links(draft)),
            }
        )


class DraftBundleHandler(_AuthorHandler):
    """``GET api/drafts/<id>/bundle``: the draft folder as last saved (tar.gz)."""

    async def get(self, draft_id: str) -> None:
        draft = await self.draft(draft_id)
        data = await self.authoring.drafts.bundle(draft)
        self.set_header("Content-Type", "application/gzip")
        self.set_header("Content-Disposition", f'attachment; filename="draft-{draft.id}.tar.gz"')
        self.finish(data)


@web.stream_request_body
class DraftFilesHandler(_AuthorHandler):
    """``PUT api/drafts/<id>/files``: save the draft folder, answer its check and preview."""

    def initialize(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0

    async def prepare(self) -> None:
        # compressed size: the unpacked size is capped by max_draft_bytes while unpacking
        self.body_limit = self.authoring.settings.max_draft_bytes
        await super().prepare()

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= self.body_limit:
            self._chunks.append(chunk)

    async def put(self, draft_id: str) -> None:
        draft = await self.draft(draft_id)
        cfg = self.authoring.settings
        if self._size > self.body_limit:
            raise self.fail(413, f"the draft is larger than {self.body_limit} bytes")
        try:
            skipped = await self.authoring.drafts.save_files(
                draft,
                b"".join(self._chunks),
                max_bytes=cfg.max_draft_bytes,
                max_files=cfg.max_draft_files,
            )
        except DraftError as e:
            raise self.fail(e.status, e.message) from None
        course_id = self.authoring.publisher.default_course_id(draft)
        checked = await asyncio.to_thread(check_draft, draft.files, course_id)
        self.send(
            {
                "check": checked.report(),
                "preview": preview_of(checked, self.links(draft)),
                "skipped": skipped,
                "updated": draft.updated,
            }
        )


class DraftJudgeHandler(_AuthorHandler):
    """``POST api/drafts/<id>/judge``: judge an answer against the last saved draft."""

    async def post(self, draft_id: str) -> None:
        draft = await self.draft(draft_id)
        body = self.body_json()
        quiz, answer = body.get("quiz"), body.get("answer")
        if not isinstance(quiz, str) or not quiz:
            raise web.HTTPError(400, '"quiz" must be a quiz id')
        if not isinstance(answer, str) or not answer.strip() or len(answer) > 10_000:
            raise web.HTTPError(400, '"answer" must be a non-empty string')
        checked = await asyncio.to_thread(
            check_draft, draft.files, self.authoring.publisher.default_course_id(draft)
        )
        if checked.course is None:
            raise PublishError(
                422, "the draft has errors: its quizzes cannot be judged", checked.errors
            )
        try:
            self.send(judge_draft(checked.course, quiz, answer))
        except KeyError:
            raise self.fail(404, f"no quiz {quiz!r} in the draft") from None


class DraftPublishHandler(_AuthorHandler):
    """``POST api/drafts/<id>/publish``: a new version for the chosen classes."""

    async def post(self, draft_id: str) -> None:
        draft = await self.draft(draft_id)
        body = self.body_json()
        classes = body.get("classes")
        if (
            not isinstance(classes, list)
            or not classes
            or not all(isinstance(c, str) and c for c in classes)
        ):
            raise web.HTTPError(400, '"classes" must be a non-empty list of class names')
        refused = sorted(set(classes) - self.person.instructs)
        if refused:
            raise self.fail(403, f"you do not instruct {', '.join(refused)}")
        runtime = self.authoring
        course_id = body.get("course") or runtime.publisher.default_course_id(draft)
        if not isinstance(course_id, str):
            raise web.HTTPError(400, '"course" must be a course id')
        async with runtime.drafts.lock(draft.id):
            new, answer = await runtime.publisher.publish(
                self.state.catalogue, draft, self.person, sorted(set(classes)), course_id
            )
            self.state.catalogue = new
        self.send(answer)


class DraftAssetHandler(web.RequestHandler):
    """``GET api/drafts/<id>/assets/<path>``: an image of a draft, for its preview.

    Only by a URL the service signed (the preview it gave the draft's owner carries them,
    :func:`.preview.draft_links`), so a plain ``<img>`` on the author's page loads it; the
    checks are the course images' (:func:`claudehub.progress.assets.read_asset`).
    """

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "default-src 'none'")
        self.set_header("Cross-Origin-Resource-Policy", "same-origin")
        self.set_header("Cache-Control", "no-store")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": message, "status": status_code}))

    async def get(self, draft_id: str, path: str) -> None:
        runtime: AuthoringRuntime | None = self.settings.get("claudehub_authoring")
        if runtime is None:
            raise web.HTTPError(404, "course authoring is not enabled on this hub")
        expires = self.get_query_argument("exp", "")
        sig = self.get_query_argument("sig", "")
        if not asset_signer(self).verify(
            DRAFT_ASSET_KEY + draft_id, path, expires, sig, time.time()
        ):
            raise web.HTTPError(403, "a draft's images are served by signed URL only")
        root = runtime.drafts.root / draft_id / "files"
        max_bytes = int(self.settings.get(MAX_ASSET_SETTING, DEFAULT_MAX_ASSET_BYTES))
        try:
            asset = await asyncio.to_thread(read_asset, root, draft_asset_path(path), max_bytes)
        except AssetRefused as e:
            raise web.HTTPError(e.status, e.reason.replace("%", "%%")) from None
        self.set_header("Content-Type", asset.content_type)
        self.finish(asset.data)


def authoring_handlers(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """URL patterns of the authoring API under ``prefix``."""
    api = prefix.rstrip("/") + "/api/drafts"
    return [
        (rf"{api}", DraftsHandler),
        (rf"{api}/{DRAFT_ID}", DraftHandler),
        (rf"{api}/{DRAFT_ID}/bundle", DraftBundleHandler),
        (rf"{api}/{DRAFT_ID}/files", DraftFilesHandler),
        (rf"{api}/{DRAFT_ID}/judge", DraftJudgeHandler),
        (rf"{api}/{DRAFT_ID}/publish", DraftPublishHandler),
        (rf"{api}/{DRAFT_ID}/assets/(.{{1,1024}})", DraftAssetHandler),
    ]
