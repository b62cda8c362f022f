"""Parse a course folder in either layout into :class:`~claudehub.progress.model.Course`.

Layout "catalogue" (today's public course catalogue)::

    <paper>/paper.json                      optional card data
    <paper>/<course>/CLAUDE.md              tutor instructions
    <paper>/<course>/knowledge/courses.json array of modules with lessons
    <paper>/<course>/knowledge/graph.json   optional concept graph

Layout "claude-md" (the original authoring guide): a ``CLAUDE.md`` whose fenced
```` ```json ```` block holds ``{"stages": [...]}``.

Every problem raises :class:`CourseFormatError` naming the file and the reason.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

from .model import QUIZ_TYPES, Concept, Course, CourseFormatError, Quiz, Stage

CLAUDE_MD = "CLAUDE.md"
COURSES_JSON = "knowledge/courses.json"
GRAPH_JSON = "knowledge/graph.json"
PAPER_JSON = "paper.json"

# a fenced ```json block; group 1 is its body
JSON_FENCE = re.compile(r"^[ \t]*```json[ \t]*\r?\n(.*?)^[ \t]*```[ \t]*$", re.M | re.S)
# "1) text", "2. text", "(3) text" at the start of a line
_OPTION_LINE = re.compile(r"^\s*\(?(\d{1,2})[).]\s+(\S.*?)\s*$")
_TYPE_THE_NUMBER = re.compile(r"^\s*\(?type (the|a) number\.?\)?\s*$", re.I)


def _norm(text: str) -> str:
    """Normalise text for answer comparison: trim, collapse spaces, casefold."""
    return " ".join(text.split()).casefold()


def has_course(folder: Path) -> bool:
    """Whether ``folder`` looks like a course in either layout (cheap check)."""
    if (folder / COURSES_JSON).is_file():
        return True
    claude = folder / CLAUDE_MD
    if claude.is_file():
        try:
            text = claude.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
        return any('"stages"' in m.group(1) for m in JSON_FENCE.finditer(text))
    return False


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
    claude_text = _read_text(folder, CLAUDE_MD)
    warnings: list[str] = []
    card = _read_paper_card(folder, warnings)
    if (folder / COURSES_JSON).is_file():
        layout = "catalogue"
        stages = _parse_catalogue(folder, warnings)
    else:
        layout = "claude-md"
        stages = _parse_claude_md(claude_text)
    heading = _first_heading(claude_text)
    course_title = title or card.get("title") or heading or folder.name
    if card.get("title") and not title and heading and heading != card["title"]:
        # several courses of one paper share paper.json: tell them apart
        course_title = f"{card['title']} ({folder.name})"
    course_description = description or card.get("description") or ""
    return Course(
        id=course_id,
        title=str(course_title),
        description=str(course_description),
        layout=layout,  # type: ignore[arg-type]
        path=folder,
        stages=tuple(stages),
        card=card,
        warnings=warnings,
        source=source,
    )


# ---------------------------------------------------------------------------
# helpers


def _read_text(folder: Path, rel: str) -> str:
    try:
        return (folder / rel).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CourseFormatError(rel, f"not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise CourseFormatError(rel, f"cannot read: {e.strerror}") from None


def _load_json(folder: Path, rel: str) -> Any:
    text = _read_text(folder, rel)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CourseFormatError(rel, f"invalid JSON: {e.msg} (line {e.lineno})") from None


def _first_heading(markdown: str) -> str | None:
    for line in markdown.splitlines():
        if line.startswith("# "):
            return line[2:].strip() or None
    return None


def _str(value: Any, file: str, where: str, name: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise CourseFormatError(file, f'{where}: "{name}" must be a non-empty string')
    return value


def _str_list(value: Any, file: str, where: str, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CourseFormatError(file, f'{where}: "{name}" must be an array of strings')
    return tuple(value)


def _read_paper_card(folder: Path, warnings: list[str]) -> dict[str, Any]:
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


# ---------------------------------------------------------------------------
# layout "claude-md"


def find_stages_block(text: str) -> re.Match[str] | None:
    """The fenced ```json block of CLAUDE.md that holds the stages, if any."""
    blocks = list(JSON_FENCE.finditer(text))
    for m in blocks:
        if '"stages"' in m.group(1):
            return m
    return None


def _parse_claude_md(text: str) -> list[Stage]:
    blocks = list(JSON_FENCE.finditer(text))
    if not blocks:
        raise CourseFormatError(
            CLAUDE_MD, 'no ```json block with {"stages": [...]} and no knowledge/courses.json'
        )
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
        if not isinstance(raw, dict):
            raise CourseFormatError(CLAUDE_MD, f"{where} must be an object")
        number = raw.get("stageNumber")
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise CourseFormatError(CLAUDE_MD, f'{where}: "stageNumber" must be an integer >= 1')
        if number in seen:
            raise CourseFormatError(CLAUDE_MD, f"duplicate stage number {number} ({where})")
        seen.add(number)
        stage_id = raw.get("id")
        stage_id = stage_id if isinstance(stage_id, str) and stage_id else f"stage-{number}"
        title = _str(raw.get("title"), CLAUDE_MD, where, "title")
        concepts = _claude_md_concepts(raw.get("concepts"), where)
        quizzes: tuple[Quiz, ...] = ()
        if raw.get("quiz") is not None:
            quizzes = (_claude_md_quiz(raw["quiz"], f"{where}.quiz", stage_id),)
        stages.append(
            Stage(
                number=number,
                id=stage_id,
                title=title,
                description=str(raw.get("description") or ""),
                concepts=concepts,
                quizzes=quizzes,
            )
        )
    stages.sort(key=lambda s: s.number)
    # the original format is linear: each stage needs the one before it
    linear = [stages[0]]
    for prev, stage in itertools.pairwise(stages):
        linear.append(_replace_requires(stage, (prev.number,)))
    return linear


