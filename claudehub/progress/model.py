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


@dataclass
class Course:
    """A parsed, validated course."""

    id: str
    title: str
    description: str
    layout: Literal["claude-md", "catalogue"]
    path: Path
    stages: tuple[Stage, ...]
    card: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    source: str = ""

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
    """A course file is malformed; ``file`` is relative to the course folder."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason
