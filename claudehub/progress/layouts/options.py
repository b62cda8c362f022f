"""Multiple-choice options written inside a quiz's text, as catalogue authors write them.

Shapes, tried in this order (the first that yields two or more options wins):

1. numbered lines: ``1) …`` / ``1. …`` / ``(1) …`` one per line, numbered 1, 2, 3… in order;
2. lettered lines: ``A) …`` / ``A. …`` / ``(A) …`` one per line, lettered A, B, C… in order;
3. inline: ``1) … 2) …`` / ``(1) …, (2) …`` or ``A) … B) …`` inside a line (or across lines);
   the last option ends with its line, and a closing question after it (``… 3) Five. Which?``)
   goes back to the stem;
4. true/false: the text starts with "True or False", ends with "True or False?" or has a line
   "Type/Answer True or False." -- options are ``True`` and ``False``.

A closing instruction line ("Type the number.", "Answer True or False.") is dropped from the
stem. Markers that look like options but cannot be read unambiguously (out of order, both
numbers and letters inline, an empty or a repeated option) raise :class:`AmbiguousOptions`: the
caller keeps the quiz free-response and warns the author.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# "1) text", "2. text", "(3) text" at the start of a line
_OPTION_LINE = re.compile(r"^\s*\(?(\d{1,2})[).]\s+(\S.*?)\s*$")
# "A) text", "B. text", "(C) text" at the start of a line
_LETTER_LINE = re.compile(r"^\s*\(?([A-Z])[).]\s+(\S.*?)\s*$")
# "1)" / "(1)" / "A)" / "(A)" after a space (or at the start), before a space
_INLINE_NUMBER = re.compile(r"(?<!\S)\(?(\d{1,2})\)(?=\s)")
_INLINE_LETTER = re.compile(r"(?<!\S)\(?([A-Z])\)(?=\s)")
_INSTRUCTION = re.compile(
    r"^\s*\(?(?:type|enter|answer with|choose|pick|select) (?:the|a|an|one) "
    r"(?:number|letter|option)\.?\)?\s*$",
    re.I,
)
_TF_INSTRUCTION = re.compile(
    r"^\s*\(?(?:type|answer|enter|reply)(?: with)?\s+['\"\u2018\u201c]?true['\"\u2019\u201d]?\s+or\s+"
    r"['\"\u2018\u201c]?false['\"\u2019\u201d]?\s*[.!]?\)?\s*$",
    re.I,
)
_TF_START = re.compile(r"^\s*\(?true\s+or\s+false\)?\s*[:?.\-\u2013\u2014]", re.I)
_TF_END = re.compile(r"\(?\btrue\s*(?:or|/)\s*false\b\)?\s*[?.]?\s*$", re.I)
# the last inline option followed by a closing question: "Random tokens. Which is right?"
_CLOSING_QUESTION = re.compile(r"^(.+?)[.;]\s+(\S[^.]*\?)$", re.S)
_TRAILING_JOINER = re.compile(r"(?:\s*[,;]|,?\s+or)\s*$")
_LABELLED = re.compile(r"^\s*\(?([0-9]{1,2}|[A-Za-z])[).]\s+(\S.*?)\s*$", re.S)

TRUE_FALSE = ("True", "False")


class AmbiguousOptions(ValueError):
    """The text has option markers, but which options they make is not clear."""


@dataclass(frozen=True)
class Options:
    """Options found in a quiz text. ``labels`` is empty when they are numbered 1, 2, 3."""

    stem: str
    options: tuple[str, ...]
    labels: tuple[str, ...] = ()
    shape: str = "numbered lines"


def norm(text: str) -> str:
    """Normalise text for answer comparison: trim, collapse spaces, casefold."""
    return " ".join(text.split()).casefold()


def _bare(text: str) -> str:
    """:func:`norm` without closing punctuation ("False." and "false" are the same)."""
    return norm(text).rstrip(" .!?。")


def _number(i: int) -> str:
    return str(i + 1)


def _letter(i: int) -> str:
    return chr(ord("A") + i)


def _line_options(
    text: str, pattern: re.Pattern[str], label: Callable[[int], str]
) -> tuple[str, tuple[str, ...]] | None:
    stem: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        m = pattern.match(line)
        if m and m.group(1) == label(len(options)):
            options.append(m.group(2))
            continue
        if options and _INSTRUCTION.match(line):
            continue
        stem.append(line)
    if len(options) < 2:
        return None
    return "\n".join(stem).strip(), tuple(options)


def split_options(question: str) -> tuple[str, tuple[str, ...]]:
    """Split an exercise text into its stem and its numbered option lines.

    Options must be numbered 1, 2, 3... in order; fewer than two means the exercise
    is not multiple-choice and the whole text is the stem.
    """
    found = _line_options(question, _OPTION_LINE, _number)
    return found if found is not None else (question.strip(), ())


def _clean_option(text: str) -> str:
    text = " ".join(text.split())
    while True:
        shorter = _TRAILING_JOINER.sub("", text)
        if shorter == text:
            break
        text = shorter
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1].rstrip()
    return text


def _inline_options(
    text: str, pattern: re.Pattern[str], label: Callable[[int], str]
) -> tuple[str, tuple[str, ...]] | None:
    marks = list(pattern.finditer(text))
    if len(marks) < 2:
        return None
    found = [m.group(1) for m in marks]
    if found != [label(i) for i in range(len(marks))]:
        raise AmbiguousOptions(f"option markers {', '.join(found)} are not in order")
    raw = [
        text[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(text)]
        for i, m in enumerate(marks)
    ]
    # the last option ends with its line; what follows (and a closing question) is stem
    last, _, rest = raw[-1].strip().partition("\n")
    tail = [line for line in rest.splitlines() if not _INSTRUCTION.match(line)]
    closing = _CLOSING_QUESTION.match(last.strip())
    if closing:
        last = closing.group(1)
        tail.insert(0, closing.group(2))
    raw[-1] = last
    options = tuple(_clean_option(o) for o in raw)
    stem = text[: marks[0].start()].strip()
    after = "\n".join(tail).strip()
    if after:
        stem = f"{stem}\n\n{after}" if stem else after
    return stem or text.strip(), options


def _true_false(text: str) -> tuple[str, tuple[str, ...]] | None:
    lines = text.splitlines()
    kept = [line for line in lines if not _TF_INSTRUCTION.match(line)]
    if len(kept) == len(lines) and not (_TF_START.match(text) or _TF_END.search(text.strip())):
        return None
    return "\n".join(kept).strip() or text.strip(), TRUE_FALSE


def find_options(text: str) -> Options | None:
    """The options written in quiz ``text`` (see the module docstring), or None.

    Raises :class:`AmbiguousOptions` when option markers are there but unclear.
    """
    found = _line_options(text, _OPTION_LINE, _number)
    if found is not None:
        return _checked(Options(found[0], found[1]))
    found = _line_options(text, _LETTER_LINE, _letter)
    if found is not None:
        options = found[1]
        return _checked(Options(found[0], options, _labels(options), "lettered lines"))
    numbers = _inline_options(text, _INLINE_NUMBER, _number)
    letters = _inline_options(text, _INLINE_LETTER, _letter)
    if numbers is not None and letters is not None:
        raise AmbiguousOptions("both numbered and lettered options in the text")
    if numbers is not None:
        return _checked(Options(numbers[0], numbers[1], (), "inline numbers"))
    if letters is not None:
        return _checked(Options(letters[0], letters[1], _labels(letters[1]), "inline letters"))
    tf = _true_false(text)
    if tf is not None:
        return Options(tf[0], tf[1], ("T", "F"), "true/false")
    return None


def _labels(options: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_letter(i) for i in range(len(options)))


def _checked(found: Options) -> Options:
    if any(not o for o in found.options):
        raise AmbiguousOptions(f"an option is empty ({found.shape})")
    if len({_bare(o) for o in found.options}) != len(found.options):
        raise AmbiguousOptions(f"two options have the same text ({found.shape})")
    return found


def _by_label(label: str, options: tuple[str, ...], labels: tuple[str, ...]) -> str | None:
    """The option labelled ``label``: its number, or one of ``labels`` (any case)."""
    if label.isdigit():
        index = int(label)
        return options[index - 1] if 1 <= index <= len(options) else None
    wanted = label.upper()
    for opt, lab in zip(options, labels, strict=False):
        if lab.upper() == wanted:
            return opt
    return None


def resolve_option(
    answer: str, options: tuple[str, ...], labels: tuple[str, ...] = ()
) -> str | None:
    """The option text an author's ``answer`` designates, or None.

    Accepted: the option's text (case, spacing and closing punctuation aside), "N) text" or
    "B) text", its number, or its label.
    """
    wanted = _bare(answer)
    hits = [opt for opt in options if _bare(opt) == wanted]
    if len(hits) == 1:
        return hits[0]
    m = _LABELLED.match(answer)
    if m:
        opt = _by_label(m.group(1), options, labels)
        if opt is not None and _bare(opt) == _bare(m.group(2)):
            return opt
    label = answer.strip().strip("()").rstrip(".)")
    if label.isdigit() or (len(label) == 1 and labels):
        return _by_label(label, options, labels)
    return None
