"""Streaming-safe detection and removal of the tutor's completion markers.

The tutor (Claude, following the course's CLAUDE.md) prints ``[STAGE_COMPLETE:N]``
when the learner finishes stage N and ``[DUNGEON_COMPLETE]`` when the course is
done. The terminal code feeds every output chunk through :class:`MarkerStripper`
before it reaches the browser; the markers never reach the screen and become
:class:`MarkerEvent` objects instead.

Chunks may split a marker anywhere, and the terminal UI may put ANSI escape
sequences (colours, cursor moves) around or inside it. Only text that could still
turn out to be the start of a marker is held back; everything else is passed on at
once. By default the marker's visible characters become spaces so the UI's own
line-wrapping and cursor arithmetic stay right (the CLI redraws its screen relative
to what it believes it printed); ``keep_width=False`` removes them instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

STAGE_PREFIX = "[STAGE_COMPLETE:"
COURSE_MARKER = "[DUNGEON_COMPLETE]"
MAX_DIGITS = 4
#: never hold back more than this many characters (a prefix plus escapes cannot need more)
MAX_HOLD = 512

# CSI, OSC (BEL or ST terminated), DCS/SOS/PM/APC strings, and 2-byte escapes
_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[PX^_][^\x1b]*\x1b\\"
    r"|\x1b(?:[ -/]+[0-~]|(?![\[\]PX^_])[0-~])"
)
# an escape sequence cut off at the end of the data
_PARTIAL_ESCAPE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?|[PX^_][^\x1b]*\x1b?|[ -/]*)?\Z"
)
# a whole marker, or what could be the start of one at the very end
_CANDIDATE = re.compile(r"\[(?:STAGE_COMPLETE:|DUNGEON_COMPLETE\])|\[[A-Z_]*(?::\d*)?\Z")
_MARKER = re.compile(r"\[(?:STAGE_COMPLETE:(\d{1,4})|DUNGEON_COMPLETE)\]")


@dataclass(frozen=True)
class MarkerEvent:
    """``kind`` "stage" (with ``stage``) or "course"."""

    kind: Literal["stage", "course"]
    stage: int | None = None

    @property
    def text(self) -> str:
        return COURSE_MARKER if self.kind == "course" else f"{STAGE_PREFIX}{self.stage}]"


def _is_marker_prefix(visible: str) -> bool:
    """Whether ``visible`` (starting with "[") could still grow into a marker."""
    if COURSE_MARKER.startswith(visible) and len(visible) < len(COURSE_MARKER):
        return True
    if STAGE_PREFIX.startswith(visible):
        return True
    if visible.startswith(STAGE_PREFIX):
        digits = visible[len(STAGE_PREFIX) :]
        return digits.isdigit() and len(digits) <= MAX_DIGITS and digits.isascii()
    return False


class MarkerStripper:
    """Feed output chunks in order; get back what to show and the markers seen."""

    def __init__(self, *, keep_width: bool = True) -> None:
        self.keep_width = keep_width
        self._pending = ""

    def feed(self, chunk: str) -> tuple[str, list[MarkerEvent]]:
        """Process ``chunk``; returns (text to show now, marker events found)."""
        data = self._pending + chunk
        self._pending = ""
        if "[" not in data and "\x1b" not in data:
            return data, []
        # fast path (C-speed regexes): no marker and no possible marker start at the end
        # of the visible text: nothing to do but hold back an unfinished escape sequence
        cut = len(data)
        esc = data.rfind("\x1b")
        if esc != -1 and _ESCAPE.match(data, esc) is None and _PARTIAL_ESCAPE.match(data, esc):
            cut = esc
        if not _CANDIDATE.search(_ESCAPE.sub("", data[:cut])):
            self._pending = data[cut:]
            return data[:cut], []
        # visible characters and their positions in data (escape sequences skipped)
        positions: list[int] = []
        i = 0
        n = len(data)
        while i < n:
            if data[i] == "\x1b":
                m = _ESCAPE.match(data, i)
                if m is None:
                    if _PARTIAL_ESCAPE.match(data, i) and n - i < MAX_HOLD:
                        break  # cut off mid-sequence: hold it (and what follows) back
                    positions.append(i)
                    i += 1
                    continue
                i = m.end()
                continue
            positions.append(i)
            i += 1
        cut = i  # data[cut:] is an unfinished escape sequence
        visible = "".join(data[p] for p in positions)
        events: list[MarkerEvent] = []
        drop: set[int] = set()
        last_end = 0
        for m in _MARKER.finditer(visible):
            events.append(
                MarkerEvent("stage", int(m.group(1))) if m.group(1) else MarkerEvent("course")
            )
            drop.update(positions[m.start() : m.end()])
            last_end = m.end()
        # hold back from a trailing "[" that may be the start of a marker
        hold_from = cut
        start = visible.rfind("[", last_end)
        if start != -1 and _is_marker_prefix(visible[start:]):
            hold_from = positions[start]
        if n - hold_from > MAX_HOLD:
            hold_from = n
        self._pending = data[hold_from:]
        out = data[:hold_from]
        if drop:
            filler = " " if self.keep_width else ""
            out = "".join(filler if k in drop else ch for k, ch in enumerate(out))
        return out, events

    def flush(self) -> str:
        """Everything still held back (call when the stream ends)."""
        rest, self._pending = self._pending, ""
        return rest

    @property
    def pending(self) -> str:
        """Text currently held back (for tests and diagnostics)."""
        return self._pending


class TerminalMarkerFilter:
    """The terminal's output filter (``feed(text) -> text``, ``pop_events()``, ``flush()``).

    ``pop_events`` hands the markers found to the terminal session, which passes them to
    its ``on_marker`` hook (the course backend records a tutor completion) and to the page
    as ``["marker", event]``. ``on_event`` is called with each one as it is found.
    """

    def __init__(self, on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._stripper = MarkerStripper()
        self._events: list[dict[str, Any]] = []
        self._on_event = on_event

    def feed(self, text: str) -> str:
        """The text to show for this chunk, markers blanked (a possible start held back)."""
        out, events = self._stripper.feed(text)
        for event in events:
            payload: dict[str, Any] = {"kind": event.kind}
            if event.stage is not None:
                payload["stage"] = event.stage
            self._events.append(payload)
            if self._on_event is not None:
                self._on_event(payload)
        return out

    def pop_events(self) -> list[dict[str, Any]]:
        """The markers found since the last call, JSON-ready."""
        events, self._events = self._events, []
        return events

    def flush(self) -> str:
        """Everything still held back (the stream ended)."""
        return self._stripper.flush()
