"""The terminal websocket at {base_url}claude/terminal and the sessions behind it.

Wire protocol: terminado's JSON messages plus flow control and lifecycle.

client -> server
    ["stdin", text]                   keystrokes
    ["set_size", rows, cols, ...]     the window changed (extra items ignored)
    ["pause"] / ["resume"]            flow control: stop / restart reading the pty
    ["ack", n]                        flow control: the first n characters (since this
                                      connection opened) are drawn; a client that acks gets
                                      a send window (ClaudeHubApp.ack_window)
    ["restart"]                       start the command again after it exited
server -> client
    ["setup", {"pid", "alive", "mode"}]    on connect
    ["stdout", text]                  output (the replay buffer first, on connect)
    ["exit", {"status", "signal"}]    the process ended (also on connect, if it had)
    ["started", {"pid"}]              the process was started again: reset the screen
    ["marker", event]                 a tutor marker was found (and stripped) in the output
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from typing import TYPE_CHECKING, Any

from jupyter_core.utils import ensure_async
from jupyter_server._tz import utcnow
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.ioloop import IOLoop
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from .pty_session import PtySession

if TYPE_CHECKING:
    from .app import ClaudeHubApp

AUTH_RESOURCE = "claude"


def _marker_filter_factory() -> Any:
    """The tutor-marker stripper of claudehub.server_ext.markers, if that module exists."""
    name = f"{__package__}.markers"
    try:
        markers = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        return None
    return getattr(markers, "make_filter", None)


class SessionManager:
    """Owns the terminal processes of this server."""

    def __init__(self, app: ClaudeHubApp) -> None:
        self.app = app
        self.shared: PtySession | None = None
        self.private: set[PtySession] = set()
        self._last_activity = 0.0
        self._filter_factory = _marker_filter_factory()

    def _new_session(self) -> PtySession:
        app = self.app
        return PtySession(
            app.command,
            env=app.terminal_env(),
            replay_limit=app.replay_limit,
            pause_timeout=app.pause_timeout,
            ack_window=app.ack_window,
            output_filter_factory=self._filter_factory,
            on_activity=self.record_activity,
        )

    def record_activity(self) -> None:
        """Terminal input or output: the user's session is in use (for the idle culler)."""
        now = time.monotonic()
        if now - self._last_activity < self.app.activity_interval:
            return
        self._last_activity = now
        assert self.app.serverapp is not None
        settings = self.app.serverapp.web_app.settings
        settings.setdefault("last_activity_times", {})["claude"] = utcnow()

    def open(self) -> PtySession:
        """The session a new connection attaches to (started if needed)."""
        if self.app.session_mode == "per-connection":
            session = self._new_session()
            self.private.add(session)
            session.start()
            return session
        if self.shared is None:
            self.shared = self._new_session()
            self.shared.start()
        return self.shared

    async def release(self, session: PtySession) -> None:
        """A connection closed. Private sessions end with it; the shared one lives on."""
        if session in self.private and not session.clients:
            self.private.discard(session)
            await session.terminate()

    async def shutdown(self) -> None:
        """The server stops: so do the terminal processes."""
        sessions = list(self.private) + ([self.shared] if self.shared else [])
        await asyncio.gather(*(s.terminate(grace=1.0) for s in sessions))


class TerminalSocket(WebSocketMixin, JupyterHandler, WebSocketHandler):
    """The browser end of the Claude terminal."""

    auth_resource = AUTH_RESOURCE
    session: PtySession | None = None

    @property
    def sessions(self) -> SessionManager:
        sessions: SessionManager = self.settings["claude_sessions"]
        return sessions

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        user = self.current_user
        if not await ensure_async(
            self.authorizer.is_authorized(self, user, "execute", self.auth_resource)
        ):
            self.log.warning("claude terminal: %s is not authorized", user.username)
            raise web.HTTPError(403)
        await ensure_async(super().get(*args, **kwargs))  # type: ignore[arg-type]

    def get_compression_options(self) -> dict[str, Any] | None:
        # terminal output is mostly tiny frames where deflate costs more than it saves
        return None

    # tornado's own keep-alive pings, in seconds (WebSocketMixin's are in ms and conflict)
    @property
    def ping_interval(self) -> float:
        return 30.0

    @property
    def ping_timeout(self) -> float:
        return 30.0

    def open(self, *args: Any, **kwargs: Any) -> None:
        # not WebSocketMixin.open: it would start a second, millisecond-based ping timer
        self.set_nodelay(True)
        session = self.session = self.sessions.open()
        self._send(
            [
                "setup",
                {
                    "pid": session.pid,
                    "alive": session.alive,
                    "mode": self.sessions.app.session_mode,
                },
            ]
        )
        session.attach(self)

    def on_message(self, message: str | bytes) -> None:
        session = self.session
        if session is None:
            return
        try:
            msg = json.loads(message)
            kind = msg[0]
        except (ValueError, TypeError, IndexError, KeyError):
            self.log.debug("claude terminal: ignored a malformed message")
            return
        if kind == "stdin":
            if isinstance(msg[1], str):
                session.write(msg[1])
        elif kind == "set_size":
            try:
                session.resize(int(msg[1]), int(msg[2]))
            except (ValueError, TypeError, IndexError):
                return
        elif kind == "pause":
            session.pause(self)
        elif kind == "resume":
            session.resume(self)
        elif kind == "ack":
            try:
                session.ack(self, int(msg[1]))
            except (ValueError, TypeError, IndexError):
                return
        elif kind == "restart":
            if not session.alive:
                session.replay.clear()
                session.start()
                for client in session.clients:
                    client.send_event("started", {"pid": session.pid})

    def on_close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.detach(self)
            IOLoop.current().add_callback(self.sessions.release, session)

    # ------------------------------------------------------------------ SessionClient

    def send_output(self, text: str) -> None:
        self._send(["stdout", text])

    def send_event(self, kind: str, payload: Any) -> None:
        self._send([kind, payload])

    _unsent = 0  # bytes handed to the connection and not yet written to the socket

    def _send(self, msg: list[Any]) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        data = json.dumps(msg)
        try:
            fut = self.write_message(data)
        except WebSocketClosedError:
            return
        size = len(data)
        self._unsent += size
        if self._unsent - size <= CONGESTED_BYTES < self._unsent and self.session is not None:
            self.session.congested(self, True)
        fut.add_done_callback(lambda f: self._written(f, size))

    def _written(self, fut: Any, size: int) -> None:
        if not fut.cancelled():
            fut.exception()  # retrieved: a write racing a closing socket is not an error
        before = self._unsent
        self._unsent -= size
        if self._unsent <= DECONGESTED_BYTES < before and self.session is not None:
            self.session.congested(self, False)


#: a connection holding more unsent output than this stops the terminal from being read ...
CONGESTED_BYTES = 1 << 20
#: ... until it is down to this
DECONGESTED_BYTES = 256 << 10
