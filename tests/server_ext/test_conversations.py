"""Conversations continue: reopening a course resumes its last conversation with Claude, and
"New conversation" starts a fresh one.

The first test speaks the terminal websocket with bash standing in for Claude (what the
server does with ["new_conversation"]); the second runs the real Claude Code CLI through
the launcher and the server's session manager, against the fake upstream, across two
server lifetimes sharing one $HOME (as local mode's home folder and Kubernetes mode's home
volume do).
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from claudehub.server_ext.sessions import SessionManager, SessionSettings
from tests.fakes.upstream import FakeAnthropic

# no pytest.mark.asyncio on the websocket test: pytest-jupyter runs it on the server's loop


async def test_new_conversation_restarts_the_process_without_continue(open_term: Any) -> None:
    term = await open_term()
    first_pid = term.setup["pid"]
    await term.type("echo fresh=[$CLAUDEHUB_NEW_CONVERSATION]\r")
    await term.expect("fresh=[]")

    await term.send("new_conversation")
    started = await term.event("started")
    assert started[1]["pid"] != first_pid
    # the old process was ended (SIGHUP) before the new one started: that exit is not the
    # one waited for below
    term.events = [e for e in term.events if e[0] != "exit"]
    term.output = ""
    await term.type("echo fresh=[$CLAUDEHUB_NEW_CONVERSATION]\r")
    await term.expect("fresh=[1]")  # the launcher leaves out --continue on this start

    # a later start (after an exit) continues again: the variable was for one start only
    await term.type("exit\r")
    await term.event("exit")
    await term.send("restart")
    await term.event("started")
    term.output = ""
    await term.type("echo fresh=[$CLAUDEHUB_NEW_CONVERSATION]\r")
    await term.expect("fresh=[]")


@pytest.mark.asyncio
@pytest.mark.parametrize("meanwhile", ["the tab closes", "the server stops"])
async def test_a_new_conversation_cut_short_leaves_no_process(meanwhile: str) -> None:
    manager = SessionManager(
        SessionSettings(
            command=("bash", "--norc", "--noprofile", "-i"), term_env={}, mode="per-connection"
        )
    )
    session = manager.open()
    tab = Screen()
    tab.session = session
    session.attach(tab)
    renewal = asyncio.create_task(manager.new_conversation(session))
    await asyncio.sleep(0)  # the old process is being ended
    if meanwhile == "the tab closes":
        session.detach(tab)
        await manager.release(session)
    else:
        await manager.shutdown()
    await renewal
    assert not session.alive
    assert ("started", {"pid": session.pid}) not in tab.events
    await manager.shutdown()


# -- the real CLI ---------------------------------------------------------------------------------

ANSI = re.compile(
    r"\x1b\[[0-9;?<>=]*[A-Za-z~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Z0-9]|\x1b."
)
KNOWN_MODEL = "claude-sonnet-4-5"
QUESTION_1 = "What does the attention stage teach, ZEBRA?"
ANSWER_1 = "It teaches scaled dot-product attention, OKAPI."
QUESTION_2 = "Tell me about positional encodings, HERON."
ANSWER_2 = "They give each token its place, IBIS."


class Screen:
    """A tab attached to a session: keeps what it was sent, answers the CLI's terminal
    queries as xterm.js does, and starts over on "started" (as the page resets)."""

    def __init__(self) -> None:
        self.raw = ""
        self.session: Any = None
        self.events: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()

    def send_output(self, data: bytes) -> None:
        text = data.decode()
        self.raw += text
        self.changed.set()
        if "\x1b[6n" in text:
            self.session.write("\x1b[1;1R")
        if "\x1b[c" in text:
            self.session.write("\x1b[?62;22c")

    def send_event(self, kind: str, payload: Any) -> None:
        self.events.append((kind, payload))
        if kind == "started":
            self.raw = ""

    @property
    def text(self) -> str:
        return " ".join(ANSI.sub(" ", self.raw).split())

    async def wait_for(self, needle: str, wait: float = 60) -> None:
        async with asyncio.timeout(wait):
            while needle not in self.text:
                self.changed.clear()
                await self.changed.wait()

    async def ask(self, question: str, answer: str) -> None:
        await self.wait_for("don't ask")  # at the prompt
        self.session.write(question)
        # Enter only once the question is echoed: Claude Code reads a key burst as a paste
        await self.wait_for(question)
        self.session.write("\r")
        await self.wait_for(answer)


def _settings(claude_cli: Path, home: Path, course: Path, upstream: str) -> SessionSettings:
    return SessionSettings(
        command=(sys.executable, "-m", "claudehub.server_ext.launcher"),
        term_env={
            "HOME": str(home),
            "CLAUDEHUB_COURSE_DIR": str(course),
            "CLAUDEHUB_CLAUDE_BIN": str(claude_cli),
            "ANTHROPIC_BASE_URL": upstream,
            "ANTHROPIC_API_KEY": "chs1.conversation-test-token.0123456789abcdef",
            "ANTHROPIC_MODEL": KNOWN_MODEL,
            "CLAUDEHUB_SHELL_STUB": "/bin/false",
        },
    )


async def _open(manager: SessionManager) -> Screen:
    screen = Screen()
    session = manager.open()
    screen.session = session
    session.resize(40, 120)
    session.attach(screen)
    return screen


def _asked(fake: FakeAnthropic) -> str:
    """The messages of the model's latest request, as text."""
    body = fake.agent_requests()[-1].body or {}
    return str(body.get("messages"))


