"""The course-fetching init container's entry point, against a stand-in course service."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


def bundle() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in {"CLAUDE.md": "# Git basics\n", "stages/1.md": "Stage one\n"}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def course_service() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(f"{self.path} {self.headers.get('Authorization')}")
            if self.path == "/services/progress/api/courses/git-basics/bundle":
                body, status, kind = bundle(), 200, "application/gzip"
            else:
                body, status, kind = (
                    b'{"status": 404, "message": "No such course"}',
                    404,
                    "application/json",
                )
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/services/progress/", seen
    finally:
        server.shutdown()
        server.server_close()


def fetch(url: str, course: str, dest: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "CLAUDEHUB_PROGRESS_URL": url,
        "CLAUDEHUB_COURSE_ID": course,
        "CLAUDEHUB_COURSE_DIR": str(dest),
        "JUPYTERHUB_API_TOKEN": "server-token",
    }
    return subprocess.run(
        [sys.executable, "-m", "claudehub.spawner.fetch_course"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_fetches_the_course_read_only(
    tmp_path: Path, course_service: tuple[str, list[str]]
) -> None:
    url, seen = course_service
    dest = tmp_path / "course" / "git-basics"
    result = fetch(url, "git-basics", dest)
    assert result.returncode == 0, result.stderr
    assert (dest / "CLAUDE.md").read_text() == "# Git basics\n"
    assert (dest / "stages" / "1.md").read_text() == "Stage one\n"
    assert not (dest / "CLAUDE.md").stat().st_mode & stat.S_IWUSR
    assert seen == ["/services/progress/api/courses/git-basics/bundle token server-token"]


def test_a_failed_fetch_says_why(tmp_path: Path, course_service: tuple[str, list[str]]) -> None:
    url, _ = course_service
    result = fetch(url, "nope", tmp_path / "course" / "nope")
    assert result.returncode == 1
    assert "fetch-course: could not fetch course 'nope': 404: No such course" in result.stderr
