"""The terminal processes of this server: one shared by every tab, or one per connection.

:class:`SessionManager` is built by the extension app from a :class:`SessionSettings` (what
it needs of the app's configuration, nothing more) and two callbacks, and is handed to the
handlers through the tornado settings (``settings["claude_sessions"]``), as jupyter-server's
terminals extension does with its ``terminal_manager``. It knows nothing of the app.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from . import websocket
from .launcher import NEW_CONVERSATION_ENV
from .markers import TerminalMarkerFilter
from .pty_session import PtySession

SessionMode = Literal["shared", "per-connection"]


@dataclass(frozen=True)
class SessionSettings:
    """What the terminal sessions are started with (from ``ClaudeHubApp``'s configuration)."""

    #: argv of the terminal's process
    command: tuple[str, ...]
    #: extra environment variables for it (over the server's own)
    term_env: Mapping[str, str]
    #: the server's variables whose names start with one of these are not passed on
    #: (the server's hub API token must not reach Claude)
    env_remove_prefixes: tuple[str, ...] = ("JUPYTERHUB_", "JPY_")
    #: "shared": one process for every tab; "per-connection": one per websocket
    mode: SessionMode = "shared"
    #: characters of recent output replayed to a tab that (re)attaches
    replay_limit: int = 256 * 1024
    #: seconds a client's flow-control pause holds the terminal at most
    pause_timeout: float = 10.0
    #: bytes in flight to an acknowledging tab before the pty stops being read (0: none)
    ack_window: int = 512 * 1024
    #: seconds between two activity reports at most (input and output are very frequent)
    activity_interval: float = 1.0

    def environment(self) -> dict[str, str]:
        """The environment of the terminal's process.

        Read from the server's environment each time a process starts, not once: what is
        withheld is decided by name, whenever the variable was set.
        """
        # The exec boundary (tests/test_contract.py allows it): the terminal's process
        # inherits the server's environment, filtered by name here, where it is built.
        env = {
            k: v
            for k, v in os.environ.items()
            if not any(k.startswith(p) for p in self.env_remove_prefixes)
        }
        env["TERM"] = "xterm-256color"
        env["COLORTERM"] = "truecolor"
        env.update(self.term_env)
        return env


class SessionManager:
    """Owns the terminal processes of this server and the connections attached to them.

    ``on_activity`` is called (at most every ``settings.activity_interval`` s) when the
    terminal is in use, ``on_marker`` with each tutor marker found in its output
    (``{"kind": "stage", "stage": N}`` or ``{"kind": "course"}``).
    """

    def __init__(
        self,
        settings: SessionSettings,
        *,
        on_activity: Callable[[], None] | None = None,
        on_marker: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.shared: PtySession | None = None
        self.private: set[PtySession] = set()
        self.connections: set[websocket.WebSocketConnection] = set()
        self._on_activity = on_activity
        self._on_marker = on_marker
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_activity = 0.0
        # one restart at a time: two clicks must not start two processes on one pty
        self._restarting: set[PtySession] = set()
        self._closing = False

    @property
    def mode(self) -> SessionMode:
        """The session mode (told to every client in its ``setup`` message)."""
        return self.settings.mode

    def _new_session(self) -> PtySession:
        s = self.settings
        return PtySession(
            s.command,
            env=s.environment(),
            replay_limit=s.replay_limit,
            pause_timeout=s.pause_timeout,
            ack_window=s.ack_window,
            # a fresh filter per process start: a marker cut off by an exit is not
            # completed by the next process's output
            output_filter_factory=TerminalMarkerFilter,
            on_activity=self.record_activity,
            on_marker=self._on_marker,
        )

    def record_activity(self) -> None:
        """Terminal input or output: the user's session is in use (for the idle culler)."""
        now = time.monotonic()
        if now - self._last_activity < self.settings.activity_interval:
            return
        self._last_activity = now
        if self._on_activity is not None:
            self._on_activity()

    def open(self) -> PtySession:
        """The session a new connection attaches to (started if needed)."""
        if self.settings.mode == "per-connection":
            session = self._new_session()
            self.private.add(session)
            session.start()
            return session
        if self.shared is None:
            self.shared = self._new_session()
            self.shared.start()
        return self.shared

    def restart(self, session: PtySession) -> None:
        """Start the command of ``session`` again after it exited (the page's "Start Claude
        again"): the launcher continues the course's last conversation."""
        if session.alive or session in self._restarting:
            return
        self._start_again(session, None)

    def new_conversation_soon(self, session: PtySession) -> None:
        """``new_conversation`` in a task of its own (from a websocket message)."""
        self._spawn(self.new_conversation(session))

    async def new_conversation(self, session: PtySession) -> None:
        """End the process of ``session`` and start it again on a fresh conversation.

        The command gets ``CLAUDEHUB_NEW_CONVERSATION=1`` for this one start, so the launcher
        leaves out ``--continue``; Claude Code keeps the conversation that ended, and a later
        start continues the new one. Every tab attached to the session is told to reset.
        """
        if session in self._restarting:
            return
        self._restarting.add(session)
        try:
            await session.terminate()
        finally:
            self._restarting.discard(session)
        if self._closing or (session is not self.shared and session not in self.private):
            return  # the server is stopping, or (per-connection) its last tab closed meanwhile
        self._start_again(session, {NEW_CONVERSATION_ENV: "1"})

    def _start_again(self, session: PtySession, extra_env: Mapping[str, str] | None) -> None:
        session.replay.clear()
        session.start(extra_env)
        for client in session.clients:
            client.send_event("started", {"pid": session.pid})

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def release_soon(self, session: PtySession) -> None:
        """``release`` in a task of its own (from a callback that cannot wait)."""
        self._spawn(self.release(session))

    async def release(self, session: PtySession) -> None:
        """A connection closed. Private sessions end with it; the shared one lives on."""
        if session in self.private and not session.clients:
            self.private.discard(session)
            await session.terminate()

    async def shutdown(self) -> None:
        """The server stops: so do the terminal processes and their connections."""
        self._closing = True
        for connection in list(self.connections):
            connection.close(websocket.GOING_AWAY, "the server is stopping")
        sessions = list(self.private) + ([self.shared] if self.shared else [])
        await asyncio.gather(*(s.terminate(grace=1.0) for s in sessions))
