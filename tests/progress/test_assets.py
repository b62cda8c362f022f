"""Course images over HTTP: the real service, its real HubOAuth, a stand-in hub API.

Every refusal is also checked for what it must not do: while the bad requests run, an
audit hook records every file the process opens, and none may lie outside the course
repository (the sentinel outside it is itself a valid PNG, so a leak would be served).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from .conftest import FakeHubAPI, RunningService, ServiceFactory
from .imagekit import (
    FIGURE,
    GIF,
    HTML_AS_PNG,
    IMAGE_CATALOGUE,
    IMAGE_COURSE,
    JPEG,
    REMOTE,
    SVG_WITH_SCRIPT,
    WEBP,
    png,
    write_image_catalogue,
)

ALICE = "tok-alice"
BIG = 50 * 1024 * 1024

_opened: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _opened is not None and args and isinstance(args[0], str | bytes):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


@contextlib.contextmanager
def files_opened() -> Iterator[list[str]]:
    """Every path this process opens inside the block (audit hook; includes os.open)."""
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = write_image_catalogue(tmp_path / "repo")
    # outside the repository: a perfectly valid image, so serving it would succeed
    (tmp_path / "outside.png").write_bytes(png())
    return root


async def _start(start_service: ServiceFactory, repo: Path, **traits: Any) -> RunningService:
    return await start_service(
        courses=[], catalogues=[{"id": IMAGE_CATALOGUE, "repo": str(repo)}], **traits
    )


async def _get(
    svc: RunningService, path: str, token: str | None = ALICE, **headers: str
) -> HTTPResponse:
    """GET ``{service}api/courses/{IMAGE_COURSE}/assets/{path}`` exactly as written (no
    client-side normalisation of ``..`` or ``%2e``)."""
    if token:
        headers["Authorization"] = f"token {token}"
    return await AsyncHTTPClient().fetch(
        f"{svc.url}api/courses/{IMAGE_COURSE}/assets/{path}",
        headers=headers,
        raise_error=False,
        follow_redirects=False,
    )


@pytest.fixture
def users(fake_hub_api: FakeHubAPI) -> FakeHubAPI:
    fake_hub_api.add_user(ALICE, "alice")
    return fake_hub_api


@pytest.mark.asyncio
async def test_a_lesson_image_is_served_with_safe_caching_headers(
    start_service: ServiceFactory, users: FakeHubAPI, repo: Path
) -> None:
    svc = await _start(start_service, repo)
    resp = await _get(svc, FIGURE.replace(" ", "%20"))
    assert resp.code == 200
    assert resp.body == (repo / FIGURE).read_bytes()
    h = resp.headers
    assert h["Content-Type"] == "image/png"
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Content-Security-Policy"] == "default-src 'none'"
    assert h["Cache-Control"].startswith("private, max-age=")
    assert h["ETag"] and h["Last-Modified"].endswith("GMT")
    again = await _get(svc, FIGURE.replace(" ", "%20"), **{"If-None-Match": h["ETag"]})
    assert again.code == 304 and not again.body


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("data", "mime"),
    [(JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp"), (png(), "image/png")],
)
async def test_the_type_comes_from_the_content_not_the_name(
    start_service: ServiceFactory, users: FakeHubAPI, repo: Path, data: bytes, mime: str
) -> None:
    (repo / "assets" / "misnamed.png").write_bytes(data)
    svc = await _start(start_service, repo)
    resp = await _get(svc, "assets/misnamed.png")
    assert resp.code == 200 and resp.headers["Content-Type"] == mime and resp.body == data


@pytest.mark.asyncio
async def test_bad_requests_are_refused_and_nothing_outside_is_opened(
    start_service: ServiceFactory, users: FakeHubAPI, repo: Path, tmp_path: Path
) -> None:
    (repo / "assets" / "passwd.png").symlink_to("/etc/passwd")
    (repo / "assets" / "outside.png").symlink_to(tmp_path / "outside.png")
    (repo / "assets" / "up").symlink_to(tmp_path, target_is_directory=True)
    (repo / "assets" / "evil.svg").write_bytes(SVG_WITH_SCRIPT)
    os.mkfifo(repo / "assets" / "pipe.png")  # must not hang the service
    (repo / "assets" / "evil-svg.png").write_bytes(SVG_WITH_SCRIPT)
    (repo / "assets" / "page.png").write_bytes(HTML_AS_PNG)
    with (repo / "assets" / "huge.png").open("wb") as f:  # sparse: 50 MB on paper
        f.write(png())
        f.truncate(BIG)
    svc = await _start(start_service, repo)
    outside = str(tmp_path / "outside.png")
    cases = {
        "../outside.png": 404,
        "assets/../../outside.png": 404,
        "%2e%2e/outside.png": 404,
        "assets/%2e%2e/%2e%2e/outside.png": 404,
        "..%2foutside.png": 404,
        "%2F" + outside.lstrip("/").replace("/", "%2F"): 404,
        "/" + outside: 404,
        "assets/passwd.png": 404,
        "assets/outside.png": 404,
        "assets/up/outside.png": 404,
        "assets/evil.svg": 415,
        "assets/evil-svg.png": 415,
        "assets/page.png": 415,
        "assets/huge.png": 413,
        "assets/missing.png": 404,
        "assets/pipe.png": 404,
        "assets": 404,
        "assets/": 404,
        "knowledge/../README.md": 404,
        "README.md": 415,
    }
    with files_opened() as opened:
        got = {path: (await _get(svc, path)).code for path in cases}
        bodies = [(await _get(svc, p)).body for p in ("assets/evil.svg", "assets/page.png")]
    assert got == cases
    # the hook does see the service's opens: the refused files inside were opened to check
    assert str((repo / "assets" / "evil.svg").resolve()) in opened
    assert not any(b"<script" in body for body in bodies)
    leaked = [
        p
        for p in opened
        if p in (outside, "/etc/passwd") or p.startswith(str(tmp_path / "outside"))
    ]
    assert leaked == []
    # the big file was refused on its size: never opened for more than the check
    assert opened.count(str(repo / "assets" / "huge.png")) <= 1


@pytest.mark.asyncio
async def test_the_size_cap_is_a_setting(
    start_service: ServiceFactory, users: FakeHubAPI, repo: Path
) -> None:
    svc = await _start(start_service, repo, max_asset_bytes=64)
    resp = await _get(svc, FIGURE.replace(" ", "%20"))
    assert resp.code == 413
    assert b"64-byte limit" in resp.body


@pytest.mark.asyncio
async def test_images_need_a_hub_user(
    start_service: ServiceFactory, users: FakeHubAPI, repo: Path
) -> None:
    svc = await _start(start_service, repo)
    figure = FIGURE.replace(" ", "%20")
    bad = await _get(svc, figure, token="not-a-token")
    assert bad.code == 403 and not bad.body.startswith(b"\x89PNG")
    anonymous = await _get(svc, figure, token=None)
    # a browser without a login is sent to the hub's login (or refused): no image either way
    assert anonymous.code in (302, 401, 403) and not anonymous.body.startswith(b"\x89PNG")
    other = await AsyncHTTPClient().fetch(
        f"{svc.url}api/courses/no-such-course/assets/{figure}",
        headers={"Authorization": f"token {ALICE}"},
        raise_error=False,
    )
    assert other.code == 404


@pytest.mark.asyncio
async def test_cards_link_thumbnails_and_lessons_link_their_images(
    start_service: ServiceFactory, users: FakeHubAPI, repo: Path
) -> None:
    svc = await _start(start_service, repo)
    alice = svc.client(ALICE)
    (card,) = await alice.courses()
    base = f"/services/progress/api/courses/{IMAGE_COURSE}/assets/"
    assert card["assets_url"] == base
    assert card["thumbnail_url"] and card["thumbnail_url"].startswith(base)
    thumb = await AsyncHTTPClient().fetch(
        "http://" + svc.url.split("/")[2] + card["thumbnail_url"],
        headers={"Authorization": f"token {ALICE}"},
    )
    # a card gets a small WebP of the thumbnail (assets.scaled), not the full picture
    assert thumb.headers["Content-Type"] == "image/webp"
    assert "language" in card
    for width in ("999", "abc", "-1"):
        bad = await AsyncHTTPClient().fetch(
            "http://"
            + svc.url.split("/")[2]
            + card["thumbnail_url"].replace("w=320", f"w={width}"),
            headers={"Authorization": f"token {ALICE}"},
            raise_error=False,
        )
        assert bad.code == 400 and b"w must be one of 160, 320, 640" in bad.body, width

    detail = await alice.course(IMAGE_COURSE)
    lesson = detail["stages"][0]["concepts"][0]
    html = lesson["content_html"]
    assert f'<img src="{base}{FIGURE.replace(" ", "%20")}?exp=' in html
    assert 'alt="A ray diagram"' in html
    # a remote image is not loaded: its alt text stands in; an escaping one likewise
    assert REMOTE not in html and "tracker.example" not in html
    assert '<span class="ch-image-alt">Remote pixel</span>' in html
    assert '<span class="ch-image-alt">Escaping</span>' in html
    assert html.count("<img") == 1
    assert lesson["paper_ref"] == "Newton, Opticks (1704), Book I"
    assert lesson["key_ideas"] == ["straight lines", "reflection angle"]
    assert detail["stages"][0]["concepts"][1]["prerequisites"] == ["rays"]


@pytest.mark.asyncio
async def test_signed_urls_load_without_a_token_for_their_own_path_only(
    start_service: ServiceFactory, users: FakeHubAPI, repo: Path
) -> None:
    (repo / "assets" / "other.png").write_bytes(png(2, 2))
    svc = await _start(start_service, repo)
    (card,) = await svc.client(ALICE).courses()
    host = "http://" + svc.url.split("/")[2]
    thumb = card["thumbnail_url"]
    path, _, query = thumb.partition("?")
    assert query.startswith("exp=") and "&sig=" in query
    fetch = AsyncHTTPClient().fetch
    ok = await fetch(host + thumb)  # no Authorization header, no cookie
    assert ok.code == 200 and ok.headers["Content-Type"] == "image/webp"  # scaled for the card
    params = dict(kv.split("=") for kv in query.split("&"))  # exp, sig and the card's w
    exp, sig = params["exp"], params["sig"]
    other = path.rsplit("/", 1)[0].split("/assets/")[0] + "/assets/assets/other.png"
    bad = {
        "another path": f"{host}{other}?{query}",
        "a changed signature": f"{host}{path}?exp={exp}&sig={'0' * 32}",
        "a later expiry": f"{host}{path}?exp={int(exp) + 86400}&sig={sig}",
        "an expired one": f"{host}{path}?exp=1000&sig={sig}",
    }
    for what, url in bad.items():
        resp = await fetch(url, raise_error=False, follow_redirects=False)
        assert resp.code != 200 and not resp.body.startswith(b"\x89PNG"), what
