"""Real clients through the key proxy: the Anthropic Python SDK and the Claude Code CLI.

Both send the sandbox token either as ``x-api-key`` (ANTHROPIC_API_KEY) or as
``Authorization: Bearer`` (ANTHROPIC_AUTH_TOKEN); the fake upstream must only ever see the
real key.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import shutil
import struct
import sys
import tempfile
import termios
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from tests.fakes.upstream import FakeAnthropic
from tests.helpers import PATIENCE
from tests.proxy.conftest import REAL_KEY, StartProxy, token

QUIET_CLI_ENV = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
}


async def claude_print_as_nobody(
    claude_cli: Path, home: Path, env: dict[str, str], wait_s: float
) -> tuple[int | None, bytes, bytes]:
    """``claude -p "Say something."`` as the unprivileged user, with exactly ``env``."""
    proc = await asyncio.create_subprocess_exec(
        "runuser",
        "-u",
        "nobody",
        "--",
        "env",
        "-i",
        *[f"{k}={v}" for k, v in env.items()],
        str(claude_cli),
        "-p",
        "Say something.",
        cwd=str(home),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), wait_s)
    return proc.returncode, out, err


@pytest.mark.asyncio
@pytest.mark.parametrize("as_bearer", [False, True], ids=["x-api-key", "bearer"])
async def test_anthropic_sdk_json_and_streaming(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, as_bearer: bool
) -> None:
    fake_upstream.require_key = REAL_KEY
    proxy = await start_proxy(fake_upstream.url)
    tok = token("alice")
    creds = {"auth_token": tok, "api_key": None} if as_bearer else {"api_key": tok}
    async with anthropic.AsyncAnthropic(base_url=proxy.url, max_retries=0, **creds) as client:
        msg = await client.messages.create(
            model="claude-sonnet-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
        assert msg.content[0].text == "Hello from the fake upstream."  # type: ignore[union-attr]
        assert msg.usage.output_tokens > 0
        fake_upstream.script("streamed through the key proxy")
        async with client.messages.stream(
            model="claude-sonnet-5",
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
            tools=[{"name": "Read", "description": "read", "input_schema": {"type": "object"}}],
        ) as stream:
            texts = [t async for t in stream.text_stream]
        assert "".join(texts) == "streamed through the key proxy"
        counted = await client.messages.count_tokens(
            model="claude-sonnet-5", messages=[{"role": "user", "content": "hi"}]
        )
        assert counted.input_tokens > 0
    assert fake_upstream.keys_seen() == {REAL_KEY}
    assert all("authorization" not in r.headers for r in fake_upstream.requests)


def test_anthropic_sdk_sync_client_against_the_real_app(
    fake_upstream: FakeAnthropic, tmp_path: Path
) -> None:
    """The console script, started as an operator would (standalone), serves the sync SDK."""
    import subprocess
    import time

    from tests.helpers import free_port

    port = free_port()
    env = dict(
        os.environ,
        ANTHROPIC_API_KEY=REAL_KEY,
        ANTHROPIC_UPSTREAM_URL=fake_upstream.url,
        CLAUDEHUB_TOKEN_SECRET="app-secret",
    )
    env.pop("JUPYTERHUB_API_TOKEN", None)
    exe = shutil.which("claudehub-keyproxy", path=str(Path(sys.executable).parent))
    assert exe
    tok = subprocess.run(
        [exe, "mint-token", "--user", "erin", "--ttl", "600"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    proc = subprocess.Popen(
        [exe, "--standalone", f"--port={port}", f"--db-url=sqlite:///{tmp_path}/u.sqlite"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = anthropic.Anthropic(
            base_url=f"http://127.0.0.1:{port}", api_key=tok, max_retries=5
        )
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                msg = client.messages.create(
                    model="claude-sonnet-5",
                    max_tokens=8,
                    messages=[{"role": "user", "content": "hi"}],
                )
                break
            except anthropic.APIConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert msg.content[0].text == "Hello from the fake upstream."  # type: ignore[union-attr]
        with client.messages.stream(
            model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            assert stream.get_final_text() == "Hello from the fake upstream."
        with pytest.raises(anthropic.AuthenticationError):
            anthropic.Anthropic(
                base_url=f"http://127.0.0.1:{port}", api_key="sk-ant-guess", max_retries=0
            ).messages.create(
                model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
        client.close()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 0, out
    assert "standalone mode" in out and "Stopped" in out
    assert tok not in out and REAL_KEY not in out
    assert fake_upstream.keys_seen() == {REAL_KEY}


@contextlib.contextmanager
def nobody_home() -> Iterator[Path]:
    """A HOME owned by ``nobody`` that ``nobody`` can reach (pytest's tmp_path is root-only)."""
    home = Path(tempfile.mkdtemp(prefix="claudehub-keyproxy-nobody-"))
    shutil.chown(home, "nobody")
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.asyncio
@pytest.mark.cli
@pytest.mark.slow
@pytest.mark.parametrize("variable", ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"])
async def test_claude_code_print_mode_as_an_unprivileged_user(
    fake_upstream: FakeAnthropic,
    start_proxy: StartProxy,
    claude_cli: Path,
    tmp_path: Path,
    variable: str,
) -> None:
    fake_upstream.require_key = REAL_KEY
    fake_upstream.script("The key proxy answered.")
    proxy = await start_proxy(fake_upstream.url)
    tok = token("nobody-user")
    with nobody_home() as home:
        env = dict(QUIET_CLI_ENV, HOME=str(home), ANTHROPIC_BASE_URL=proxy.url, **{variable: tok})
        returncode, out, err = await claude_print_as_nobody(claude_cli, home, env, wait_s=120)
        wrote_config = any(home.iterdir())
    assert returncode == 0, err.decode()
    assert "The key proxy answered." in out.decode()
    assert wrote_config, "the CLI ran as nobody with a usable HOME"
    assert fake_upstream.keys_seen() == {REAL_KEY}
    messages = fake_upstream.message_requests()
    assert messages and all(r.query == "beta=true" for r in messages)
    assert all(
        "anthropic-beta" in r.headers and r.headers["x-api-key"] == REAL_KEY for r in messages
    )
    assert tok not in json.dumps([r.headers for r in fake_upstream.requests])


@pytest.mark.asyncio
@pytest.mark.cli
@pytest.mark.slow
async def test_claude_code_interactive_session_in_a_pty(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, claude_cli: Path, tmp_path: Path
) -> None:
    fake_upstream.require_key = REAL_KEY
    fake_upstream.script("Interactive-answer-via-the-key-proxy.")
    proxy = await start_proxy(fake_upstream.url)
    tok = token("root-user")
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / ".claude.json").write_text(
        json.dumps(
            {
                "hasCompletedOnboarding": True,
                "theme": "dark",
                "projects": {str(work): {"hasTrustDialogAccepted": True, "allowedTools": []}},
                "customApiKeyResponses": {"approved": [tok[-20:]], "rejected": []},
            }
        )
    )
    env = dict(
        QUIET_CLI_ENV,
        HOME=str(home),
        ANTHROPIC_BASE_URL=proxy.url,
        ANTHROPIC_API_KEY=tok,
        TERM="xterm-256color",
    )
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = await asyncio.create_subprocess_exec(
        str(claude_cli),
        cwd=str(work),
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    os.set_blocking(master, False)
    screen = b""

    async def wait_for(marker: bytes, seconds: float) -> None:
        nonlocal screen
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while marker not in screen:
            if loop.time() > deadline:
                raise AssertionError(f"{marker!r} not on screen: {screen[-3000:]!r}")
            try:
                screen += os.read(master, 65536)
            except BlockingIOError:
                await asyncio.sleep(0.05)
            except OSError:
                raise AssertionError(f"CLI exited: {screen[-3000:]!r}") from None

    try:
        await wait_for("❯\xa0".encode(), 60)  # the input prompt
        await asyncio.sleep(0.5)
        os.write(master, b"Please answer.")
        await asyncio.sleep(0.3)
        os.write(master, b"\r")
        await wait_for(b"Interactive-answer-via-the-key-proxy.", 60)
    finally:
        proc.kill()
        await proc.wait()
        os.close(master)
    assert fake_upstream.keys_seen() == {REAL_KEY}
    assert any(r.tool_names for r in fake_upstream.message_requests())


@pytest.mark.asyncio
@pytest.mark.cli
@pytest.mark.slow
async def test_claude_code_shows_why_it_was_refused_at_once(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, claude_cli: Path
) -> None:
    """No real key configured: Claude Code prints the proxy's message (no retry loop)."""
    proxy = await start_proxy(fake_upstream.url, api_key="")
    with nobody_home() as home:
        env = dict(
            QUIET_CLI_ENV, HOME=str(home), ANTHROPIC_BASE_URL=proxy.url, ANTHROPIC_API_KEY=token()
        )
        _, out, err = await claude_print_as_nobody(claude_cli, home, env, wait_s=60)
    text = out.decode() + err.decode()
    assert "no Anthropic API key configured" in text and "ANTHROPIC_API_KEY" in text
    assert proxy.metrics.requests == {("/v1/messages", 401): 1}
    assert fake_upstream.requests == []
