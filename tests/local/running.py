"""Helpers for driving a running local stack from outside: log in, start servers, stream."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import requests

from claudehub.contract.env import TOKEN_SECRET
from claudehub.contract.tokens import load_token_secret, mint_token
from tests.helpers import PATIENCE


def parent_of(pid: int) -> int:
    """The parent pid of ``pid`` (from /proc; OSError once it is gone)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = parent_of(int(entry))
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def sandbox_token(user: str, pids: set[int]) -> str:
    """A sandbox token for ``user``, as their server holds one: signed with the secret the
    key proxy among ``pids`` was started with (a forked server's /proc environ is the fork
    server's, so the token is not read from there)."""
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"claudehub.proxy.app" not in cmd:
            continue
        values = dict(e.split(b"=", 1) for e in env if b"=" in e)
        secret = values.get(TOKEN_SECRET.encode())
        if secret:
            return mint_token(load_token_secret(secret.decode()), user, "", ttl=3600)
    raise RuntimeError("no key proxy with a token secret found")


def server_process(user: str) -> int | None:
    """The pid of ``user``'s running single-user server (fresh or forked: its working folder
    is the user's home, ``.../users/<user>``), or None."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            cwd = Path(os.readlink(f"/proc/{entry}/cwd"))
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z" or (cwd.name, cwd.parent.name) != (user, "users"):
            continue
        if b"claudehub.server_ext.singleuser" in cmd or b"claudehub.server_ext.forkserver" in cmd:
            return int(entry)
    return None


def log_in_and_start(url: str, user: str, password: str) -> requests.Session:
    """Log ``user`` in through the login form and start their server (no course)."""
    s = requests.Session()
    page = s.get(f"{url}/hub/login", timeout=PATIENCE).text
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page)
    data = {"username": user, "password": password}
    if xsrf:
        data["_xsrf"] = xsrf.group(1)
    r = s.post(f"{url}/hub/login", data=data, timeout=PATIENCE, allow_redirects=False)
    assert r.status_code in (302, 303), r.status_code
    headers = {"X-XSRFToken": s.cookies.get("_xsrf", "")}
    r = s.post(f"{url}/hub/api/users/{user}/server", json={}, headers=headers, timeout=60)
    assert r.status_code in (201, 202), (r.status_code, r.text)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        info = s.get(f"{url}/hub/api/users/{user}", headers=headers, timeout=PATIENCE).json()
        if info.get("servers", {}).get("", {}).get("ready"):
            return s
        time.sleep(0.5)
    raise RuntimeError(f"{user}'s server did not start")


def stream(keyproxy: str, token: str, started: threading.Event) -> None:
    """Ask for a streamed answer through the key proxy and read it to the end."""
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": True,
        "messages": [{"role": "user", "content": "Tell me a long story."}],
    }
    try:
        with requests.post(
            f"{keyproxy}/v1/messages",
            json=body,
            headers={"x-api-key": token, "anthropic-version": "2023-06-01"},
            stream=True,
            timeout=300,
        ) as r:
            for _ in r.iter_content(64):
                started.set()
    except requests.RequestException:
        pass
