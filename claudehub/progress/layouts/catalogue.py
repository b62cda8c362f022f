"""Layout "catalogue" (today's public course catalogue)::

    <paper>/paper.json                      optional card data
    <paper>/<course>/CLAUDE.md              tutor instructions
    <paper>/<course>/knowledge/courses.json array of modules with lessons
    <paper>/<course>/knowledge/graph.json   optional concept graph

A module is a stage, a lesson a concept; a lesson's exercises are its quizzes
(multiple-choice when the text carries options, see :mod:`.options`). A module requires the
modules that teach its lessons' prerequisites.

Degrade, never drop: only an unreadable ``courses.json`` or one without a usable module stops
the course. Everything else that is wrong -- a bad ``paper.json`` or ``graph.json``, a lesson
or module that cannot be read, a quiz whose answer is not one of its options -- is left out or
handed to the tutor, with a :class:`~claudehub.progress.model.CourseWarning` naming the file,
the JSON path and the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..model import Concept, CourseFormatError, CourseWarning, Quiz, Stage
from .common import COURSES_JSON, GRAPH_JSON, PAPER_JSON, load_json
from .options import AmbiguousOptions, find_options, resolve_option

_PAPER = f"../{PAPER_JSON}"
_TUTOR = "the tutor judges this quiz"
#: option shapes one per line: their options are surely options, so an answer that is none
#: of them is the author's mistake (the quiz goes to the tutor)
_LINE_SHAPES = ("numbered lines", "lettered lines")


def detect(folder: Path) -> bool:
    """Whether ``folder`` has the catalogue layout's ``knowledge/courses.json``."""
    return (folder / COURSES_JSON).is_file()


@dataclass
class Paper:
    """What ``../paper.json`` says about one course folder.

    ``title``/``description`` are in the course's ``language`` when the paper has them
    (``title_ko``…); ``course_title`` is the course's own title from ``courses[]``.
    """

    card: dict[str, Any] = field(default_factory=dict)
    language: str | None = None
    title: str | None = None
    description: str | None = None
    course_title: str | None = None


def read_paper(folder: Path, issues: list[CourseWarning]) -> Paper:
    """``../paper.json`` of the course ``folder`` (catalogue layout); problems are warnings."""
    path = folder.parent / PAPER_JSON
    if not path.is_file():
        return Paper()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        issues.append(CourseWarning(_PAPER, "", f"ignored: {e}"))
        return Paper()
    if not isinstance(data, dict):
        issues.append(CourseWarning(_PAPER, "", "ignored: not a JSON object"))
        return Paper()
    card: dict[str, Any] = {}
    for key in ("title", "description", "publishedAt", "githubUrl", "arxivId", "thumbnailUrl"):
        if isinstance(data.get(key), str):
            card[key] = data[key]
    if isinstance(data.get("sortOrder"), int | float) and not isinstance(data["sortOrder"], bool):
        card["sortOrder"] = data["sortOrder"]
    authors = data.get("authors")
    if isinstance(authors, list):
        names = [
            a["name"] for a in authors if isinstance(a, dict) and isinstance(a.get("name"), str)
        ]
        if len(names) != len(authors):
            issues.append(CourseWarning(_PAPER, "authors", 'must be objects with a "name"'))
        card["authors"] = names
    org = data.get("organization")
    if isinstance(org, dict) and isinstance(org.get("name"), str):
        card["organization"] = org["name"]
    paper = Paper(
        card=card, title=_text(card.get("title")), description=_text(card.get("description"))
    )
    _localise(paper, data, folder.name, issues)
    return paper


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _localise(paper: Paper, data: dict[str, Any], slug: str, issues: list[CourseWarning]) -> None:
    """The course's language, title and description from ``courses[]`` and ``title_<lang>``."""
    courses = data.get("courses")
    if courses is None:
        return
    if not isinstance(courses, list):
        issues.append(CourseWarning(_PAPER, "courses", "must be an array: ignored"))
        return
    for i, entry in enumerate(courses):
        if not isinstance(entry, dict) or not isinstance(entry.get("slug"), str):
            issues.append(CourseWarning(_PAPER, f"courses[{i}]", 'needs a string "slug": ignored'))
            continue
        if entry["slug"] != slug:
            continue
        language = entry.get("language")
        if language is not None and not (isinstance(language, str) and language.strip()):
            issues.append(
                CourseWarning(_PAPER, f"courses[{i}]", '"language" must be a string: ignored')
            )
            language = None
        paper.language = language.strip() if isinstance(language, str) else None
        paper.course_title = _text(entry.get("title"))
        break
    if paper.language:
        # "title_ko"/"description_ko" for a course in Korean; the plain fields otherwise
        paper.title = _text(data.get(f"title_{paper.language}")) or paper.title
        description = _text(data.get(f"description_{paper.language}"))
        paper.description = description or paper.description


