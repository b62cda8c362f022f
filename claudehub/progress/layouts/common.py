"""What both course layouts share: file names, reading files, field checks.

Every problem raises :class:`~claudehub.progress.model.CourseFormatError` naming the file
(relative to the course folder) and the reason, so an author can fix it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..model import CourseFormatError
from .options import norm, resolve_option, split_options

__all__ = [
    "CLAUDE_MD",
    "COURSES_JSON",
    "GRAPH_JSON",
    "JSON_FENCE",
    "PAPER_JSON",
    "first_heading",
    "load_json",
    "norm",
    "read_text",
    "resolve_option",
    "split_options",
    "str_field",
    "str_list_field",
]

CLAUDE_MD = "CLAUDE.md"
COURSES_JSON = "knowledge/courses.json"
GRAPH_JSON = "knowledge/graph.json"
PAPER_JSON = "paper.json"

# a fenced ```json block; group 1 is its body
JSON_FENCE = re.compile(r"^[ \t]*```json[ \t]*\r?\n(.*?)^[ \t]*```[ \t]*$", re.M | re.S)


# ---------------------------------------------------------------------------
# files


def read_text(folder: Path, rel: str) -> str:
    """The UTF-8 text of ``folder/rel``; unreadable or non-UTF-8 files are format errors."""
    try:
        return (folder / rel).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CourseFormatError(rel, f"not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise CourseFormatError(rel, f"cannot read: {e.strerror}") from None


def load_json(folder: Path, rel: str) -> Any:
    """The parsed JSON of ``folder/rel``; invalid JSON is a format error naming the line."""
    text = read_text(folder, rel)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CourseFormatError(rel, f"invalid JSON: {e.msg} (line {e.lineno})") from None


def first_heading(markdown: str) -> str | None:
    """The text of the first ``# `` heading of ``markdown``, if any."""
    for line in markdown.splitlines():
        if line.startswith("# "):
            return line[2:].strip() or None
    return None


# ---------------------------------------------------------------------------
# fields


def str_field(value: Any, file: str, where: str, name: str, *, required: bool = True) -> str:
    """``value`` if it is a string (non-empty when ``required``; None allowed if not)."""
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise CourseFormatError(file, f'"{name}" must be a non-empty string', where)
    return value


def str_list_field(value: Any, file: str, where: str, name: str) -> tuple[str, ...]:
    """``value`` as a tuple if it is an array of strings (None is empty)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CourseFormatError(file, f'"{name}" must be an array of strings', where)
    return tuple(value)
