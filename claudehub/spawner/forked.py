"""The local spawner's side of the fork server: start it, ask it for servers, watch them.

The fork server (``python -m claudehub.server_ext.forkserver``, wire format in
:mod:`claudehub.contract.forkserver`) is one process per hub, started on the first learner's
start; it has already imported the single-user server, so each later server it forks listens
after a small fraction of a fresh process's start-up CPU. Its Unix socket lives in a private
folder (mode 0700) made for it.

:class:`ForkedServer` stands in for the :class:`subprocess.Popen` JupyterHub's
``LocalProcessSpawner`` keeps in ``self.proc``: it has the ``pid``, ``poll()`` (the exit code,
once the fork server has reported it) and the context manager ``poll`` uses; stopping is by
signals to the pid, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from claudehub.contract import forkserver as wire

#: Seconds the fork server may take to import everything and listen.
READY_WITHIN = 60.0
#: Seconds it may take to answer a request with the new server's pid.
ANSWER_WITHIN = 30.0


class ForkServerError(RuntimeError):
    """The fork server could not be started or refused a request (the message says why)."""


class ForkedServer:
    """A single-user server forked by the fork server, as ``Popen`` is for a fresh one."""

    def __init__(self, pid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.pid = pid
        self.returncode: int | None = None
        self._lost = False
        self._writer = writer
        self._watch = asyncio.ensure_future(self._wait_for_exit(reader))

    async def _wait_for_exit(self, reader: asyncio.StreamReader) -> None:
        try:
            line = await reader.readline()
            code = wire.decode(line).get("exit") if line else None
        except (OSError, ValueError):
            code = None
        if isinstance(code, int):
            self.returncode = code
        else:
            # the fork server is gone (its children are reaped by init): watch by pid
            self._lost = True
        self._writer.close()

    def poll(self) -> int | None:
        """The exit code once the server has exited, else None."""
        if self.returncode is None and self._lost:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.returncode = 0
            except PermissionError:
                pass
        return self.returncode

    async def wait(self) -> int:
        """Wait until the server has exited; its exit code (0 when it was seen gone by pid,
        its fork server having died)."""
        if not self._watch.done():
            await asyncio.shield(self._watch)
        # A process that is not our child has nothing to wait on but its pid.
        while self.poll() is None:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert self.returncode is not None
        return self.returncode

    def __enter__(self) -> ForkedServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._watch.done():
            self._watch.cancel()


class ForkServer:
    """One hub's fork server: started when first needed, started again if it died."""

    def __init__(self, env: Mapping[str, str], cwd: str, log: logging.Logger) -> None:
        self.env = dict(env)
        self.cwd = cwd
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.path = ""
        self._starting: asyncio.Lock | None = None
        #: why the fork server could not start: it is not tried again (each start would
        #: pay for the attempt before falling back to a fresh process)
        self.broken = ""

    async def _ensure(self) -> str:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.broken:
                raise ForkServerError(self.broken)
            if self.proc is not None and self.proc.returncode is None:
                return self.path
            if self.proc is not None:
                self.log.warning(
                    "The fork server exited with status %s; starting it again", self.proc.returncode
                )
            folder = tempfile.mkdtemp(prefix="claudehub-forkserver-")  # mode 0700
            self.path = str(Path(folder) / "socket")
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",  # no working folder on sys.path: the forked servers inherit it
                "-m",
                wire.MODULE,
                "--socket",
                self.path,
                env=self.env,
                cwd=self.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the hub's terminal is the hub's to handle
            )
            try:
                await self._until_ready()
            except ForkServerError as e:
                self.broken = str(e)
                raise
            self.log.info("Fork server %d ready for single-user servers", self.proc.pid)
            return self.path

    async def _until_ready(self) -> None:
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_WITHIN
        while True:
            try:
                _, writer = await asyncio.open_unix_connection(self.path)
            except OSError:
                pass
            else:
                writer.close()  # an empty request: the fork server answers an error and moves on
                return
            status = self.proc.returncode
            if status is not None:
                raise ForkServerError(f"the fork server exited with status {status} while starting")
            if loop.time() > deadline:
                self.proc.kill()
                await self.proc.wait()
                raise ForkServerError(f"the fork server was not ready within {READY_WITHIN:g} s")
            await asyncio.sleep(0.05)

    async def spawn(self, argv: list[str], env: Mapping[str, str], cwd: str) -> ForkedServer:
        """Fork a server with these arguments, environment and folder; raises
        :class:`ForkServerError` if the fork server cannot or will not."""
        path = await self._ensure()
        try:
            reader, writer = await asyncio.open_unix_connection(path)
        except OSError as e:
            raise ForkServerError(f"the fork server cannot be reached: {e}") from e
        try:
            writer.write(wire.request(argv, dict(env), cwd))
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), ANSWER_WITHIN)
            answer = wire.decode(line) if line else {"error": "no answer"}
        except (OSError, ValueError, TimeoutError) as e:
            writer.close()
            raise ForkServerError(f"the fork server did not answer: {e}") from e
        pid = answer.get("pid")
        if not isinstance(pid, int):
            writer.close()
            raise ForkServerError(f"the fork server refused: {answer.get('error', answer)}")
        return ForkedServer(pid, reader, writer)

    async def stop(self, within: float = 5.0) -> None:
        """Stop the fork server (the servers it forked keep running). The hub need not:
        a fork server exits by itself once its hub is gone."""
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def __repr__(self) -> str:
        pid: Any = self.proc.pid if self.proc else None
        return f"<ForkServer pid={pid} socket={self.path!r}>"
