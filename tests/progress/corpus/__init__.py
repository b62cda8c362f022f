"""A course repository with every malformation and quiz shape the public catalogue has.

Written from scratch (no catalogue content is copied): :func:`write_corpus` lays it out under
a folder, and :data:`EXPECTED_WARNINGS` says, per course folder, which warnings loading it
must give (file, JSON path, a piece of the reason) -- no more, no fewer.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

#: a PNG signature and nothing else: thumbnails are only checked by name while parsing
PNG = b"\x89PNG\r\n\x1a\n"

#: explanations are secrets: none may reach the page or the sandbox bundle
EXPLANATIONS: list[str] = []


def _lesson(concept_id: str, exercise: str | None, answer: Any, **extra: Any) -> dict[str, Any]:
    explanation = f"Because {concept_id} is explained here (secret)."
    EXPLANATIONS.append(explanation)
    lesson: dict[str, Any] = {
        "concept_id": concept_id,
        "title": concept_id.replace("_", " ").title(),
        "prerequisites": [],
        "content": f"## {concept_id}\n\nText about {concept_id}.",
        "key_ideas": [f"{concept_id} matters"],
        "paper_ref": f"Author, 2020 - {concept_id}",
        "explanation": explanation,
    }
    if exercise is not None:
        lesson["exercise"] = exercise
    if answer is not None:
        lesson["answer"] = answer
    lesson.update(extra)
    return lesson


def _module(module_id: str, lessons: list[Any]) -> dict[str, Any]:
    return {"id": module_id, "title": module_id.title(), "description": "", "lessons": lessons}


def _graph(ids: list[str]) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": i, "name": i, "type": "concept", "level": "foundational", "key_ideas": []}
            for i in ids
        ],
        "edges": [{"source": a, "target": b} for a, b in itertools.pairwise(ids)],
    }


def _paper(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": title,
        "description": f"About {title}.",
        "authors": [{"name": "A. Author"}],
    } | extra


def _write_course(
    root: Path,
    rel: str,
    modules: Any,
    graph: Any = None,
    *,
    raw_graph: str | None = None,
    raw_courses: str | None = None,
) -> Path:
    folder = root / rel
    (folder / "knowledge").mkdir(parents=True, exist_ok=True)
    (folder / "CLAUDE.md").write_text(f"# Tutor for {rel}\n\nTeach one module at a time.\n")
    text = raw_courses if raw_courses is not None else json.dumps(modules, indent=2)
    (folder / "knowledge" / "courses.json").write_text(text, encoding="utf-8")
    if raw_graph is not None:
        (folder / "knowledge" / "graph.json").write_text(raw_graph)
    elif graph is not None:
        (folder / "knowledge" / "graph.json").write_text(json.dumps(graph, indent=2))
    return folder


def _write_paper(root: Path, slug: str, paper: dict[str, Any] | str) -> None:
    (root / slug).mkdir(parents=True, exist_ok=True)
    text = paper if isinstance(paper, str) else json.dumps(paper, ensure_ascii=False, indent=2)
    (root / slug / "paper.json").write_text(text, encoding="utf-8")


def _good(prefix: str) -> list[dict[str, Any]]:
    return [
        _module(
            f"{prefix}_basics",
            [
                _lesson(f"{prefix}_one", "Which is one?\n1) One\n2) Two", "One"),
                _lesson(f"{prefix}_two", "Name the number after one.", "two"),
            ],
        )
    ]


#: every inline shape of the catalogue: (concept id, exercise text, answer)
INLINE_SHAPES: list[tuple[str, str, str]] = [
    # numbered inline, comma-separated, a closing question after the last option
    (
        "inline_commas",
        "A cache keeps: 1) Nothing, 2) Recent results, 3) Only errors. Which is it?",
        "Recent results",
    ),
    # numbered inline, parenthesised, a period closing the last option
    ("inline_parens", "What speeds up lookups? (1) Sorting (2) An index (3) Guessing.", "An index"),
    # parenthesised with commas and a lead-in
    ("inline_lead_in", "Pick the prime. Multiple choice: (1) 4, (2) 6, (3) 7, (4) 9.", "7"),
    # lettered inline on one line; the answer is the option text
    (
        "inline_letters",
        "What does a hash map give? A) Order B) Fast lookup C) Compression",
        "Fast lookup",
    ),
    # lettered with numbers as option texts: the answer "100" is the text, not a position
    ("inline_letters_numbers", "How many pairs do ten items make? A) 10 B) 100 C) 45", "100"),
    # lettered, one option a line
    ("letter_lines", "Which sorts in place?\nA) Heapsort\nB) Mergesort (array copy)\nC) None", "A"),
    # true/false: a leading "True or False:" and an instruction line, answer in lower case
    ("tf_leading", "True or False: Every tree is a graph.\n\nType 'True' or 'False'.", "true"),
    # true/false: a closing "True or False?", answer "False"
    ("tf_trailing", "A queue serves the newest item first. True or False?", "False"),
    # true/false: instruction "Answer True or False." on its own line
    (
        "tf_instruction",
        "True or False: Binary search needs sorted input.\nAnswer True or False.",
        "True",
    ),
]

#: option texts parsed from each inline shape, and the option the answer designates
INLINE_EXPECTED: dict[str, tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    "inline_commas": (("Nothing", "Recent results", "Only errors"), "Recent results", ()),
    "inline_parens": (("Sorting", "An index", "Guessing"), "An index", ()),
    "inline_lead_in": (("4", "6", "7", "9"), "7", ()),
    "inline_letters": (("Order", "Fast lookup", "Compression"), "Fast lookup", ("A", "B", "C")),
    "inline_letters_numbers": (("10", "100", "45"), "100", ("A", "B", "C")),
    "letter_lines": (("Heapsort", "Mergesort (array copy)", "None"), "Heapsort", ("A", "B", "C")),
    "tf_leading": (("True", "False"), "True", ("T", "F")),
    "tf_trailing": (("True", "False"), "False", ("T", "F")),
    "tf_instruction": (("True", "False"), "True", ("T", "F")),
}

#: exercises that stay free-response: (concept id, text, answer, warned?)
FREE_SHAPES: list[tuple[str, str, str, bool]] = [
    ("yes_no", "Would a set keep duplicates? (Yes/No).", "No", False),
    ("fill_in", "Fill in the blank: a ___ has a head and a tail.\nType one word.", "list", False),
    ("out_of_order", "Pick one: 1) Red 3) Blue 2) Green", "Red", True),
    ("numbers_and_letters", "Pick: 1) Up 2) Down or A) Left B) Right", "Up", True),
    ("tf_not_an_answer", "Explain whether this is true or false.", "It depends on the input", True),
    # inline markers that are not options: "A) and B)" named in running text
    (
        "letters_in_prose",
        "Compare plan A) cheap and plan B) fast in a sentence.",
        "B is faster",
        True,
    ),
]

#: per course folder: the warnings loading it gives, as (file, JSON path, piece of reason)
EXPECTED_WARNINGS: dict[str, list[tuple[str, str, str]]] = {
    "older-graph/core": [("knowledge/graph.json", "", 'the older graph shape ("from"/"to"')],
    "dangling-edge/core": [
        ("knowledge/graph.json", "edges[1]", 'target "nowhere" is not a node of the graph')
    ],
    "bad-answer/core": [
        ("knowledge/courses.json", "modules[0].lessons[0]", '"answer" is not among the options'),
        ("knowledge/courses.json", "modules[0].lessons[1]", '"answer" is missing'),
    ],
    "bad-paper/core": [("../paper.json", "", "ignored: Expecting")],
    "bad-graph/core": [("knowledge/graph.json", "", "invalid JSON")],
    "bad-lesson/core": [
        ("knowledge/courses.json", "modules[0].lessons[1]", "must be an object: lesson left out"),
        ("knowledge/courses.json", "modules[0].lessons[2]", '"concept_id" is missing'),
        ("knowledge/courses.json", "modules[0].lessons[3]", 'duplicate concept_id "bl_one"'),
        ("knowledge/courses.json", "modules[0].lessons[4]", '"key_ideas" must be an array'),
        ("knowledge/courses.json", "modules[1].lessons[0]", "must be an object"),
        ("knowledge/courses.json", "modules[1]", "no usable lesson: module left out"),
        ("knowledge/courses.json", "modules[2]", '"lessons" must be an array'),
    ],
    "cycle/core": [("knowledge/courses.json", "modules[0]", "prerequisites form a cycle")],
    "shapes/core": [
        ("knowledge/courses.json", "modules[1].lessons[2]", "not in order"),
        ("knowledge/courses.json", "modules[1].lessons[3]", "both numbered and lettered"),
        (
            "knowledge/courses.json",
            "modules[1].lessons[4]",
            'reads as true/false options, but "answer" is none of them',
        ),
        (
            "knowledge/courses.json",
            "modules[1].lessons[5]",
            'reads as inline letters options, but "answer" is none of them',
        ),
    ],
    "korean/core": [],
    "korean/core-ko": [],
    "twins/first": [],
    "twins/second": [],
    "thumbs/own": [],
    "thumbs/by-url": [],
    "thumbs-remote/only": [],
    "thumbs-escape/only": [],
}

#: course folders that cannot load at all: (file, piece of reason)
EXPECTED_ERRORS: dict[str, tuple[str, str]] = {
    "unloadable/core": ("knowledge/courses.json", "must be a JSON array"),
}

KOREAN_PAPER = {
    "title": "Data Structures",
    "title_ko": "자료 구조",
    "description": "Lists, trees and maps.",
    "description_ko": "리스트, 트리, 맵.",
    "authors": [{"name": "A. Author"}],
    "courses": [
        {"slug": "core", "language": "en", "title": "Data Structures"},
        {"slug": "core-ko", "language": "ko", "title": "자료 구조 (한국어)"},
    ],
}


def write_corpus(root: Path, *, unloadable: bool = True) -> Path:
    """Write the corpus repository under ``root``; returns ``root``."""
    EXPLANATIONS.clear()
    # the older graph shape: edges from/to, nodes label
    _write_paper(root, "older-graph", _paper("Older Graph"))
    _write_course(
        root,
        "older-graph/core",
        _good("og"),
        {
            "nodes": [
                {"id": "og_one", "label": "One", "level": "foundational"},
                {"id": "og_two", "label": "Two", "level": "advanced"},
            ],
            "edges": [{"from": "og_one", "to": "og_two", "type": "prerequisite"}],
        },
    )
    # an edge naming a node that does not exist
    graph = _graph(["de_one", "de_two"])
    graph["edges"].append({"source": "de_one", "target": "nowhere"})
    _write_paper(root, "dangling-edge", _paper("Dangling Edge"))
    _write_course(root, "dangling-edge/core", _good("de"), graph)
    # a multiple-choice answer that is not an option; a missing answer
    _write_paper(root, "bad-answer", _paper("Bad Answer"))
    _write_course(
        root,
        "bad-answer/core",
        [
            _module(
                "answers",
                [
                    _lesson("ba_one", "Which?\n1) Alpha - the first\n2) Beta - the second", "Beta"),
                    _lesson("ba_two", "Say anything.", None),
                    _lesson("ba_three", "Which?\n1) Yes\n2) No", "2"),
                ],
            )
        ],
        _graph(["ba_one", "ba_two", "ba_three"]),
    )
    # paper.json that is not JSON; graph.json that is not JSON
    _write_paper(root, "bad-paper", '{"title": "Broken", ')
    _write_course(root, "bad-paper/core", _good("bp"))
    _write_paper(root, "bad-graph", _paper("Bad Graph"))
    _write_course(root, "bad-graph/core", _good("bg"), raw_graph="{nodes: [")
    # lessons that cannot be used, a module left with none, a module without lessons array
    _write_paper(root, "bad-lesson", _paper("Bad Lesson"))
    lessons: list[Any] = [
        _lesson("bl_one", "Which?\n1) A one\n2) A two", "A one"),
        "not a lesson",
        {"title": "No id", "content": "..."},
        _lesson("bl_one", "Again?", "yes"),
        _lesson("bl_four", "Key ideas wrong.", "x", key_ideas="not a list"),
    ]
    _write_course(
        root,
        "bad-lesson/core",
        [
            _module("usable", lessons),
            _module("empty", [42]),
            {"id": "broken", "title": "Broken", "lessons": {"a": 1}},
            _module("last", [_lesson("bl_last", "Last?\n1) Yes\n2) No", "Yes")]),
        ],
    )
    # prerequisites that form a cycle between two modules
    _write_paper(root, "cycle", _paper("Cycle"))
    _write_course(
        root,
        "cycle/core",
        [
            _module("first", [_lesson("cy_a", "A?", "a", prerequisites=["cy_b"])]),
            _module("second", [_lesson("cy_b", "B?", "b", prerequisites=["cy_a"])]),
        ],
    )
    # every quiz shape
    _write_paper(root, "shapes", _paper("Shapes"))
    _write_course(
        root,
        "shapes/core",
        [
            _module("inline", [_lesson(c, text, answer) for c, text, answer in INLINE_SHAPES]),
            _module("free", [_lesson(c, text, answer) for c, text, answer, _ in FREE_SHAPES]),
        ],
    )
    # a Korean course next to an English one, both named in paper.json courses[]
    _write_paper(root, "korean", KOREAN_PAPER)
    _write_course(root, "korean/core", _good("en"))
    _write_course(root, "korean/core-ko", _good("ko"))
    # two courses of one paper without courses[]: the "(folder)" suffix tells them apart
    _write_paper(root, "twins", _paper("Twins"))
    _write_course(root, "twins/first", _good("tw1"))
    _write_course(root, "twins/second", _good("tw2"))
    # thumbnails: the course's own, the paper's thumbnailUrl, a remote one, an escaping one
    _write_paper(root, "thumbs", _paper("Thumbs", thumbnailUrl="art/cover.png"))
    _write_course(root, "thumbs/own", _good("th1"))
    (root / "thumbs" / "own" / "thumbnail.png").write_bytes(PNG)
    _write_course(root, "thumbs/by-url", _good("th2"))
    (root / "thumbs" / "art").mkdir()
    (root / "thumbs" / "art" / "cover.png").write_bytes(PNG)
    _write_paper(
        root, "thumbs-remote", _paper("Remote", thumbnailUrl="https://example.invalid/t.png")
    )
    _write_course(root, "thumbs-remote/only", _good("tr"))
    (root / "thumbs-remote" / "thumbnail.png").write_bytes(PNG)
    _write_paper(root, "thumbs-escape", _paper("Escape", thumbnailUrl="../../outside.png"))
    _write_course(root, "thumbs-escape/only", _good("te"))
    (root.parent / "outside.png").write_bytes(PNG)
    # a course that cannot load at all
    if unloadable:
        _write_paper(root, "unloadable", _paper("Unloadable"))
        _write_course(root, "unloadable/core", None, raw_courses='{"modules": []}')
    return root
