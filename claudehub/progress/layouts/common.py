"""What both course layouts share: file names, reading files, field checks, quiz options.

Every problem raises :class:`~claudehub.progress.model.CourseFormatError` naming the file
(relative to the course folder) and the reason, so an author can fix it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..model import CourseFormatError

CLAUDE_MD = "CLAUDE.md"
COURSES_JSON = "knowledge/courses.json"
GRAPH_JSON = "knowledge/graph.json"
PAPER_JSON = "paper.json"

# a fenced ```json block; group 1 is its body
JSON_FENCE = re.compile(r"^[ \t]*```json[ \t]*\r?\n(.*?)^[ \t]*```[ \t]*$", re.M | re.S)
# "1) text", "2. text", "(3) text" at the start of a line
_OPTION_LINE = re.compile(r"^\s*\(?(\d{1,2})[).]\s+(\S.*?)\s*$")
_TYPE_THE_NUMBER = re.compile(r"^\s*\(?type (the|a) number\.?\)?\s*$", re.I)


def norm(text: str) -> str:
    """Normalise text for answer comparison: trim, collapse spaces, casefold."""
    return " ".join(text.split()).casefold()


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
        raise CourseFormatError(file, f'{where}: "{name}" must be a non-empty string')
    return value


def str_list_field(value: Any, file: str, where: str, name: str) -> tuple[str, ...]:
    """``value`` as a tuple if it is an array of strings (None is empty)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CourseFormatError(file, f'{where}: "{name}" must be an array of strings')
    return tuple(value)


# ---------------------------------------------------------------------------
# quiz options


def resolve_option(answer: str, options: tuple[str, ...]) -> str | None:
    """The option text ``answer`` designates (its text, "N) text" or its number)."""
    wanted = norm(answer)
    for opt in options:
        if norm(opt) == wanted:
            return opt
    m = _OPTION_LINE.match(answer)
    if m and 1 <= int(m.group(1)) <= len(options):
        opt = options[int(m.group(1)) - 1]
        if norm(opt) == norm(m.group(2)):
            return opt
    if wanted.isdigit() and 1 <= int(wanted) <= len(options):
        return options[int(wanted) - 1]
    return None


def split_options(question: str) -> tuple[str, tuple[str, ...]]:
    """Split an exercise text into its stem and its numbered option lines.

    Options must be numbered 1, 2, 3... in order; fewer than two means the exercise
    is not multiple-choice and the whole text is the stem.
    """
    stem: list[str] = []
    options: list[str] = []
    for line in question.splitlines():
        m = _OPTION_LINE.match(line)
        if m and int(m.group(1)) == len(options) + 1:
            options.append(m.group(2))
            continue
        if options and _TYPE_THE_NUMBER.match(line):
            continue
        stem.append(line)
    if len(options) < 2:
        return question.strip(), ()
    return "\n".join(stem).strip(), tuple(options)
