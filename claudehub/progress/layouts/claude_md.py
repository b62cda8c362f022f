"""Layout "claude-md" (the original authoring guide).

The course is one ``CLAUDE.md``: the tutor's instructions, with a fenced ```` ```json ````
block holding ``{"stages": [...]}``. Each stage has a ``stageNumber``, a title, optional
concepts and at most one quiz; stages are linear (each needs the one before it).

As in the catalogue layout, a bad part does not drop the course: a stage that cannot be read
(or repeats a stage number) is left out, a quiz whose answer the service cannot trust goes to
the tutor, each with a warning. Only a missing or invalid stages block, or one without a
usable stage, stops the course.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..model import QUIZ_TYPES, Concept, CourseFormatError, CourseWarning, Quiz, Stage
from .common import (
    CLAUDE_MD,
    JSON_FENCE,
    resolve_option,
    str_field,
    str_list_field,
)


def detect(folder: Path) -> bool:
    """Whether ``folder`` has a CLAUDE.md with a stages block (cheap check)."""
    claude = folder / CLAUDE_MD
    if not claude.is_file():
        return False
    try:
        text = claude.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return find_stages_block(text) is not None


def find_stages_block(text: str) -> re.Match[str] | None:
    """The fenced ```json block of CLAUDE.md that holds the stages, if any."""
    for m in JSON_FENCE.finditer(text):
        if '"stages"' in m.group(1):
            return m
    return None


def parse_stages(text: str, issues: list[CourseWarning]) -> list[Stage]:
    """The usable stages of the CLAUDE.md ``text``, in order, each requiring the one before;
    what is left out or handed to the tutor is added to ``issues``."""
    blocks = list(JSON_FENCE.finditer(text))
    if not blocks:
        raise CourseFormatError(
            CLAUDE_MD, 'no ```json block with {"stages": [...]} and no knowledge/courses.json'
        )
    # without a block naming "stages", the first block is what the author meant
    block = find_stages_block(text) or blocks[0]
    start_line = text.count("\n", 0, block.start(1)) + 1
    try:
        data = json.loads(block.group(1))
    except json.JSONDecodeError as e:
        raise CourseFormatError(
            CLAUDE_MD,
            f"invalid JSON in the ```json block: {e.msg} (line {start_line + e.lineno - 1})",
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list):
        raise CourseFormatError(CLAUDE_MD, 'the ```json block must be {"stages": [...]}')
    raw_stages = data["stages"]
    if not raw_stages:
        raise CourseFormatError(CLAUDE_MD, '"stages" is empty')
    stages: list[Stage] = []
    seen: set[int] = set()
    for i, raw in enumerate(raw_stages):
        where = f"stages[{i}]"
        try:
            stage = _stage(raw, where, issues)
        except CourseFormatError as e:
            issues.append(e.as_warning("stage left out"))
            continue
        if stage.number in seen:
            issues.append(
                CourseWarning(
                    CLAUDE_MD, where, f"duplicate stage number {stage.number}: stage left out"
                )
            )
            continue
        seen.add(stage.number)
        stages.append(stage)
    if not stages:
        raise CourseFormatError(CLAUDE_MD, '"stages" has no usable stage (see the warnings)')
    stages.sort(key=lambda s: s.number)
    # the original format is linear: each stage needs the one before it
    linear = [stages[0]]
    for prev, stage in itertools.pairwise(stages):
        linear.append(replace(stage, requires=(prev.number,)))
    return linear


def _stage(raw: Any, where: str, issues: list[CourseWarning]) -> Stage:
    """One stage; a stage that cannot be read raises, a bad quiz goes to the tutor."""
    if not isinstance(raw, dict):
        raise CourseFormatError(CLAUDE_MD, "must be an object", where)
    number = raw.get("stageNumber")
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise CourseFormatError(CLAUDE_MD, '"stageNumber" must be an integer >= 1', where)
    stage_id = raw.get("id")
    stage_id = stage_id if isinstance(stage_id, str) and stage_id else f"stage-{number}"
    title = str_field(raw.get("title"), CLAUDE_MD, where, "title")
    concepts = _concepts(raw.get("concepts"), where)
    quizzes: tuple[Quiz, ...] = ()
    if raw.get("quiz") is not None:
        quizzes = _quiz_or_tutor(raw["quiz"], f"{where}.quiz", stage_id, issues)
    return Stage(
        number=number,
        id=stage_id,
        title=title,
        description=str(raw.get("description") or ""),
        concepts=concepts,
        quizzes=quizzes,
    )


