"""Course authoring through the REAL JupyterHub (claudehub.hub.classes' roles) and the
course service's HTTP API: a paper in, a draft checked, previewed and judged, published for
a class, seen by that class only, republished with learners' progress kept.

Classes: "alpha" (alice; instructor tina) and "beta" (bob; instructor ben). Who is an
instructor is the hub's word (the service asks with its own token).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse
from traitlets.config import Config

from claudehub.progress.app import ProgressService
from tests.helpers import free_port

from .coursekit import PAPER, catalogue_modules, write_catalogue_course
from .imagekit import png
from .pdfkit import PAPER_LINES, encrypted, make_pdf
from .test_hub_auth import ADMIN_TOKEN, SERVICE_TOKEN, RealHub, _await_hub, _spawn_hub, _stop_hub

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MAX_UPLOAD = 300_000

HUB_CONFIG = """
c = get_config()  # noqa
from claudehub.contract.hub import service_roles
from claudehub.hub.classes import ClassSettings, configure_classes
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.auth_token = "proxy-token-0123456789abcdef"
c.JupyterHub.db_url = "sqlite:///{dir}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/cookie_secret"
c.JupyterHub.pid_file = "{dir}/hub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.extra_user_scopes = {{"access:services!service=progress"}}
c.JupyterHub.services = [
    {{"name": "progress", "url": "http://127.0.0.1:{service_port}", "api_token": "{service_token}"}},
    {{"name": "tester", "api_token": "{admin_token}"}},
]
c.JupyterHub.load_roles = [r for r in service_roles() if r["name"] == "claudehub-progress"] + [
    {{"name": "tester", "scopes": ["admin:users", "tokens"], "services": ["tester"]}},
]
configure_classes(c, ClassSettings(classes={{
    "alpha": {{"learners": ["alice"], "instructors": ["tina"]}},
    "beta": {{"learners": ["bob"], "instructors": ["ben"]}},
}}))
"""


class Service:
    """The course service behind the hub's proxy, called as one user."""

    def __init__(self, hub: RealHub, app: ProgressService, tmp: Path) -> None:
        self.hub = hub
        self.app = app
        self.tmp = tmp
        self.base = hub.public + "/services/progress/api/"
        self.tokens: dict[str, str] = {}

    async def token(self, user: str) -> str:
        if user not in self.tokens:
            self.tokens[user] = await self.hub.token_for(user)
        return self.tokens[user]

    async def call(
        self,
        user: str,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> HTTPResponse:
        headers = {"Authorization": f"token {await self.token(user)}"}
        if body is not None:
            headers["Content-Type"] = content_type
        req = HTTPRequest(
            self.base + path,
            method=method,
            headers=headers,
            body=body if body is not None else (b"" if method in ("POST", "PUT") else None),
            request_timeout=60,
        )
        return await AsyncHTTPClient().fetch(req, raise_error=False)

    async def json(self, user: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        raw = None if body is None else json.dumps(body).encode()
        resp = await self.call(user, method, path, raw)
        return resp.code, json.loads(resp.body) if resp.body else None

    async def new_draft(
        self, user: str, pdf: bytes | None = None, url: str = "", title: str = ""
    ) -> tuple[int, Any]:
        body, ctype = multipart(pdf=pdf, url=url, title=title)
        resp = await self.call(user, "POST", "drafts", body, ctype)
        return resp.code, json.loads(resp.body)

    async def put(self, user: str, draft: str, folder: Path) -> tuple[int, Any]:
        resp = await self.call(
            user, "PUT", f"drafts/{draft}/files", tar_of(folder), "application/gzip"
        )
        return resp.code, json.loads(resp.body)


def multipart(*, pdf: bytes | None, url: str = "", title: str = "") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    if pdf is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="paper"; filename="paper.pdf"'
            "\r\nContent-Type: application/pdf\r\n\r\n".encode()
            + pdf
            + b"\r\n"
        )
    for name, value in (("url", url), ("title", title)):
        if value:
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                f"{value}\r\n".encode()
            )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def tar_of(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buf.getvalue()


def untar(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def with_figure(modules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``modules`` whose first lesson shows the paper's first figure."""
    first = modules[0]["lessons"][0]
    first["content"] += "\n\n![Figure 1](paper/figures/page-1-1.png)"
    return modules


def write_draft(folder: Path, modules: Any = None) -> Path:
    """What Claude writes: the paper's card, a thumbnail and one course, "core", whose first
    lesson shows the paper's first figure."""
    folder.mkdir(parents=True, exist_ok=True)
    mods = with_figure(catalogue_modules() if modules is None else modules)
    # the card's picture: a figure of the paper, as the author instructions say
    paper = {**PAPER, "thumbnailUrl": "paper/figures/page-2-1.png"}
    write_catalogue_course(folder, "core", modules=mods, paper=paper)
    (folder / "thumbnail.png").write_bytes(png(64, 48))
    return folder


def refs(repo: Path) -> str:
    if not repo.exists():
        return ""
    return subprocess.run(
        ["git", "--git-dir", str(repo), "for-each-ref"], capture_output=True, text=True, check=True
    ).stdout


def git_tree(repo: Path) -> list[str]:
    """Every file name on the managed repository's branch."""
    return subprocess.run(
        ["git", "--git-dir", str(repo), "ls-tree", "-r", "--name-only", "main"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip


@pytest_asyncio.fixture
async def authoring_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Service]:
    ports = {
        "port": free_port(),
        "hub_port": free_port(),
        "proxy_api_port": free_port(),
        "service_port": free_port(),
    }
    hubdir = tmp_path / "hub"
    hubdir.mkdir()
    (hubdir / "jupyterhub_config.py").write_text(
        HUB_CONFIG.format(dir=hubdir, service_token=SERVICE_TOKEN, admin_token=ADMIN_TOKEN, **ports)
    )
    env = {
        **os.environ,
        "PATH": f"{REPO / 'node_modules' / '.bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    hub = RealHub(f"http://127.0.0.1:{ports['port']}", f"http://127.0.0.1:{ports['port']}/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_URL", hub.hub_api)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", SERVICE_TOKEN)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_NAME", "progress")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/services/progress/")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", f"http://127.0.0.1:{ports['service_port']}")
    catalogue = tmp_path / "catalogue"
    write_catalogue_course(catalogue / "bitcoin", "core", paper=PAPER)
    cfg = Config()
    cfg.ProgressService.catalogues = [{"id": "papers", "repo": str(catalogue)}]
    cfg.ProgressService.db_url = f"sqlite:///{tmp_path / 'progress.sqlite'}"
    cfg.ProgressService.cache_dir = str(tmp_path / "cache")
    cfg.Authoring.enabled = True
    cfg.Authoring.drafts_dir = str(tmp_path / "drafts")
    cfg.Authoring.repository = str(tmp_path / "courses.git")
    cfg.Authoring.published_dir = str(tmp_path / "published")
    cfg.Authoring.max_upload_bytes = MAX_UPLOAD
    cfg.Authoring.max_pages = 20
    app = ProgressService(config=cfg)
    await app.start_async()
    proc, log = _spawn_hub(hubdir, env)
    try:
        await _await_hub(proc, hubdir, hub.hub_api + "/")
        yield Service(hub, app, tmp_path)
    finally:
        await _stop_hub(app, proc, log)


@pytest.mark.asyncio
async def test_paper_to_published_course_for_one_class(authoring_hub: Service) -> None:
    svc = authoring_hub
    pdf = make_pdf(PAPER_LINES, figure=(64, 48))

    # learners are refused everywhere, before anything is read
    code, body = await svc.new_draft("alice", pdf)
    assert code == 403 and body["error"] == "only instructors author courses"
    assert (await svc.json("alice", "GET", "drafts"))[0] == 403

    code, created = await svc.new_draft("tina", pdf, title="Attention")
    assert code == 201, created
    assert created["title"] == "Attention"
    assert created["paper"] == {
        "pages": 2,
        "figures": 2,
        "characters": created["paper"]["characters"],
    }
    assert created["paper"]["characters"] > 100
    draft = created["id"]

    # another instructor may not touch it
    for method, path in (("GET", f"drafts/{draft}"), ("GET", f"drafts/{draft}/bundle")):
        code, body = await svc.json("ben", method, path)
        assert code == 403 and "another instructor's" in body["error"]
    assert (await svc.json("ben", "GET", "drafts"))[1] == {"drafts": [], "classes": ["beta"]}

    # the bundle: the paper as extracted
    resp = await svc.call("tina", "GET", f"drafts/{draft}/bundle")
    assert resp.code == 200 and resp.headers["Content-Type"] == "application/gzip"
    files = untar(resp.body)
    text = files["paper/paper.md"].decode()
    assert "## Page 1" in text and "## Page 2" in text and "Multi-head attention" in text
    assert files["paper/figures/page-1-1.png"].startswith(b"\x89PNG")
    assert files["thumbnail.png"].startswith(b"\x89PNG")  # made from the figure
    meta = json.loads(files["paper/paper.json"])
    assert meta["pages"] == 2 and meta["figures"][0]["page"] == 1

    # what Claude wrote, with a broken courses.json: saved, with the checker's error
    folder = write_draft(svc.tmp / "sandbox-draft")
    good = (folder / "core/knowledge/courses.json").read_text()
    (folder / "core/knowledge/courses.json").write_text(good[:-20])
    code, saved = await svc.put("tina", draft, folder)
    assert code == 200, saved
    assert saved["preview"] is None
    assert [e["file"] for e in saved["check"]["errors"]] == ["core/knowledge/courses.json"]
    assert "invalid JSON" in saved["check"]["errors"][0]["reason"]

    # publishing it is refused with those errors, and nothing is published
    before = await svc.json("tina", "GET", "courses")
    code, refused = await svc.json(
        "tina", "POST", f"drafts/{draft}/publish", {"classes": ["alpha"]}
    )
    assert code == 422, refused
    assert refused["errors"] == saved["check"]["errors"]
    assert refs(svc.tmp / "courses.git") == ""
    assert await svc.json("tina", "GET", "courses") == before
    assert not (svc.tmp / "published").exists() or not any((svc.tmp / "published").iterdir())

    # fixed: the preview shows the stages and quizzes, without answers; Claude Code
    # configuration and a rewritten paper in the draft are never kept
    (folder / "core/knowledge/courses.json").write_text(good)
    (folder / ".mcp.json").write_text('{"mcpServers": {}}')
    (folder / ".claude").mkdir()
    (folder / ".claude/settings.json").write_text('{"hooks": {}}')
    (folder / "paper").mkdir()
    (folder / "paper/paper.md").write_text("# not the paper\n")
    code, saved = await svc.put("tina", draft, folder)
    assert code == 200 and saved["check"]["errors"] == [], saved
    assert {".mcp.json", ".claude/settings.json", "paper/paper.md"} <= set(saved["skipped"])
    preview = saved["preview"]
    assert [s["title"] for s in preview["stages"]] == ["Foundations", "Consensus"]
    quiz = preview["stages"][0]["quizzes"][0]
    assert quiz["id"] == "ledger" and quiz["options"] == ["Weather", "Transactions", "Music"]
    assert "answer" not in json.dumps(preview["stages"]).replace("answered", "")
    assert {"from": "ledger", "to": "hashing"} in preview["graph"]["edges"]
    # the preview's figure and thumbnail load by their signed URLs alone (a plain <img>)
    html = preview["stages"][0]["concepts"][0]["content_html"]
    src = html.split('src="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert src.startswith(f"/services/progress/api/drafts/{draft}/assets/")
    for url in (src, preview["thumbnail_url"]):
        image = await AsyncHTTPClient().fetch(svc.hub.public + url, raise_error=False)
        assert image.code == 200 and image.body.startswith(b"\x89PNG"), url
    forged = await AsyncHTTPClient().fetch(
        svc.hub.public + src.replace("sig=", "sig=0"), raise_error=False
    )
    assert forged.code == 403
    # the paper is the service's: what came back under paper/ was not taken
    saved_files = untar((await svc.call("tina", "GET", f"drafts/{draft}/bundle")).body)
    assert saved_files["paper/paper.md"].decode() == text
    assert ".mcp.json" not in saved_files and ".claude/settings.json" not in saved_files
    assert "core/knowledge/courses.json" in saved_files

    # quizzes judged against the draft as learners' answers are
    code, verdict = await svc.json(
        "tina", "POST", f"drafts/{draft}/judge", {"quiz": "ledger", "answer": "2"}
    )
    assert code == 200 and verdict["correct"] is True and verdict["explanation"]
    code, verdict = await svc.json(
        "tina", "POST", f"drafts/{draft}/judge", {"quiz": "ledger", "answer": "1"}
    )
    assert code == 200 and verdict["correct"] is False and "explanation" not in verdict

    # only into classes she instructs
    code, body = await svc.json("tina", "POST", f"drafts/{draft}/publish", {"classes": ["beta"]})
    assert code == 403 and body["error"] == "you do not instruct beta"
    code, pub = await svc.json("tina", "POST", f"drafts/{draft}/publish", {"classes": ["alpha"]})
    assert code == 200, pub
    course = pub["course"]
    assert course == "attention" and pub["version"] == 1
    assert f"refs/tags/{course}/v1" in refs(svc.tmp / "courses.git")
    tree = git_tree(svc.tmp / "courses.git")
    assert f"{course}/core/knowledge/courses.json" in tree
    assert f"{course}/paper/paper.md" not in tree and f"{course}/paper/paper.json" not in tree
    assert f"{course}/assets/paper/figures/page-1-1.png" in tree
    assert f"{course}/paper/figures/page-1-1.png" in tree

    # alpha's learner sees the card and takes stage 1; beta's does not even see it
    alice = [c["id"] for c in (await svc.json("alice", "GET", "courses"))[1]["courses"]]
    bob = [c["id"] for c in (await svc.json("bob", "GET", "courses"))[1]["courses"]]
    assert course in alice and course not in bob
    [card] = [
        c for c in (await svc.json("alice", "GET", "courses"))[1]["courses"] if c["id"] == course
    ]
    assert "/assets/paper/figures/page-2-1.png?" in card["thumbnail_url"]
    assert "papers--bitcoin--core" in alice and "papers--bitcoin--core" in bob
    assert (await svc.json("bob", "GET", f"courses/{course}"))[0] == 404
    assert (await svc.call("bob", "GET", f"courses/{course}/assets/thumbnail.png")).code == 404
    assert (await svc.call("alice", "GET", f"courses/{course}/assets/thumbnail.png")).code == 200
    # the lesson shows the paper's figure, served from the published course
    code, detail = await svc.json("alice", "GET", f"courses/{course}")
    html = detail["stages"][0]["concepts"][0]["content_html"]
    src = html.split('src="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert "/assets/assets/paper/figures/page-1-1.png" in src
    figure = await svc.call("alice", "GET", src.split("/api/", 1)[1])
    assert figure.code == 200 and figure.body.startswith(b"\x89PNG")
    assert (await svc.call("bob", "GET", f"courses/{course}/bundle")).code == 404
    for quiz_id in ("ledger", "hashing"):
        code, answer = await svc.json(
            "alice", "POST", f"courses/{course}/quizzes/{quiz_id}/answer", {"answer": "2"}
        )
        assert code == 200 and answer["correct"] is True, answer
    assert answer["stage_completed"] is True

    # a republish that moves a published module is refused, nothing changes
    swapped = catalogue_modules()
    swapped.reverse()
    write_draft(folder, modules=swapped)
    await svc.put("tina", draft, folder)
    code, refused = await svc.json(
        "tina", "POST", f"drafts/{draft}/publish", {"classes": ["alpha"]}
    )
    assert (
        code == 422
        and 'module "foundations" was stage 1 in version 1' in refused["errors"][0]["reason"]
    )
    assert f"refs/tags/{course}/v2" not in refs(svc.tmp / "courses.git")

    # a module added at the end: version 2, and alice's stage 1 is still complete
    grown = catalogue_modules()
    grown.append({**grown[1], "id": "extra", "title": "Extra", "lessons": [
        {**grown[1]["lessons"][0], "concept_id": "extra-idea", "title": "Extra idea"}
    ]})  # fmt: skip
    write_draft(folder, modules=grown)
    await svc.put("tina", draft, folder)
    code, pub = await svc.json("tina", "POST", f"drafts/{draft}/publish", {"classes": ["alpha"]})
    assert code == 200 and pub["version"] == 2 and pub["course"] == course, pub
    code, progress = await svc.json("alice", "GET", f"progress/{course}")
    assert code == 200 and progress["stage_count"] == 3
    assert progress["completed_stages"] == [1]
    code, listed = await svc.json("tina", "GET", "drafts")
    assert listed["drafts"][0]["published"] == [
        {"course": course, "version": 2, "classes": ["alpha"]}
    ]

    # a restarted service serves the published course from the repository and the database
    await svc.app.stop_async()
    await svc.app.start_async()
    alice = [c["id"] for c in (await svc.json("alice", "GET", "courses"))[1]["courses"]]
    bob = [c["id"] for c in (await svc.json("bob", "GET", "courses"))[1]["courses"]]
    assert course in alice and course not in bob


@pytest.mark.asyncio
async def test_bad_papers_and_urls_are_refused_naming_the_problem(authoring_hub: Service) -> None:
    svc = authoring_hub
    pdf = make_pdf(PAPER_LINES)
    cases = [
        (b"<html>not a paper</html>", 415, "not a PDF"),
        (encrypted(pdf), 422, "encrypted"),
        (pdf + b"%" * MAX_UPLOAD, 413, f"larger than {MAX_UPLOAD} bytes"),
        (make_pdf([["page"]] * 21), 413, "21 pages, more than the 20 allowed"),
        (b"%PDF-1.4\n garbage", 422, "cannot be read"),
    ]
    for data, status, words in cases:
        code, body = await svc.new_draft("tina", data)
        assert code == status and words in body["error"], (status, body)
    for url, words in (
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://127.0.0.1:1/paper.pdf", "loopback"),
        ("http://localhost:1/paper.pdf", "resolves to"),
        ("http://[::ffff:10.0.0.1]/x.pdf", "::ffff:10.0.0.1 is a private address"),
        ("http://10.1.2.3/x.pdf", "private"),
        ("file:///etc/passwd", "http:// or https://"),
    ):
        code, body = await svc.new_draft("tina", url=url)
        assert code in (400, 422) and words in body["error"], (url, body)
    code, body = await svc.new_draft("tina")
    assert code == 400 and "'paper' file" in body["error"]
    # nothing was kept of any of them
    assert (await svc.json("tina", "GET", "drafts"))[1] == {"drafts": [], "classes": ["alpha"]}
    # a draft Claude has not written yet: its quizzes cannot be judged, the check says why
    code, created = await svc.new_draft("tina", pdf)
    code, body = await svc.json(
        "tina", "POST", f"drafts/{created['id']}/judge", {"quiz": "ledger", "answer": "2"}
    )
    assert code == 422 and "no course folder yet" in body["errors"][0]["reason"]
    code, body = await svc.json("tina", "GET", f"drafts/{created['id']}")
    assert code == 200 and body["preview"] is None and body["check"]["errors"]
    assert (await svc.json("tina", "GET", "drafts/0123456789ab"))[0] == 404
    # an unsafe save is refused whole
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    resp = await svc.call(
        "tina", "PUT", f"drafts/{created['id']}/files", buf.getvalue(), "application/gzip"
    )
    assert resp.code == 400 and "leaves the draft folder" in json.loads(resp.body)["error"]
    assert not (svc.tmp / "drafts" / "escape.txt").exists()
