"""The ``claudehub-progress`` console script and the extension's handlers without a service."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from claudehub.progress.app import ProgressService
from tests.helpers import PATIENCE, free_port

from .coursekit import write_claude_md_course


def test_aliases_config_file_and_env_fallbacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDEHUB_COURSES", json.dumps([{"id": "env", "repo": "/x"}]))
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:4321")
    cfg_file = tmp_path / "progress_config.py"
    cfg_file.write_text("c.ProgressService.tutor_completions_count = False\n")
    app = ProgressService()
    app.initialize(
        [
            f"--config={cfg_file}",
            "--db-url=sqlite:////tmp/x.sqlite",
            "--port=9999",
            "--no-tutor-count",
        ]
    )
    assert app.db_url == "sqlite:////tmp/x.sqlite"
    assert app.port == 9999  # the command line wins over JUPYTERHUB_SERVICE_URL
    assert app.ip == "127.0.0.1"
    assert app.tutor_completions_count is False
    assert app.courses == [{"id": "env", "repo": "/x"}]


def test_console_script_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    course = write_claude_md_course(tmp_path / "course")
    sources = tmp_path / "courses.json"
    sources.write_text(json.dumps({"courses": [{"id": "t101", "repo": str(course)}]}))
    port = free_port()
    exe = Path(sys.executable).parent / "claudehub-progress"
    proc = subprocess.Popen(
        [str(exe), f"--port={port}", "--ip=127.0.0.1", f"--courses-json={sources}",
         f"--db-url=sqlite:///{tmp_path / 'p.sqlite'}", f"--cache-dir={tmp_path / 'cache'}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")},
    )  # fmt: skip
    try:
        import urllib.request

        url = f"http://127.0.0.1:{port}/services/progress/api/health"
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    assert json.loads(resp.read()) == {"status": "ok"}
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("service did not start") from None
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=PATIENCE)
        assert proc.returncode == 0, out
        assert b"1 courses, 0 course errors" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (tmp_path / "p.sqlite").exists()


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    # no course service and no course chosen, whatever the environment says
    return {
        "ServerApp": {"jpserver_extensions": {"claudehub.server_ext": True}},
        "ClaudeHubApp": {"progress_url": "", "course_id": ""},
    }


async def test_extension_api_without_a_service(jp_fetch: Any) -> None:
    resp = await jp_fetch("claude", "api", "course")
    assert json.loads(resp.body) == {"course_id": None, "course": None, "progress": None}
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("claude", "api", "courses")
    assert err.value.code == 503
    # there is no endpoint to post a completion through the extension
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("claude", "api", "courses", "t101", "completions", method="POST", body="{}")
    assert err.value.code in (403, 404, 405)


def test_admin_page_escapes_what_users_and_courses_supply() -> None:
    from claudehub.progress.admin_page import render_admin_page
    from claudehub.progress.catalogue import Catalogue
    from claudehub.progress.model import Course, Stage

    catalogue = Catalogue()
    catalogue.courses["t101"] = Course(
        id="t101",
        title="<script>alert(1)</script>",
        description="",
        layout="claude-md",
        path=Path("."),
        stages=(Stage(number=1, id="s1", title="<b>Tokens</b>"),),
    )
    completions = [
        {"user": "al<i>ce", "course_id": "t101", "stage": 1, "method": "quiz",
         "completed_at": "2026-01-02T03:04:05Z"},
        {"user": "bob", "course_id": "t101", "stage": 0, "method": "tutor", "completed_at": None},
    ]  # fmt: skip
    errors = [{"course_id": "bad", "source": "/x", "file": "CLAUDE.md", "reason": "<img src=x>"}]
    page = render_admin_page(catalogue, completions, errors, "/services/progress/")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>" not in page and "<i>" not in page and "<img" not in page
    assert "al&lt;i&gt;ce" in page and "1: &lt;b&gt;Tokens&lt;/b&gt;" in page
    assert "0: (whole course)" in page
    # what the browser test and the CSV link rely on
    assert '<a id="csv" href="/services/progress/admin/progress.csv">' in page
    assert page.count("<tr><td>") == 3 and 'id="progress"' in page and 'id="errors"' in page
    assert '<td class="quiz">quiz</td>' in page

    empty = render_admin_page(Catalogue(), [], [], "/p/")
    assert "0 courses · 0 completions" in empty and '<p class="no">None.</p>' in empty
    assert 'id="errors"' not in empty
