"""Small helpers shared by the test suite."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
