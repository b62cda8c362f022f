"""Layout "catalogue" (today's public course catalogue)::

    <paper>/paper.json                      optional card data
    <paper>/<course>/CLAUDE.md              tutor instructions
    <paper>/<course>/knowledge/courses.json array of modules with lessons
    <paper>/<course>/knowledge/graph.json   optional concept graph

A module is a stage, a lesson a concept; a lesson's exercises are its quizzes
(multiple-choice when the text has numbered options). A module requires the modules that
teach its lessons' prerequisites.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..model import Concept, CourseFormatError, Quiz, QuizType, Stage
from .common import (
    COURSES_JSON,
    GRAPH_JSON,
    PAPER_JSON,
    load_json,
    resolve_option,
    split_options,
    str_field,
    str_list_field,
)


def detect(folder: Path) -> bool:
    """Whether ``folder`` has the catalogue layout's ``knowledge/courses.json``."""
    return (folder / COURSES_JSON).is_file()


def read_paper_card(folder: Path, warnings: list[str]) -> dict[str, Any]:
    """Card data from ``../paper.json`` (catalogue layout); problems are warnings."""
    paper = folder.parent / PAPER_JSON
    if not paper.is_file():
        return {}
    try:
        data = json.loads(paper.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        warnings.append(f"../{PAPER_JSON}: ignored: {e}")
        return {}
    if not isinstance(data, dict):
        warnings.append(f"../{PAPER_JSON}: ignored: not a JSON object")
        return {}
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
            warnings.append(f'../{PAPER_JSON}: "authors" must be objects with a "name"')
        card["authors"] = names
    org = data.get("organization")
    if isinstance(org, dict) and isinstance(org.get("name"), str):
        card["organization"] = org["name"]
    return card


def parse_stages(folder: Path, warnings: list[str]) -> list[Stage]:
    """The modules of ``knowledge/courses.json`` as stages, with their prerequisites.

    Prerequisites no lesson teaches are dropped with a warning; a cycle is an error.
    """
    data = load_json(folder, COURSES_JSON)
    if not isinstance(data, list):
        raise CourseFormatError(
            COURSES_JSON, f"must be a JSON array of modules, got {type(data).__name__}"
        )
    if not data:
        raise CourseFormatError(COURSES_JSON, "no modules")
    graph_nodes = _read_graph(folder)
    stages: list[Stage] = []
    concept_ids: set[str] = set()
    prereqs: dict[int, set[str]] = {}
    for i, module in enumerate(data):
        where = f"modules[{i}]"
        number = i + 1
        if not isinstance(module, dict):
            raise CourseFormatError(COURSES_JSON, f"{where} must be an object")
        module_id = module.get("id")
        module_id = module_id if isinstance(module_id, str) and module_id else f"module-{number}"
        title = module.get("title")
        title = title if isinstance(title, str) and title.strip() else module_id
        lessons = module.get("lessons")
        if not isinstance(lessons, list):
            raise CourseFormatError(COURSES_JSON, f'{where}: "lessons" must be an array')
        concepts: list[Concept] = []
        quizzes: list[Quiz] = []
        prereqs[number] = set()
        for j, lesson in enumerate(lessons):
            lw = f"{where}.lessons[{j}]"
            concept, lesson_quizzes = _lesson(lesson, lw, graph_nodes)
            if concept.id in concept_ids:
                raise CourseFormatError(COURSES_JSON, f'{lw}: duplicate concept_id "{concept.id}"')
            concept_ids.add(concept.id)
            concepts.append(concept)
            quizzes.extend(lesson_quizzes)
            prereqs[number].update(concept.prerequisites)
        description = module.get("description")
        stages.append(
            Stage(
                number=number,
                id=module_id,
                title=title,
                description=description if isinstance(description, str) else "",
                concepts=tuple(concepts),
                quizzes=tuple(quizzes),
            )
        )
    concept_stage = {c.id: s.number for s in stages for c in s.concepts}
    result = []
    for stage in stages:
        unknown = sorted(p for p in prereqs[stage.number] if p not in concept_stage)
        if unknown:
            warnings.append(
                f"{COURSES_JSON}: modules[{stage.number - 1}] prerequisites not taught by any "
                f"lesson are ignored: {', '.join(unknown)}"
            )
        requires = sorted(
            {concept_stage[p] for p in prereqs[stage.number] if p in concept_stage} - {stage.number}
        )
        result.append(replace(stage, requires=tuple(requires)))
    _check_acyclic(result)
    return result


def _check_acyclic(stages: list[Stage]) -> None:
    requires = {s.number: s.requires for s in stages}
    state: dict[int, int] = {}

    def visit(n: int) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            raise CourseFormatError(
                COURSES_JSON, f"prerequisites form a cycle through modules[{n - 1}]"
            )
        state[n] = 1
        for r in requires.get(n, ()):
            visit(r)
        state[n] = 2

    for s in stages:
        visit(s.number)


def _lesson(
    lesson: Any, where: str, graph_nodes: dict[str, dict[str, Any]]
) -> tuple[Concept, list[Quiz]]:
    if not isinstance(lesson, dict):
        raise CourseFormatError(COURSES_JSON, f"{where} must be an object")
    if "concept_id" not in lesson:
        if "id" in lesson:
            raise CourseFormatError(COURSES_JSON, f'{where} uses "id" instead of "concept_id"')
        raise CourseFormatError(COURSES_JSON, f'{where}: "concept_id" is missing')
    concept_id = str_field(lesson.get("concept_id"), COURSES_JSON, where, "concept_id")
    title = str_field(lesson.get("title"), COURSES_JSON, where, "title")
    content = str_field(lesson.get("content"), COURSES_JSON, where, "content", required=False)
    node = graph_nodes.get(concept_id, {})
    concept = Concept(
        id=concept_id,
        title=title,
        content=content,
        key_ideas=str_list_field(lesson.get("key_ideas"), COURSES_JSON, where, "key_ideas"),
        prerequisites=str_list_field(
            lesson.get("prerequisites"), COURSES_JSON, where, "prerequisites"
        ),
        level=node.get("level") if isinstance(node.get("level"), str) else None,
        paper_ref=lesson.get("paper_ref") if isinstance(lesson.get("paper_ref"), str) else None,
    )
    # a lesson has one "exercise" (question text in "exercise") or an "exercises" array
    # (question text in "question")
    raw_quizzes: list[tuple[str, dict[str, Any]]] = []
    question_key = "exercise"
    if lesson.get("exercise") is not None:
        raw_quizzes.append((where, lesson))
    elif lesson.get("exercises") is not None:
        exercises = lesson["exercises"]
        if not isinstance(exercises, list):
            raise CourseFormatError(COURSES_JSON, f'{where}: "exercises" must be an array')
        for k, ex in enumerate(exercises):
            if not isinstance(ex, dict):
                raise CourseFormatError(COURSES_JSON, f"{where}.exercises[{k}] must be an object")
            raw_quizzes.append((f"{where}.exercises[{k}]", ex))
        question_key = "question"
    quizzes = []
    for k, (qw, raw) in enumerate(raw_quizzes):
        text = str_field(raw.get(question_key), COURSES_JSON, qw, question_key)
        answer = raw.get("answer")
        if isinstance(answer, int | float) and not isinstance(answer, bool):
            answer = str(answer)
        if answer is None or (isinstance(answer, str) and not answer.strip()):
            raise CourseFormatError(COURSES_JSON, f'{qw}: "answer" is missing')
        if not isinstance(answer, str):
            raise CourseFormatError(COURSES_JSON, f'{qw}: "answer" must be a string')
        stem, options = split_options(text)
        qtype: QuizType
        if options:
            resolved = resolve_option(answer, options)
            if resolved is None:
                raise CourseFormatError(
                    COURSES_JSON, f'{qw}: "answer" is not among the numbered options'
                )
            qtype = "multiple-choice"
            answer = resolved
        else:
            qtype = "free-response"
        explanation = raw.get("explanation") if isinstance(raw.get("explanation"), str) else None
        quizzes.append(
            Quiz(
                id=concept_id if k == 0 else f"{concept_id}-{k + 1}",
                question=stem,
                type=qtype,
                options=options,
                answer=answer,
                explanation=explanation,
                concept_id=concept_id,
            )
        )
    return concept, quizzes


def _read_graph(folder: Path) -> dict[str, dict[str, Any]]:
    """Nodes of knowledge/graph.json by id (empty if the file is absent)."""
    if not (folder / GRAPH_JSON).is_file():
        return {}
    data = load_json(folder, GRAPH_JSON)
    if not isinstance(data, dict):
        raise CourseFormatError(GRAPH_JSON, 'must be an object {"nodes": [...], "edges": [...]}')
    nodes = data.get("nodes")
    edges = data.get("edges", [])
    if not isinstance(nodes, list):
        raise CourseFormatError(GRAPH_JSON, '"nodes" must be an array')
    if not isinstance(edges, list):
        raise CourseFormatError(GRAPH_JSON, '"edges" must be an array')
    by_id: dict[str, dict[str, Any]] = {}
    for i, node in enumerate(nodes):
        if not isinstance(node, dict) or not isinstance(node.get("id"), str) or not node["id"]:
            raise CourseFormatError(GRAPH_JSON, f'nodes[{i}] needs a string "id"')
        by_id[node["id"]] = node
    for i, edge in enumerate(edges):
        if not isinstance(edge, dict):
            raise CourseFormatError(GRAPH_JSON, f"edges[{i}] must be an object")
        for end in ("source", "target"):
            ref = edge.get(end)
            if not isinstance(ref, str) or not ref:
                raise CourseFormatError(GRAPH_JSON, f'edges[{i}]: "{end}" is missing')
            if ref not in by_id:
                raise CourseFormatError(
                    GRAPH_JSON, f'edges[{i}]: {end} "{ref}" is not a node of the graph'
                )
    return by_id