def _quiz_or_tutor(
    raw: Any, where: str, stage_id: str, issues: list[CourseWarning]
) -> tuple[Quiz, ...]:
    """The stage's quiz; one the service cannot judge goes to the tutor (free-response,
    no answer), one without a question is left out -- each with a warning."""
    try:
        return (_quiz(raw, where, stage_id),)
    except CourseFormatError as e:
        question = raw.get("question") if isinstance(raw, dict) else None
        if not isinstance(question, str) or not question.strip():
            issues.append(e.as_warning("quiz left out"))
            return ()
        issues.append(e.as_warning("the tutor judges this quiz"))
        quiz_id = raw.get("id")
        options = raw.get("options")
        if isinstance(options, list) and all(isinstance(o, str) for o in options):
            # the learner still sees the options, in the question the tutor discusses
            lines = [f"{n}) {o}" for n, o in enumerate(options, 1)]
            question = "\n".join([question, *lines])
        return (
            Quiz(
                id=quiz_id if isinstance(quiz_id, str) and quiz_id else f"{stage_id}-quiz",
                question=question,
                type="free-response",
            ),
        )


def _concepts(raw: Any, where: str) -> tuple[Concept, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise CourseFormatError(CLAUDE_MD, '"concepts" must be an array', where)
    concepts = []
    for j, c in enumerate(raw):
        cw = f"{where}.concepts[{j}]"
        if not isinstance(c, dict):
            raise CourseFormatError(CLAUDE_MD, "must be an object", cw)
        concepts.append(
            Concept(
                id=str_field(c.get("id"), CLAUDE_MD, cw, "id"),
                title=str_field(c.get("title"), CLAUDE_MD, cw, "title"),
                content=str_field(c.get("content"), CLAUDE_MD, cw, "content", required=False),
            )
        )
    return tuple(concepts)


def _quiz(raw: Any, where: str, stage_id: str) -> Quiz:
    if not isinstance(raw, dict):
        raise CourseFormatError(CLAUDE_MD, "must be an object", where)
    qtype = raw.get("type", "multiple-choice")
    if qtype not in QUIZ_TYPES:
        raise CourseFormatError(CLAUDE_MD, f'"type" must be one of {", ".join(QUIZ_TYPES)}', where)
    quiz_id = raw.get("id")
    quiz_id = quiz_id if isinstance(quiz_id, str) and quiz_id else f"{stage_id}-quiz"
    question = str_field(raw.get("question"), CLAUDE_MD, where, "question")
    answer = raw.get("correctAnswer")
    if isinstance(answer, int | float) and not isinstance(answer, bool):
        answer = str(answer)
    if answer is not None and not isinstance(answer, str):
        raise CourseFormatError(CLAUDE_MD, '"correctAnswer" must be a string', where)
    options: tuple[str, ...] = ()
    if qtype == "multiple-choice":
        options = str_list_field(raw.get("options"), CLAUDE_MD, where, "options")
        if len(options) < 2:
            raise CourseFormatError(CLAUDE_MD, "a multiple-choice quiz needs 2+ options", where)
        if answer is None:
            raise CourseFormatError(CLAUDE_MD, '"correctAnswer" is missing', where)
        answer = resolve_option(answer, options)
        if answer is None:
            raise CourseFormatError(CLAUDE_MD, '"correctAnswer" is not among the options', where)
    explanation = raw.get("explanation") if isinstance(raw.get("explanation"), str) else None
    return Quiz(
        id=quiz_id,
        question=question,
        type=qtype,
        options=options,
        answer=answer,
        explanation=explanation,
    )
