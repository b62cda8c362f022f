"""The terminal websocket at {base_url}claude/terminal and the sessions behind it.

Wire protocol: terminado's JSON messages plus flow control and lifecycle. A client that offers
the websocket subprotocol ``claudehub.v2`` (the page does) gets the terminal's output as
binary frames of UTF-8 instead of ``["stdout", text]``: no JSON escaping of every byte on the
server and no parsing in the browser (xterm.js takes the bytes as they are). Every other
message is the same JSON text frame in both modes.

client -> server
    ["stdin", text]                   keystrokes
    ["set_size", rows, cols, ...]     the window changed (extra items ignored)
    ["pause"] / ["resume"]            flow control: stop / restart reading the pty
    ["ack", n]                        flow control: the first n bytes (UTF-8) of output since
                                      this connection opened are drawn; a client that acks
                                      gets a send window (ClaudeHubApp.ack_window)
    ["restart"]                       start the command again after it exited
    ["new_conversation"]              end the command and start it on a fresh conversation
                                      (the launcher then leaves out --continue)
server -> client
    ["setup", {"pid", "alive", "mode"}]    on connect
    ["stdout", text]                  output (the replay buffer first, on connect);
                                      with claudehub.v2: a binary frame of UTF-8
    ["exit", {"status", "signal"}]    the process ended (also on connect, if it had)
    ["started", {"pid"}]              the process was started again (a restart, or a new
                                      conversation): reset the screen
    ["marker", event]                 a tutor marker was found (and stripped) in the output
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from tornado import web

from claudehub.contract.hub import AUTH_RESOURCE

from . import websocket
from .pty_session import PtySession
from .sessions import SessionManager

#: tornado settings: the SessionManager, and the keep-alive ping interval (s, 0: none)
SESSIONS_SETTING = "claude_sessions"
PING_INTERVAL_SETTING = "claude_ping_interval"


class TerminalSocket(JupyterHandler):
    """The HTTP end of the terminal websocket: authentication, authorization, the origin
    check and the upgrade. The connection itself then runs as a TerminalConnection on the
    raw socket (see ``websocket.py`` for why not tornado's WebSocketHandler).

    Needs ``settings["claude_sessions"]`` (a :class:`SessionManager`) and
    ``settings["claude_ping_interval"]``, both set by the extension app."""

    auth_resource = AUTH_RESOURCE

    @property
    def sessions(self) -> SessionManager:
        """The terminal sessions of this server (from the tornado settings)."""
        sessions: SessionManager = self.settings[SESSIONS_SETTING]
        return sessions

    @ws_authenticated
    async def get(self) -> None:
        user = self.current_user
        if not await ensure_async(
            self.authorizer.is_authorized(self, user, "execute", self.auth_resource)
        ):
            self.log.warning("claude terminal: %s is not authorized", user.username)
            raise web.HTTPError(403)
        if not self.check_origin():
            # a page on another site must not drive the user's Claude with their cookie
            raise web.HTTPError(403, "Cross origin websockets are not allowed.")
        binary = BINARY_SUBPROTOCOL in websocket.requested_subprotocols(self.request.headers)
        try:
            handshake = websocket.handshake_response(
                self.request.method or "",
                self.request.headers,
                BINARY_SUBPROTOCOL if binary else None,
            )
        except websocket.HandshakeError as e:
            error = web.HTTPError(e.status, e.message)
            error.headers = e.headers  # type: ignore[attr-defined]  # for write_error
            raise error from None
        connection = TerminalConnection(
            self.sessions,
            self.log,
            binary_output=binary,
            max_message_size=self.settings.get("websocket_max_message_size", 10 << 20),
            ping_interval=float(self.settings[PING_INTERVAL_SETTING]),
        )
        self.set_status(101)
        self.application.log_request(self)
        stream = self.detach()
        initial = b""
        # the client may (against RFC 6455 4.1, but harmlessly) send before our answer
        pending = getattr(stream, "_read_buffer_size", 0)
        if pending:
            initial = await stream.read_bytes(pending)
        await websocket.serve(stream, connection, handshake, initial)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # send_error() clears the headers first: the ones the answer needs go on here
        # (426 must say which websocket version to retry with, RFC 6455 4.4)
        exc_info = kwargs.get("exc_info")
        for name, value in getattr(exc_info and exc_info[1], "headers", {}).items():
            self.set_header(name, value)
        super().write_error(status_code, **kwargs)


class TerminalConnection(websocket.WebSocketConnection):
    """One browser tab's terminal connection, attached to the session it shows."""

    def __init__(
        self,
        sessions: SessionManager,
        log: Any,
        *,
        binary_output: bool,
        max_message_size: int,
        ping_interval: float,
    ) -> None:
        super().__init__(
            max_message_size=max_message_size,
            ping_interval=ping_interval,
            high_water=CONGESTED_BYTES,
            low_water=DECONGESTED_BYTES,
        )
        self.sessions = sessions
        self.log = log
        self.session: PtySession | None = None
        self.binary_output = binary_output

    def on_open(self) -> None:
        self.sessions.connections.add(self)
        session = self.session = self.sessions.open()
        self._send(
            [
                "setup",
                {
                    "pid": session.pid,
                    "alive": session.alive,
                    "mode": self.sessions.mode,
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
            self.sessions.restart(session)
        elif kind == "new_conversation":
            self.sessions.new_conversation_soon(session)

    def on_congestion(self, congested: bool) -> None:
        if self.session is not None:
            self.session.congested(self, congested)

    def on_close(self) -> None:
        self.sessions.connections.discard(self)
        session, self.session = self.session, None
        if session is not None:
            session.detach(self)
            self.sessions.release_soon(session)

    # ------------------------------------------------------------------ SessionClient

    def send_output(self, data: bytes) -> None:
        if self.binary_output:
            self.send_bytes(data)
        else:
            self._send(["stdout", data.decode()])

    def send_event(self, kind: str, payload: Any) -> None:
        self._send([kind, payload])

    def _send(self, msg: list[Any]) -> None:
        self.send_text(json.dumps(msg))


#: the subprotocol in which output travels as binary frames of UTF-8
BINARY_SUBPROTOCOL = "claudehub.v2"
#: a connection holding more unsent output than this stops the terminal from being read ...
CONGESTED_BYTES = 1 << 20
#: ... until it is down to this
DECONGESTED_BYTES = 256 << 10
