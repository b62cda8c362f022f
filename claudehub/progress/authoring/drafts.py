"""Drafts on the course service's own disk: one folder per draft.

``<drafts_dir>/<id>/meta.json`` (owner, title, times, the paper's summary) and
``<drafts_dir>/<id>/files/``, the draft folder in the catalogue layout (``paper.json``,
``thumbnail.png``, ``<course>/CLAUDE.md``, ``<course>/knowledge/...``) beside ``paper/``,
the paper as the service extracted it. The author sandbox gets the folder as a bundle and
sends it back whole (:meth:`DraftStore.save_files`); ``paper/`` is the service's and is
kept as extracted whatever comes back. A save is unpacked beside the folder, checked, and
swapped in by renames, so a bad upload changes nothing.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import secrets
import shutil
import stat
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

#: a draft id: 12 lowercase hex digits
DRAFT_ID = r"([0-9a-f]{12})"
_DRAFT_ID = re.compile(DRAFT_ID)
PAPER_DIR = "paper"
#: Claude Code configuration a draft never keeps (it would reach a sandbox): hooks, MCP
#: servers, permission rules, apiKeyHelper
_DROPPED = re.compile(r"^(?:\.mcp\.json|\.claude(?:/.*)?|CLAUDE\.local\.md)$")
_NAME = re.compile(r"^[^\x00-\x1f\\:*?\"<>|]{1,255}$")


class DraftError(Exception):
    """A draft request that cannot be done; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Draft:
    """A draft's metadata; its folder is :attr:`files`."""

    id: str
    owner: str
    title: str
    created: str
    updated: str
    paper: dict[str, Any]
    root: Path

    @property
    def files(self) -> Path:
        return self.root / "files"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "created": self.created,
            "updated": self.updated,
            "paper": self.paper,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _tar_folder(root: Path) -> bytes:
    """A tar.gz of every regular file and folder under ``root`` (symlinks left out)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(
                d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))
            )
            base = Path(dirpath)
            for d in dirnames:
                info = tarfile.TarInfo(str((base / d).relative_to(root).as_posix()))
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                info.mtime = int((base / d).stat().st_mtime)
                tar.addfile(info)
            for name in sorted(filenames):
                full = base / name
                st = full.lstat()
                if not stat.S_ISREG(st.st_mode):
                    continue
                info = tarfile.TarInfo(full.relative_to(root).as_posix())
                info.size = st.st_size
                info.mode = 0o644
                info.mtime = int(st.st_mtime)
                with full.open("rb") as f:
                    tar.addfile(info, f)
    return buf.getvalue()


def unpack_draft(data: bytes, dest: Path, *, max_bytes: int, max_files: int) -> list[str]:
    """Unpack a draft tar.gz into the new folder ``dest``: only folders and regular files,
    no absolute path, no ``..``, nothing past the caps. Members under ``paper/`` and Claude
    Code configuration are skipped (their names returned). Raises DraftError (400/413)."""
    skipped: list[str] = []
    total = 0
    count = 0
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DraftError(400, f"the draft must be a tar.gz of the draft folder: {e}") from None
    with tar:
        try:
            for member in tar:
                name = member.name
                while name.startswith("./"):
                    name = name[2:]
                name = name.rstrip("/")
                if name in ("", "."):
                    continue
                parts = PurePosixPath(name).parts
                if name.startswith("/") or ".." in parts or not all(_NAME.match(p) for p in parts):
                    raise DraftError(400, f"draft member {member.name!r} leaves the draft folder")
                if not (member.isfile() or member.isdir()):
                    raise DraftError(400, f"draft member {member.name!r} is not a file or folder")
                if parts[0] == PAPER_DIR or _DROPPED.match(name):
                    skipped.append(name)
                    continue
                target = dest.joinpath(*parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                count += 1
                total += member.size
                if count > max_files:
                    raise DraftError(413, f"the draft has more than {max_files} files")
                if total > max_bytes:
                    raise DraftError(413, f"the draft is larger than {max_bytes} bytes")
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None  # a regular file
                with src, target.open("wb") as out:
                    shutil.copyfileobj(src, out)
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise DraftError(400, f"the draft's tar.gz is damaged: {e}") from None
    return skipped


class DraftStore:
    """Drafts under ``root``; every public method is async (the disk work runs in a thread)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, draft_id: str) -> asyncio.Lock:
        """The lock one draft's saves and publishes take turns on."""
        return self._locks.setdefault(draft_id, asyncio.Lock())

    def _path(self, draft_id: str) -> Path:
        if not _DRAFT_ID.fullmatch(draft_id):
            raise DraftError(404, f"no draft {draft_id!r}")
        return self.root / draft_id

    def _read(self, path: Path) -> Draft | None:
        try:
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return Draft(
            id=path.name,
            owner=str(meta["owner"]),
            title=str(meta.get("title", "")),
            created=str(meta.get("created", "")),
            updated=str(meta.get("updated", "")),
            paper=dict(meta.get("paper") or {}),
            root=path,
        )

    def _meta(self, draft: Draft) -> dict[str, Any]:
        return {
            "owner": draft.owner,
            "title": draft.title,
            "created": draft.created,
            "updated": draft.updated,
            "paper": draft.paper,
        }

    async def get(self, draft_id: str, owner: str) -> Draft:
        """``owner``'s draft ``draft_id``; 404 when there is none, 403 when it is someone
        else's."""
        path = self._path(draft_id)
        draft = await asyncio.to_thread(self._read, path)
        if draft is None:
            raise DraftError(404, f"no draft {draft_id!r}")
        if draft.owner != owner:
            raise DraftError(403, f"draft {draft_id!r} is another instructor's")
        return draft

    async def list_for(self, owner: str) -> list[Draft]:
        """``owner``'s drafts, newest first."""

        def scan() -> list[Draft]:
            if not self.root.is_dir():
                return []
            found = []
            for child in self.root.iterdir():
                if _DRAFT_ID.fullmatch(child.name):
                    draft = self._read(child)
                    if draft is not None and draft.owner == owner:
                        found.append(draft)
            return sorted(found, key=lambda d: d.created, reverse=True)

        return await asyncio.to_thread(scan)

    async def create(
        self, owner: str, title: str, paper: dict[str, Any], files: dict[str, bytes]
    ) -> Draft:
        """A new draft of ``owner``'s holding ``files`` (the extracted paper)."""

        def make() -> Draft:
            self.root.mkdir(parents=True, exist_ok=True)
            while True:
                draft_id = secrets.token_hex(6)
                path = self.root / draft_id
                try:
                    path.mkdir()
                    break
                except FileExistsError:
                    continue
            now = _now()
            draft = Draft(draft_id, owner, title, now, now, paper, path)
            (path / "files").mkdir()
            for rel, data in files.items():
                target = draft.files / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            _write_json(path / "meta.json", self._meta(draft))
            return draft

        return await asyncio.to_thread(make)

    async def bundle(self, draft: Draft) -> bytes:
        """The draft folder as last saved, as a tar.gz."""
        return await asyncio.to_thread(_tar_folder, draft.files)

    async def save_files(
        self, draft: Draft, data: bytes, *, max_bytes: int, max_files: int
    ) -> list[str]:
        """Replace the draft folder by the tar.gz ``data`` (``paper/`` kept as extracted);
        the skipped members' names. Nothing changes when ``data`` is refused."""

        def swap() -> list[str]:
            new = Path(tempfile.mkdtemp(prefix=".files-new-", dir=draft.root))
            try:
                skipped = unpack_draft(data, new, max_bytes=max_bytes, max_files=max_files)
                paper = draft.files / PAPER_DIR
                if paper.is_dir():
                    shutil.copytree(paper, new / PAPER_DIR)
            except BaseException:
                shutil.rmtree(new, ignore_errors=True)
                raise
            old = draft.root / f".files-old-{secrets.token_hex(4)}"
            draft.files.rename(old)
            new.rename(draft.files)
            shutil.rmtree(old, ignore_errors=True)
            draft.updated = _now()
            _write_json(draft.root / "meta.json", self._meta(draft))
            return skipped

        async with self.lock(draft.id):
            return await asyncio.to_thread(swap)

    async def set_title(self, draft: Draft, title: str) -> None:
        """Rename a draft (its card's title comes from its own files)."""
        draft.title = title
        await asyncio.to_thread(_write_json, draft.root / "meta.json", self._meta(draft))
