"""The launcher in a real terminal: Claude's prompt at once; no shell behind ``!`` or Ctrl-G."""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pytest

from tests.fakes.upstream import DEFAULT_REPLY, FakeAnthropic
from tests.helpers import PATIENCE

from .sandbox import TUTOR_PHRASE, assert_only_read_tools, namespace_argv, prepare_launch

pytestmark = [pytest.mark.cli, pytest.mark.slow]

REFUSAL = "disabled in this sandbox"
ANSI = re.compile(
    r"\x1b\[[0-9;?<>=]*[A-Za-z~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Z0-9]|\x1b."
)

#: What Claude Code shows when it is not ready to take a question.
NOT_AT_PROMPT = [
    "Choose the text style",  # onboarding (theme)
    "Let's get started",
    "Detected a custom API key",  # API-key question
    "Do you want to use this API key",
    "Do you trust the files",  # trust dialog
    "trust this folder",
    "Select login method",
]


class Terminal:
    """Reads a pty, answers the terminal queries the CLI sends, keeps the text it printed."""

    def __init__(self, child: pexpect.spawn) -> None:
        self.child = child
        self.raw = ""

    @property
    def text(self) -> str:
        return " ".join(ANSI.sub(" ", self.raw).split())

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.child.read_nonblocking(65536, timeout=0.1)
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                return
            self.raw += data
            if "\x1b[6n" in data:
                self.child.send("\x1b[1;1R")
            if "\x1b[c" in data:
                self.child.send("\x1b[?62;22c")

    def wait_for(self, what: Callable[[str], bool], timeout: float, label: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if what(self.text):
                return
            if not self.child.isalive():
                break
            self.pump(0.2)
        raise AssertionError(f"timed out waiting for {label}; screen text:\n{self.text[-3000:]}")


@contextlib.contextmanager
def cli_in_a_terminal(
    argv: list[str], env: dict[str, str], cwd: str, columns: int = 120
) -> Iterator[Terminal]:
    """``argv`` run as the sandbox user (:func:`namespace_argv`) in a 40-row pty."""
    with tempfile.TemporaryDirectory(prefix="claudehub-ns-") as ov:
        cmd, host_env = namespace_argv(argv, env, cwd, Path(ov))
        child = pexpect.spawn(
            cmd[0],
            cmd[1:],
            env=host_env,
            dimensions=(40, columns),
            encoding="utf-8",
            codec_errors="replace",
        )
        try:
            yield Terminal(child)
        finally:
            child.close(force=True)


def test_launcher_lands_on_the_prompt_and_bang_runs_no_shell(
    claude_cli: Path,
    course: Path,
    sandbox_home: Path,
    fake_upstream: FakeAnthropic,
    marks: Path,
) -> None:
    prep = prepare_launch(claude_cli, course, sandbox_home, fake_upstream.url)
    with cli_in_a_terminal(prep.argv, prep.env, prep.cwd) as term:
        child = term.child
        # Straight to the input prompt: no theme picker, trust dialog or key question.
        term.wait_for(lambda t: "❯" in t and "don't ask" in t, PATIENCE, "Claude's prompt")
        term.pump(1.0)
        for question in NOT_AT_PROMPT:
            assert question not in term.text
        # the startup warnings learners used to see: the token reaches the CLI one way
        # only (the managed apiKeyHelper), and no deny rule names a tool 2.1.328 lacks
        for warning in ("Both apiKeyHelper and ANTHROPIC_API_KEY", "matches no tool"):
            assert warning not in term.text, term.text[-2000:]

        # `!` is Claude Code's shell mode; in the sandbox it reaches only the refusing stub.
        child.send(f"!touch {marks / 'bang'}")
        term.pump(0.5)
        child.send("\r")
        term.wait_for(lambda t: REFUSAL in t, PATIENCE, "the shell refusal")
        assert not (marks / "bang").exists()

        # Ctrl-G opens the prompt in $EDITOR: the stub again, not an editor with a shell.
        seen = term.text.count(REFUSAL)
        child.send("draft")
        term.pump(0.5)
        child.send("\x07")
        term.wait_for(lambda t: t.count(REFUSAL) > seen, PATIENCE, "the editor refusal")
        child.send("\x1b")
        term.pump(0.3)
        child.send("\x15")  # clear the draft
        term.pump(0.3)

        # A question gets the (fake) model's answer, asked with the read-only tools only.
        child.send("What is this course about?")
        term.pump(0.5)
        child.send("\r")
        term.wait_for(lambda t: DEFAULT_REPLY in t, PATIENCE, "the model's answer")

    assert_only_read_tools(fake_upstream)
    assert TUTOR_PHRASE in fake_upstream.agent_requests()[-1].raw.decode()
    assert not list(marks.iterdir())
