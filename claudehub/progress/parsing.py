"""Parse a course folder in either layout into :class:`~claudehub.progress.model.Course`.

The layouts live in :mod:`claudehub.progress.layouts`:

- "catalogue" (today's public course catalogue, :mod:`~.layouts.catalogue`): modules and
  lessons in ``knowledge/courses.json`` next to the tutor's ``CLAUDE.md``, card data in the
  paper's ``../paper.json``;
- "claude-md" (the original authoring guide, :mod:`~.layouts.claude_md`): a ``CLAUDE.md``
  whose fenced ```` ```json ```` block holds ``{"stages": [...]}``.

This module picks the layout and is what callers import; it keeps the names they use.
A problem that stops the course raises :class:`CourseFormatError` naming the file and the
reason; one that does not becomes a :class:`~claudehub.progress.model.CourseWarning` in
``Course.issues``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal

from .layouts import catalogue, claude_md
from .layouts.claude_md import find_stages_block
from .layouts.common import (
    CLAUDE_MD,
    COURSES_JSON,
    GRAPH_JSON,
    JSON_FENCE,
    PAPER_JSON,
    first_heading,
    read_text,
    split_options,
)
from .model import Course, CourseFormatError, CourseWarning

#: file names a thumbnail may have (the service checks the content when it serves one)
THUMBNAIL = "thumbnail.png"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")

__all__ = [
    "CLAUDE_MD",
    "COURSES_JSON",
    "GRAPH_JSON",
    "JSON_FENCE",
    "PAPER_JSON",
    "CourseFormatError",
    "find_stages_block",
    "has_course",
    "parse_course",
    "split_options",
]


def has_course(folder: Path) -> bool:
    """Whether ``folder`` looks like a course in either layout (cheap check)."""
    return catalogue.detect(folder) or claude_md.detect(folder)


def parse_course(
    folder: Path,
    course_id: str,
    *,
    title: str | None = None,
    description: str | None = None,
    source: str = "",
    repo_root: Path | None = None,
) -> Course:
    """Parse and validate the course in ``folder``.

    ``title``/``description`` (from the operator's catalogue entry) win over what the
    course files say. ``repo_root`` is the repository ``folder`` lies in (the thumbnail
    may come from there); without it the course folder is the repository.
    """
    if not folder.is_dir():
        raise CourseFormatError(".", "course folder not found")
    if not (folder / CLAUDE_MD).is_file():
        raise CourseFormatError(CLAUDE_MD, "missing: every course needs the tutor's CLAUDE.md")
    claude_text = read_text(folder, CLAUDE_MD)
    issues: list[CourseWarning] = []
    paper = catalogue.read_paper(folder, issues)
    # knowledge/courses.json wins: with it, the folder is a catalogue course whatever
    # CLAUDE.md holds
    layout: Literal["claude-md", "catalogue"]
    if catalogue.detect(folder):
        layout = "catalogue"
        stages = catalogue.parse_stages(folder, issues)
    else:
        layout = "claude-md"
        stages = claude_md.parse_stages(claude_text, issues)
    heading = first_heading(claude_text)
    if title:
        course_title = title
    elif paper.course_title:
        # paper.json courses[] names this very course
        course_title = paper.course_title
    elif paper.title:
        course_title = paper.title
        if _paper_has_several_courses(folder):
            # several courses of one paper share paper.json: tell them apart
            course_title = f"{paper.title} ({folder.name})"
    else:
        course_title = heading or folder.name
    root = (repo_root or folder).resolve()
    return Course(
        id=course_id,
        title=course_title,
        description=description or paper.description or "",
        layout=layout,
        path=folder,
        stages=tuple(stages),
        card=paper.card,
        issues=issues,
        source=source,
        language=paper.language,
        thumbnail=find_thumbnail(folder, paper.card.get("thumbnailUrl"), root),
        repo_root=root,
    )


def _paper_has_several_courses(folder: Path) -> bool:
    try:
        siblings = [p for p in folder.parent.iterdir() if p.is_dir() and p != folder]
    except OSError:
        return False
    return any(has_course(p) for p in siblings)


def find_thumbnail(folder: Path, thumbnail_url: object, repo_root: Path) -> str | None:
    """The course's thumbnail as a POSIX path relative to ``repo_root``, or None.

    The course folder's ``thumbnail.png``, else the paper's ``thumbnailUrl`` (relative to
    the paper folder), else the paper folder's ``thumbnail.png``. Only regular image files
    inside ``repo_root`` (symlinks resolved) count; URLs and absolute paths never do.
    """
    candidates = [folder / THUMBNAIL]
    if isinstance(thumbnail_url, str) and thumbnail_url.strip():
        rel = PurePosixPath(thumbnail_url.strip())
        if not rel.is_absolute() and ":" not in thumbnail_url and "\\" not in thumbnail_url:
            candidates.append(folder.parent / rel)
    candidates.append(folder.parent / THUMBNAIL)
    for candidate in candidates:
        if not candidate.is_file():
            # (cheap: a stat) most candidates do not exist; resolving them would cost more
            continue
        try:
            real = candidate.resolve()
        except (OSError, RuntimeError):
            continue
        # the name that counts is the file's, not a symlink's
        if real.suffix.lower() not in _IMAGE_SUFFIXES:
            continue
        if repo_root not in real.parents or not real.is_file():
            continue
        return real.relative_to(repo_root).as_posix()
    return None
