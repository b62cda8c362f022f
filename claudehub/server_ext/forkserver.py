"""`python -m claudehub.server_ext.forkserver --socket PATH`: local mode's single-user servers,
forked from one process that has already imported them.

A fresh `python -m claudehub.server_ext.singleuser` spends about 0.6 CPU-seconds importing
jupyter-server, jupyterhub's single-user mixins and the extension before it listens; a class
logging in at once pays that once per learner, on the same cores Claude Code's first screens
need. The fork server pays it once: it applies :func:`claudehub.server_ext.singleuser.prepare`,
imports :data:`PRELOAD`, freezes the heap (so the children's garbage collections do not copy
its pages) and then forks one server per request of the local spawner
(:mod:`claudehub.contract.forkserver` has the wire format). A forked server then listens after
about 0.06 CPU-seconds, and the imported modules' pages stay shared between all servers.

Each child becomes what a fresh process would have been: its own session (``setsid``, as the
spawner's ``start_new_session``), the requested working folder, exactly the requested
environment (``os.environ`` replaced: nothing of the fork server's own stays), default signal
handlers, and then :func:`claudehub.server_ext.singleuser.main` with the requested arguments.
A request whose environment would have changed what gets imported (:data:`IMPORT_TIME_ENV`, or
the hub reached over https) is served by ``exec``-ing a fresh single-user server instead, so a
fork is never a different server. ``/proc/<pid>/environ`` of a forked server shows the fork
server's start-up environment, not the server's (Linux keeps the original block); its
children (the terminal's Claude) get the server's, as before.

The fork server exits when the hub that started it is gone or on SIGTERM/SIGINT; the servers
it forked keep running (the hub stops them, as it does its other processes). It is local mode
only: a Kubernetes sandbox is one server per pod.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from claudehub.contract import forkserver as wire

from . import singleuser

log = logging.getLogger("claudehub.forkserver")

#: Imported before the first fork: what every server imports while starting and serving the
#: Claude page (measured: a forked server imports nothing else before it listens).
PRELOAD = (
    "jupyterhub.singleuser",
    "jupyterhub.singleuser.extension",
    "jupyter_server.serverapp",
    "jupyter_server.auth.identity",
    "jupyter_server.base.handlers",
    "jupyter_server.services.contents.largefilemanager",
    "jupyter_server.services.kernels.kernelmanager",
    "jupyter_server.services.sessions.sessionmanager",
    "jupyter_server.gateway.managers",
    "jupyter_server.services.api.handlers",
    "jupyter_server_terminals.app",
    "jupyter_server_terminals.api_handlers",
    "jupyter_server_terminals.handlers",
    "jupyter_server_terminals.terminalmanager",
    "jupyter_core.migrate",
    "jinja2.ext",
    "terminado",
    "tornado.platform.asyncio",
    "claudehub.server_ext.app",
    "claudehub.server_ext.handlers",
    "claudehub.server_ext.course_handlers",
    "claudehub.server_ext.terminal",
    "claudehub.server_ext.sessions",
    "claudehub.server_ext.pty_session",
    "claudehub.server_ext.websocket",
)

#: Variables read while :data:`PRELOAD` is imported: a request that sets one differently from
#: the fork server's environment gets a fresh process.
IMPORT_TIME_ENV = (
    "JUPYTERHUB_SINGLEUSER_APP",
    "JUPYTERHUB_SINGLEUSER_EXTENSION",
    singleuser.EVENT_LOOP_ENV,
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSAFEPATH",
    "PYTHONNOUSERSITE",
)

#: Seconds between looks at the children and at the hub while nothing is asked.
TICK = 0.2


def preload() -> None:
    """Import what every server needs, then keep it out of the garbage collector's way."""
    singleuser.prepare()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as e:  # a server that needs it imports it (and fails) itself
            log.warning("not preloaded: %s (%s)", name, e)
    gc.collect()
    gc.freeze()


def forks_like_a_fresh_process(env: Mapping[str, str]) -> bool:
    """Whether a server with ``env`` would import what this process has imported."""
    # The fork boundary (tests/test_contract.py allows it): the request's environment is
    # compared with the one this process imported under.
    if any(env.get(name) != os.environ.get(name) for name in IMPORT_TIME_ENV):
        return False
    return singleuser._hub_over_plain_http(env) == singleuser._hub_over_plain_http()


def become_server(argv: list[str], env: dict[str, str], cwd: str) -> None:
    """In the forked child: turn into the requested single-user server; never returns."""
    code = 1
    try:
        log.handlers.clear()
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.chdir(cwd)
        except OSError as e:
            print(f"claudehub fork server: cannot start in {cwd}: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        if not forks_like_a_fresh_process(env):
            os.execve(sys.executable, [sys.executable, "-m", wire.SINGLEUSER_MODULE, *argv], env)
        # The fork boundary (allowed in tests/test_contract.py): the child becomes the
        # server with the requested environment, nothing of the fork server's own kept.
        os.environ.clear()
        os.environ.update(env)
        sys.argv = [wire.SINGLEUSER_MODULE, *argv]
        singleuser.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # the child must never return into the fork server's loop
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class ForkServer:
    """Accepts the spawner's requests on ``path`` and forks a server for each."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        old = os.umask(0o177)  # the socket: the hub's user only
        try:
            self.listener.bind(path)
        finally:
            os.umask(old)
        self.listener.listen(64)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        #: forked server pid -> the connection that asked for it (told its exit)
        self.children: dict[int, socket.socket] = {}
        self.stopping = False

    def stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def serve(self, parent: int) -> None:
        """Serve until stopped or until ``parent`` (the hub) is gone."""
        while not self.stopping and os.getppid() == parent:
            for _key, _events in self.selector.select(TICK):
                self.accept()
            self.reap()
        self.close()

    def accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        try:
            conn.settimeout(10)
            argv, env, cwd = wire.parse_request(_read_line(conn))
        except (OSError, ValueError) as e:
            _send(conn, {"error": str(e)})
            conn.close()
            return
        if threading.active_count() > 1:  # a fork copies only this thread
            log.warning("forking with %d threads running", threading.active_count())
        pid = os.fork()
        if pid == 0:
            self.selector.close()
            self.listener.close()
            for other in self.children.values():
                other.close()
            conn.close()
            become_server(argv, env, cwd)
        self.children[pid] = conn
        _send(conn, {"pid": pid})

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                _send(conn, {"exit": os.waitstatus_to_exitcode(status)})
                conn.close()

    def close(self) -> None:
        self.selector.close()
        self.listener.close()
        for conn in self.children.values():
            conn.close()  # the spawner then watches its server by pid
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            Path(self.path).parent.rmdir()  # the private folder the spawner made, if empty


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("the request ended before its line did")
        data += chunk
        if len(data) > wire.MAX_REQUEST:
            raise ValueError(f"request longer than {wire.MAX_REQUEST} bytes")
    return data


def _send(conn: socket.socket, message: dict[str, object]) -> None:
    with contextlib.suppress(OSError):  # the spawner gave up: it watches by pid
        conn.sendall(wire.encode(message))


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {wire.MODULE}", description=__doc__)
    parser.add_argument("--socket", required=True, help="Unix socket to listen on")
    options = parser.parse_args(args)
    # Its own handler, not the root logger's: a forked server starts with logging untouched.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(levelname)1.1s %(name)s] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    parent = os.getppid()
    preload()
    server = ForkServer(options.socket)
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    log.info("ready: %d modules preloaded", len(sys.modules))
    server.serve(parent)


if __name__ == "__main__":
    main()
