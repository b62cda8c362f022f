"""Local mode's fork server: real single-user servers forked from the preloaded process.

A fake hub answers the one request a starting server makes (its version check); everything
else is the real fork server (``python -m claudehub.server_ext.forkserver``) and real
jupyter-server with the claudehub extension.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import requests

from claudehub.spawner.forked import ForkedServer, ForkServer, ForkServerError
from tests.fakes import hub_api as fake_hub
from tests.helpers import free_port
from tests.local.running import parent_of

log = logging.getLogger("test-forkserver")


@pytest_asyncio.fixture
async def hub_api() -> AsyncIterator[str]:
    """A stand-in hub API that answers the starting server's version check."""
    port = free_port()
    server = fake_hub.start_hub_api(port)
    yield f"http://127.0.0.1:{port}/hub/api"
    server.stop()


@pytest.fixture
def base_env(hub_api: str) -> dict[str, str]:
    """What every server's environment starts from (as the local spawner builds it)."""
    return fake_hub.base_env(hub_api)


@pytest_asyncio.fixture
async def forkserver(base_env: dict[str, str], tmp_path: Path) -> AsyncIterator[ForkServer]:
    server = ForkServer(base_env, str(tmp_path), log)
    yield server
    await server.stop()


@pytest.fixture
def started() -> Iterator[list[int]]:
    """Pids of servers a test started: stopped at the end whatever happened."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def argv() -> list[str]:
    return ["--allow-root"] if os.geteuid() == 0 else []


async def until_served(url: str, proc: ForkedServer, within: float = 60) -> requests.Response:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        try:
            return await asyncio.to_thread(requests.get, url, timeout=2)
        except requests.ConnectionError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} was not served within {within} s")


async def until_exited(proc: ForkedServer, within: float = 20) -> int:
    for _ in range(int(within * 10)):
        code = proc.poll()
        if code is not None:
            return code
        await asyncio.sleep(0.1)
    raise AssertionError(f"pid {proc.pid} did not exit within {within} s")


def proc_file(pid: int, name: str) -> list[bytes]:
    return Path(f"/proc/{pid}/{name}").read_bytes().split(b"\0")


@pytest.mark.asyncio
async def test_forked_servers_are_the_requested_servers(
    forkserver: ForkServer, base_env: dict[str, str], tmp_path: Path, started: list[int]
) -> None:
    """Two learners' servers are forked from one fork server, each serving its own prefix
    and port from its own home, in its own session; SIGINT stops one (the hub's stop) and
    its exit reaches the spawner, the other keeps serving."""
    servers = {}
    for user in ("fay", "gus"):
        home = tmp_path / "users" / user
        home.mkdir(parents=True)
        port = free_port()
        proc = await forkserver.spawn(
            argv(), fake_hub.server_env(base_env, user, port, home), str(home)
        )
        started.append(proc.pid)
        servers[user] = (proc, port, home)
    for user, (proc, port, home) in servers.items():
        r = await until_served(f"http://127.0.0.1:{port}/user/{user}/api", proc)
        assert r.status_code == 200 and "version" in r.json()
        assert Path(os.readlink(f"/proc/{proc.pid}/cwd")) == home
        assert forkserver.proc is not None and parent_of(proc.pid) == forkserver.proc.pid
        assert os.getsid(proc.pid) == proc.pid  # its own session, like start_new_session
    fay, gus = servers["fay"][0], servers["gus"][0]
    os.kill(fay.pid, signal.SIGINT)
    assert await until_exited(fay) in (0, -signal.SIGINT, 130)
    r = await until_served(f"http://127.0.0.1:{servers['gus'][1]}/user/gus/api", gus)
    assert r.status_code == 200 and gus.poll() is None


@pytest.mark.asyncio
async def test_a_server_that_cannot_start_reports_its_exit(
    forkserver: ForkServer, base_env: dict[str, str], tmp_path: Path, started: list[int]
) -> None:
    """An unknown option stops the server at once: the spawner sees its non-zero status
    (what the hub then shows as "exited with status N"), not a server that seems alive."""
    home = tmp_path / "users" / "hal"
    home.mkdir(parents=True)
    env = fake_hub.server_env(base_env, "hal", free_port(), home)
    proc = await forkserver.spawn([*argv(), "--no-such-option"], env, str(home))
    started.append(proc.pid)
    assert await until_exited(proc) not in (None, 0)
    gone = tmp_path / "users" / "nobody"  # a folder that does not exist
    proc = await forkserver.spawn(argv(), env, str(gone))
    started.append(proc.pid)
    assert await until_exited(proc) == 1


@pytest.mark.asyncio
async def test_bad_requests_are_refused_by_name_and_serving_goes_on(
    forkserver: ForkServer, base_env: dict[str, str], tmp_path: Path, started: list[int]
) -> None:
    home = tmp_path / "users" / "ivy"
    home.mkdir(parents=True)
    port = free_port()
    env = fake_hub.server_env(base_env, "ivy", port, home)
    # starts the fork server
    proc = await forkserver.spawn(argv(), env, str(home))
    started.append(proc.pid)

    def ask(line: bytes) -> dict[str, object]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(forkserver.path)
            s.sendall(line)
            answer = json.loads(s.makefile("rb").readline())
            assert isinstance(answer, dict)
            return answer

    good = {"argv": [], "env": {"A": "b"}, "cwd": str(home)}
    cases = {
        b"not json\n": "not a JSON line",
        b"[1, 2]\n": "expected a JSON object",
        json.dumps({**good, "argv": "--port 1"}).encode() + b"\n": "argv must be a list",
        json.dumps({**good, "env": {"A=B": "c"}}).encode() + b"\n": "env must map",
        json.dumps({**good, "env": {"A": 1}}).encode() + b"\n": "env must map",
        json.dumps({**good, "cwd": "relative"}).encode() + b"\n": "cwd must be an absolute",
        json.dumps({**good, "shell": "sh"}).encode() + b"\n": "unknown field 'shell'",
    }
    for line, expected in cases.items():
        answer = await asyncio.to_thread(ask, line)
        assert expected in str(answer.get("error")), (line, answer)
        assert "pid" not in answer
    r = await until_served(f"http://127.0.0.1:{port}/user/ivy/api", proc)
    assert r.status_code == 200


@pytest.mark.asyncio
async def test_a_fork_server_that_died_is_started_again(
    forkserver: ForkServer, base_env: dict[str, str], tmp_path: Path, started: list[int]
) -> None:
    """Killing the fork server leaves its servers running (watched by pid from then on);
    the next start gets a new fork server."""
    homes = {}
    for user in ("jay", "kim"):
        homes[user] = tmp_path / "users" / user
        homes[user].mkdir(parents=True)
    port = free_port()
    first = await forkserver.spawn(
        argv(), fake_hub.server_env(base_env, "jay", port, homes["jay"]), str(homes["jay"])
    )
    started.append(first.pid)
    await until_served(f"http://127.0.0.1:{port}/user/jay/api", first)
    assert forkserver.proc is not None
    old = forkserver.proc.pid
    os.kill(old, signal.SIGKILL)
    await forkserver.proc.wait()
    second_port = free_port()
    second = await forkserver.spawn(
        argv(), fake_hub.server_env(base_env, "kim", second_port, homes["kim"]), str(homes["kim"])
    )
    started.append(second.pid)
    assert forkserver.proc.pid != old
    r = await until_served(f"http://127.0.0.1:{second_port}/user/kim/api", second)
    assert r.status_code == 200
    assert first.poll() is None  # still serving, though its fork server is gone
    os.kill(first.pid, signal.SIGTERM)
    assert await asyncio.wait_for(first.wait(), 20) == 0  # seen gone by pid


@pytest.mark.asyncio
async def test_an_environment_that_changes_imports_gets_a_fresh_process(
    forkserver: ForkServer, base_env: dict[str, str], tmp_path: Path, started: list[int]
) -> None:
    """A server asked for with another event loop setting (read at import) is not forked
    from modules imported without it: it is exec'd as a fresh single-user server."""
    home = tmp_path / "users" / "lou"
    home.mkdir(parents=True)
    port = free_port()
    env = {**fake_hub.server_env(base_env, "lou", port, home), "CLAUDEHUB_EVENT_LOOP": "asyncio"}
    proc = await forkserver.spawn(argv(), env, str(home))
    started.append(proc.pid)
    r = await until_served(f"http://127.0.0.1:{port}/user/lou/api", proc)
    assert r.status_code == 200
    assert b"claudehub.server_ext.singleuser" in proc_file(proc.pid, "cmdline")
    assert b"JUPYTERHUB_USER=lou" in proc_file(
        proc.pid, "environ"
    )  # a fresh process shows its own environment


@pytest.mark.asyncio
async def test_a_fork_server_that_cannot_start_is_reported(tmp_path: Path) -> None:
    """A Python that cannot import the fork server: the spawner's error says so (and the
    local spawner then starts a fresh process instead)."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(tmp_path / "shadow")}
    shadow = tmp_path / "shadow" / "claudehub"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise SystemExit(3)\n")
    server = ForkServer(env, str(tmp_path), log)
    with pytest.raises(ForkServerError, match="exited with status 3 while starting"):
        await server.spawn([], {}, str(tmp_path))
    assert server.proc is not None
    first = server.proc.pid
    # not tried again at every start: each would pay for the attempt
    with pytest.raises(ForkServerError, match="exited with status 3 while starting"):
        await server.spawn([], {}, str(tmp_path))
    assert server.proc.pid == first
    await server.stop()