def _replace_requires(stage: Stage, requires: tuple[int, ...]) -> Stage:
    return Stage(
        number=stage.number,
        id=stage.id,
        title=stage.title,
        description=stage.description,
        concepts=stage.concepts,
        quizzes=stage.quizzes,
        requires=requires,
    )


def _claude_md_concepts(raw: Any, where: str) -> tuple[Concept, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise CourseFormatError(CLAUDE_MD, f'{where}: "concepts" must be an array')
    concepts = []
    for j, c in enumerate(raw):
        cw = f"{where}.concepts[{j}]"
        if not isinstance(c, dict):
            raise CourseFormatError(CLAUDE_MD, f"{cw} must be an object")
        concepts.append(
            Concept(
                id=_str(c.get("id"), CLAUDE_MD, cw, "id"),
                title=_str(c.get("title"), CLAUDE_MD, cw, "title"),
                content=_str(c.get("content"), CLAUDE_MD, cw, "content", required=False),
            )
        )
    return tuple(concepts)


def _claude_md_quiz(raw: Any, where: str, stage_id: str) -> Quiz:
    if not isinstance(raw, dict):
        raise CourseFormatError(CLAUDE_MD, f"{where} must be an object")
    qtype = raw.get("type", "multiple-choice")
    if qtype not in QUIZ_TYPES:
        raise CourseFormatError(
            CLAUDE_MD, f'{where}: "type" must be one of {", ".join(QUIZ_TYPES)}'
        )
    quiz_id = raw.get("id")
    quiz_id = quiz_id if isinstance(quiz_id, str) and quiz_id else f"{stage_id}-quiz"
    question = _str(raw.get("question"), CLAUDE_MD, where, "question")
    answer = raw.get("correctAnswer")
    if isinstance(answer, int | float) and not isinstance(answer, bool):
        answer = str(answer)
    if answer is not None and not isinstance(answer, str):
        raise CourseFormatError(CLAUDE_MD, f'{where}: "correctAnswer" must be a string')
    options: tuple[str, ...] = ()
    if qtype == "multiple-choice":
        options = _str_list(raw.get("options"), CLAUDE_MD, where, "options")
        if len(options) < 2:
            raise CourseFormatError(CLAUDE_MD, f"{where}: a multiple-choice quiz needs 2+ options")
        if answer is None:
            raise CourseFormatError(CLAUDE_MD, f'{where}: "correctAnswer" is missing')
        answer = _resolve_option(answer, options)
        if answer is None:
            raise CourseFormatError(CLAUDE_MD, f'{where}: "correctAnswer" is not among the options')
    explanation = raw.get("explanation") if isinstance(raw.get("explanation"), str) else None
    return Quiz(
        id=quiz_id,
        question=question,
        type=qtype,
        options=options,
        answer=answer,
        explanation=explanation,
    )


def _resolve_option(answer: str, options: tuple[str, ...]) -> str | None:
    """The option text ``answer`` designates (its text, "N) text" or its number)."""
    wanted = _norm(answer)
    for opt in options:
        if _norm(opt) == wanted:
            return opt
    m = _OPTION_LINE.match(answer)
    if m and 1 <= int(m.group(1)) <= len(options):
        opt = options[int(m.group(1)) - 1]
        if _norm(opt) == _norm(m.group(2)):
            return opt
    if wanted.isdigit() and 1 <= int(wanted) <= len(options):
        return options[int(wanted) - 1]
    return None


# ---------------------------------------------------------------------------
# layout "catalogue"


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


def _parse_catalogue(folder: Path, warnings: list[str]) -> list[Stage]:
    data = _load_json(folder, COURSES_JSON)
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
            concept, lesson_quizzes = _catalogue_lesson(lesson, lw, graph_nodes)
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
        result.append(_replace_requires(stage, tuple(requires)))
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


def _catalogue_lesson(
    lesson: Any, where: str, graph_nodes: dict[str, dict[str, Any]]
) -> tuple[Concept, list[Quiz]]:
    if not isinstance(lesson, dict):
        raise CourseFormatError(COURSES_JSON, f"{where} must be an object")
    if "concept_id" not in lesson:
        if "id" in lesson:
            raise CourseFormatError(COURSES_JSON, f'{where} uses "id" instead of "concept_id"')
        raise CourseFormatError(COURSES_JSON, f'{where}: "concept_id" is missing')
    concept_id = _str(lesson.get("concept_id"), COURSES_JSON, where, "concept_id")
    title = _str(lesson.get("title"), COURSES_JSON, where, "title")
    content = _str(lesson.get("content"), COURSES_JSON, where, "content", required=False)
    node = graph_nodes.get(concept_id, {})
    concept = Concept(
        id=concept_id,
        title=title,
        content=content,
        key_ideas=_str_list(lesson.get("key_ideas"), COURSES_JSON, where, "key_ideas"),
        prerequisites=_str_list(lesson.get("prerequisites"), COURSES_JSON, where, "prerequisites"),
        level=node.get("level") if isinstance(node.get("level"), str) else None,
        paper_ref=lesson.get("paper_ref") if isinstance(lesson.get("paper_ref"), str) else None,
    )
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
        text = _str(raw.get(question_key), COURSES_JSON, qw, question_key)
        answer = raw.get("answer")
        if isinstance(answer, int | float) and not isinstance(answer, bool):
            answer = str(answer)
        if answer is None or (isinstance(answer, str) and not answer.strip()):
            raise CourseFormatError(COURSES_JSON, f'{qw}: "answer" is missing')
        if not isinstance(answer, str):
            raise CourseFormatError(COURSES_JSON, f'{qw}: "answer" must be a string')
        stem, options = split_options(text)
        if options:
            resolved = _resolve_option(answer, options)
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
                type=qtype,  # type: ignore[arg-type]
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
    data = _load_json(folder, GRAPH_JSON)
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
