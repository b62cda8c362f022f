"""The course files bundle sandboxes get: a tar.gz of the course folder with every
quiz answer removed, plus a read-only ``.learner/`` snapshot of the learner's progress.

Claude's Read tool can read anything in the sandbox's course folder, so anything a
sandbox receives must be free of answers: ``knowledge/courses.json`` and every other
JSON file lose their answer keys, and the stages block in ``CLAUDE.md`` is rewritten
without ``correctAnswer``/``explanation``.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import tarfile
import time
from pathlib import Path
from typing import Any

from .model import Course
from .parsing import CLAUDE_MD, JSON_FENCE

#: keys removed from every JSON object of a bundled JSON file
SECRET_KEYS = frozenset(
    {"correctAnswer", "correct_answer", "answer", "answers", "explanation", "solution"}
)
LEARNER_DIR = ".learner"
#: Claude Code configuration a course must not ship to a sandbox (hooks, MCP servers,
#: permission rules). Managed settings already override them; leaving them out is defence
#: in depth.
_DROPPED = re.compile(r"^(?:\.mcp\.json|\.claude/settings(?:\.[^/]*)?\.json)$")
MAX_FILE_BYTES = 50 * 1024 * 1024


class BundleTooLarge(Exception):
    """The course folder exceeds the configured bundle size."""


def strip_secrets(data: Any) -> Any:
    """A copy of JSON ``data`` without any key in :data:`SECRET_KEYS`, at any depth."""
    if isinstance(data, dict):
        return {k: strip_secrets(v) for k, v in data.items() if k not in SECRET_KEYS}
    if isinstance(data, list):
        return [strip_secrets(v) for v in data]
    return data


def strip_claude_md(text: str) -> str:
    """CLAUDE.md with every ```json block (the stages block above all) rewritten
    without answer keys. Blocks that are not valid JSON are left as they are."""
    out: list[str] = []
    pos = 0
    for block in JSON_FENCE.finditer(text):
        try:
            data = json.loads(block.group(1))
        except json.JSONDecodeError:
            continue
        clean = strip_secrets(data)
        if clean == data:
            continue
        out.append(text[pos : block.start(1)])
        out.append(json.dumps(clean, indent=2, ensure_ascii=False) + "\n")
        pos = block.end(1)
    out.append(text[pos:])
    return "".join(out)


def _clean_file(rel: str, raw: bytes) -> bytes:
    if rel == CLAUDE_MD:
        try:
            return strip_claude_md(raw.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            return raw
    if rel.endswith(".json"):
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return raw
        return (json.dumps(strip_secrets(data), indent=2, ensure_ascii=False) + "\n").encode()
    return raw


def _course_files(course: Course) -> list[tuple[str, Path]]:
    """(relative path, real path) of every regular file in the course folder.

    Symlinks are followed only when they stay inside the course folder; ``.git``, the
    course's own ``.learner/``, ``.mcp.json`` and ``.claude/settings*.json`` are left out.
    """
    root = course.path.resolve()
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d != ".git"
            and not (d == LEARNER_DIR and Path(dirpath) == root)
            and not os.path.islink(os.path.join(dirpath, d))
        )
        for name in sorted(filenames):
            full = Path(dirpath, name)
            real = full.resolve()
            if root not in real.parents:
                continue
            try:
                st = real.stat()
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
                continue
            rel = full.relative_to(root).as_posix()
            if _DROPPED.match(rel):
                continue
            out.append((rel, real))
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(mtime)
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = int(mtime)
    tar.addfile(info)


def build_bundle(
    course: Course,
    learner_files: dict[str, bytes] | None = None,
    *,
    max_bytes: int = 200 * 1024 * 1024,
) -> bytes:
    """The tar.gz bytes of ``course``'s folder, answers removed.

    ``learner_files`` (name -> content) go under ``.learner/``. Members are relative
    paths, files mode 0444, directories 0555 (``.learner/`` 0755 so the sandbox side
    may refresh its snapshot).
    """
    now = time.time()
    buf = io.BytesIO()
    total = 0
    dirs_done: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for rel, real in _course_files(course):
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs_done:
                    dirs_done.add(d)
                    _add_dir(tar, d, 0o555, now)
            data = _clean_file(rel, real.read_bytes())
            total += len(data)
            if total > max_bytes:
                raise BundleTooLarge(f"course {course.id} exceeds {max_bytes} bytes")
            _add(tar, rel, data, 0o444, real.stat().st_mtime)
        if learner_files:
            _add_dir(tar, LEARNER_DIR, 0o755, now)
            for name, data in sorted(learner_files.items()):
                _add(tar, f"{LEARNER_DIR}/{name}", data, 0o444, now)
    return buf.getvalue()
