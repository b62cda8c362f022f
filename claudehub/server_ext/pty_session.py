"""One process in a pseudo-terminal, shared by every browser tab attached to it.

The session owns the pty, reads it on the event loop, decodes and filters the output once,
keeps a bounded replay buffer for tabs that attach later, and fans the output out to the
attached clients. Each readable event drains the pty up to ``MAX_BATCH`` bytes into one
message (fewer, larger websocket messages make bulk output cheap). Flow control, i.e. when
the pty's fd reader is removed so that the kernel's pty buffer fills and the producer (e.g.
``yes``) blocks instead of flooding the browser, is decided by ``flow.FlowControl`` from
three per-client holds: a pause, a full send window (``ack_window`` bytes sent, not drawn)
and a congested connection, each expiring after ``pause_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import codecs
import errno
import logging
import os
import signal
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from .flow import FlowControl

log = logging.getLogger(__name__)

#: bytes read from the pty per os.read call
READ_SIZE = 65536
#: stop draining the pty in one loop iteration after this many bytes (then yield to the loop)
MAX_BATCH = 262144


class OutputFilter(Protocol):
    """Streaming text filter applied to the pty output (the tutor marker stripper)."""

    def feed(self, text: str) -> str:
        """Return the text to show for this chunk (may hold back a partial marker)."""
        ...


class SessionClient(Protocol):
    """What a session needs from an attached client (the websocket handler)."""

    def send_output(self, data: bytes) -> None:
        """Output, UTF-8 encoded (always whole characters)."""
        ...

    def send_event(self, kind: str, payload: Any) -> None: ...


def reset_signals_in_child() -> None:
    """Give the child default signal dispositions and an empty signal mask.

    Runs between fork and exec. A server started in the background from a non-interactive
    shell inherits SIGINT (and SIGQUIT) *ignored*; ignored dispositions survive exec, so
    without this Ctrl-C would silently do nothing in the terminal. Python also ignores SIGPIPE.
    """
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


class ReplayBuffer:
    """The most recent output, at most ``limit`` characters, for tabs that attach later."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._chunks: deque[str] = deque()
        self._size = 0

    def append(self, text: str) -> None:
        if not text or self.limit <= 0:
            return
        self._chunks.append(text)
        self._size += len(text)
        while self._size > self.limit and self._chunks:
            excess = self._size - self.limit
            first = self._chunks[0]
            if len(first) <= excess:
                self._chunks.popleft()
                self._size -= len(first)
            else:
                self._chunks[0] = first[excess:]
                self._size -= excess

    def text(self) -> str:
        return "".join(self._chunks)

    def clear(self) -> None:
        self._chunks.clear()
        self._size = 0

    def __len__(self) -> int:
        return self._size


