"""How the extension reaches the course service: ``ClaudeHubApp`` configuration (defaults: the
spawner's environment) and the terminal's tutor markers, against a stand-in service."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

#: where the hub proxies the service
PREFIX = "/services/progress"


class FakeProgressService:
    """The course+progress service's API, as much as the extension calls (stdlib HTTP in a
    thread, so it runs whichever event loop the server is on)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str, Any]] = []  # method, path, token, body
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body: Any = None) -> str:
                auth = self.headers.get("Authorization", "")
                token = auth.split(None, 1)[1] if " " in auth else ""
                path = self.path.removeprefix(PREFIX)
                service.requests.append((self.command, path, token, body))
                return path

            def do_GET(self) -> None:
                if self._record() == "/api/courses/t101":
                    return self._reply({"id": "t101", "title": "Tokens"})
                self._reply({"course_id": "t101", "stages": []})  # /api/progress/t101

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                self._record(json.loads(self.rfile.read(n) or b"null"))
                snapshot = {"completed_stages": [2], "current_stage": 3}
                self._reply({"progress": {"learner_snapshot": snapshot}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{PREFIX}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def posts(self) -> list[tuple[str, str, Any]]:
        return [
            (path, token, body) for method, path, token, body in self.requests if method == "POST"
        ]


@pytest.fixture
def progress_service() -> Iterator[FakeProgressService]:
    service = FakeProgressService()
    service.thread.start()
    yield service
    service.server.shutdown()
    service.server.server_close()


@pytest.fixture
def course_dir(tmp_path: Path) -> Path:
    (tmp_path / "course" / ".learner").mkdir(parents=True)
    return tmp_path / "course"


@pytest.fixture
def jp_server_config(
    jp_server_config: dict[str, Any], progress_service: FakeProgressService, course_dir: Path
) -> dict[str, Any]:
    jp_server_config["ClaudeHubApp"].update(
        progress_url=progress_service.url,
        course_id="t101",
        course_dir=str(course_dir),
        api_token="tok-server",
    )
    return jp_server_config


async def test_the_course_api_calls_the_configured_service_as_this_server(
    jp_fetch: Any, progress_service: FakeProgressService
) -> None:
    resp = await jp_fetch("claude", "api", "course")
    data = json.loads(resp.body)
    assert data["course_id"] == "t101" and data["course"]["title"] == "Tokens"
    paths = {(path, token) for _, path, token, _ in progress_service.requests}
    assert paths == {("/api/courses/t101", "tok-server"), ("/api/progress/t101", "tok-server")}
    page = (await jp_fetch("claude")).body.decode()
    assert '"courseId": "t101"' in page


async def test_a_tutor_marker_is_recorded_once_and_refreshes_the_snapshot(
    open_term: Any, progress_service: FakeProgressService, course_dir: Path
) -> None:
    term = await open_term()
    for _ in range(2):  # the CLI redraws: the same marker shows up again
        await term.type("printf 'ok [STAGE_COMP''LETE:2] next-%s\\n' $((1+1))\r")
        await term.event("marker")
    async with asyncio.timeout(10):
        while not (course_dir / ".learner" / "progress.json").exists():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # room for a second recording to arrive, if one were made
    assert progress_service.posts() == [
        ("/api/courses/t101/completions", "tok-server", {"stage": 2, "method": "tutor"})
    ]
    snapshot = json.loads((course_dir / ".learner" / "progress.json").read_text())
    assert snapshot == {"completed_stages": [2], "current_stage": 3}


@pytest.fixture
def spawner_env(
    monkeypatch: pytest.MonkeyPatch, progress_service: FakeProgressService, course_dir: Path
) -> None:
    monkeypatch.setenv("CLAUDEHUB_PROGRESS_URL", progress_service.url)
    monkeypatch.setenv("CLAUDEHUB_COURSE_ID", "t101")
    monkeypatch.setenv("CLAUDEHUB_COURSE_DIR", str(course_dir))
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "tok-from-env")


class TestDefaultsAreTheSpawnersEnvironment:
    @pytest.fixture
    def jp_server_config(self, spawner_env: None, claude_command: list[str]) -> dict[str, Any]:
        # the environment is set before the server starts, as the spawner does
        return {
            "ServerApp": {"jpserver_extensions": {"claudehub.server_ext": True}},
            "ClaudeHubApp": {"command": claude_command},
        }

    async def test_course_settings_default_to_the_environment(
        self, jp_fetch: Any, progress_service: FakeProgressService
    ) -> None:
        data = json.loads((await jp_fetch("claude", "api", "course")).body)
        assert data["course_id"] == "t101"
        assert {token for _, _, token, _ in progress_service.requests} == {"tok-from-env"}
