"""The course catalogue: operator-configured sources -> parsed courses + errors.

Two kinds of entries (both plain dicts, so they are easy to write in traitlets
config and Helm values):

single course::

    {"id": "intro", "title": "...", "description": "...",
     "repo": "https://github.com/org/repo.git", "ref": "main", "folder": "path/in/repo"}

whole catalogue repository (every course folder found in it)::

    {"id": "papers", "repo": "https://github.com/org/catalogue.git", "ref": "main",
     "folder": ""}

A course that fails to fetch or parse becomes a :class:`CourseError` and is skipped;
the others load normally.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claudehub.contract.course import is_course_id

from .fetching import FetchError, fetch_repo, redact
from .model import Course, CourseError, CourseFormatError
from .parsing import has_course, parse_course

log = logging.getLogger(__name__)

_SKIP_DIRS = {".git", "node_modules", "__pycache__", ".learner", ".venv"}
MAX_DISCOVERY_DEPTH = 4


def make_course_id(*parts: str) -> str:
    """A URL-safe course id from path parts (``paper/course`` -> ``paper--course``)."""
    raw = "--".join(p.strip("/") for p in parts if p and p.strip("/"))
    raw = raw.replace("/", "--")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-.") or "course"


def valid_course_id(course_id: str) -> bool:
    """Whether ``course_id`` is a well-formed course id (the contract's pattern)."""
    return is_course_id(course_id)


def _inside(root: Path, folder: str) -> Path:
    """``root/folder``, refusing paths that leave ``root``."""
    path = (root / folder).resolve() if folder else root.resolve()
    if path != root.resolve() and root.resolve() not in path.parents:
        raise CourseFormatError(folder, "folder is outside the repository")
    return path


def discover(root: Path, max_depth: int = MAX_DISCOVERY_DEPTH) -> list[Path]:
    """Every course folder under ``root`` (a course folder is not searched further)."""
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        if has_course(folder):
            found.append(folder)
            return
        if depth >= max_depth:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            return
        for child in children:
            if child.name in _SKIP_DIRS or child.name.startswith("."):
                continue
            walk(child, depth + 1)

    walk(root, 0)
    return found


@dataclass
class Catalogue:
    """Loaded courses by id, in display order, plus the errors found while loading."""

    courses: dict[str, Course] = field(default_factory=dict)
    errors: list[CourseError] = field(default_factory=list)

    def get(self, course_id: str) -> Course | None:
        return self.courses.get(course_id)

    def _add(self, course: Course) -> None:
        if course.id in self.courses:
            self.errors.append(
                CourseError(course.id, course.source, ".", "duplicate course id: skipped")
            )
            return
        self.courses[course.id] = course
        for warning in course.warnings:
            log.warning("Course %s: %s", course.id, warning)

    def sort(self) -> None:
        def key(c: Course) -> tuple[float, str]:
            order = c.card.get("sortOrder")
            return (float(order) if isinstance(order, int | float) else 1e9, c.title.casefold())

        self.courses = {c.id: c for c in sorted(self.courses.values(), key=key)}


def _load_one(
    cat: Catalogue,
    folder: Path,
    course_id: str,
    source: str,
    entry: dict[str, Any],
    repo_root: Path,
) -> None:
    try:
        course = parse_course(
            folder,
            course_id,
            title=entry.get("title") or None,
            description=entry.get("description") or None,
            source=source,
            repo_root=repo_root,
        )
    except CourseFormatError as e:
        cat.errors.append(CourseError(course_id, source, e.file, e.reason))
        log.error("Course %s skipped: %s: %s", course_id, e.file, e.reason)
        return
    cat._add(course)


async def load_catalogue(
    courses: list[dict[str, Any]],
    catalogues: list[dict[str, Any]],
    cache_dir: Path,
    *,
    max_age: float = 3600.0,
    force: bool = False,
) -> Catalogue:
    """Fetch and parse every configured source. Never raises for a bad course."""
    cat = Catalogue()
    entries: list[tuple[str, dict[str, Any]]] = [("course", e) for e in courses]
    entries += [("catalogue", e) for e in catalogues]

    async def fetch(entry: dict[str, Any]) -> Path | FetchError:
        try:
            return await fetch_repo(
                str(entry.get("repo", "")),
                str(entry.get("ref") or ""),
                cache_dir,
                max_age=max_age,
                force=force,
            )
        except FetchError as e:
            return e

    checkouts = await asyncio.gather(*(fetch(e) for _, e in entries))
    for (kind, entry), checkout in zip(entries, checkouts, strict=True):
        source = redact(str(entry.get("repo", "")))
        folder = str(entry.get("folder") or "")
        entry_id = str(entry.get("id") or "")
        if isinstance(checkout, FetchError):
            cat.errors.append(CourseError(entry_id, source, ".", str(checkout)))
            log.error("Course source %s skipped: %s", source, checkout)
            continue
        if kind == "course":
            course_id = entry_id or make_course_id(folder or Path(source).stem)
            if not valid_course_id(course_id):
                cat.errors.append(CourseError(course_id, source, ".", "invalid course id"))
                continue
            try:
                path = _inside(checkout, folder)
            except CourseFormatError as e:
                cat.errors.append(CourseError(course_id, source, e.file, e.reason))
                continue
            await asyncio.to_thread(_load_one, cat, path, course_id, source, entry, checkout)
        else:
            try:
                root = _inside(checkout, folder)
            except CourseFormatError as e:
                cat.errors.append(CourseError(entry_id, source, e.file, e.reason))
                continue
            found = await asyncio.to_thread(discover, root)
            if not found:
                cat.errors.append(CourseError(entry_id, source, folder or ".", "no course found"))
            for path in found:
                rel = path.relative_to(root).as_posix()
                course_id = make_course_id(entry_id, "" if rel == "." else rel)
                await asyncio.to_thread(_load_one, cat, path, course_id, source, {}, checkout)
    cat.sort()
    log.info("Course catalogue: %d courses, %d errors", len(cat.courses), len(cat.errors))
    return cat
