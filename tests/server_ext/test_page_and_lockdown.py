"""The Claude page is served with its panels and offline assets; everything a user could turn
into a shell or a file write is refused (and logged)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError


async def test_page_has_terminal_panels_and_config(jp_fetch: Any, jp_base_url: str) -> None:
    resp = await jp_fetch("claude")
    assert resp.code == 200
    html = resp.body.decode()
    assert '<aside id="stage-panel"' in html
    assert '<aside id="progress-panel"' in html
    assert 'id="terminal"' in html
    assert 'id="end-session"' in html
    for asset in (
        "vendor/xterm.js",
        "vendor/xterm.css",
        "vendor/addon-fit.js",
        "claude.js",
        "panels.js",
        "panels.css",
    ):
        assert f"static/claude/{asset}" in html, asset
    assert "//cdn" not in html and "https://" not in html  # works with no internet
    config = json.loads(
        re.search(
            r'<script id="claudehub-config" type="application/json">(.*?)</script>', html, re.S
        ).group(1)  # type: ignore[union-attr]
    )
    assert config["baseUrl"] == jp_base_url
    assert config["terminalUrl"] == jp_base_url + "claude/terminal"
    assert config["xsrfToken"]
    assert config["hubPrefix"].endswith("/hub/")


async def test_static_assets_are_served(jp_fetch: Any) -> None:
    for asset in (
        "vendor/xterm.js",
        "vendor/xterm.css",
        "vendor/addon-fit.js",
        "claude.js",
        "claude.css",
        "panels.js",
        "panels.css",
    ):
        resp = await jp_fetch("static", "claude", *asset.split("/"))
        assert resp.code == 200, asset
        assert len(resp.body) > 0
    xterm = await jp_fetch("static", "claude", "vendor", "xterm.js")
    assert b"Terminal" in xterm.body


async def test_root_redirects_to_the_claude_page(jp_fetch: Any, jp_base_url: str) -> None:
    resp = await jp_fetch("", follow_redirects=False, raise_error=False)
    assert resp.code in (301, 302)
    assert resp.headers["Location"].startswith(jp_base_url + "claude")


async def test_page_requires_login(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("claude", headers={"Authorization": ""}, follow_redirects=False)
    assert e.value.code in (302, 403)


FORBIDDEN = [
    ("GET", ("api", "contents")),
    ("GET", ("api", "contents", "secret.txt")),
    ("PUT", ("api", "contents", "new.txt")),
    ("POST", ("api", "contents")),
    ("DELETE", ("api", "contents", "secret.txt")),
    ("GET", ("api", "kernels")),
    ("POST", ("api", "kernels")),
    ("GET", ("api", "kernelspecs")),
    ("POST", ("api", "sessions")),
    ("GET", ("api", "terminals")),
    ("POST", ("api", "terminals")),
    ("PATCH", ("api", "config", "notebook")),
    ("GET", ("files", "secret.txt")),
    ("GET", ("view", "secret.txt")),
    ("GET", ("edit", "secret.txt")),
    ("GET", ("tree",)),
    ("GET", ("lab",)),
    ("GET", ("terminals", "1")),
    ("GET", ("nbconvert", "html", "x.ipynb")),
    ("POST", ("api", "events")),
    ("POST", ("api", "shutdown")),
]


@pytest.mark.parametrize(
    ("method", "path"), FORBIDDEN, ids=lambda v: "/".join(v) if isinstance(v, tuple) else v
)
async def test_shell_and_write_endpoints_are_refused_and_logged(
    jp_fetch: Any,
    jp_serverapp: Any,
    jp_root_dir: Any,
    method: str,
    path: tuple[str, ...],
    caplog: pytest.LogCaptureFixture,
) -> None:
    (jp_root_dir / "secret.txt").write_text("do not serve me")
    body = None if method in ("GET", "DELETE") else json.dumps({"type": "file", "content": "x"})
    caplog.set_level(logging.WARNING)
    with caplog.at_level(logging.WARNING, logger=jp_serverapp.log.name):
        jp_serverapp.log.propagate = True
        resp = await jp_fetch(*path, method=method, body=body, raise_error=False)
    assert resp.code in (403, 404), resp.code
    assert b"do not serve me" not in resp.body
    assert not (jp_root_dir / "new.txt").exists()
    assert (jp_root_dir / "secret.txt").exists()
    assert any(
        "refused" in r.getMessage() and "/".join(path) in r.getMessage() for r in caplog.records
    ), [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize(
    "path",
    [
        ("terminals", "websocket", "1"),
        ("api", "kernels", "x", "channels"),
        ("api", "events", "subscribe"),
    ],
)
async def test_other_websockets_are_refused(jp_ws_fetch: Any, path: tuple[str, ...]) -> None:
    with pytest.raises(HTTPClientError):
        await jp_ws_fetch(*path)


async def test_managers_refuse_kernels_and_writes(jp_serverapp: Any) -> None:
    """Even an extension that calls the managers directly cannot start a kernel or write."""
    from tornado.web import HTTPError

    assert jp_serverapp.terminals_enabled is False
    with pytest.raises(HTTPError) as e:
        await jp_serverapp.kernel_manager.start_kernel()
    assert e.value.status_code == 403
    with pytest.raises(HTTPError):
        await jp_serverapp.contents_manager.save(
            {"type": "file", "format": "text", "content": "x"}, "w.txt"
        )
    with pytest.raises(HTTPError):
        await jp_serverapp.contents_manager.new_untitled(type="file")


async def test_status_still_answers(jp_fetch: Any) -> None:
    status = json.loads((await jp_fetch("api", "status")).body)
    assert "last_activity" in status
