"""Fixtures for the claudehub server extension: a jupyter server (pytest-jupyter) with the
extension enabled and an interactive bash in the terminal instead of Claude."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.helpers import PATIENCE

BASH = ["bash", "--norc", "--noprofile", "-i"]


@pytest.fixture
def claude_command() -> list[str]:
    return BASH


@pytest.fixture
def jp_server_config(claude_command: list[str]) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"claudehub.server_ext": True}},
        "ClaudeHubApp": {
            "command": claude_command,
            "term_env": {"PS1": "$ ", "HISTFILE": "/dev/null"},
        },
    }


class Term:
    """A websocket client of {base_url}claude/terminal, speaking the page's protocol
    (claudehub.v2: output in binary frames; ``received`` counts its bytes, as acks do)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[list[Any]] = []
        self.output = ""
        self.received = 0
        self.setup: dict[str, Any] = {}

    async def send(self, *msg: Any) -> None:
        await self.ws.write_message(json.dumps(list(msg)))

    async def type(self, text: str) -> None:
        await self.send("stdin", text)

    async def next(self, wait: float = PATIENCE) -> list[Any]:
        raw = await asyncio.wait_for(self.ws.read_message(), wait)
        assert raw is not None, "websocket closed"
        if isinstance(raw, bytes):
            self.received += len(raw)
            raw = json.dumps(["stdout", raw.decode()])
        msg = json.loads(raw)
        if msg[0] == "stdout":
            self.output += msg[1]
        else:
            self.events.append(msg)
        return msg  # type: ignore[no-any-return]

    async def expect(self, text: str, wait: float = PATIENCE) -> str:
        """Read until `text` appears in the output; returns the output so far."""
        async with asyncio.timeout(wait):
            while text not in self.output:
                await self.next(wait)
        return self.output

    async def event(self, kind: str, wait: float = PATIENCE) -> list[Any]:
        async with asyncio.timeout(wait):
            while True:
                for i, ev in enumerate(self.events):
                    if ev[0] == kind:
                        return self.events.pop(i)
                await self.next(wait)

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def open_term(jp_ws_fetch: Any) -> Any:
    terms: list[Term] = []

    async def _open() -> Term:
        ws = await jp_ws_fetch("claude", "terminal", subprotocols=["claudehub.v2"])
        assert ws.selected_subprotocol == "claudehub.v2"
        term = Term(ws)
        terms.append(term)
        term.setup = (await term.event("setup"))[1]
        await term.send("set_size", 24, 80, 0, 0)
        return term

    yield _open
    for t in terms:
        t.close()
