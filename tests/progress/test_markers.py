"""Tutor markers are found and stripped from terminal output, however it is chunked."""

from __future__ import annotations

import random

import pytest

from claudehub.server_ext.markers import MarkerEvent, MarkerStripper, TerminalMarkerFilter

STAGE2 = MarkerEvent("stage", 2)
COURSE = MarkerEvent("course")


def run(chunks: list[str], keep_width: bool = False) -> tuple[str, list[MarkerEvent]]:
    s = MarkerStripper(keep_width=keep_width)
    out, events = [], []
    for c in chunks:
        text, ev = s.feed(c)
        out.append(text)
        events += ev
    out.append(s.flush())
    return "".join(out), events


def test_whole_marker_in_one_chunk() -> None:
    assert run(["Well done! [STAGE_COMPLETE:2]\r\nNext..."]) == ("Well done! \r\nNext...", [STAGE2])
    assert run(["All done [DUNGEON_COMPLETE]!"]) == ("All done !", [COURSE])


def test_keep_width_blanks_the_marker() -> None:
    text, events = run(["a[STAGE_COMPLETE:2]b"], keep_width=True)
    assert text == "a" + " " * len("[STAGE_COMPLETE:2]") + "b"
    assert events == [STAGE2]


def test_every_split_point() -> None:
    data = "x\x1b[1mgood[STAGE_COMPLETE:12]\x1b[0m y [DUNGEON_COMPLETE]z"
    expected = ("x\x1b[1mgood\x1b[0m y z", [MarkerEvent("stage", 12), COURSE])
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            assert run([data[:i], data[i:j], data[j:]]) == expected, (i, j)


def test_ansi_sequences_inside_the_marker() -> None:
    data = "\x1b[38;5;174m[STAGE_\x1b[39m\x1b[1mCOMPLETE:\x1b[22m2]\x1b]8;;\x07 ok"
    text, events = run([data])
    assert events == [STAGE2]
    # the escape sequences survive (terminal state stays right), the visible marker goes
    assert text == "\x1b[38;5;174m\x1b[39m\x1b[1m\x1b[22m\x1b]8;;\x07 ok"


def test_random_chunking_of_a_long_stream() -> None:
    rng = random.Random(7)
    parts, expected_text, expected_events = [], [], []
    for n in range(200):
        plain = f"line {n} [not a marker] \x1b[3{n % 8}m[STAGE_COMPLETE\x1b[0m\r\n"
        parts.append(plain)
        expected_text.append(plain)
        if n % 10 == 0:
            parts.append(f"[STAGE_COMPLETE:{n}]")
            expected_events.append(MarkerEvent("stage", n))
    data = "".join(parts)
    chunks, i = [], 0
    while i < len(data):
        k = rng.randint(1, 40)
        chunks.append(data[i : i + k])
        i += k
    assert run(chunks) == ("".join(expected_text), expected_events)


@pytest.mark.parametrize(
    "text",
    ["[STAGE_COMPLETE:]", "[STAGE_COMPLETE:12345]", "[stage_complete:1]", "[STAGE_COMPLETE:1 ]",
     "[DUNGEON_COMPLETE", "[[ ]]", "[STAGE_COMPLETE:x]"],
)  # fmt: skip
def test_non_markers_pass_through(text: str) -> None:
    assert run([text + " tail"]) == (text + " tail", [])


def test_only_a_possible_prefix_is_held_back() -> None:
    s = MarkerStripper()
    assert s.feed("hello [wor") == ("hello [wor", [])
    assert s.feed("ld] and [STAGE_COMP") == ("ld] and ", [])
    assert s.pending == "[STAGE_COMP"
    assert s.feed("LETE:3") == ("", [])
    assert s.feed("] go") == (" " * 18 + " go", [MarkerEvent("stage", 3)])
    # an unfinished escape sequence at the end waits for its end, nothing else does
    assert s.feed("abc\x1b[3") == ("abc", [])
    assert s.feed("1mred") == ("\x1b[31mred", [])


def test_terminal_filter_protocol() -> None:
    seen: list[dict[str, object]] = []
    f = TerminalMarkerFilter(on_event=seen.append)
    assert f.feed("ok [STAGE_COMP") == "ok "
    assert f.feed("LETE:1] [DUNGEON_COMPLETE]") == " " * 18 + " " + " " * 18
    assert f.pop_events() == [{"kind": "stage", "stage": 1}, {"kind": "course"}]
    assert f.pop_events() == []
    assert seen == [{"kind": "stage", "stage": 1}, {"kind": "course"}]
