"""A class logging in at once: more starts than the hub admits at a time all start, in turn,
and every waiting learner is told how many are ahead of them; none sees an error."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import requests
from traitlets.config import Config

from claudehub.hub.local import LocalSettings, configure_local
from tests.e2e.conftest import start_local_stack, stop_local_stack
from tests.fakes.upstream import FakeAnthropic
from tests.helpers import PATIENCE
from tests.local.running import log_in_and_start, parent_of, server_process

LEARNERS = 5


def _start_and_follow(url: str, user: str, password: str, out: dict[str, object]) -> None:
    """Log in, ask for the server, and read the spawn-pending page's progress events."""
    s = requests.Session()
    page = s.get(f"{url}/hub/login", timeout=PATIENCE).text
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page)
    data = {"username": user, "password": password, "_xsrf": xsrf.group(1) if xsrf else ""}
    r = s.post(f"{url}/hub/login", data=data, timeout=PATIENCE, allow_redirects=False)
    assert r.status_code in (302, 303), r.status_code
    headers = {"X-XSRFToken": s.cookies.get("_xsrf", "")}
    events: list[dict[str, object]] = []
    out["events"] = events

    def ask() -> None:  # answers once the server is up or after the hub's 10 s
        r = s.post(f"{url}/hub/api/users/{user}/server", json={}, headers=headers, timeout=150)
        out["status"] = r.status_code

    asking = threading.Thread(target=ask)
    asking.start()
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        info = s.get(f"{url}/hub/api/users/{user}", headers=headers, timeout=PATIENCE).json()
        if info.get("pending") or info.get("servers", {}).get("", {}).get("ready"):
            break
        time.sleep(0.1)
    # what the spawn-pending page reads while the learner waits
    with s.get(
        f"{url}/hub/api/users/{user}/server/progress", headers=headers, stream=True, timeout=150
    ) as progress:
        for line in progress.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                event = json.loads(line[5:])
                events.append(event)
                if event.get("ready") or event.get("failed"):
                    break
    asking.join(150)


def _server(user: str) -> int:
    pid = server_process(user)
    assert pid is not None, f"no server running for {user}"
    return pid


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


@pytest.mark.slow
def test_with_preloading_off_each_server_is_a_fresh_process(tmp_path: Path) -> None:
    with FakeAnthropic() as upstream:
        stack = start_local_stack(tmp_path, upstream, {"CLAUDEHUB_PRELOAD_SERVER": "false"})
        try:
            log_in_and_start(stack.url, "fresh", stack.password)
            pid = _server("fresh")
            assert parent_of(pid) == stack.process.pid
            assert b"claudehub.server_ext.singleuser" in _cmdline(pid)
            assert b"JUPYTERHUB_USER=fresh" in Path(f"/proc/{pid}/environ").read_bytes()
        finally:
            stop_local_stack(stack)


@pytest.mark.slow
def test_more_learners_than_start_slots_all_start_and_see_the_queue(tmp_path: Path) -> None:
    upstream = FakeAnthropic()
    upstream.start()
    stack = start_local_stack(
        tmp_path, upstream, {"CLAUDEHUB_START_SLOTS": "1", "CLAUDEHUB_CLASS_SIZE": "3"}
    )
    try:
        log_in_and_start(stack.url, "warmup", stack.password)  # imports cached on disk
        results: dict[str, dict[str, object]] = {f"learner{i}": {} for i in range(LEARNERS)}
        threads = [
            threading.Thread(target=_start_and_follow, args=(stack.url, u, stack.password, r))
            for u, r in results.items()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(150)
        log = stack.log_text()
        messages = []
        for user, r in results.items():
            assert r.get("status") in (201, 202), (user, r, log[-3000:])
            events = r["events"]
            assert isinstance(events, list)
            assert events and events[-1].get("ready"), (user, events, log[-3000:])
            messages += [str(e.get("message", "")) for e in events]
        # one slot, five learners at once: someone waited behind others and was told so
        assert any("ahead of you in the queue" in m for m in messages), messages
        assert any("you are next in the queue" in m for m in messages), messages
        assert "Spawn failed" not in log and "Timeout in request queue" not in log, log[-3000:]
        # every server was forked from the one fork server, a child of the hub
        parents = {parent_of(_server(user)) for user in [*results, "warmup"]}
        assert len(parents) == 1, parents
        (forkserver,) = parents
        assert b"claudehub.server_ext.forkserver" in _cmdline(forkserver)
        assert parent_of(forkserver) == stack.process.pid
    finally:
        if stack.process.poll() is None:
            os.killpg(stack.process.pid, signal.SIGTERM)
            try:
                stack.process.wait(PATIENCE)
            except Exception:
                os.killpg(stack.process.pid, signal.SIGKILL)
                raise
        upstream.stop()


def test_start_timeout_leaves_room_for_the_whole_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDEHUB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CLAUDEHUB_CLASS_SIZE", "100")
    c = Config()
    configure_local(c, LocalSettings())
    # the last of 100 on this machine waits behind 99 starts, and the hub's own 429 page
    # is beyond the class
    cores = os.cpu_count() or 1
    assert c.Spawner.start_timeout >= 60 + 100 * 5 / cores
    assert c.JupyterHub.concurrent_spawn_limit > 100
