"""Small helpers shared by the test suite."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


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
