"""Fetch course repositories: shallow git clones kept in a cache directory.

Sources are ``https://`` git URLs (production), ``file://`` git URLs or plain local
directories (local mode and tests: a directory is used in place, read live).
A fresh clone goes to a temporary folder and replaces the cached one only when it
succeeded, so a failed refresh keeps serving the last good copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import time
from pathlib import Path

log = logging.getLogger(__name__)

ALLOWED_SCHEMES = ("https://", "file://")


class FetchError(Exception):
    """A source could not be fetched; the message is safe to show the operator."""


def source_key(repo: str, ref: str) -> str:
    """Cache folder name of ``repo`` at ``ref``."""
    return hashlib.sha256(f"{repo}\0{ref}".encode()).hexdigest()[:24]


def redact(repo: str) -> str:
    """``repo`` without any user:password@ part (for logs and error reports)."""
    scheme, sep, rest = repo.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return repo


def is_local_dir(repo: str) -> bool:
    return repo.startswith("/") and not repo.startswith("//")


def check_repo_url(repo: str) -> None:
    """Refuse anything but https://, file:// and absolute local paths."""
    if is_local_dir(repo) or repo.startswith(ALLOWED_SCHEMES):
        return
    raise FetchError(
        f"unsupported repository URL {redact(repo)!r}: use https://, file:// or a local path"
    )


def _git_env() -> dict[str, str]:
    # The exec boundary (allowed in tests/test_contract.py): git's environment is built
    # from this process's, without any GIT_* variable.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    # never prompt, never run credential helpers or hooks from the environment
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="/bin/true",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL="/dev/null",
        LC_ALL="C",
    )
    return env


async def _git(*args: str, time_limit: float) -> None:
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_git_env(),
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), time_limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise FetchError(f"git {args[0]} timed out after {time_limit:.0f}s") from None
    except asyncio.CancelledError:
        proc.kill()
        raise
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        raise FetchError(f"git {args[0]} failed: {lines[-1] if lines else proc.returncode}")


def _cached(repo: str, cache_dir: Path, dest: Path, stamp: Path, max_age: float) -> Path | None:
    """The local directory / fresh cached clone to use as is, or None to clone."""
    if is_local_dir(repo):
        path = Path(repo)
        if not path.is_dir():
            raise FetchError(f"local course directory {repo} does not exist")
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    if dest.is_dir() and stamp.is_file() and time.time() - stamp.stat().st_mtime < max_age:
        return dest
    return None


async def fetch_repo(
    repo: str,
    ref: str,
    cache_dir: Path,
    *,
    max_age: float = 3600.0,
    time_limit: float = 120.0,
    force: bool = False,
) -> Path:
    """Return a local checkout of ``repo`` at ``ref`` (a branch or tag; "" = default).

    A cached clone younger than ``max_age`` seconds is reused without network access.
    On failure a stale cached clone is still returned (and the error logged); with no
    cached clone :class:`FetchError` is raised.
    """
    check_repo_url(repo)
    dest = cache_dir / source_key(repo, ref)
    stamp = dest / ".git" / "claudehub-fetched"
    cached = await asyncio.to_thread(_cached, repo, cache_dir, dest, stamp, max_age)
    if cached is not None and (not force or is_local_dir(repo)):
        return cached
    tmp = cache_dir / f".tmp-{dest.name}-{os.getpid()}-{time.monotonic_ns()}"
    args = ["clone", "--quiet", "--depth", "1", "--single-branch", "--no-tags"]
    if ref:
        args += ["--branch", ref]
    args += ["--", repo, str(tmp)]
    try:
        await _git(*args, time_limit=time_limit)
    except FetchError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if dest.is_dir() and stamp.is_file():
            log.warning("Refreshing %s failed, serving the cached copy: %s", redact(repo), e)
            return dest
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / ".git" / "claudehub-fetched").touch()
    old = None
    if dest.exists():
        old = cache_dir / f".old-{dest.name}-{time.monotonic_ns()}"
        dest.rename(old)
    tmp.rename(dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    log.info("Fetched course repository %s (ref %s)", redact(repo), ref or "default")
    return dest
