"""Judging quiz answers. The service is the only judge; answers never leave it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .layouts.options import TRUE_FALSE
from .model import Quiz

_NUMBER = re.compile(r"^\s*\(?(\d{1,3})\s*[).]?\s*$")
_NUMBERED_TEXT = re.compile(r"^\s*\(?(\d{1,3})[).]\s+(\S.*?)\s*$", re.S)
_LABEL = re.compile(r"^\s*\(?([A-Za-z])\s*[).]?\s*$")
_LABELLED_TEXT = re.compile(r"^\s*\(?([A-Za-z])[).]\s+(\S.*?)\s*$", re.S)

#: "correct": completion earned; "wrong": try again; "tutor": the tutor judges it
VerdictStatus = Literal["correct", "wrong", "tutor"]


@dataclass(frozen=True)
class Verdict:
    """Outcome of one answer. ``explanation`` is only set on a correct answer."""

    status: VerdictStatus
    message: str
    explanation: str | None = None

    @property
    def correct(self) -> bool:
        return self.status == "correct"


def normalise(text: str) -> str:
    """Trim, collapse runs of whitespace and casefold."""
    return " ".join(text.split()).casefold()


def judge(quiz: Quiz, answer: str) -> Verdict:
    """Judge ``answer`` to ``quiz``.

    Multiple-choice: the option's number ("2", "2)", "2."), its letter when the author
    lettered the options ("B", "b)"), or its exact text (case and surrounding/multiple
    spaces aside), or both ("2) text", "B) text"), are right; anything else is wrong. A
    true/false answer may end in "." or "!" ("false."). Free-response and code-challenge quizzes match a reference answer, if the
    course has one, the same way; otherwise they go to the tutor.
    """
    if quiz.type == "multiple-choice":
        right = _chosen_option(quiz, answer)
        if right is not None and quiz.answer is not None and right == quiz.answer:
            return Verdict("correct", "Correct!", quiz.explanation)
        return Verdict("wrong", "Not quite. Read the concepts again and try another answer.")
    if quiz.answer is not None and normalise(answer) == normalise(quiz.answer):
        return Verdict("correct", "Correct!", quiz.explanation)
    return Verdict(
        "tutor",
        "This answer is judged by your tutor: share it with Claude in the terminal.",
    )


def _chosen_option(quiz: Quiz, answer: str) -> str | None:
    """The option ``answer`` designates, or None if it designates none unambiguously.

    A number in range is the option's position (the panels send positions); one out of
    range may still be an option's text ("100").
    """
    m = _NUMBER.match(answer)
    if m:
        index = int(m.group(1))
        if 1 <= index <= len(quiz.options):
            return quiz.options[index - 1]
    if quiz.options == TRUE_FALSE:
        answer = answer.strip().rstrip(".!")
    wanted = normalise(answer)
    for opt in quiz.options:
        if normalise(opt) == wanted:
            return opt
    m = _LABEL.match(answer)
    if m and quiz.option_labels:
        return _labelled(quiz, m.group(1))
    for pattern in (_NUMBERED_TEXT, _LABELLED_TEXT):
        m = pattern.match(answer)
        if m:
            chosen = _labelled(quiz, m.group(1))
            if chosen is not None and normalise(chosen) == normalise(m.group(2)):
                return chosen
    return None


def _labelled(quiz: Quiz, label: str) -> str | None:
    """The option numbered or labelled ``label``."""
    if label.isdigit():
        index = int(label)
        return quiz.options[index - 1] if 1 <= index <= len(quiz.options) else None
    for opt, lab in zip(quiz.options, quiz.option_labels, strict=False):
        if lab.casefold() == label.casefold():
            return opt
    return None