class PtySession:
    """A command running in a pty, with attach/detach, replay, flow control and exit reporting."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        replay_limit: int = 262144,
        pause_timeout: float = 10.0,
        ack_window: int = 524288,
        output_filter_factory: Callable[[], OutputFilter | None] | None = None,
        on_activity: Callable[[], None] | None = None,
        on_marker: Callable[[Any], None] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.replay = ReplayBuffer(replay_limit)
        self._filter_factory = output_filter_factory
        self._filter: OutputFilter | None = None
        self._on_activity = on_activity or (lambda: None)
        self._on_marker = on_marker
        self._clients: list[SessionClient] = []
        # pause/resume, the send window and transport backpressure: when not to read the pty
        self.flow = FlowControl(
            pause_timeout=pause_timeout, ack_window=ack_window, on_change=self._update_reader
        )
        self._proc: Any = None
        self._fd = -1
        self._reading = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending_input = bytearray()
        self._writing = False
        self.rows, self.cols = 24, 80
        self.exit_status: int | None = None
        self.exit_signal: int | None = None
        self._exited = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and not self._exited.is_set()

    def start(self, extra_env: Mapping[str, str] | None = None) -> None:
        """Spawn the command (again, if it exited), with ``extra_env`` over ``env`` this once."""
        from ptyprocess import PtyProcess

        if self.alive:
            return
        self._loop = asyncio.get_running_loop()
        self._release_fd()
        self.exit_status = self.exit_signal = None
        self._exited = asyncio.Event()
        self._decoder.reset()
        self._pending_input.clear()
        self._filter = self._filter_factory() if self._filter_factory else None
        try:
            env = self.env
            if extra_env:
                # The exec boundary (allowed in tests/test_contract.py): the child's
                # environment is this process's (or the given one) plus this start's extras.
                env = {**(os.environ if env is None else env), **extra_env}
            self._proc = PtyProcess.spawn(
                self.argv,
                cwd=self.cwd,
                env=env,
                dimensions=(self.rows, self.cols),
                preexec_fn=reset_signals_in_child,
            )
        except OSError as e:
            log.error("could not start the terminal command %s: %s", self.argv[:1], e)
            self._proc = None
            self.exit_status = 127
            self._exited.set()
            self._fan_out(f"\r\nclaudehub: could not start {self.argv[0]!r}: {e}\r\n")
            for client in self._clients:
                client.send_event("exit", self.exit_info())
            return
        self._fd = self._proc.fd
        os.set_blocking(self._fd, False)
        log.info("claude session started: pid %s", self._proc.pid)
        self._update_reader()

    async def wait(self) -> None:
        """Wait until the process has exited."""
        await self._exited.wait()

    async def terminate(self, grace: float = 2.0) -> None:
        """Stop the process: SIGHUP (like a closed terminal), then SIGKILL after ``grace`` s."""
        if not self.alive:
            return
        pid = self._proc.pid
        self.flow.release_all()  # the reader must run to notice the exit
        self._update_reader()
        for sig, wait_s in (
            (signal.SIGHUP, grace),
            (signal.SIGTERM, grace),
            (signal.SIGKILL, grace),
        ):
            try:
                os.killpg(os.getpgid(pid), sig)
            except ProcessLookupError:
                break
            try:
                await asyncio.wait_for(self._exited.wait(), wait_s)
                break
            except TimeoutError:
                continue
        if not self._exited.is_set():
            self._reap()

    def _release_fd(self) -> None:
        if self._fd >= 0 and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._reading = self._writing = False
        if self._proc is not None and not self._proc.closed:
            # not PtyProcess.close(): it sleeps on the event loop and may block on the child
            try:
                self._proc.fileobj.close()
            except OSError:
                pass
            self._proc.closed = True
        self._fd = -1

    # ------------------------------------------------------------------ clients

    @property
    def clients(self) -> list[SessionClient]:
        return list(self._clients)

    def attach(self, client: SessionClient) -> None:
        """Attach a client: it receives the replay buffer now and all output from here on."""
        self._clients.append(client)
        replay = self.replay.text().encode()
        self.flow.attach(client, len(replay))
        if replay:
            client.send_output(replay)
            if self.alive:
                self._ask_for_redraw()
        if self._exited.is_set():
            client.send_event("exit", self.exit_info())

    def _ask_for_redraw(self) -> None:
        """A full-screen program (Claude's UI) redraws on SIGWINCH: the replay alone shows
        the recent output, the redraw puts the current screen under it."""
        try:
            os.killpg(os.tcgetpgrp(self._fd), signal.SIGWINCH)
        except OSError as e:
            log.debug("could not signal the terminal's foreground process: %s", e)

    def detach(self, client: SessionClient) -> None:
        if client in self._clients:
            self._clients.remove(client)
        self.flow.detach(client)

    def exit_info(self) -> dict[str, int | None]:
        return {"status": self.exit_status, "signal": self.exit_signal}

    # ------------------------------------------------------------------ flow control

    def pause(self, client: SessionClient) -> None:
        """``client`` cannot keep up: stop reading the pty until it resumes (or times out)."""
        if self._loop is not None:
            self.flow.pause(client)

    def resume(self, client: SessionClient) -> None:
        self.flow.resume(client)

    def ack(self, client: SessionClient, drawn: int) -> None:
        """``client`` has drawn the first ``drawn`` bytes of output it was sent since attaching.

        A client that acknowledges gets a send window: while more than ``ack_window``
        bytes sent to it are not drawn yet, the pty is not read (see ``flow.FlowControl``)."""
        self.flow.ack(client, drawn)

    def congested(self, client: SessionClient, congested: bool) -> None:
        """The client's connection holds too much unsent output (or no longer does).

        The safety net for clients that neither pause nor acknowledge: output is not read
        faster than their connection takes it, so it cannot pile up in the server."""
        if self._loop is not None:
            self.flow.congested(client, congested)

    @property
    def pause_timeout(self) -> float:
        return self.flow.pause_timeout

    @property
    def ack_window(self) -> int:
        return self.flow.ack_window

    @property
    def paused(self) -> bool:
        """Some client holds the output: the pty is not read."""
        return self.flow.held

    def _update_reader(self) -> None:
        want = self._fd >= 0 and not self._exited.is_set() and not self.paused
        if want and not self._reading and self._loop is not None:
            self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True
        elif not want and self._reading and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._reading = False

    # ------------------------------------------------------------------ input

    def write(self, text: str) -> None:
        """Send keystrokes to the process (never blocks the event loop)."""
        if not self.alive or not text:
            return
        self._on_activity()
        self._pending_input += text.encode("utf-8", "surrogateescape")
        if not self._writing:
            self._flush_input()

    def _flush_input(self) -> None:
        while self._pending_input:
            try:
                n = os.write(self._fd, self._pending_input)
            except BlockingIOError:
                break
            except OSError as e:  # the child side is gone; the reader reports the exit
                log.debug("write to claude pty failed: %s", e)
                self._pending_input.clear()
                break
            del self._pending_input[:n]
        want = bool(self._pending_input) and self._fd >= 0
        if want and not self._writing and self._loop is not None:
            self._loop.add_writer(self._fd, self._flush_input)
            self._writing = True
        elif not want and self._writing and self._loop is not None:
            self._loop.remove_writer(self._fd)
            self._writing = False

    def resize(self, rows: int, cols: int) -> None:
        """Follow the window of the most recent client to report a size."""
        rows, cols = max(1, min(int(rows), 1000)), max(1, min(int(cols), 1000))
        if (rows, cols) == (self.rows, self.cols):
            return
        self.rows, self.cols = rows, cols
        if self.alive:
            try:
                self._proc.setwinsize(rows, cols)
            except OSError as e:
                log.debug("resize of claude pty failed: %s", e)

    # ------------------------------------------------------------------ output

    def _on_readable(self) -> None:
        chunks: list[bytes] = []
        total = 0
        eof = False
        while total < MAX_BATCH:
            try:
                data = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno != errno.EIO:  # EIO: the child side of the pty was closed
                    log.warning("reading the claude pty failed: %s", e)
                eof = True
                break
            if not data:
                eof = True
                break
            # keep reading until EAGAIN: a pty hands out about 4 kB per read, and fewer, larger
            # websocket messages are what makes bulk output cheap
            chunks.append(data)
            total += len(data)
        if chunks:
            self._emit(b"".join(chunks) if len(chunks) > 1 else chunks[0])
        if eof:
            self._on_eof()

    def _emit(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if self._filter is not None:
            text = self._filter.feed(text)
            self._forward_markers()
        if not text:
            return
        self._on_activity()
        self._fan_out(text)

    def _fan_out(self, text: str) -> None:
        """Keep ``text`` for replay and send it, encoded once, to every attached client."""
        self.replay.append(text)
        data = text.encode()
        for client in self._clients:
            self.flow.sent(client, len(data))
            client.send_output(data)

    def _forward_markers(self) -> None:
        """Hand markers the filter found (if it reports any) to the hook and the clients."""
        take = getattr(self._filter, "pop_events", None)
        if take is None:
            return
        for event in take():
            if self._on_marker is not None:
                self._on_marker(event)
            payload = event if isinstance(event, dict | str | int | list) else repr(event)
            for client in self._clients:
                client.send_event("marker", payload)

    def _on_eof(self) -> None:
        if self._loop is not None and self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._reading = self._writing = False
        tail = self._decoder.decode(b"", final=True)
        if self._filter is not None:
            tail = self._filter.feed(tail) if tail else ""
            flush = getattr(self._filter, "flush", None)
            if flush is not None:
                tail += flush()  # what it held back (an unfinished marker) is plain output now
            self._forward_markers()
        if tail:
            self._fan_out(tail)
        self._poll_exit(0)

    def _poll_exit(self, attempt: int) -> None:
        """The pty closed; reap the child (it may take a moment to actually exit)."""
        try:
            pid, status = os.waitpid(self._proc.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self._proc.pid, 0
        if pid == 0:
            if attempt < 50 and self._loop is not None:
                self._loop.call_later(0.05 * min(attempt + 1, 10), self._poll_exit, attempt + 1)
                return
            # the pty is closed but the process lingers (it closed its terminal): stop waiting
            try:
                os.killpg(os.getpgid(self._proc.pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()
            return
        self._finish(status)

    def _reap(self) -> None:
        try:
            _, status = os.waitpid(self._proc.pid, 0)
        except ChildProcessError:
            status = 0
        self._finish(status)

    def _finish(self, status: int) -> None:
        if self._exited.is_set():
            return
        if os.WIFSIGNALED(status):
            self.exit_signal = os.WTERMSIG(status)
        else:
            self.exit_status = os.waitstatus_to_exitcode(status)
        # ptyprocess must not try to reap it again
        self._proc.terminated = True
        self._proc.exitstatus, self._proc.signalstatus = self.exit_status, self.exit_signal
        self.flow.release_all()
        self._exited.set()
        self._release_fd()
        log.info(
            "claude session pid %s exited: status %s signal %s",
            self._proc.pid,
            self.exit_status,
            self.exit_signal,
        )
        info = self.exit_info()
        for client in self._clients:
            client.send_event("exit", info)
