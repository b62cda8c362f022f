"""The course model both course layouts are mapped onto.

A course is an ordered list of stages; a stage holds concepts (Markdown text the
learner reads) and quizzes. Quiz answers and explanations live in :class:`Quiz`
only; :func:`public_course` is the one place that turns a course into data that
may leave the service, and it never copies them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

QuizType = Literal["multiple-choice", "free-response", "code-challenge"]
QUIZ_TYPES: tuple[str, ...] = ("multiple-choice", "free-response", "code-challenge")


@dataclass(frozen=True)
class Quiz:
    """One question. ``answer`` and ``explanation`` are secrets of the service."""

    id: str
    question: str
    type: QuizType
    options: tuple[str, ...] = ()
    answer: str | None = None
    explanation: str | None = None
    concept_id: str | None = None
    #: how the author labelled the options when not 1, 2, 3... (e.g. "A", "B", "C"); the
    #: learner may answer with a label too
    option_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Concept:
    """A piece of course text (a lesson in the catalogue layout)."""

    id: str
    title: str
    content: str
    key_ideas: tuple[str, ...] = ()
    prerequisites: tuple[str, ...] = ()
    level: str | None = None
    paper_ref: str | None = None


@dataclass(frozen=True)
class Stage:
    """A stage (a module in the catalogue layout), numbered from 1."""

    number: int
    id: str
    title: str
    description: str = ""
    concepts: tuple[Concept, ...] = ()
    quizzes: tuple[Quiz, ...] = ()
    #: stage numbers that must be complete before this one unlocks
    requires: tuple[int, ...] = ()


@dataclass(frozen=True)
class CourseWarning:
    """A problem that did not stop a course from loading: what was ignored, and why.

    ``file`` is relative to the course folder (``../paper.json`` for the paper's card),
    ``path`` the JSON path inside it (``modules[0].lessons[2]``; "" for the whole file).
    """

    file: str
    path: str
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.file}: {self.path}: {self.reason}"
            if self.path
            else f"{self.file}: {self.reason}"
        )

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "path": self.path, "reason": self.reason}


@dataclass
class Course:
    """A parsed, validated course.

    ``repo_root`` is the fetched repository the course folder ``path`` lies in (None when
    the course was parsed on its own); ``thumbnail`` is the course's thumbnail image as a
    POSIX path relative to ``repo_root`` (never leaving it), or None. ``language`` is the
    course's language code ("en", "ko") when its paper says so.
    """

    id: str
    title: str
    description: str
    layout: Literal["claude-md", "catalogue"]
    path: Path
    stages: tuple[Stage, ...]
    card: dict[str, Any] = field(default_factory=dict)
    issues: list[CourseWarning] = field(default_factory=list)
    source: str = ""
    language: str | None = None
    thumbnail: str | None = None
    repo_root: Path | None = None

    @property
    def warnings(self) -> list[str]:
        """The warnings as text: ``file: path: reason``."""
        return [str(issue) for issue in self.issues]

    def stage(self, number: int) -> Stage | None:
        """The stage numbered ``number``, or None."""
        for stage in self.stages:
            if stage.number == number:
                return stage
        return None

    def find_quiz(self, quiz_id: str) -> tuple[Stage, Quiz] | None:
        """The stage and quiz with id ``quiz_id``, or None."""
        for stage in self.stages:
            for quiz in stage.quizzes:
                if quiz.id == quiz_id:
                    return stage, quiz
        return None

    def concept_stage(self) -> dict[str, int]:
        """Map concept id -> stage number."""
        return {c.id: s.number for s in self.stages for c in s.concepts}


@dataclass(frozen=True)
class CourseError:
    """A course that could not be loaded: shown to the operator, never fatal."""

    course_id: str
    source: str
    file: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {
            "course_id": self.course_id,
            "source": self.source,
            "file": self.file,
            "reason": self.reason,
        }


class CourseFormatError(Exception):
    """A course file is malformed; ``file`` is relative to the course folder.

    ``path`` is the JSON path of the bad part ("" for the whole file); ``reason`` is the
    full message (``path: detail``), ``detail`` the message without the path.
    """

    def __init__(self, file: str, reason: str, path: str = "") -> None:
        self.file = file
        self.path = path
        self.detail = reason
        self.reason = f"{path}: {reason}" if path else reason
        super().__init__(f"{file}: {self.reason}")

    def as_warning(self, ignored: str = "") -> CourseWarning:
        """This problem as a warning; ``ignored`` says what was done about it."""
        detail = f"{self.detail}: {ignored}" if ignored else self.detail
        return CourseWarning(self.file, self.path, detail)