@pytest.mark.asyncio
@pytest.mark.cli
@pytest.mark.slow
async def test_reopening_a_course_continues_its_conversation_and_new_starts_fresh(
    claude_cli: Path, fake_upstream: FakeAnthropic, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    course = home / "courses" / "attention"
    course.mkdir(parents=True)
    (course / "CLAUDE.md").write_text("# Tutor\n\nYou are the tutor.\n", encoding="utf-8")
    settings = _settings(claude_cli, home, course, fake_upstream.url)
    fake_upstream.script(ANSWER_1, "Follow-up answer.", ANSWER_2, "Last answer.")

    # Day one: a question and its answer; then the server stops.
    manager = SessionManager(settings)
    screen = await _open(manager)
    await screen.ask(QUESTION_1, ANSWER_1)
    await manager.shutdown()

    # Day two, a new server on the same home: the conversation is back on screen, and
    # Claude has it (the next request carries the first question).
    manager = SessionManager(settings)
    screen = await _open(manager)
    await screen.wait_for(ANSWER_1)
    assert QUESTION_1 in screen.text
    await screen.ask("And after that?", "Follow-up answer.")
    assert QUESTION_1 in _asked(fake_upstream)

    # "New conversation": a fresh Claude, without the old exchange, on screen or in its request
    session = screen.session
    await manager.new_conversation(session)
    assert screen.events[-1][0] == "started"
    await screen.ask(QUESTION_2, ANSWER_2)
    assert QUESTION_1 not in screen.text
    assert QUESTION_1 not in _asked(fake_upstream)
    await manager.shutdown()

    # Reopened once more: the newest conversation is the one that continues.
    manager = SessionManager(settings)
    screen = await _open(manager)
    await screen.wait_for(ANSWER_2)
    assert QUESTION_1 not in screen.text
    await manager.shutdown()

    # Another course has a history of its own: nothing to continue there yet.
    other = home / "courses" / "rnn"
    other.mkdir()
    manager = SessionManager(_settings(claude_cli, home, other, fake_upstream.url))
    screen = await _open(manager)
    await screen.wait_for("don't ask")
    await asyncio.sleep(1.0)
    assert ANSWER_2 not in screen.text and ANSWER_1 not in screen.text
    assert screen.session.alive  # `--continue` with nothing to continue would have exited
    await manager.shutdown()
