"""Issue 27's acceptance: an instructor turns a paper into a course with Claude and publishes it
for a class, whose learner then takes it; a learner of another class never sees it.

The whole local stack (real JupyterHub, CHP, key proxy, course service with authoring, the
author session's jupyter-server and the real Claude Code CLI in author mode) and a real
Chromium. The fake upstream scripts Claude's Write tool calls: the CLI itself writes the
course into the draft folder, under the author policy, and the page shows what the course
service made of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import LocalStack, start_local_stack, stop_local_stack
from tests.fakes.upstream import FakeAnthropic
from tests.progress.pdfkit import make_pdf
from tests.terminal_page import ask, open_picker, pick_course, wait_for_terminal

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLASSES = {
    "alpha": {"learners": ["lea"], "instructors": ["ines"]},
    "beta": {"learners": ["bob"], "instructors": []},
}
COURSE_ID = "tiny-attention"
DONE = "The course is written."
FIXED = "The JSON is fixed."
#: Claude's first courses.json has a stray comma (not JSON): the check and a publish refuse it.
BROKEN = '"id": "basics",,'

MODULES = [
    {
        "id": "basics",
        "title": "Basics",
        "description": "Where the paper starts",
        "concepts": ["idea"],
        "lessons": [
            {
                "concept_id": "idea",
                "title": "The idea",
                "prerequisites": [],
                "content": "The paper's idea is **attention**.",
                "key_ideas": ["attention"],
                "paper_ref": "page 1",
                "exercise": "What does the paper study?\n1) Weather\n2) Attention\n3) Music\n"
                "Type the number.",
                "answer": "Attention",
                "explanation": "Page 1 says so.",
            }
        ],
    },
    {
        "id": "more",
        "title": "More",
        "description": "What follows",
        "concepts": ["detail"],
        "lessons": [
            {
                "concept_id": "detail",
                "title": "A detail",
                "prerequisites": ["idea"],
                "content": "Every token looks at every other token.",
                "key_ideas": ["all pairs"],
                "paper_ref": "page 2",
                "exercise": "True or False: every token looks at every other token?",
                "answer": "True",
                "explanation": "Page 2.",
            }
        ],
    },
]
FILES = {
    "paper.json": {
        "title": "Tiny Attention",
        "description": "A two-page paper about attention.",
        "authors": [{"name": "Ada Author"}],
    },
    "demo/CLAUDE.md": "# Tutor\n\nTeach this paper one stage at a time.\n",
    "demo/knowledge/courses.json": MODULES,
    "demo/knowledge/graph.json": {
        "nodes": [
            {"id": "idea", "name": "The idea", "type": "concept", "level": "foundational"},
            {"id": "detail", "name": "A detail", "type": "concept", "level": "intermediate"},
        ],
        "edges": [{"source": "idea", "target": "detail", "relationship": "builds_on"}],
    },
}


def writes() -> list[dict[str, Any]]:
    """Claude's reply: one Write tool call per file of the course (relative to the draft),
    its courses.json broken by a stray comma."""
    calls = []
    for i, (path, content) in enumerate(FILES.items()):
        text = content if isinstance(content, str) else json.dumps(content, indent=2)
        text = text.replace('"id": "basics",', BROKEN)
        calls.append(
            {
                "type": "tool_use",
                "id": f"toolu_write_{i}",
                "name": "Write",
                "input": {"file_path": path, "content": text},
            }
        )
    return calls


def fix() -> list[dict[str, Any]]:
    """Claude's fix when asked: an Edit of courses.json that removes the stray comma."""
    edit = {
        "file_path": "demo/knowledge/courses.json",
        "old_string": BROKEN,
        "new_string": '"id": "basics",',
    }
    return [{"type": "tool_use", "id": "toolu_fix", "name": "Edit", "input": edit}]


@pytest.fixture(scope="module")
def authoring_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with FakeAnthropic() as upstream:
        stack = start_local_stack(
            tmp_path_factory.mktemp("authoring"),
            upstream,
            extra_env={"CLAUDEHUB_CLASSES": json.dumps(CLASSES)},
        )
        try:
            yield stack
        finally:
            stop_local_stack(stack)


def sign_in(page: Any, stack: LocalStack, user: str) -> None:
    page.goto(f"{stack.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", stack.password)
    page.click("#login_submit")
    page.wait_for_url(lambda u: "/hub/home" in u or "/hub/spawn" in u or f"/user/{user}/" in u)


