"""A learner who types ``/model opus`` in the real CLI is refused by the key proxy, in words.

The CLI runs as the sandbox runs it (launcher, managed settings, unprivileged user) with a
real sandbox token against a real key proxy (``claudehub-keyproxy``, standalone) that allows
one model, in front of the fake upstream. The allowed model answers; after ``/model opus`` the
next question is refused with the allowed models named on the screen, and no request for
another model ever reaches the upstream.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from claudehub.contract.tokens import mint_token
from tests.fakes.upstream import DEFAULT_REPLY, FakeAnthropic
from tests.helpers import PATIENCE, free_port

from .sandbox import prepare_launch
from .test_interactive import cli_in_a_terminal

pytestmark = [pytest.mark.cli, pytest.mark.slow]

ALLOWED = "claude-haiku-4-5"
SECRET = "model-switch-test-secret-0123456789"
REAL_KEY = "sk-ant-api03-model-switch-real-key-0123456789abcdef"


@pytest.fixture
def keyproxy(fake_upstream: FakeAnthropic, tmp_path: Path) -> Iterator[str]:
    """The key proxy as a process, allowing only ALLOWED: its base URL."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDEHUB_"))},
        "CLAUDEHUB_TOKEN_SECRET": SECRET,
        "ANTHROPIC_API_KEY": REAL_KEY,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "claudehub.proxy.app",
            "--standalone",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--upstream-url={fake_upstream.url}",
            f"--db-url=sqlite:///{tmp_path / 'usage.sqlite'}",
            f"--KeyProxyApp.allowed_models={ALLOWED}",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"the key proxy did not start: {err[-2000:]}")
            time.sleep(0.2)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=PATIENCE)


def _squeezed(text: str) -> str:
    """The screen's text without white space (the CLI wraps long messages anywhere)."""
    return "".join(text.split())


def test_model_opus_is_refused_with_the_allowed_model_named(
    claude_cli: Path,
    course: Path,
    sandbox_home: Path,
    fake_upstream: FakeAnthropic,
    keyproxy: str,
) -> None:
    token = mint_token(SECRET.encode(), "learner", "", ttl=3600)
    prep = prepare_launch(claude_cli, course, sandbox_home, keyproxy, api_key=token, model=ALLOWED)
    with cli_in_a_terminal(prep.argv, prep.env, prep.cwd, columns=160) as term:
        child = term.child
        term.wait_for(lambda t: "❯" in t, 60, "Claude's prompt")
        # the allowed model answers
        child.send("What is this course about?")
        term.pump(0.5)
        child.send("\r")
        term.wait_for(lambda t: DEFAULT_REPLY in t, 60, "the allowed model's answer")

        # the learner switches to the most expensive model and asks again
        child.send("/model opus")
        term.pump(1.0)
        child.send("\r")
        term.wait_for(
            lambda t: "Setmodelto" in _squeezed(t) or "Switchmodel?" in _squeezed(t),
            PATIENCE,
            "the model switch",
        )
        if "Setmodelto" not in _squeezed(term.text):
            child.send("\r")  # "Yes, switch" (the CLI asks once a conversation is cached)
            term.wait_for(lambda t: "Setmodelto" in _squeezed(t), PATIENCE, "the model switch")
        term.pump(1.0)
        child.send("And now with Opus?")
        term.pump(0.5)
        child.send("\r")
        term.wait_for(
            lambda t: "notavailableonthishub" in _squeezed(t), 60, "the key proxy's refusal"
        )
        assert f"Allowedmodels:{ALLOWED}" in _squeezed(term.text)

    models = {(r.body or {}).get("model") for r in fake_upstream.message_requests()}
    assert models, "the allowed model was asked"
    assert all(isinstance(m, str) and m.startswith(ALLOWED) for m in models), models
    assert fake_upstream.keys_seen() == {REAL_KEY}
