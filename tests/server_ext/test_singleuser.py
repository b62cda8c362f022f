"""The real single-user server process the spawner starts (`python -m
claudehub.server_ext.singleuser`, i.e. jupyterhub-singleuser + the extension), against a
stand-in hub API: hub login works, the Claude page and terminal work, everything else is
refused and logged, terminal output is reported to the hub as activity, and "End session"
asks the hub to stop the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.helpers import PATIENCE, free_port
from tests.server_ext.fakehub import FakeHub

pytestmark = pytest.mark.slow


class Server:
    def __init__(self, hub: FakeHub, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.hub, self.port, self.proc, self.log = hub, port, proc, log
        self.url = f"http://127.0.0.1:{port}/user/{hub.user}/"
        self.ws_url = f"ws://127.0.0.1:{port}/user/{hub.user}/"
        self.headers = {"Authorization": f"token {hub.user_token}"}

    def get(self, path: str, method: str = "GET", **kw: Any) -> requests.Response:
        return requests.request(
            method,
            self.url + path,
            headers=self.headers,
            timeout=PATIENCE,
            allow_redirects=False,
            **kw,
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("singleuser")
    (tmp / "jupyter_server_config.py").write_text(
        'c.ClaudeHubApp.command = ["bash", "--norc", "--noprofile", "-i"]\n'
        'c.ClaudeHubApp.term_env = {"PS1": "$ ", "HISTFILE": "/dev/null"}\n'
    )
    hub = FakeHub().start()
    port = free_port()
    env = hub.singleuser_env(
        port,
        JUPYTER_CONFIG_DIR=str(tmp),
        JUPYTER_RUNTIME_DIR=str(tmp),
        JUPYTERHUB_ACTIVITY_INTERVAL="1",
    )
    argv = [sys.executable, "-m", "claudehub.server_ext.singleuser"]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    log = tmp / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT)
    srv = Server(hub, port, proc, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if srv.get("api/status").status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        hub.stop()


def test_page_is_the_default_and_needs_a_hub_login(server: Server) -> None:
    root = server.get("")
    assert root.status_code == 302
    assert root.headers["Location"].rstrip("?").endswith(f"/user/{server.hub.user}/claude")
    page = server.get("claude")
    assert page.status_code == 200
    assert '<aside id="stage-panel"' in page.text and '<aside id="progress-panel"' in page.text
    anonymous = requests.get(server.url + "claude", allow_redirects=False, timeout=PATIENCE)
    assert anonymous.status_code in (302, 403)
    if anonymous.status_code == 302:  # to the hub's OAuth login
        assert "/hub/api/oauth2/authorize" in anonymous.headers["Location"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "api/contents"),
        ("PUT", "api/contents/x.txt"),
        ("POST", "api/kernels"),
        ("POST", "api/sessions"),
        ("POST", "api/terminals"),
        ("GET", "tree"),
        ("GET", "lab"),
        ("GET", "files/jupyter_server_config.py"),
        ("PATCH", "api/config/x"),
    ],
)
def test_everything_else_is_refused_and_logged(server: Server, method: str, path: str) -> None:
    resp = server.get(path, method=method, data=json.dumps({"type": "file", "content": "x"}))
    assert resp.status_code in (403, 404)
    assert f"refused {method} /user/{server.hub.user}/{path}" in server.log.read_text()


def test_general_terminal_websocket_is_refused(server: Server) -> None:
    with pytest.raises(InvalidStatus) as e:
        connect(
            server.ws_url + "terminals/websocket/1",
            additional_headers=server.headers,
            open_timeout=PATIENCE,
        )
    assert e.value.response.status_code in (403, 404)


def _read_until(ws: Any, text: str, timeout: float = PATIENCE) -> str:
    out = ""
    deadline = time.monotonic() + timeout
    while text not in out:
        msg = json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
        if msg[0] == "stdout":
            out += msg[1]
    return out


def test_terminal_works_and_its_output_is_reported_to_the_hub(server: Server) -> None:
    with connect(
        server.ws_url + "claude/terminal", additional_headers=server.headers, open_timeout=10
    ) as ws:
        assert json.loads(ws.recv(timeout=PATIENCE))[0] == "setup"
        # taken before the send: the output comes 2 s after the server has the keystrokes,
        # so its activity is at least typed + 2 however slow the machine (1.5: clock slack)
        typed = time.time()
        ws.send(json.dumps(["stdin", "sleep 2; echo late-$((6*7))\r"]))
        _read_until(ws, "late-42")
    deadline = time.monotonic() + PATIENCE
    while True:  # the server reports activity every ~1 s (JUPYTERHUB_ACTIVITY_INTERVAL)
        reported = [
            datetime.fromisoformat(a["servers"][""]["last_activity"].replace("Z", "+00:00"))
            for a in server.hub.activity
            if a and "servers" in a
        ]
        if reported and max(reported).timestamp() >= typed + 1.5:
            break
        assert time.monotonic() < deadline, server.hub.activity[-3:]
        time.sleep(0.3)


def test_end_session_asks_the_hub_to_stop_this_server(server: Server) -> None:
    resp = server.get("claude/api/session", method="DELETE")
    assert resp.status_code == 202, resp.text
    assert server.hub.stopped.wait(PATIENCE)
    assert ("DELETE", f"/hub/api/users/{server.hub.user}/server") in server.hub.requests


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_lean_server_leaves_out_what_it_does_not_need(server: Server) -> None:
    # idle RSS budget (benchmarks/terminal/RESULTS.md): optional compiled modules stay
    # unloaded, and the event loop is asyncio's unless CLAUDEHUB_EVENT_LOOP=uvloop
    maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
    for lib in ("aiohttp/_http_parser", "yaml/_yaml", "_curses", "uvloop/loop"):
        assert lib not in maps, lib