def test_paper_to_published_course_to_a_learner(authoring_stack: LocalStack, browser) -> None:  # type: ignore[no-untyped-def]
    stack = authoring_stack
    stack.upstream.script(writes(), DONE, fix(), FIXED)
    page = browser.new_page(viewport={"width": 1500, "height": 900})
    sign_in(page, stack, "ines")
    page.goto(f"{stack.url}/hub/home")
    page.wait_for_selector("#claudehub-authoring")
    pdf = make_pdf(
        [["Tiny Attention", "We study attention."], ["Every token looks."]], figure=(64, 48)
    )
    page.set_input_files(
        "#claudehub-paper",
        files=[{"name": "tiny.pdf", "mimeType": "application/pdf", "buffer": pdf}],
    )
    page.click("#claudehub-new-draft-submit")
    page.wait_for_url("**/user/ines/claude**", timeout=90_000)

    # The draft arrives (only the extracted paper so far: no course yet, so errors).
    page.wait_for_selector("#draft-status:has-text('checked')", timeout=60_000)
    assert page.locator("#check-errors li").count() >= 1
    assert page.locator("#preview-empty").count() == 1

    # Claude, asked in the terminal, writes the course with Write tool calls; its
    # courses.json is not JSON, so the check names it and a publish is refused.
    wait_for_terminal(page, "❯")
    ask(page, "Write the course from the paper.", DONE)
    page.wait_for_selector("#check-errors li:has-text('courses.json')", timeout=60_000)
    page.check("#publish-classes input[value='alpha']")
    page.click("#publish")
    page.wait_for_selector("#publish-refused", timeout=60_000)
    assert page.locator("#publish-result .ch-check-errors li").count() >= 1

    # Asked to fix it, Claude edits the file; the check comes back clean.
    ask(page, "Please fix the errors the check shows.", FIXED)
    page.wait_for_selector("#stage-2", timeout=60_000)
    page.wait_for_selector("#check-summary:has-text('0 errors')")
    assert page.locator("#stage-1 .ch-concept-title").inner_text().startswith("The idea")
    assert page.locator("#stage-1 strong", has_text="attention").count() == 1
    # The card's picture (the course service made it from the paper's figure) loads in the
    # preview through the service's signed link to the draft's own image.
    page.wait_for_function(
        "() => { const i = document.getElementById('course-thumbnail');"
        " return !!i && i.complete && i.naturalWidth > 0; }"
    )
    tools = stack.upstream.agent_requests()[0].tool_names
    assert sorted(tools) == ["Edit", "Glob", "Grep", "Read", "Write"]

    # The preview's quiz is judged against the saved draft, as a learner's answer would be.
    quiz = "#quiz-idea"
    held = json.dumps(page.evaluate("() => window.claudehubPanels.state.course"))
    assert '"answer"' not in held and "Page 1 says so" not in held  # no answers in the page
    if not page.locator("#stage-1[open]").count():
        page.locator("#stage-1 > summary").click()
    page.check(f"{quiz} input[value='1']")
    page.click(f"{quiz} .ch-submit")
    page.wait_for_selector(f"{quiz} .ch-feedback.ch-wrong")
    page.check(f"{quiz} input[value='2']")
    page.click(f"{quiz} .ch-submit")
    page.wait_for_selector(f"{quiz} .ch-feedback.ch-correct")

    # Publish for class alpha only (the page offers the classes Ines instructs).
    assert page.locator("#publish-classes input[name=classes]").count() == 1
    assert page.locator("#publish-classes input[value='alpha']").is_checked()
    page.fill("#publish-course", COURSE_ID)
    page.click("#publish")
    page.wait_for_selector("#published", timeout=60_000)
    assert f"Published {COURSE_ID} (version 1)" in page.locator("#published").inner_text()
    page.close()

    # A learner of alpha sees the card and takes stage 1.
    lea = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    sign_in(lea, stack, "lea")
    open_picker(lea, stack.url, "lea")
    assert lea.locator(f"input[name=course][value='{COURSE_ID}']").count() == 1
    pick_course(lea, COURSE_ID)
    lea.wait_for_url("**/user/lea/claude**", timeout=90_000)
    lea.wait_for_selector("#stage-1 .ch-concept-title")
    assert lea.locator("#course-title").inner_text() == "Tiny Attention"
    lea.check("#quiz-idea input[value='2']")
    lea.click("#quiz-idea .ch-submit")
    lea.wait_for_selector("#quiz-idea .ch-feedback.ch-correct")
    lea.wait_for_selector("#progress-summary:has-text('1 of 2 stages complete')")
    lea.close()

    # A learner of beta never sees it.
    bob = browser.new_context().new_page()
    sign_in(bob, stack, "bob")
    open_picker(bob, stack.url, "bob")
    bob.wait_for_selector("input[name=course]")
    assert bob.locator(f"input[name=course][value='{COURSE_ID}']").count() == 0
    bob.close()


def test_bad_papers_are_refused_in_the_course_services_words(
    authoring_stack: LocalStack, browser
) -> None:  # type: ignore[no-untyped-def]
    """The hub's form hands the course service's refusal on: not a PDF, a private URL."""
    page = browser.new_context().new_page()
    sign_in(page, authoring_stack, "ines")
    page.goto(f"{authoring_stack.url}/hub/home")
    xsrf = page.evaluate("() => (document.cookie.match(/_xsrf=([^;]+)/) || [])[1] || ''")
    route = f"{authoring_stack.url}/hub/claudehub/drafts"
    not_pdf = {"name": "paper.pdf", "mimeType": "application/pdf", "buffer": b"<html>no</html>"}
    for form, status, words in [
        ({"paper": not_pdf}, 415, "not a PDF"),
        ({"url": "http://127.0.0.1:9/paper.pdf"}, 422, "refused to fetch"),
        ({}, 400, "Choose the paper"),
    ]:
        resp = page.request.post(route, multipart=form, headers={"X-XSRFToken": xsrf})
        assert resp.status == status, (form, resp.status, resp.text()[:300])
        assert words in resp.text(), resp.text()[:500]
    page.close()


def test_a_learner_cannot_start_an_author_session(authoring_stack: LocalStack, browser) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_context().new_page()
    sign_in(page, authoring_stack, "bob")
    page.goto(f"{authoring_stack.url}/hub/home")
    assert page.locator("#claudehub-authoring").count() == 0
    # Posting the form anyway is refused with the hub's error page, naming why.
    resp = page.request.post(
        f"{authoring_stack.url}/hub/claudehub/drafts",
        multipart={"url": "https://example.org/p.pdf"},
        headers={
            "X-XSRFToken": page.evaluate(
                "() => (document.cookie.match(/_xsrf=([^;]+)/) || [])[1] || ''"
            )
        },
    )
    assert resp.status == 403, resp.text()[:500]
    assert "Only instructors" in resp.text()
    # and so is a spawn on a draft id
    page.goto(f"{authoring_stack.url}/hub/spawn/bob?draft=0123456789ab")
    page.wait_for_selector("text=Only instructors")
    page.close()
