"""The course repository the course service manages: a bare git repository.

Every publish is one commit on the branch (the course's folder ``<course>/`` replaced by
the draft's files, other courses untouched) and one tag ``<course>/v<N>``; the branch and
the tag move together in one ``git update-ref`` transaction, so the repository never holds
one without the other. The commit is built with a private index from a temporary tree,
never in a work tree anyone else sees. A version is served from its own unpacked copy
(``<published_dir>/<course>/v<N>``), made from the repository with ``git archive``.

The optional push to a remote uses a deploy key only the course service holds
(``Authoring.deploy_key_file``, from a Secret in the chart), with strict host key checking.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from ..fetching import _git_env

log = logging.getLogger(__name__)

ZERO = "0" * 40
GIT_TIMEOUT = 60.0


class RepositoryError(Exception):
    """A git operation on the managed repository failed (the message is safe to show)."""


class CourseRepository:
    """The managed bare repository at ``path``."""

    def __init__(
        self,
        path: Path,
        *,
        branch: str = "main",
        author: str = "claudehub course service <claudehub@localhost>",
        published_dir: Path,
        remote_url: str = "",
        deploy_key_file: str = "",
        known_hosts_file: str = "",
    ) -> None:
        self.path = path
        self.branch = branch
        self.author = author
        self.published_dir = published_dir
        self.remote_url = remote_url
        self.deploy_key_file = deploy_key_file
        self.known_hosts_file = known_hosts_file
        self._lock = asyncio.Lock()

    def _env(self, **extra: str) -> dict[str, str]:
        env = _git_env()
        name, _, email = self.author.partition("<")
        env.update(
            GIT_DIR=str(self.path),
            GIT_AUTHOR_NAME=name.strip() or "claudehub",
            GIT_AUTHOR_EMAIL=email.rstrip(">").strip() or "claudehub@localhost",
            GIT_COMMITTER_NAME=name.strip() or "claudehub",
            GIT_COMMITTER_EMAIL=email.rstrip(">").strip() or "claudehub@localhost",
        )
        if self.deploy_key_file:
            known = self.known_hosts_file or "/dev/null"
            env["GIT_SSH_COMMAND"] = (
                f"ssh -i {self.deploy_key_file} -o IdentitiesOnly=yes -o BatchMode=yes "
                f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={known}"
            )
        env.update(extra)
        return env

    async def git(
        self, *args: str, stdin: bytes | None = None, ok: tuple[int, ...] = (0,), **env: str
    ) -> bytes:
        """Run git on the repository; its stdout (RepositoryError on another exit code)."""
        proc = await asyncio.create_subprocess_exec(
            "git",
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._env(**env),
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), GIT_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RepositoryError(f"git {args[0]} timed out") from None
        except asyncio.CancelledError:
            proc.kill()
            raise
        if proc.returncode not in ok:
            lines = err.decode(errors="replace").strip().splitlines()
            raise RepositoryError(
                f"git {args[0]} failed: {lines[-1] if lines else proc.returncode}"
            )
        return out

    async def ensure(self) -> None:
        """Create the bare repository when it is missing."""
        if (self.path / "HEAD").is_file():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self.git(
            "init", "--quiet", "--bare", f"--initial-branch={self.branch}", str(self.path)
        )

    async def head(self) -> str | None:
        """The branch's commit, None before the first publish."""
        out = await self.git(
            "rev-parse", "--verify", "--quiet", f"refs/heads/{self.branch}^{{commit}}", ok=(0, 1)
        )
        return out.decode().strip() or None

    async def tags(self, course_id: str) -> list[str]:
        """The version tags of ``course_id``."""
        out = await self.git("tag", "--list", f"{course_id}/v*")
        return out.decode().split()

    async def commit_version(
        self,
        course_id: str,
        source: Path,
        skip_top: set[str],
        version: int,
        message: str,
        also: tuple[tuple[str, str], ...] = (),
    ) -> tuple[str, str | None]:
        """Commit ``source`` (its top-level names in ``skip_top`` left out; each folder
        ``src`` of the pairs ``also`` copied to ``dst``) as the folder ``<course_id>/`` and
        tag it ``<course_id>/v<version>``; (commit, previous head)."""
        async with self._lock:
            await self.ensure()
            parent = await self.head()
            tmp = Path(tempfile.mkdtemp(prefix="claudehub-publish-"))
            try:
                tree_root = tmp / "tree"
                await asyncio.to_thread(
                    shutil.copytree,
                    source,
                    tree_root / course_id,
                    ignore=lambda d, names: [
                        n for n in names if Path(d) == source and n in skip_top
                    ],
                    symlinks=False,
                )
                for src, dst in also:
                    if (source / src).is_dir():
                        await asyncio.to_thread(
                            shutil.copytree, source / src, tree_root / course_id / dst
                        )
                index = str(tmp / "index")
                if parent:
                    await self.git("read-tree", parent, GIT_INDEX_FILE=index)
                await self.git(
                    "rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", course_id,
                    GIT_INDEX_FILE=index,
                )  # fmt: skip
                await self.git(
                    f"--work-tree={tree_root}", "add", "-f", "-A", "--", course_id,
                    GIT_INDEX_FILE=index,
                )  # fmt: skip
                tree = (await self.git("write-tree", GIT_INDEX_FILE=index)).decode().strip()
                args = ["commit-tree", tree, "-m", message]
                if parent:
                    args += ["-p", parent]
                commit = (await self.git(*args)).decode().strip()
                tag = f"refs/tags/{course_id}/v{version}"
                await self.git(
                    "update-ref",
                    "--stdin",
                    stdin=(
                        "start\n"
                        f"update refs/heads/{self.branch} {commit} {parent or ZERO}\n"
                        f"create {tag} {commit}\n"
                        "prepare\ncommit\n"
                    ).encode(),
                )
                return commit, parent
            finally:
                await asyncio.to_thread(shutil.rmtree, tmp, True)

    async def undo(self, course_id: str, version: int, commit: str, parent: str | None) -> None:
        """Take back a version whose publish failed after its commit (branch and tag)."""
        async with self._lock:
            branch = f"refs/heads/{self.branch}"
            move = f"update {branch} {parent} {commit}" if parent else f"delete {branch} {commit}"
            await self.git(
                "update-ref",
                "--stdin",
                stdin=(
                    f"start\n{move}\ndelete refs/tags/{course_id}/v{version} {commit}\n"
                    "prepare\ncommit\n"
                ).encode(),
            )

    async def checkout(self, course_id: str, version: int) -> Path:
        """The unpacked copy of ``course_id`` at ``version`` (made from its tag when missing)."""
        dest = self.published_dir / course_id / f"v{version}"
        if dest.is_dir():
            return dest
        data = await self.git(
            "archive", "--format=tar", f"refs/tags/{course_id}/v{version}:{course_id}"
        )

        def unpack() -> None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=dest.parent))
            try:
                with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
                    # our own archive of checked files; the filter where Python has it
                    if hasattr(tarfile, "data_filter"):
                        tar.extractall(tmp, filter="data")
                    else:
                        tar.extractall(tmp)
                os.rename(tmp, dest)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise

        await asyncio.to_thread(unpack)
        return dest

    async def push(self, course_id: str, version: int) -> str | None:
        """Push the branch and the new tag to the remote, if one is set; None when pushed
        (or no remote), else the reason it was not."""
        if not self.remote_url:
            return None
        try:
            await self.git(
                "push",
                "--quiet",
                "--atomic",
                self.remote_url,
                f"refs/heads/{self.branch}:refs/heads/{self.branch}",
                f"refs/tags/{course_id}/v{version}:refs/tags/{course_id}/v{version}",
            )
        except RepositoryError as e:
            log.warning("Pushing course %s v%d to the remote failed: %s", course_id, version, e)
            return str(e)
        return None
