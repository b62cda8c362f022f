"""The extension's image proxy (``claude/api/courses/{id}/assets/{path}``) against a stand-in
service that answers with images, impostors and errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from tests.progress.imagekit import HTML_AS_PNG, SVG_WITH_SCRIPT, png

PREFIX = "/services/progress"
PNG = png(3, 2)
#: stand-in answers: path -> (status, content type, body)
ANSWERS: dict[str, tuple[int, str, bytes]] = {
    "ok.png": (200, "image/png", PNG),
    "html.png": (200, "image/png", HTML_AS_PNG),
    "svg.png": (200, "image/svg+xml", SVG_WITH_SCRIPT),
    "gif-named.png": (200, "image/jpeg", b"GIF89a" + b"\0" * 20),
    "missing.png": (404, "application/json", b'{"status": 404, "message": "no such file"}'),
    "big.png": (413, "application/json", b'{"status": 413, "message": "too large"}'),
}


class StandIn:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []  # path, token, If-None-Match
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                etag = self.headers.get("If-None-Match", "")
                stand_in.seen.append((self.path, auth, etag))
                name = self.path.rsplit("/", 1)[-1]
                if name == "ok.png" and etag == '"v1"':
                    self.send_response(304)
                    self.send_header("ETag", '"v1"')
                    self.end_headers()
                    return
                status, mime, body = ANSWERS.get(name, ANSWERS["missing.png"])
                self.send_response(status)
                self.send_header("Content-Type", mime)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", '"v1"')
                self.send_header("Cache-Control", "private, max-age=300")
                self.send_header("Set-Cookie", "leak=1")
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{PREFIX}/"


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    service = StandIn()
    thread = threading.Thread(target=service.server.serve_forever, daemon=True)
    thread.start()
    yield service
    service.server.shutdown()
    service.server.server_close()


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], stand_in: StandIn) -> dict[str, Any]:
    jp_server_config["ClaudeHubApp"].update(
        progress_url=stand_in.url, course_id="t101", api_token="tok-server"
    )
    return jp_server_config


async def _status(jp_fetch: Any, *parts: str, **kwargs: Any) -> int:
    try:
        resp = await jp_fetch("claude", "api", "courses", "t101", "assets", *parts, **kwargs)
    except HTTPClientError as e:
        return e.code
    return int(resp.code)


async def test_an_image_passes_with_its_caching_headers_and_nothing_else(
    jp_fetch: Any, stand_in: StandIn
) -> None:
    resp = await jp_fetch("claude", "api", "courses", "t101", "assets", "assets", "ok.png")
    assert resp.body == PNG
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.headers["ETag"] == '"v1"' and resp.headers["Cache-Control"].startswith("private")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert "leak" not in resp.headers.get("Set-Cookie", "")
    assert stand_in.seen[-1][:2] == (
        f"{PREFIX}/api/courses/t101/assets/assets/ok.png",
        "token tok-server",
    )
    # a revalidation is forwarded and its 304 passed back
    again = await _status(jp_fetch, "assets", "ok.png", headers={"If-None-Match": '"v1"'})
    assert again == 304 and stand_in.seen[-1][2] == '"v1"'


async def test_impostors_and_refusals_do_not_pass(jp_fetch: Any, stand_in: StandIn) -> None:
    got = {name: await _status(jp_fetch, name) for name in ANSWERS if name != "ok.png"}
    assert got == {
        "html.png": 502,
        "svg.png": 502,
        "gif-named.png": 502,
        "missing.png": 404,
        "big.png": 413,
    }


@pytest.fixture
def assets_url(jp_serverapp: Any, jp_base_url: str, http_server: Any, jp_http_port: int) -> str:
    return f"http://127.0.0.1:{jp_http_port}{jp_base_url}claude/api/courses/t101/assets/"


async def test_escaping_paths_never_reach_the_service(
    jp_serverapp: Any, assets_url: str, stand_in: StandIn
) -> None:
    token = jp_serverapp.identity_provider.token
    before = len(stand_in.seen)
    http = AsyncHTTPClient()
    for path in ("..%2F..%2Fetc%2Fpasswd", "a/%2e%2e/%2e%2e/x.png", "a/../../x.png", "a//x.png"):
        resp = await http.fetch(
            assets_url + path, headers={"Authorization": f"token {token}"}, raise_error=False
        )
        assert resp.code == 404, path
    assert len(stand_in.seen) == before
