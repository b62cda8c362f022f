"""Small helpers shared by the test suite."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import pytest

#: How long a test waits for something that should happen before it calls it a hang. The
#: machines running the suite are shared and noisy: a wait bounded by a few seconds fails a
#: good change on a slow moment, so tests wait for the condition itself, this long at most,
#: and leave speed to the benchmarks (CONTRIBUTING.md, "Targets are met in benchmarks").
PATIENCE = 60.0


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    within: float = PATIENCE,
    interval: float = 0.05,
    what: str = "the condition",
) -> None:
    """Wait until ``condition()`` (a plain or an async callable) holds; fail only when it
    has not after ``within`` seconds, i.e. on a hang, never on a slow moment."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} was not reached within {within:g} s")
        await asyncio.sleep(interval)


def eventually_sync(
    condition: Callable[[], bool],
    within: float = PATIENCE,
    interval: float = 0.1,
    what: str = "the condition",
) -> None:
    """:func:`eventually` for synchronous tests (Playwright's sync API, subprocesses)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} was not reached within {within:g} s")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_server(user: str = "test") -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1; yields its URL (``user``, no password).

    initdb refuses to run as root, so the server runs as the ``postgres`` user.
    """
    base = tempfile.mkdtemp(prefix="claudehub-pg-")
    os.chmod(base, 0o755)
    shutil.chown(base, "postgres")
    data, port = os.path.join(base, "data"), free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_pg, "initdb", "-D", data, "-A", "trust", "-U", user], check=True, capture_output=True
    )
    opts = f"-h 127.0.0.1 -p {port} -k {base} -F"
    subprocess.run(
        [*as_pg, "pg_ctl", "-D", data, "-l", os.path.join(base, "log"), "-w", "-o", opts, "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_pg, "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)


#: Debian's Chromium (Playwright's own browser download cannot work here).
CHROMIUM = "/usr/bin/chromium"

#: Flags for headless Chromium on these machines: no sandbox as root, and no background
#: networking, whose connections the closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(autouse=True)
def jp_asyncio_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """Browser tests use Playwright's sync API, which owns this thread's event loop.

    pytest-jupyter's autouse fixture of the same name would close that loop after each
    test; give its clean-up fixtures a private loop instead. Import it into a browser
    test's conftest or module to override pytest-jupyter's there.
    """
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()
