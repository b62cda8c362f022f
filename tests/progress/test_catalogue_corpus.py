"""The corpus of every malformation the public catalogue has (tests/progress/corpus) loads
whole: each course with a usable stage loads, with exactly the warnings it deserves; inline
options become multiple choice and are judged; paper.json languages, titles and thumbnails
are read; ``claudehub-progress check-catalogue`` prints it all and fails only for a course
that cannot load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_asyncio

from claudehub.progress.admin_page import render_admin_page
from claudehub.progress.catalogue import Catalogue, load_catalogue, make_course_id
from claudehub.progress.judging import judge
from claudehub.progress.model import Course
from claudehub.progress.parsing import parse_course

from .corpus import (
    EXPECTED_ERRORS,
    EXPECTED_WARNINGS,
    FREE_SHAPES,
    INLINE_EXPECTED,
    INLINE_SHAPES,
    KOREAN_PAPER,
    PNG,
    write_corpus,
)


def _id(rel: str) -> str:
    return make_course_id("corpus", rel)


async def _load(root: Path, tmp_path: Path) -> Catalogue:
    return await load_catalogue([], [{"id": "corpus", "repo": str(root)}], tmp_path / "cache")


@pytest_asyncio.fixture
async def corpus(tmp_path: Path) -> Catalogue:
    return await _load(write_corpus(tmp_path / "repo"), tmp_path)


def _course(cat: Catalogue, rel: str) -> Course:
    course = cat.get(_id(rel))
    assert course is not None, f"{rel} did not load"
    return course


@pytest.mark.asyncio
async def test_every_course_with_a_usable_stage_loads_with_its_warnings(
    corpus: Catalogue,
) -> None:
    assert sorted(corpus.courses) == sorted(_id(rel) for rel in EXPECTED_WARNINGS)
    for rel, expected in EXPECTED_WARNINGS.items():
        got = [(w.file, w.path, w.reason) for w in _course(corpus, rel).issues]
        assert len(got) == len(expected), (rel, got)
        for (file, path, reason), (want_file, want_path, piece) in zip(got, expected, strict=True):
            assert (file, path) == (want_file, want_path), (rel, got)
            assert piece in reason, (rel, reason)
    errors = {e.course_id: (e.file, e.reason) for e in corpus.errors}
    assert set(errors) == {_id(rel) for rel in EXPECTED_ERRORS}
    for rel, (file, piece) in EXPECTED_ERRORS.items():
        assert errors[_id(rel)][0] == file and piece in errors[_id(rel)][1]


@pytest.mark.asyncio
async def test_what_is_left_out_and_what_stays(corpus: Catalogue) -> None:
    # the older graph shape still gives the lessons their level
    older = _course(corpus, "older-graph/core")
    assert [c.level for c in older.stages[0].concepts] == ["foundational", "advanced"]
    # a bad answer goes to the tutor, with the options still in the question text
    quiz = _course(corpus, "bad-answer/core").stages[0].quizzes[0]
    assert (quiz.type, quiz.answer, quiz.options) == ("free-response", None, ())
    assert "2) Beta - the second" in quiz.question
    assert judge(quiz, "2").status == "tutor"
    missing = _course(corpus, "bad-answer/core").stages[0].quizzes[1]
    assert (missing.type, missing.answer) == ("free-response", None)
    # bad lessons and modules are left out; the modules keep their numbers
    bad = _course(corpus, "bad-lesson/core")
    assert [(s.number, [c.id for c in s.concepts]) for s in bad.stages] == [
        (1, ["bl_one", "bl_four"]),
        (4, ["bl_last"]),
    ]
    assert bad.stages[0].concepts[1].key_ideas == ()
    # a prerequisite cycle: the requirement on the later module is dropped
    assert [s.requires for s in _course(corpus, "cycle/core").stages] == [(), (1,)]
    # a bad paper.json: the course is titled from its CLAUDE.md heading
    assert _course(corpus, "bad-paper/core").title == "Tutor for bad-paper/core"


@pytest.mark.asyncio
async def test_inline_options_become_multiple_choice(corpus: Catalogue) -> None:
    course = _course(corpus, "shapes/core")
    quizzes = {q.id: q for q in course.stages[0].quizzes}
    assert set(quizzes) == {c for c, _, _ in INLINE_SHAPES}
    for concept_id, (options, answer, labels) in INLINE_EXPECTED.items():
        quiz = quizzes[concept_id]
        assert quiz.type == "multiple-choice", concept_id
        assert (quiz.options, quiz.answer, quiz.option_labels) == (options, answer, labels)
        # the stem keeps the question, not the options
        assert all(f") {o}" not in quiz.question for o in options), quiz.question
    assert quizzes["inline_commas"].question == "A cache keeps:\n\nWhich is it?"
    assert quizzes["tf_leading"].question == "True or False: Every tree is a graph."
    for concept_id, _, answer, _ in FREE_SHAPES:
        quiz = next(q for q in course.stages[1].quizzes if q.id == concept_id)
        assert (quiz.type, quiz.options, quiz.answer) == ("free-response", (), answer)


@pytest.mark.parametrize(
    ("concept_id", "right", "wrong"),
    [
        ("inline_commas", ["2", "Recent results", "2) Recent results"], ["1", "B", "Nothing"]),
        ("inline_letters", ["2", "B", "b)", "Fast lookup", "B) Fast lookup"], ["A", "1", "D"]),
        ("inline_letters_numbers", ["2", "B", "100"], ["10", "1", "45)"]),
        ("letter_lines", ["1", "A", "a", "Heapsort"], ["B", "Mergesort"]),
        ("tf_leading", ["1", "True", "true", "TRUE.", "T"], ["False", "F", "2", "yes"]),
        ("tf_trailing", ["2", "False", "false.", "false!", "f"], ["True", "1", "no"]),
    ],
)
@pytest.mark.asyncio
async def test_inline_quizzes_are_judged_by_number_letter_or_text(
    corpus: Catalogue, concept_id: str, right: list[str], wrong: list[str]
) -> None:
    quiz = next(q for q in _course(corpus, "shapes/core").stages[0].quizzes if q.id == concept_id)
    for answer in right:
        assert judge(quiz, answer).status == "correct", answer
    for answer in wrong:
        assert judge(quiz, answer).status == "wrong", answer


@pytest.mark.asyncio
async def test_languages_titles_and_descriptions(corpus: Catalogue) -> None:
    en, ko = _course(corpus, "korean/core"), _course(corpus, "korean/core-ko")
    assert (en.language, en.title, en.description) == (
        "en",
        "Data Structures",
        KOREAN_PAPER["description"],
    )
    assert (ko.language, ko.title, ko.description) == (
        "ko",
        "자료 구조 (한국어)",
        KOREAN_PAPER["description_ko"],
    )
    # no courses[]: language unknown; the "(folder)" suffix only with several courses
    assert _course(corpus, "twins/first").title == "Twins (first)"
    assert _course(corpus, "twins/second").title == "Twins (second)"
    single = _course(corpus, "older-graph/core")
    assert (single.title, single.language) == ("Older Graph", None)


def test_korean_title_without_a_course_title(tmp_path: Path) -> None:
    """``title_ko`` is used when courses[] gives the language but no title."""
    from .corpus import _good, _write_course, _write_paper

    paper = {**KOREAN_PAPER, "courses": [{"slug": "only", "language": "ko"}]}
    _write_paper(tmp_path, "p", paper)
    course = parse_course(_write_course(tmp_path, "p/only", _good("x")), "x")
    assert (course.title, course.description, course.language) == (
        "자료 구조",
        "리스트, 트리, 맵.",
        "ko",
    )


@pytest.mark.asyncio
async def test_thumbnails_stay_inside_the_repository(corpus: Catalogue, tmp_path: Path) -> None:
    root = (tmp_path / "repo").resolve()
    thumbs = {rel: _course(corpus, rel).thumbnail for rel in EXPECTED_WARNINGS}
    assert thumbs["thumbs/own"] == "thumbs/own/thumbnail.png"
    assert thumbs["thumbs/by-url"] == "thumbs/art/cover.png"
    # a remote thumbnailUrl is never used: the paper folder's thumbnail.png is
    assert thumbs["thumbs-remote/only"] == "thumbs-remote/thumbnail.png"
    # one leaving the repository is not either
    assert thumbs["thumbs-escape/only"] is None
    assert thumbs["korean/core"] is None
    for course in corpus.courses.values():
        assert course.repo_root == root
        if course.thumbnail:
            assert (root / course.thumbnail).is_file()


def test_a_thumbnail_symlink_leaving_the_repository_is_ignored(tmp_path: Path) -> None:
    from .corpus import _good, _write_course, _write_paper

    _write_paper(tmp_path / "repo", "p", {"title": "P", "thumbnailUrl": "/etc/passwd"})
    folder = _write_course(tmp_path / "repo", "p/c", _good("x"))
    (folder / "thumbnail.png").symlink_to("/etc/passwd")
    (tmp_path / "repo" / "p" / "thumbnail.png").symlink_to(
        tmp_path / "repo" / "p" / "c" / "CLAUDE.md"
    )
    course = parse_course(folder, "x", repo_root=tmp_path / "repo")
    assert course.thumbnail is None
    (tmp_path / "repo" / "p" / "real.png").write_bytes(PNG)
    (tmp_path / "repo" / "p" / "thumbnail.png").unlink()
    (tmp_path / "repo" / "p" / "thumbnail.png").symlink_to("real.png")
    # a link that stays inside is fine: the path names the real file
    assert parse_course(folder, "x", repo_root=tmp_path / "repo").thumbnail == "p/real.png"


@pytest.mark.asyncio
async def test_concepts_carry_what_the_author_wrote(tmp_path: Path) -> None:
    from .corpus import _lesson, _module, _write_course, _write_paper

    _write_paper(tmp_path / "repo", "p", {"title": "P"})
    graph = {
        "nodes": [
            {"id": "a", "name": "A", "level": "frontier", "key_ideas": ["from the graph"],
             "paper_ref": "Graph, 2001"},
            {"id": "b", "name": "B", "level": "intermediate"},
        ],
        "edges": [{"source": "a", "target": "b"}],
    }  # fmt: skip
    lessons = [
        _lesson("a", "A?", "a", key_ideas=[], paper_ref=""),
        _lesson("b", "B?", "b", prerequisites=["a"]),
    ]
    folder = _write_course(tmp_path / "repo", "p/c", [_module("m", lessons)], graph)
    a, b = parse_course(folder, "x").stages[0].concepts
    # the lesson's empty fields fall back to its graph node
    assert (a.level, a.key_ideas, a.paper_ref) == ("frontier", ("from the graph",), "Graph, 2001")
    assert (b.level, b.key_ideas, b.paper_ref, b.prerequisites) == (
        "intermediate",
        ("b matters",),
        "Author, 2020 - b",
        ("a",),
    )


@pytest.mark.asyncio
async def test_admin_page_lists_each_courses_warnings(corpus: Catalogue) -> None:
    errors = [e.as_dict() for e in corpus.errors]
    page = render_admin_page(corpus, [], errors, "/services/progress/")
    assert 'id="warnings"' in page and 'id="errors"' in page
    assert "<td>edges[1]</td>" in page and "Dangling Edge" in page
    assert "modules[0].lessons[0]" in page
    warnings = sum(len(w) for w in EXPECTED_WARNINGS.values())
    assert page.count("<tr><td>") == warnings + len(EXPECTED_ERRORS)


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "claudehub-progress"
    return subprocess.run(
        [str(script), "check-catalogue", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )


def test_check_catalogue_prints_everything_and_fails_only_when_a_course_cannot_load(
    tmp_path: Path,
) -> None:
    root = write_corpus(tmp_path / "repo")
    done = _check(root)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    warnings = [line for line in lines if line.startswith("warning: ")]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(warnings) == sum(len(w) for w in EXPECTED_WARNINGS.values())
    assert errors == [
        "error: unloadable--core: knowledge/courses.json: must be a JSON array of modules, got dict"
    ]
    assert (
        'warning: dangling-edge--core: knowledge/graph.json: edges[1]: target "nowhere" is '
        "not a node of the graph: edge ignored"
    ) in warnings
    assert (
        lines[-1]
        == f"{len(EXPECTED_WARNINGS)} courses loaded, 1 cannot load, {len(warnings)} warnings"
    )

    clean = write_corpus(tmp_path / "clean", unloadable=False)
    done = _check(clean)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith(f"{len(EXPECTED_WARNINGS)} courses loaded, 0")
    # a single course folder is a repository too
    done = _check(clean / "korean" / "core-ko")
    assert (done.returncode, done.stdout.splitlines()[-1]) == (
        0,
        "1 courses loaded, 0 cannot load, 0 warnings",
    )
    missing = _check(tmp_path / "nowhere")
    assert missing.returncode == 1 and "does not exist" in missing.stdout
