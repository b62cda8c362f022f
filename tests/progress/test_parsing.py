"""Both course layouts parse to the same stages; every malformed variant is reported
with its file and reason: a course that cannot load is skipped without taking the other
courses down, one with a usable stage loads with warnings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from claudehub.progress.catalogue import load_catalogue
from claudehub.progress.model import CourseFormatError
from claudehub.progress.parsing import parse_course, split_options

from .coursekit import (
    PAPER,
    catalogue_graph,
    catalogue_modules,
    claude_md_stages,
    make_bare_repo,
    write_catalogue_course,
    write_claude_md_course,
)


def test_claude_md_layout_parses(tmp_path: Path) -> None:
    course = parse_course(write_claude_md_course(tmp_path / "c"), "t101")
    assert course.layout == "claude-md"
    assert course.title == "Transformers 101"
    assert [s.number for s in course.stages] == [1, 2, 3]
    assert [s.title for s in course.stages] == ["Tokens", "Attention", "Reflection"]
    assert [c.id for c in course.stages[0].concepts] == ["tok", "bpe"]
    q1 = course.stages[0].quizzes[0]
    assert (q1.id, q1.type, q1.options, q1.answer) == (
        "q1",
        "multiple-choice",
        ("Letters at random", "Frequent pairs", "Whole documents"),
        "Frequent pairs",
    )
    assert course.stages[2].quizzes[0].type == "free-response"
    assert course.stages[2].quizzes[0].answer is None
    # linear: each stage needs the previous one
    assert [s.requires for s in course.stages] == [(), (1,), (2,)]


def test_claude_md_stages_sorted_by_number(tmp_path: Path) -> None:
    stages = claude_md_stages()
    stages.reverse()
    course = parse_course(write_claude_md_course(tmp_path / "c", stages), "x")
    assert [s.number for s in course.stages] == [1, 2, 3]


@pytest.mark.parametrize("legacy", [False, True], ids=["exercise", "legacy-exercises"])
def test_catalogue_layout_parses(tmp_path: Path, legacy: bool) -> None:
    folder = write_catalogue_course(
        tmp_path / "bitcoin", modules=catalogue_modules(legacy=legacy), paper=PAPER
    )
    course = parse_course(folder, "bitcoin--core")
    assert course.layout == "catalogue"
    # the only course of its paper: no "(core)" suffix
    assert course.title == PAPER["title"]
    assert course.description == PAPER["description"]
    assert course.card["authors"] == ["Satoshi Nakamoto"]
    assert course.card["organization"] == "Common Computer"
    assert [(s.number, s.id, s.title) for s in course.stages] == [
        (1, "foundations", "Foundations"),
        (2, "consensus", "Consensus"),
    ]
    assert [c.id for c in course.stages[0].concepts] == ["ledger", "hashing"]
    assert course.stages[0].concepts[0].level == "foundational"
    ledger_q = course.stages[0].quizzes[0]
    assert ledger_q.id == "ledger"
    assert ledger_q.type == "multiple-choice"
    assert ledger_q.options == ("Weather", "Transactions", "Music")
    assert ledger_q.answer == "Transactions"
    assert ledger_q.question == "What does a ledger record?"
    assert ledger_q.explanation == "A ledger is a record of transactions."
    pow_q = course.stages[1].quizzes[0]
    assert (pow_q.type, pow_q.answer) == ("free-response", "nonce")
    # "pow" needs "hashing", taught in module 1: prerequisites unlock stage 2 after stage 1
    assert course.stages[1].requires == (1,)
    assert course.stages[0].requires == ()


def test_catalogue_answer_given_as_number_or_numbered_text(tmp_path: Path) -> None:
    mods = catalogue_modules()
    mods[0]["lessons"][0]["answer"] = "2"
    mods[0]["lessons"][1]["answer"] = "2) No"
    course = parse_course(write_catalogue_course(tmp_path / "p", modules=mods), "x")
    assert [q.answer for q in course.stages[0].quizzes] == ["Transactions", "No"]


def test_split_options() -> None:
    stem, options = split_options("Pick one:\n1) a\n2) b\n3. c\nType the number.")
    assert stem == "Pick one:"
    assert options == ("a", "b", "c")
    assert split_options("No options here.\n1) only one") == (
        "No options here.\n1) only one",
        (),
    )


def _bad_claude_md(tmp_path: Path, name: str) -> tuple[Path, str]:
    folder = tmp_path / name
    folder.mkdir()
    stages = claude_md_stages()
    if name == "no-json-block":
        (folder / "CLAUDE.md").write_text("# Tutor\n\nNo stages here.\n")
        return folder, "no ```json block"
    if name == "invalid-json":
        (folder / "CLAUDE.md").write_text('# T\n\n```json\n{"stages": [\n  {"id": 1,,}\n]}\n```\n')
        return folder, "invalid JSON"
    if name == "duplicate-stage-numbers":
        stages[1]["stageNumber"] = 1
        write_claude_md_course(folder, stages)
        return folder, "duplicate stage number 1"
    if name == "answer-not-among-options":
        stages[0]["quiz"]["correctAnswer"] = "Something else"
        write_claude_md_course(folder, stages)
        return folder, "not among the options"
    if name == "missing-correct-answer":
        del stages[0]["quiz"]["correctAnswer"]
        write_claude_md_course(folder, stages)
        return folder, '"correctAnswer" is missing'
    if name == "stages-not-array":
        (folder / "CLAUDE.md").write_text('# T\n\n```json\n{"stages": {"a": 1}}\n```\n')
        return folder, '{"stages": [...]}'
    if name == "no-usable-stage":
        for stage in stages:
            del stage["title"]
        write_claude_md_course(folder, stages)
        return folder, "no usable stage"
    if name == "stage-without-title":
        del stages[1]["title"]
        write_claude_md_course(folder, stages)
        return folder, '"title" must be a non-empty string: stage left out'
    if name == "quiz-without-question":
        del stages[0]["quiz"]["question"]
        write_claude_md_course(folder, stages)
        return folder, '"question" must be a non-empty string: quiz left out'
    raise AssertionError(name)


@pytest.mark.parametrize(
    "name", ["no-json-block", "invalid-json", "stages-not-array", "no-usable-stage"]
)
def test_malformed_claude_md(tmp_path: Path, name: str) -> None:
    folder, reason = _bad_claude_md(tmp_path, name)
    with pytest.raises(CourseFormatError) as err:
        parse_course(folder, name)
    assert err.value.file == "CLAUDE.md"
    assert reason in err.value.reason


@pytest.mark.parametrize(
    ("name", "path", "stages", "quiz"),
    [
        # the second stage numbered 1 is left out
        ("duplicate-stage-numbers", "stages[1]", [1, 3], "multiple-choice"),
        # the quiz goes to the tutor, with its options in the question
        ("answer-not-among-options", "stages[0].quiz", [1, 2, 3], "free-response"),
        ("missing-correct-answer", "stages[0].quiz", [1, 2, 3], "free-response"),
        ("stage-without-title", "stages[1]", [1, 3], "multiple-choice"),
        ("quiz-without-question", "stages[0].quiz", [1, 2, 3], None),
    ],
)
def test_degraded_claude_md_loads_with_a_warning(
    tmp_path: Path, name: str, path: str, stages: list[int], quiz: str | None
) -> None:
    folder, reason = _bad_claude_md(tmp_path, name)
    course = parse_course(folder, name)
    (warning,) = course.issues
    assert (warning.file, warning.path) == ("CLAUDE.md", path)
    assert reason in warning.reason
    assert [s.number for s in course.stages] == stages
    first = course.stages[0].quizzes
    assert (first[0].type if first else None) == quiz
    if quiz == "free-response":
        assert first[0].answer is None and "2) Frequent pairs" in first[0].question


def test_invalid_json_reports_line_in_claude_md(tmp_path: Path) -> None:
    folder, _ = _bad_claude_md(tmp_path, "invalid-json")
    with pytest.raises(CourseFormatError) as err:
        parse_course(folder, "x")
    assert "(line 5)" in err.value.reason


def _malformed_catalogue(name: str) -> tuple[Any, Any, str, str]:
    """(modules, graph, file, reason) of a malformed catalogue course."""
    mods: Any = catalogue_modules()
    graph: Any = catalogue_graph()
    if name == "object-instead-of-array":
        return {"modules": mods}, graph, "knowledge/courses.json", "must be a JSON array"
    if name == "every-lesson-unusable":
        for module in mods:
            for lesson in module["lessons"]:
                del lesson["concept_id"]
        return mods, graph, "knowledge/courses.json", "no usable module"
    if name == "id-instead-of-concept_id":
        lesson = mods[0]["lessons"][1]
        lesson["id"] = lesson.pop("concept_id")
        return mods, graph, "knowledge/courses.json", 'uses "id" instead of "concept_id"'
    if name == "missing-answer":
        del mods[1]["lessons"][0]["answer"]
        return mods, graph, "knowledge/courses.json", '"answer" is missing'
    if name == "answer-not-among-options":
        mods[0]["lessons"][0]["answer"] = "Bananas"
        return mods, graph, "knowledge/courses.json", '"answer" is not among the options'
    if name == "legacy-missing-answer":
        legacy = catalogue_modules(legacy=True)
        del legacy[0]["lessons"][0]["exercises"][0]["answer"]
        return legacy, graph, "knowledge/courses.json", '"answer" is missing'
    if name == "edge-to-unknown-node":
        graph["edges"].append({"source": "pow", "target": "lightning", "relationship": "x"})
        return mods, graph, "knowledge/graph.json", 'target "lightning" is not a node'
    raise AssertionError(name)


#: courses that cannot load at all
UNLOADABLE_CATALOGUE = ["object-instead-of-array", "every-lesson-unusable"]
#: courses that load, with a warning naming the file and the reason
DEGRADED_CATALOGUE = [
    "id-instead-of-concept_id",
    "missing-answer",
    "answer-not-among-options",
    "legacy-missing-answer",
    "edge-to-unknown-node",
]
MALFORMED_CATALOGUE = UNLOADABLE_CATALOGUE + DEGRADED_CATALOGUE


@pytest.mark.parametrize("name", UNLOADABLE_CATALOGUE)
def test_unloadable_catalogue_course(tmp_path: Path, name: str) -> None:
    mods, graph, file, reason = _malformed_catalogue(name)
    folder = write_catalogue_course(tmp_path / "paper", modules=mods, graph=graph)
    with pytest.raises(CourseFormatError) as err:
        parse_course(folder, name)
    assert err.value.file == file
    assert reason in err.value.reason


@pytest.mark.parametrize("name", DEGRADED_CATALOGUE)
def test_degraded_catalogue_course_loads_with_a_warning(tmp_path: Path, name: str) -> None:
    mods, graph, file, reason = _malformed_catalogue(name)
    folder = write_catalogue_course(tmp_path / "paper", modules=mods, graph=graph)
    course = parse_course(folder, name)
    assert [s.number for s in course.stages] == [1, 2]
    assert [(w.file, reason in w.reason) for w in course.issues] == [(file, True)]
    # every lesson is still there
    assert [c.id for s in course.stages for c in s.concepts] == ["ledger", "hashing", "pow"]


@pytest.mark.asyncio
async def test_catalogue_repo_loads_good_courses_and_reports_bad_ones(tmp_path: Path) -> None:
    """A catalogue git repository holding good and malformed courses of both layouts."""
    work = tmp_path / "work"
    write_catalogue_course(work / "bitcoin", "core", paper=PAPER)
    write_catalogue_course(work / "bitcoin", "core-legacy", modules=catalogue_modules(True))
    write_claude_md_course(work / "transformers" / "intro")
    for name in MALFORMED_CATALOGUE:
        mods, graph, _, _ = _malformed_catalogue(name)
        write_catalogue_course(work / "broken", name, modules=mods, graph=graph)
    # malformed CLAUDE.md courses that are still recognisable as courses
    _bad_claude_md(work, "invalid-json")
    _bad_claude_md(work, "no-usable-stage")
    # and one that loads with a warning
    _bad_claude_md(work, "duplicate-stage-numbers")
    # not a course at all: an author's README-only folder
    (work / "docs").mkdir()
    (work / "docs" / "CLAUDE.md").write_text("# Authoring notes\n")
    url = make_bare_repo(work, tmp_path / "catalogue.git")

    cat = await load_catalogue(
        [], [{"id": "papers", "repo": url, "ref": "main"}], tmp_path / "cache"
    )
    assert sorted(cat.courses) == sorted(
        [
            "papers--bitcoin--core",
            "papers--bitcoin--core-legacy",
            "papers--transformers--intro",
            "papers--duplicate-stage-numbers",
            *(f"papers--broken--{n}" for n in DEGRADED_CATALOGUE),
        ]
    )
    # the paper.json card orders the bitcoin course first
    assert next(iter(cat.courses)) == "papers--bitcoin--core"
    errors = {e.course_id: (e.file, e.reason) for e in cat.errors}
    assert set(errors) == {f"papers--broken--{n}" for n in UNLOADABLE_CATALOGUE} | {
        "papers--invalid-json",
        "papers--no-usable-stage",
    }
    for name in UNLOADABLE_CATALOGUE:
        _, _, file, reason = _malformed_catalogue(name)
        got_file, got_reason = errors[f"papers--broken--{name}"]
        assert got_file == file and reason in got_reason
    for name in DEGRADED_CATALOGUE:
        _, _, file, reason = _malformed_catalogue(name)
        (warning,) = cat.courses[f"papers--broken--{name}"].issues
        assert warning.file == file and reason in warning.reason
    assert errors["papers--no-usable-stage"][0] == "CLAUDE.md"


@pytest.mark.asyncio
async def test_single_courses_and_bad_sources(tmp_path: Path) -> None:
    good = write_claude_md_course(tmp_path / "repo" / "courses" / "t101")
    url = make_bare_repo(tmp_path / "repo", tmp_path / "single.git", branch="stable")
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    (bad_dir / "CLAUDE.md").write_text("# No stages\n")
    cat = await load_catalogue(
        [
            {
                "id": "t101",
                "title": "Operator title",
                "repo": url,
                "ref": "stable",
                "folder": "courses/t101",
            },
            {"id": "local", "repo": str(good)},
            {"id": "nojson", "repo": str(bad_dir)},
            {"id": "noref", "repo": url, "ref": "no-such-branch"},
            {"id": "escape", "repo": url, "ref": "stable", "folder": "../../etc"},
            {"id": "ssh", "repo": "git@github.com:org/repo.git"},
        ],
        [],
        tmp_path / "cache",
    )
    assert sorted(cat.courses) == ["local", "t101"]
    assert cat.courses["t101"].title == "Operator title"
    errors = {e.course_id: e for e in cat.errors}
    assert set(errors) == {"nojson", "noref", "escape", "ssh"}
    assert errors["nojson"].file == "CLAUDE.md" and "no ```json block" in errors["nojson"].reason
    assert "git clone failed" in errors["noref"].reason
    assert "outside the repository" in errors["escape"].reason
    assert "unsupported repository URL" in errors["ssh"].reason


@pytest.mark.asyncio
async def test_clone_cache_is_reused_and_survives_a_failed_refresh(tmp_path: Path) -> None:
    write_claude_md_course(tmp_path / "repo")
    bare = tmp_path / "c.git"
    url = make_bare_repo(tmp_path / "repo", bare)
    entry = [{"id": "c", "repo": url, "ref": "main"}]
    cat = await load_catalogue(entry, [], tmp_path / "cache")
    assert "c" in cat.courses
    # the origin disappears: the cached clone keeps the course available
    import shutil

    shutil.rmtree(bare)
    cat = await load_catalogue(entry, [], tmp_path / "cache", force=True)
    assert "c" in cat.courses and not cat.errors


def test_paper_json_problems_are_warnings(tmp_path: Path) -> None:
    folder = write_catalogue_course(tmp_path / "p")
    (tmp_path / "p" / "paper.json").write_text(json.dumps({"title": "T", "authors": ["Alice"]}))
    course = parse_course(folder, "x")
    assert any("authors" in w for w in course.warnings)


def test_each_layout_module_detects_its_own_layout(tmp_path: Path) -> None:
    from claudehub.progress import parsing
    from claudehub.progress.layouts import catalogue, claude_md

    md = write_claude_md_course(tmp_path / "md")
    cat = write_catalogue_course(tmp_path / "paper")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "CLAUDE.md").write_text("# Just a tutor\n\n```json\n{}\n```\n")
    assert (claude_md.detect(md), catalogue.detect(md)) == (True, False)
    assert catalogue.detect(cat)
    assert [parsing.has_course(p) for p in (md, cat, empty)] == [True, True, False]
    # the facade keeps the names other modules import from it (bundle.py, catalogue.py)
    text = (md / parsing.CLAUDE_MD).read_text()
    assert parsing.find_stages_block(text) is not None and parsing.JSON_FENCE.search(text)
