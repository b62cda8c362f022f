"""The service judges quiz answers: the number and the exact text are accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from claudehub.progress.judging import judge
from claudehub.progress.parsing import parse_course

from .coursekit import write_catalogue_course, write_claude_md_course


@pytest.fixture
def catalogue_quiz(tmp_path: Path):
    course = parse_course(write_catalogue_course(tmp_path / "p"), "x")
    return course.stages[0].quizzes[0]  # 1) Weather 2) Transactions 3) Music


@pytest.mark.parametrize(
    "answer",
    ["2", " 2 ", "2)", "2.", "Transactions", "transactions", "  Transactions ", "2) Transactions"],
)
def test_right_answers_accepted(catalogue_quiz, answer: str) -> None:
    verdict = judge(catalogue_quiz, answer)
    assert verdict.status == "correct"
    assert verdict.explanation == "A ledger is a record of transactions."


@pytest.mark.parametrize(
    "answer",
    ["1", "3", "4", "0", "-2", "Weather", "Transaction", "2) Weather", "1) Transactions",
     "Transactions!", "2 or 3", "two", ""],
)  # fmt: skip
def test_other_answers_refused(catalogue_quiz, answer: str) -> None:
    verdict = judge(catalogue_quiz, answer)
    assert verdict.status == "wrong"
    assert verdict.explanation is None


def test_claude_md_quiz_and_free_response(tmp_path: Path) -> None:
    course = parse_course(write_claude_md_course(tmp_path / "c"), "c")
    mc = course.stages[0].quizzes[0]
    assert judge(mc, "2").correct
    assert judge(mc, "Frequent pairs").correct
    assert not judge(mc, "1").correct
    free = course.stages[2].quizzes[0]
    # no reference answer: the tutor judges it, the service neither accepts nor refuses
    assert judge(free, "Because it looks at every token").status == "tutor"


def test_free_response_with_reference_answer(tmp_path: Path) -> None:
    course = parse_course(write_catalogue_course(tmp_path / "p"), "x")
    pow_quiz = course.stages[1].quizzes[0]
    assert judge(pow_quiz, "Nonce").correct
    assert judge(pow_quiz, "a number").status == "tutor"