def parse_stages(folder: Path, issues: list[CourseWarning]) -> list[Stage]:
    """The usable modules of ``knowledge/courses.json`` as stages, with their prerequisites.

    A module keeps its number (its place in the array, from 1) even when one before it is
    left out, so progress and the tutor's ``[STAGE_COMPLETE:N]`` keep meaning the same stage.
    Prerequisites no lesson teaches are dropped with a warning; so is, on a cycle, every
    requirement of a module on a later one.
    """
    data = load_json(folder, COURSES_JSON)
    if not isinstance(data, list):
        raise CourseFormatError(
            COURSES_JSON, f"must be a JSON array of modules, got {type(data).__name__}"
        )
    if not data:
        raise CourseFormatError(COURSES_JSON, "no modules")
    graph_nodes = _read_graph(folder, issues)
    stages: list[Stage] = []
    concept_ids: set[str] = set()
    prereqs: dict[int, set[str]] = {}
    for i, module in enumerate(data):
        stage = _module(module, i, graph_nodes, concept_ids, issues)
        if stage is not None:
            stages.append(stage)
            prereqs[stage.number] = {p for c in stage.concepts for p in c.prerequisites}
    if not stages:
        raise CourseFormatError(COURSES_JSON, "no usable module (see the warnings)")
    concept_stage = {c.id: s.number for s in stages for c in s.concepts}
    result = []
    for stage in stages:
        unknown = sorted(p for p in prereqs[stage.number] if p not in concept_stage)
        if unknown:
            issues.append(
                CourseWarning(
                    COURSES_JSON,
                    f"modules[{stage.number - 1}]",
                    f"prerequisites not taught by any lesson are ignored: {', '.join(unknown)}",
                )
            )
        requires = sorted(
            {concept_stage[p] for p in prereqs[stage.number] if p in concept_stage} - {stage.number}
        )
        result.append(replace(stage, requires=tuple(requires)))
    cycle = _find_cycle(result)
    if cycle is not None:
        issues.append(
            CourseWarning(
                COURSES_JSON,
                f"modules[{cycle - 1}]",
                "prerequisites form a cycle: requirements on later modules are ignored",
            )
        )
        result = [replace(s, requires=tuple(r for r in s.requires if r < s.number)) for s in result]
    return result


def _module(
    module: Any,
    i: int,
    graph_nodes: dict[str, dict[str, Any]],
    concept_ids: set[str],
    issues: list[CourseWarning],
) -> Stage | None:
    """Module ``i`` as a stage, or None (with a warning) when nothing of it is usable."""
    where = f"modules[{i}]"
    number = i + 1
    if not isinstance(module, dict):
        issues.append(CourseWarning(COURSES_JSON, where, "must be an object: module left out"))
        return None
    module_id = module.get("id")
    module_id = module_id if isinstance(module_id, str) and module_id else f"module-{number}"
    title = module.get("title")
    title = title if isinstance(title, str) and title.strip() else module_id
    lessons = module.get("lessons")
    if not isinstance(lessons, list):
        issues.append(
            CourseWarning(COURSES_JSON, where, '"lessons" must be an array: module left out')
        )
        return None
    concepts: list[Concept] = []
    quizzes: list[Quiz] = []
    for j, lesson in enumerate(lessons):
        lw = f"{where}.lessons[{j}]"
        parsed = _lesson(lesson, lw, graph_nodes, issues)
        if parsed is None:
            continue
        concept, lesson_quizzes = parsed
        if concept.id in concept_ids:
            issues.append(
                CourseWarning(
                    COURSES_JSON, lw, f'duplicate concept_id "{concept.id}": lesson left out'
                )
            )
            continue
        concept_ids.add(concept.id)
        concepts.append(concept)
        quizzes.extend(lesson_quizzes)
    if lessons and not concepts:
        issues.append(CourseWarning(COURSES_JSON, where, "no usable lesson: module left out"))
        return None
    description = module.get("description")
    return Stage(
        number=number,
        id=module_id,
        title=title,
        description=description if isinstance(description, str) else "",
        concepts=tuple(concepts),
        quizzes=tuple(quizzes),
    )


