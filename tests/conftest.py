"""Fixtures shared by every test tier."""

from __future__ import annotations

import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.upstream import FakeAnthropic

pytest_plugins = ["pytest_jupyter.jupyter_server"]

REPO = Path(__file__).resolve().parent.parent
NODE_MODULES = REPO / "node_modules"


@pytest.fixture
def fake_upstream() -> Iterator[FakeAnthropic]:
    """A fake Anthropic API on 127.0.0.1 that records every request it gets."""
    with FakeAnthropic() as fake:
        yield fake


def _world_usable(path: Path) -> bool:
    """Whether an unprivileged user can reach and run ``path`` (every parent traversable)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            return False
    return True


@pytest.fixture(scope="session")
def claude_cli() -> Iterator[Path]:
    """The pinned Claude Code CLI (a native binary), runnable by an unprivileged user.

    The repository may live under a private folder (e.g. /root), so the binary is copied to
    a world-readable temporary folder when it cannot be reached in place.
    """
    exe = NODE_MODULES / "@anthropic-ai" / "claude-code" / "bin" / "claude.exe"
    if not exe.exists():
        pytest.fail(f"Claude Code CLI missing at {exe}: run `make setup`")
    exe = exe.resolve()
    if _world_usable(exe):
        yield exe
        return
    # /tmp itself is world-traversable, unlike pytest's own temporary root (mode 0700).
    target = Path(tempfile.mkdtemp(prefix="claudehub-cli-", dir="/tmp"))
    target.chmod(0o755)
    copy = target / "claude"
    shutil.copy2(exe, copy)
    copy.chmod(0o755)
    try:
        yield copy
    finally:
        shutil.rmtree(target, ignore_errors=True)
