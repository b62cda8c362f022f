"""No answer leaves the service for the new quiz shapes either: the corpus's inline, lettered
and true/false quizzes (and the ones handed to the tutor) reach the page as options only,
are judged over HTTP, and the sandbox bundle carries no answer or explanation."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from claudehub.progress.catalogue import make_course_id

from .conftest import FakeHubAPI, ServiceFactory
from .corpus import EXPECTED_WARNINGS, EXPLANATIONS, INLINE_EXPECTED, write_corpus

SHAPES = make_course_id("corpus", "shapes/core")
SECRET_KEYS = ("answer", "correctAnswer", "explanation", "answers", "solution")


def _no_secret_keys(data: Any, where: str) -> None:
    if isinstance(data, dict):
        for key in SECRET_KEYS:
            assert key not in data, f"{key} leaked in {where}"
        for value in data.values():
            _no_secret_keys(value, where)
    elif isinstance(data, list):
        for value in data:
            _no_secret_keys(value, where)


@pytest.fixture
def users(fake_hub_api: FakeHubAPI) -> FakeHubAPI:
    fake_hub_api.add_user("tok-alice", "alice")
    return fake_hub_api


async def _start(start_service: ServiceFactory, tmp_path: Path) -> Any:
    root = write_corpus(tmp_path / "corpus-repo")
    svc = await start_service(courses=[], catalogues=[{"id": "corpus", "repo": str(root)}])
    return svc.client("tok-alice")


@pytest.mark.asyncio
async def test_course_pages_carry_options_never_answers(
    start_service: ServiceFactory, users: FakeHubAPI, tmp_path: Path
) -> None:
    alice = await _start(start_service, tmp_path)
    cards = await alice.courses()
    assert {c["id"] for c in cards} == {make_course_id("corpus", r) for r in EXPECTED_WARNINGS}
    assert EXPLANATIONS
    for card in cards:
        detail = await alice.course(card["id"])
        _no_secret_keys(detail, card["id"])
        text = json.dumps(detail, ensure_ascii=False)
        for secret in EXPLANATIONS:
            assert secret not in text, f"{secret!r} in {card['id']}"
    quizzes = {q["id"]: q for q in (await alice.course(SHAPES))["stages"][0]["quizzes"]}
    for concept_id, (options, _, _) in INLINE_EXPECTED.items():
        quiz = quizzes[concept_id]
        assert quiz["type"] == "multiple-choice" and quiz["judged_by"] == "service"
        assert quiz["options"] == list(options)
    # the quiz whose answer is not an option goes to the tutor
    bad = (await alice.course(make_course_id("corpus", "bad-answer/core")))["stages"][0]
    assert (bad["quizzes"][0]["type"], bad["quizzes"][0]["judged_by"]) == (
        "free-response",
        "tutor",
    )


@pytest.mark.asyncio
async def test_inline_quizzes_are_judged_over_http(
    start_service: ServiceFactory, users: FakeHubAPI, tmp_path: Path
) -> None:
    alice = await _start(start_service, tmp_path)
    wrong = await alice.answer(SHAPES, "inline_commas", "1")
    assert wrong["status"] == "wrong" and "explanation" not in wrong
    for quiz_id, answer in [
        ("inline_commas", "2"),
        ("inline_parens", "An index"),
        ("inline_lead_in", "3"),
        ("inline_letters", "B"),
        ("inline_letters_numbers", "100"),
        ("letter_lines", "a"),
        ("tf_leading", "true"),
        ("tf_trailing", "false."),
        ("tf_instruction", "1"),
    ]:
        verdict = await alice.answer(SHAPES, quiz_id, answer)
        assert verdict["status"] == "correct", (quiz_id, answer, verdict)
    assert verdict["stage_completed"]


@pytest.mark.asyncio
async def test_bundles_have_no_answers_for_any_shape(
    start_service: ServiceFactory, users: FakeHubAPI, tmp_path: Path
) -> None:
    alice = await _start(start_service, tmp_path)
    for rel in EXPECTED_WARNINGS:
        course_id = make_course_id("corpus", rel)
        with tarfile.open(fileobj=io.BytesIO(await alice.bundle(course_id))) as tar:
            contents = {
                m.name: tar.extractfile(m).read().decode(errors="replace")  # type: ignore[union-attr]
                for m in tar.getmembers()
                if m.isfile()
            }
        for name, text in contents.items():
            for secret in EXPLANATIONS:
                assert secret not in text, f"{secret!r} in {course_id}:{name}"
            if name.endswith(".json"):
                try:
                    data = json.loads(text)
                except json.JSONDecodeError:
                    continue  # the corpus's deliberately broken files are served as they are
                _no_secret_keys(data, f"{course_id}:{name}")
        if rel == "shapes/core":
            modules = json.loads(contents["knowledge/courses.json"])
            # the tutor still reads the question with its options
            assert "A) Order B) Fast lookup" in modules[0]["lessons"][3]["exercise"]
