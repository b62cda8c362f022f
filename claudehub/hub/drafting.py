"""The hub's side of course authoring (docs/authoring.md): "New course from a paper" and
"Continue draft".

The home page shows instructors a form (a PDF to upload, or a URL) that posts here, to
``POST /hub/claudehub/drafts``, with the hub's own login cookie and xsrf token (the course
service's API takes tokens only). This handler checks the user instructs a class, hands the
paper on to the course service's ``POST api/drafts`` as the user (the short-lived token the
home page's course summary uses: it can reach the course service and nothing else), and
sends the browser on to ``/hub/spawn/<user>?draft=<id>``, which starts the author session
(the spawner checks again). "Continue draft" posts ``draft=<id>`` here too. Either way a
running session (a course, another draft) is stopped first, as choosing another course does;
the same draft already running is simply opened. A refusal of the course service (not a PDF, encrypted, too big,
a private URL...) is shown on the hub's error page with the service's own words.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

from jupyterhub.handlers import BaseHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

#: Where the form posts (under the hub's prefix).
DRAFTS_ROUTE = r"/claudehub/drafts"
#: Seconds the course service may take to fetch and extract a paper.
CREATE_TIMEOUT = 180.0


def multipart_body(
    fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]
) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body and its content type."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for name, (filename, data, ctype) in files.items():
        safe = filename.replace('"', "").replace("\r", "").replace("\n", "") or "paper.pdf"
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{safe}"\r\nContent-Type: {ctype}\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class NewDraftHandler(BaseHandler):  # type: ignore[misc]
    """``POST /hub/claudehub/drafts``: a new draft from a paper, then its author session."""

    @web.authenticated
    async def post(self) -> None:
        user = self.current_user
        spawner = user.spawner
        classes: list[str] = getattr(spawner, "instructed_classes", list)()
        if not classes:
            raise web.HTTPError(
                403, "Only instructors can write courses: you instruct no class on this hub"
            )
        progress_url = getattr(spawner, "progress_url", "")
        if not progress_url:
            raise web.HTTPError(503, "There is no course service on this hub")
        draft_id = self.get_body_argument("draft", "").strip()
        if draft_id:  # "Continue draft": no paper to hand on
            await self._open(user, draft_id)
            return
        fields: dict[str, str] = {}
        files: dict[str, tuple[str, bytes, str]] = {}
        title = self.get_body_argument("title", "").strip()
        url = self.get_body_argument("url", "").strip()
        uploads = self.request.files.get("paper") or []
        upload = next((f for f in uploads if f.body), None)
        if upload is not None and url:
            raise web.HTTPError(400, "Give the paper as a PDF file or as a URL, not both")
        if upload is not None:
            files["paper"] = (upload.filename, upload.body, "application/pdf")
        elif url:
            fields["url"] = url
        else:
            raise web.HTTPError(400, "Choose the paper's PDF file, or give its URL")
        if title:
            fields["title"] = title
        body, ctype = multipart_body(fields, files)
        token = spawner._course_service_token()
        request = HTTPRequest(
            progress_url.rstrip("/") + "/api/drafts",
            method="POST",
            headers={"Authorization": f"token {token}", "Content-Type": ctype},
            body=body,
            request_timeout=CREATE_TIMEOUT,
            follow_redirects=False,
        )
        try:
            resp = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as e:
            raise web.HTTPError(
                e.code if 400 <= e.code < 500 else 502,
                f"The course service did not make the draft: {service_error(e)}",
            ) from None
        except OSError as e:
            self.log.warning("the course service is unreachable: %s", e)
            raise web.HTTPError(502, "The course service cannot be reached right now") from None
        draft = json.loads(resp.body)
        self.log.info("draft %s made for %s", draft.get("id"), user.name)
        await self._open(user, str(draft["id"]))

    async def _open(self, user: Any, draft_id: str) -> None:
        """Start the author session on ``draft_id`` (the spawner checks it is theirs)."""
        spawner = user.spawner
        if spawner.active:
            if getattr(spawner, "draft_id", "") == draft_id and spawner.ready:
                self.redirect(user.url)
                return
            # one server per user: the running session ends first (its progress is kept)
            await self.stop_single_user(user, spawner.name)
        self.redirect(f"{self.hub.base_url}spawn/{user.escaped_name}?draft={quote(draft_id)}")


def service_error(error: HTTPClientError) -> str:
    """The course service's own words for a refusal (its ``{"error": ...}``)."""
    if error.response is not None and error.response.body:
        try:
            data = json.loads(error.response.body)
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("error"):
            return str(data["error"])
    return str(error.message or error.code)


def configure_authoring(c: Any) -> None:
    """Register the "New course from a paper" handler on the hub (both modes)."""
    handlers = list(c.JupyterHub.get("extra_handlers", []))
    if all(h[0] != DRAFTS_ROUTE for h in handlers):
        handlers.append((DRAFTS_ROUTE, NewDraftHandler))
    c.JupyterHub.extra_handlers = handlers
