"""Local mode: one sandbox server per user as a process on this machine, no Kubernetes.

Local mode is for trials, development and the test suite. It is not a security boundary:
the sandbox process runs as the hub's own user. What it does keep is the key contract — the
sandbox gets the key proxy's URL and a sandbox token, never the real key — and the same
course and model choice as the Kubernetes spawner.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from subprocess import Popen
from typing import Any, ClassVar

from jupyterhub.spawner import SimpleLocalProcessSpawner
from jupyterhub.utils import random_port
from tornado import web
from traitlets import Bool, Instance, Integer, Unicode, Union, default

from claudehub.contract import env as contract_env

from .common import SandboxSpawnerMixin, scrub_environment
from .forked import ForkedServer, ForkServer, ForkServerError
from .startqueue import (
    StartQueue,
    shared_queue,
    start_slots_for,
    wait_until_listening,
    waiting_message,
)


class LocalSandboxSpawner(SandboxSpawnerMixin, SimpleLocalProcessSpawner):  # type: ignore[misc, unused-ignore]  # untyped base (no stubs)
    """Spawn the claudehub sandbox server (jupyterhub-singleuser + the extension) locally."""

    sandbox_root = Unicode(
        help="""Folder holding one home folder per user (``<sandbox_root>/<username>``).""",
    ).tag(config=True)

    start_slots = Integer(
        help="""Servers of this hub starting at once (course fetch until the server listens);
        later starts wait their turn in a first-come, first-served queue and their learners
        see how many are ahead. Default: two per core (a start is CPU-bound).""",
    ).tag(config=True)

    preload_server = Bool(
        True,
        help="""Fork each server from one process of this hub that has already imported the
        single-user server (claudehub.server_ext.forkserver) instead of starting a fresh
        Python: a server then listens after about a tenth of the CPU (0.06 s instead of
        0.6), and the imported modules' memory is shared between all servers. The server
        gets the same arguments, environment and folder either way. Applies while ``cmd``
        is the default; False: a fresh process per server.""",
    ).tag(config=True)

    #: the running server: a fresh process, or one forked by the fork server
    proc = Union([Instance(Popen), Instance(ForkedServer)], allow_none=True)

    #: the hub's one queue of starts (every spawner of the process shares it)
    _start_queue: StartQueue | None = None
    #: the hub's one fork server (started on the first start that uses it)
    _forkserver: ClassVar[ForkServer | None] = None

    @default("start_slots")
    def _default_start_slots(self) -> int:
        return start_slots_for(os.cpu_count() or 1)

    @default("sandbox_root")
    def _default_sandbox_root(self) -> str:
        return str(Path.cwd() / ".state" / "users")

    @default("home_dir_template")
    def _default_home_dir_template(self) -> str:
        return os.path.join(self.sandbox_root, "{username}")

    @default("default_url")
    def _default_default_url(self) -> str:
        return "/claude"

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        # claudehub's lean single-user entry point (same arguments as
        # jupyterhub-singleuser), with the Python that runs the hub, so a virtualenv works
        # without being on PATH.
        return [sys.executable, "-m", "claudehub.server_ext.singleuser"]

    @default("args")
    def _default_args(self) -> list[str]:
        return ["--allow-root"] if os.geteuid() == 0 else []

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._events: list[str] = []
        self._course_dir = ""
        self._draft_dir = ""
        self._ticket: asyncio.Future[None] | None = None

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        parent = super().make_preexec_fn(name)

        def preexec() -> None:
            parent()
            # A hub started in the background from a non-interactive shell has SIGINT
            # ignored; an inherited SIG_IGN would make Ctrl-C dead in Claude's terminal.
            signal.signal(signal.SIGINT, signal.SIG_DFL)

        return preexec

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        env.update(self.sandbox_env(self._course_dir, self._draft_dir))
        return scrub_environment(env, list(self.real_key_values))

    async def _prepare_course(self) -> None:
        """Fetch the chosen course's files (answers removed) into the user's home; for an
        author session, name its draft folder (``~/drafts/<id>``, which the server extension
        makes from the course service's copy at start and sends back to it)."""
        self._course_dir = ""
        self._draft_dir = ""
        if self.draft_id:
            self._draft_dir = str(Path(self.home_dir) / "drafts" / self.draft_id)
            return
        if not self.course_id:
            return
        from claudehub.contract.course_client import fetch_course_bundle

        self._events.append("Fetching course…")
        dest = Path(self.home_dir) / "courses" / self.course_id
        if dest.exists():
            # Earlier copies were made read-only; make them writable to replace them.
            for path in [dest, *dest.rglob("*")]:
                if not path.is_symlink():
                    path.chmod(0o755 if path.is_dir() else 0o644)
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            await fetch_course_bundle(self.progress_url, self.api_token, self.course_id, dest)
        except (OSError, ValueError) as e:
            raise web.HTTPError(502, f"Could not fetch course {self.course_id!r}: {e}") from e
        self._course_dir = str(dest)

    def _queue(self) -> StartQueue:
        return shared_queue(LocalSandboxSpawner, self.start_slots)

    def _set_ticket(self, ticket: asyncio.Future[None] | None) -> None:
        self._ticket = ticket

    async def start(self) -> Any:
        self._events = []
        async with self._queue().slot(self._set_ticket):
            await asyncio.to_thread(Path(self.home_dir).mkdir, parents=True, exist_ok=True)
            await self._prepare_course()
            self._events.append("Starting Claude…")
            ip, port = await self._start_process()
            # Keep the slot until the server listens: the next start then finds the cores free.
            await wait_until_listening(ip or "127.0.0.1", port, self.poll, self.http_timeout)
            return ip, port

    def _fork_server(self) -> ForkServer:
        server = LocalSandboxSpawner._forkserver
        if server is None:
            # What every server's environment starts from (Spawner.env_keep), and the hub's
            # URL: the fork server imports what a server with this environment would.
            # The exec boundary (allowed in tests/test_contract.py): the fork server's
            # environment is built from the hub's, as JupyterHub builds a server's.
            env = {k: os.environ[k] for k in self.env_keep if k in os.environ}
            env[contract_env.HUB_API_URL] = self.hub.api_url
            env = scrub_environment(env, list(self.real_key_values))
            Path(self.sandbox_root).mkdir(parents=True, exist_ok=True)
            server = ForkServer(env, self.sandbox_root, self.log)
            LocalSandboxSpawner._forkserver = server
        return server

    async def _start_process(self) -> tuple[str, int]:
        """Start the server: forked from the fork server, or as a fresh process."""
        if not self.preload_server or self.shell_cmd or list(self.cmd) != self._default_cmd():
            ip, port = await super().start()
            return ip, port
        if not getattr(self, "port", 0):  # Spawner.port is untyped
            self.port = random_port()
        argv = list(self.get_args())
        try:
            server = await self._fork_server().spawn(argv, self.get_env(), self.home_dir)
        except (ForkServerError, OSError) as e:
            self.log.warning("Starting %s's server as a fresh process: %s", self.user.name, e)
            ip, port = await super().start()
            return ip, port
        self.log.info(
            "Forked %s's server (pid %d) from the fork server", self.user.name, server.pid
        )
        self.proc = server
        self.pid = server.pid
        return (self.ip or "127.0.0.1", int(getattr(self, "port", 0)))

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        sent = 0
        total = 3
        shown_ahead = -1
        while True:
            if self._ticket is not None and not self._ticket.done():
                ahead = self._queue().ahead_of(self._ticket)
                if ahead != shown_ahead:
                    shown_ahead = ahead
                    yield {"progress": 0, "message": waiting_message(ahead)}
            while sent < len(self._events):
                message = self._events[sent]
                sent += 1
                yield {"progress": int(100 * sent / total), "message": message}
            if self._spawn_future is None or self._spawn_future.done():
                return
            await asyncio.sleep(0.2)
