"""Parse a course folder in either layout into :class:`~claudehub.progress.model.Course`.

The layouts live in :mod:`claudehub.progress.layouts`:

- "catalogue" (today's public course catalogue, :mod:`~.layouts.catalogue`): modules and
  lessons in ``knowledge/courses.json`` next to the tutor's ``CLAUDE.md``, card data in the
  paper's ``../paper.json``;
- "claude-md" (the original authoring guide, :mod:`~.layouts.claude_md`): a ``CLAUDE.md``
  whose fenced ```` ```json ```` block holds ``{"stages": [...]}``.

This module picks the layout and is what callers import; it keeps the names they use.
Every problem raises :class:`CourseFormatError` naming the file and the reason.
"""

from __future__ import annotations

from pathlib import Path
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
from .model import Course, CourseFormatError

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
) -> Course:
    """Parse and validate the course in ``folder``.

    ``title``/``description`` (from the operator's catalogue entry) win over what the
    course files say.
    """
    if not folder.is_dir():
        raise CourseFormatError(".", "course folder not found")
    if not (folder / CLAUDE_MD).is_file():
        raise CourseFormatError(CLAUDE_MD, "missing: every course needs the tutor's CLAUDE.md")
    claude_text = read_text(folder, CLAUDE_MD)
    warnings: list[str] = []
    card = catalogue.read_paper_card(folder, warnings)
    # knowledge/courses.json wins: with it, the folder is a catalogue course whatever
    # CLAUDE.md holds
    layout: Literal["claude-md", "catalogue"]
    if catalogue.detect(folder):
        layout = "catalogue"
        stages = catalogue.parse_stages(folder, warnings)
    else:
        layout = "claude-md"
        stages = claude_md.parse_stages(claude_text)
    heading = first_heading(claude_text)
    course_title = title or card.get("title") or heading or folder.name
    if card.get("title") and not title and heading and heading != card["title"]:
        # several courses of one paper share paper.json: tell them apart
        course_title = f"{card['title']} ({folder.name})"
    course_description = description or card.get("description") or ""
    return Course(
        id=course_id,
        title=str(course_title),
        description=str(course_description),
        layout=layout,
        path=folder,
        stages=tuple(stages),
        card=card,
        warnings=warnings,
        source=source,
    )
