"""Options written in a quiz's text, shape by shape: what is read, what is refused as
ambiguous, and what stays plain text."""

from __future__ import annotations

import pytest

from claudehub.progress.layouts.options import (
    AmbiguousOptions,
    find_options,
    resolve_option,
    split_options,
)


@pytest.mark.parametrize(
    ("text", "stem", "options", "shape"),
    [
        ("Pick:\n1) a\n2) b\n3. c\nType the number.", "Pick:", ("a", "b", "c"), "numbered lines"),
        ("Pick:\n(A) a\n(B) b\nType the letter.", "Pick:", ("a", "b"), "lettered lines"),
        ("Pick: 1) a, 2) b, or 3) c", "Pick:", ("a", "b", "c"), "inline numbers"),
        # inline options may run over several lines; the last one ends with its line
        ("Pick: (1) a,\n(2) b\nType the number.", "Pick:", ("a", "b"), "inline numbers"),
        ("Pick A) a B) b. Which one?", "Pick\n\nWhich one?", ("a", "b"), "inline letters"),
        ("Is it so? (True/False)", "Is it so? (True/False)", ("True", "False"), "true/false"),
        ("TRUE OR FALSE - it is so.", "TRUE OR FALSE - it is so.", ("True", "False"), "true/false"),
        ("It is so.\nType “true” or “false”.", "It is so.", ("True", "False"), "true/false"),
    ],
)
def test_shapes_read(text: str, stem: str, options: tuple[str, ...], shape: str) -> None:
    found = find_options(text)
    assert found is not None
    assert (found.stem, found.options, found.shape) == (stem, options, shape)


@pytest.mark.parametrize(
    "text",
    [
        "What is O(1) time?",  # "(1)" glued to a word is no marker
        "Step 1) only one step",
        "Explain the trade-off between A) and nothing else.",
        "Would it? (Yes/No)",
        "Name the true statement.",
    ],
)
def test_plain_text_has_no_options(text: str) -> None:
    assert find_options(text) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("Pick 1) a 3) b 2) c", "not in order"),
        ("Pick 1) a 2) b or A) c B) d", "both numbered and lettered"),
        ("Pick 1) a 2) a.", "same text"),
        ("Pick:\n1) a\n2) A", "same text"),
    ],
)
def test_ambiguous_options_are_refused(text: str, why: str) -> None:
    with pytest.raises(AmbiguousOptions, match=why):
        find_options(text)


def test_split_options_keeps_reading_numbered_lines_only() -> None:
    assert split_options("Pick: A) a B) b") == ("Pick: A) a B) b", ())
    assert split_options("Pick:\n1) a\n2) b") == ("Pick:", ("a", "b"))


@pytest.mark.parametrize(
    ("answer", "options", "labels", "want"),
    [
        ("b", ("a", "b"), (), "b"),
        ("False.", ("True", "False"), ("T", "F"), "False"),
        ("F", ("True", "False"), ("T", "F"), "False"),
        ("2", ("a", "b"), (), "b"),
        ("(2)", ("a", "b"), (), "b"),
        ("B) b", ("a", "b"), ("A", "B"), "b"),
        ("B) a", ("a", "b"), ("A", "B"), None),
        ("B", ("x", "y"), (), None),  # letters only for lettered options
        ("100", ("10", "100"), ("A", "B"), "100"),  # the text before the position
        ("3", ("a", "b"), (), None),
        ("c", ("a", "b"), (), None),
    ],
)
def test_an_authors_answer_designates_one_option(
    answer: str, options: tuple[str, ...], labels: tuple[str, ...], want: str | None
) -> None:
    assert resolve_option(answer, options, labels) == want
