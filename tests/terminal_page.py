"""Driving the Claude terminal of the learner's page from Playwright, shared by the browser tiers."""

from __future__ import annotations

from typing import Any

#: Every rendered row of the xterm.js screen, top to bottom.
_ROWS = "Array.from(document.querySelectorAll('.xterm-rows'))"


def terminal_text(page: Any) -> str:
    """What the terminal shows right now, as text."""
    return str(page.evaluate(f"() => {_ROWS}.map(e => e.innerText).join('\\n')"))


def wait_for_terminal(page: Any, needle: str, timeout: float = 60_000) -> None:
    """Wait until ``needle`` is on the terminal's screen; fail with what it shows instead."""
    try:
        page.wait_for_function(
            f"(needle) => {_ROWS}.some(e => e.innerText.includes(needle))",
            arg=needle,
            timeout=timeout,
        )
    except Exception as err:
        raise AssertionError(
            f"{needle!r} never appeared in the terminal; it shows:\n{terminal_text(page)}"
        ) from err


def ask(page: Any, question: str, expect: str, timeout: float = 60_000) -> None:
    """Type ``question`` at Claude's prompt, submit it, and wait for ``expect``.

    Enter is pressed only once the question is echoed in the input box: Claude Code reads a
    burst of keys as a paste, and an Enter inside that burst becomes a newline in the input
    rather than a submission (a learner's typing never arrives that fast).
    """
    page.click(".xterm")
    page.keyboard.type(question)
    wait_for_terminal(page, question, 30_000)
    page.keyboard.press("Enter")
    wait_for_terminal(page, expect, timeout)


def pick_course(page: Any, course_id: str | None = None) -> None:
    """On the course picker (/hub/spawn), choose ``course_id``'s card (or keep the one
    preselected, else the first) and start: what a learner does with the mouse."""
    page.wait_for_selector("form#spawn_form")
    if course_id is not None:
        page.check(f"input[name=course][value='{course_id}']")
    elif not page.locator("input[name=course]:checked").count():
        page.locator("input[name=course]").first.check()
    page.click("form#spawn_form button[type=submit]")


def open_picker(page: Any, hub_url: str, user: str) -> None:
    """From wherever sign-in lands (the home page, or the picker), to the course picker."""
    page.wait_for_url(lambda u: "/hub/home" in u or "/hub/spawn" in u or f"/user/{user}/" in u)
    if "/hub/home" in page.url and page.locator("#claudehub-choose").count():
        page.click("#claudehub-choose")
        page.wait_for_url("**/hub/spawn**")
    elif "/hub/spawn" not in page.url:
        page.goto(f"{hub_url}/hub/spawn")