def _find_cycle(stages: list[Stage]) -> int | None:
    """A stage number on a prerequisite cycle, or None."""
    requires = {s.number: s.requires for s in stages}
    state: dict[int, int] = {}

    def visit(n: int) -> int | None:
        if state.get(n) == 2:
            return None
        if state.get(n) == 1:
            return n
        state[n] = 1
        for r in requires.get(n, ()):
            found = visit(r)
            if found is not None:
                return found
        state[n] = 2
        return None

    for s in stages:
        found = visit(s.number)
        if found is not None:
            return found
    return None


def _str_list(value: Any, where: str, name: str, issues: list[CourseWarning]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        issues.append(
            CourseWarning(COURSES_JSON, where, f'"{name}" must be an array of strings: ignored')
        )
        return ()
    return tuple(value)


def _lesson(
    lesson: Any, where: str, graph_nodes: dict[str, dict[str, Any]], issues: list[CourseWarning]
) -> tuple[Concept, list[Quiz]] | None:
    """Lesson -> concept and quizzes; None (with a warning) when it cannot be used."""

    def warn(reason: str, path: str = where) -> None:
        issues.append(CourseWarning(COURSES_JSON, path, reason))

    if not isinstance(lesson, dict):
        warn("must be an object: lesson left out")
        return None
    concept_id = lesson.get("concept_id")
    if concept_id is None and isinstance(lesson.get("id"), str) and lesson["id"].strip():
        warn('uses "id" instead of "concept_id": read as its concept_id')
        concept_id = lesson["id"]
    if concept_id is None:
        warn('"concept_id" is missing: lesson left out')
        return None
    if not isinstance(concept_id, str) or not concept_id.strip():
        warn('"concept_id" must be a non-empty string: lesson left out')
        return None
    title = lesson.get("title")
    if not isinstance(title, str) or not title.strip():
        warn('"title" must be a non-empty string: the concept_id is shown instead')
        title = concept_id
    content = lesson.get("content")
    if content is not None and not isinstance(content, str):
        warn('"content" must be a string: ignored')
        content = None
    node = graph_nodes.get(concept_id, {})
    key_ideas = _str_list(lesson.get("key_ideas"), where, "key_ideas", issues)
    if not key_ideas and isinstance(node.get("key_ideas"), list):
        key_ideas = tuple(k for k in node["key_ideas"] if isinstance(k, str))
    concept = Concept(
        id=concept_id,
        title=title,
        content=content or "",
        key_ideas=key_ideas,
        prerequisites=_str_list(lesson.get("prerequisites"), where, "prerequisites", issues),
        level=_nonempty(node.get("level")),
        # the lesson's citation, else the graph node's
        paper_ref=_nonempty(lesson.get("paper_ref")) or _nonempty(node.get("paper_ref")),
    )
    # a lesson has one "exercise" (question text in "exercise") or an "exercises" array
    # (question text in "question")
    raw_quizzes: list[tuple[str, Any]] = []
    question_key = "exercise"
    if lesson.get("exercise") is not None:
        raw_quizzes.append((where, lesson))
    elif lesson.get("exercises") is not None:
        exercises = lesson["exercises"]
        question_key = "question"
        if isinstance(exercises, list):
            raw_quizzes = [(f"{where}.exercises[{k}]", ex) for k, ex in enumerate(exercises)]
        else:
            warn('"exercises" must be an array: no quiz for this lesson')
    quizzes = []
    for k, (qw, raw) in enumerate(raw_quizzes):
        quiz_id = concept_id if k == 0 else f"{concept_id}-{k + 1}"
        quiz = _quiz(raw, qw, question_key, quiz_id, concept_id, issues)
        if quiz is not None:
            quizzes.append(quiz)
    return concept, quizzes


def _nonempty(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _quiz(
    raw: Any,
    where: str,
    question_key: str,
    quiz_id: str,
    concept_id: str,
    issues: list[CourseWarning],
) -> Quiz | None:
    """One exercise as a quiz. Options are read from the text; a quiz whose answer the
    service cannot trust goes to the tutor (free-response, no answer) with a warning."""

    def warn(reason: str) -> None:
        issues.append(CourseWarning(COURSES_JSON, where, reason))

    if not isinstance(raw, dict):
        warn("must be an object: quiz left out")
        return None
    text = raw.get(question_key)
    if not isinstance(text, str) or not text.strip():
        warn(f'"{question_key}" must be a non-empty string: quiz left out')
        return None
    explanation = raw.get("explanation") if isinstance(raw.get("explanation"), str) else None
    answer = raw.get("answer")
    if isinstance(answer, int | float) and not isinstance(answer, bool):
        answer = str(answer)
    tutor = Quiz(
        id=quiz_id,
        question=text.strip(),
        type="free-response",
        explanation=explanation,
        concept_id=concept_id,
    )
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        warn(f'"answer" is missing: {_TUTOR}')
        return tutor
    if not isinstance(answer, str):
        warn(f'"answer" must be a string: {_TUTOR}')
        return tutor
    try:
        found = find_options(text)
    except AmbiguousOptions as e:
        warn(f"the options cannot be read unambiguously ({e}): kept free-response")
        found = None
    if found is None:
        return replace(tutor, answer=answer)
    resolved = resolve_option(answer, found.options, found.labels)
    if resolved is None:
        if found.shape not in _LINE_SHAPES:
            # options read from running text (inline markers, "True or False") may not be
            # options at all: keep the free-response quiz the author may have meant
            warn(
                f'reads as {found.shape} options, but "answer" is none of them: kept free-response'
            )
            return replace(tutor, answer=answer)
        warn(f'"answer" is not among the options ({found.shape}): {_TUTOR}')
        return tutor
    return Quiz(
        id=quiz_id,
        question=found.stem,
        type="multiple-choice",
        options=found.options,
        answer=resolved,
        explanation=explanation,
        concept_id=concept_id,
        option_labels=found.labels,
    )


def _read_graph(folder: Path, issues: list[CourseWarning]) -> dict[str, dict[str, Any]]:
    """Nodes of knowledge/graph.json by id (empty if the file is absent or unusable).

    The graph is optional: what is wrong in it is ignored with a warning. The older shape
    (edges ``from``/``to``, nodes ``label``) is read as ``source``/``target``/``name``.
    """
    if not (folder / GRAPH_JSON).is_file():
        return {}

    def warn(path: str, reason: str) -> None:
        issues.append(CourseWarning(GRAPH_JSON, path, reason))

    try:
        data = load_json(folder, GRAPH_JSON)
    except CourseFormatError as e:
        issues.append(e.as_warning("graph ignored"))
        return {}
    if not isinstance(data, dict):
        warn("", 'must be an object {"nodes": [...], "edges": [...]}: graph ignored')
        return {}
    nodes = data.get("nodes")
    edges = data.get("edges", [])
    if not isinstance(nodes, list):
        warn("nodes", "must be an array: graph ignored")
        return {}
    if not isinstance(edges, list):
        warn("edges", "must be an array: edges ignored")
        edges = []
    older = False
    by_id: dict[str, dict[str, Any]] = {}
    for i, node in enumerate(nodes):
        if not isinstance(node, dict) or not isinstance(node.get("id"), str) or not node["id"]:
            warn(f"nodes[{i}]", 'needs a string "id": node ignored')
            continue
        if node["id"] in by_id:
            warn(f"nodes[{i}]", f'duplicate id "{node["id"]}": node ignored')
            continue
        if "name" not in node and isinstance(node.get("label"), str):
            older = True
            node = {**node, "name": node["label"]}
        by_id[node["id"]] = node
    for i, edge in enumerate(edges):
        if not isinstance(edge, dict):
            warn(f"edges[{i}]", "must be an object: edge ignored")
            continue
        for end, old in (("source", "from"), ("target", "to")):
            ref, legacy = edge.get(end), edge.get(old)
            if ref is None and legacy is not None:
                older, ref = True, legacy
            elif ref is not None and legacy is not None and ref != legacy:
                warn(f"edges[{i}]", f'"{end}" and "{old}" name different nodes: edge ignored')
                break
            if not isinstance(ref, str) or not ref:
                warn(f"edges[{i}]", f'"{end}" is missing: edge ignored')
                break
            if ref not in by_id:
                warn(f"edges[{i}]", f'{end} "{ref}" is not a node of the graph: edge ignored')
                break
    if older:
        warn(
            "", 'the older graph shape ("from"/"to", "label") is read as "source"/"target", "name"'
        )
    return by_id
