"""Issue 15 (items 1 and 2): the course picker and the learner's home page, in a real hub
with a real browser.

The stack is local mode's (`make run`) with a catalogue made here: the repository's example
courses, a copy of the example paper whose course is in Korean (paper.json ``title_ko`` and
``courses[{slug, language}]``) and a course in the CLAUDE.md layout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import REPO, LocalStack, start_local_stack, stop_local_stack
from tests.fakes.upstream import FakeAnthropic
from tests.helpers import PATIENCE
from tests.progress.coursekit import write_claude_md_course
from tests.terminal_page import ask, open_picker, pick_course, wait_for_terminal

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOT_DIR = os.environ.get("CLAUDEHUB_SCREENSHOT_DIR", "")
KOREAN_TITLE = "어텐션만 있으면 된다"
ADMIN_PASSWORD = "admin-password-for-the-e2e-0123456789"
#: the example paper's folder, and the course id the catalogue gives its Korean copy
KOREAN_ID = "papers--attention-ko--first-look"
#: the operator offers two models: the choice stays on the picker page, below the cards
MODELS = ["claude-sonnet-4-5", "claude-haiku-4-5"]
YESTERDAYS_QUESTION = "Why divide the scores by the square root of d_k?"
YESTERDAYS_ANSWER = "So the softmax does not saturate when d_k is large, zebracorn."
#: a class of its own (no other test's learners), for its instructor's class page
CLASSES = {"seminar": {"learners": ["pupil"], "instructors": ["teacher"]}}


def write_png(path: Path, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> None:
    """A 320x180 PNG, a vertical gradient from ``top`` to ``bottom`` (a course thumbnail)."""
    width, height = 320, 180
    rows = b""
    for y in range(height):
        colour = bytes(
            round(a + (b - a) * y / (height - 1)) for a, b in zip(top, bottom, strict=True)
        )
        rows += b"\x00" + colour * width

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def make_catalogue(root: Path) -> Path:
    """The catalogue file: the examples, a Korean paper and a CLAUDE.md course."""
    papers = root / "papers"
    shutil.copytree(REPO / "examples" / "catalogue", papers)
    korean = papers / "attention-ko"
    shutil.copytree(papers / "attention-is-all-you-need", korean)
    paper = json.loads((korean / "paper.json").read_text())
    paper.update(
        {
            # the title is Korean in both fields, so the card is Korean whether or not the
            # service reads title_ko
            "title": KOREAN_TITLE,
            "title_ko": KOREAN_TITLE,
            "description_ko": "트랜스포머를 처음부터 한 단계씩 읽습니다.",
            "courses": [{"slug": "first-look", "language": "ko", "title": KOREAN_TITLE}],
            "sortOrder": 2,
        }
    )
    (korean / "paper.json").write_text(json.dumps(paper, ensure_ascii=False))
    write_png(papers / "attention-is-all-you-need" / "thumbnail.png", (60, 90, 160), (20, 30, 60))
    write_png(korean / "thumbnail.png", (217, 119, 87), (90, 40, 30))
    write_claude_md_course(root / "t101", title="Transformers 101")
    catalog = {
        "courses": [
            {
                "id": "attention",
                "title": "Attention, step by step",
                "description": "Read 'Attention Is All You Need' one idea at a time.",
                "repo": str(REPO / "examples"),
                "folder": "courses/attention",
            },
            {
                "id": "t101",
                "title": "Transformers 101",
                "description": "Tokens, attention and why it works.",
                "repo": str(root),
                "folder": "t101",
            },
        ],
        "catalogues": [{"id": "papers", "repo": str(root), "folder": "papers"}],
    }
    path = root / "catalog.json"
    path.write_text(json.dumps(catalog, ensure_ascii=False))
    return path


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Path]]:
    tmp = tmp_path_factory.mktemp("hubpages")
    catalog = make_catalogue(tmp / "courses")
    with FakeAnthropic() as upstream:
        env = {
            "CLAUDEHUB_CATALOG": str(catalog),
            "CLAUDEHUB_ADMIN_USERS": "boss",
            "CLAUDEHUB_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "CLAUDEHUB_MODELS": ",".join(MODELS),
            "CLAUDEHUB_CLASSES": json.dumps(CLASSES),
        }
        stack = start_local_stack(tmp, upstream, extra_env=env)
        try:
            yield stack, tmp
        finally:
            stop_local_stack(stack)


def sign_in(page: Any, stack: LocalStack, user: str, password: str | None = None) -> None:
    page.goto(f"{stack.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password or stack.password)
    page.click("#login_submit")
    page.wait_for_url(lambda u: "/hub/login" not in u)


def visible_titles(page: Any) -> list[str]:
    return [
        t.strip()
        for t in page.locator("#claudehub-cards > li:not([hidden]) .ch-title").all_inner_texts()
    ]


def shoot(page: Any, name: str) -> None:
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOT_DIR) / name))


def test_pick_from_cards_korean_title_search_and_language_filter(
    hub: tuple[LocalStack, Path], browser: Any
) -> None:
    stack, _ = hub
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, stack, "hana")
    # a new learner lands on the home page, which offers the picker
    assert "/hub/home" in page.url
    assert page.locator("#claudehub-choose").inner_text() == "Choose a course"
    open_picker(page, stack.url, "hana")

    titles = visible_titles(page)
    assert len(titles) == 4, titles
    assert {"Attention, step by step", "Transformers 101", KOREAN_TITLE} <= set(titles)
    korean = page.locator(f"#claudehub-cards > li:has(input[value='{KOREAN_ID}'])")
    assert korean.locator(".ch-title").get_attribute("lang") == "ko"
    assert korean.locator(".ch-lang").inner_text() == "한국어"
    assert "Ashish Vaswani, Noam Shazeer, Niki Parmar · Google" in korean.inner_text()
    assert korean.locator(".ch-state").inner_text() == "not started"
    assert "3 stages" in page.locator("li:has(input[value='t101'])").inner_text()
    # the thumbnail comes from the course service, and the learner's browser can load it
    thumb = korean.locator("img.ch-thumb")
    assert (thumb.get_attribute("src") or "").startswith("/services/progress/")
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth === 320", arg=thumb.element_handle()
    )
    assert page.locator("#claudehub-count").inner_text() == "4 courses"
    korean.locator("label").click()  # a click anywhere on the card chooses it
    assert korean.locator("input").is_checked()
    shoot(page, "course-picker.png")

    # search narrows the cards as the learner types (authors and organisations count too)
    page.fill("#claudehub-search", "transformers 101")
    assert visible_titles(page) == ["Transformers 101"]
    assert page.locator("#claudehub-count").inner_text() == "1 of 4 courses shown"
    page.fill("#claudehub-search", "zebra")
    assert visible_titles(page) == [] and page.locator("#claudehub-none").is_visible()
    page.fill("#claudehub-search", "")

    # the language filter: only the Korean course is in Korean
    page.select_option("#claudehub-language", "ko")
    assert visible_titles(page) == [KOREAN_TITLE]
    page.select_option("#claudehub-language", "")
    assert len(visible_titles(page)) == 4

    # keyboard: the cards are one radio group; arrows move the choice
    page.focus("input[name=course] >> nth=0")
    page.keyboard.press("ArrowDown")
    assert page.locator("input[name=course] >> nth=1").is_checked()

    # the operator's model choice is on the same page
    model = page.locator("select[name=model]")
    assert model.locator("option").all_inner_texts() == MODELS
    page.select_option("select[name=model]", MODELS[1])
    pick_course(page, KOREAN_ID)
    page.wait_for_url("**/user/hana/claude**", timeout=90_000)
    wait_for_terminal(page, "❯")
    page.close()


def test_a_forged_course_is_refused_on_the_page(hub: tuple[LocalStack, Path], browser: Any) -> None:
    stack, _ = hub
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, stack, "mallory")
    open_picker(page, stack.url, "mallory")
    # what a hand-edited form posts: a course id the catalogue does not have
    page.evaluate(
        "() => { const r = document.querySelector('input[name=course]');"
        " r.value = 'papers--forged--course'; r.checked = true; }"
    )
    with page.expect_response(lambda r: "/hub/spawn" in r.url and r.request.method == "POST") as rs:
        page.click("form#spawn_form button[type=submit]")
    assert rs.value.status == 400
    error = page.locator(".spawn-error-msg")
    assert error.inner_text() == (
        "The course “papers--forged--course” is not offered here. Choose one of the courses below."
    )
    # the picker is shown again, and nothing was started
    assert len(visible_titles(page)) == 4
    assert "/user/mallory/" not in page.url
    page.close()


def answer_first_quiz(page: Any) -> None:
    """Stage 1 of the example course "attention": its quiz, answered right."""
    quiz = "#quiz-q-why"
    page.wait_for_selector(f"{quiz} input[value='2']")
    page.check(f"{quiz} input[value='2']")
    page.click(f"{quiz} .ch-submit")
    page.wait_for_selector("#progress-list [data-stage='1'] [data-method='quiz']")


def test_home_page_continues_the_course_at_its_stage(
    hub: tuple[LocalStack, Path], browser: Any
) -> None:
    stack, _ = hub
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, stack, "minji")
    open_picker(page, stack.url, "minji")
    pick_course(page, "attention")
    page.wait_for_url("**/user/minji/claude**", timeout=90_000)
    answer_first_quiz(page)

    # the session runs: the home page says where the learner is
    page.goto(f"{stack.url}/hub/home")
    heading = page.locator("#claudehub-continue-title")
    assert heading.inner_text() == "Continue Attention, step by step at stage 2"
    assert (
        "Stage 2 of 3. Your session is running." in page.locator("#claudehub-continue").inner_text()
    )
    note = page.locator("#claudehub-other-note").inner_text()
    assert "ends the running session" in note and "progress is kept" in note
    shoot(page, "hub-home.png")

    # "Choose another course" ends the session, then opens the picker
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#claudehub-other")
    page.wait_for_url("**/hub/spawn**", timeout=60_000)
    card = page.locator("#claudehub-cards > li:has(input[value='attention'])")
    assert card.locator(".ch-state").inner_text() == "stage 2 of 3"
    assert card.locator("input").is_checked(), "the last course is preselected"

    # not running now: the home page still offers to continue, and does
    page.goto(f"{stack.url}/hub/home")
    assert heading.inner_text() == "Continue Attention, step by step at stage 2"
    assert "running" not in page.locator("#claudehub-continue").inner_text()
    page.click("#claudehub-continue-link")
    page.wait_for_url("**/user/minji/claude**", timeout=90_000)
    page.wait_for_selector("#progress-list [data-stage='1'] [data-method='quiz']")
    page.close()


def test_the_hubs_pages_share_the_look_and_admins_keep_the_admin_page(
    hub: tuple[LocalStack, Path], browser: Any
) -> None:
    stack, _ = hub
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sizes: dict[str, int] = {}
    page.on("response", lambda r: sizes.__setitem__(r.url, len(r.body() or b"")))
    page.goto(f"{stack.url}/hub/login")
    assert page.locator("#topbar .brand").inner_text() == "claudehub"
    # the learner's pages carry no JupyterHub CSS or JavaScript
    assert not [u for u in sizes if re.search(r"/static/(css|components|js)/", u)], sizes
    sign_in(page, stack, "hana")
    page.goto(f"{stack.url}/hub/no-such-page")
    assert page.locator("h1").inner_text() == "Page not found (404)"
    assert page.locator("#topbar .brand").count() == 1
    assert page.locator("a[href$='/hub/admin']").count() == 0, "no Admin link for learners"
    page.close()

    admin = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(admin, stack, "boss", ADMIN_PASSWORD)
    admin.click("#topbar a[href$='/hub/admin']")
    admin.wait_for_url("**/hub/admin**")
    # JupyterHub's own admin page (its React app) lists the users
    admin.wait_for_selector("text=minji", timeout=PATIENCE * 1000)
    admin.close()


@pytest.mark.parametrize(
    ("user", "admin", "path", "heading"),
    [
        ("teacher", False, "classes/seminar", "Class seminar"),
        ("boss", True, "admin", "Learner progress"),
    ],
    ids=["instructor-class-page", "admin-progress-page"],
)
def test_course_service_pages_open_without_an_authorize_page(
    hub: tuple[LocalStack, Path], browser: Any, user: str, admin: bool, path: str, heading: str
) -> None:
    """The course service is claudehub's own (oauth_no_confirm): a user opening one of its
    pages for the first time goes through the hub's OAuth login and lands on the page, not
    on JupyterHub's "Authorize access" page."""
    stack, _ = hub
    context = browser.new_context()
    page = context.new_page()
    navigations: list[str] = []
    page.on(
        "request",
        lambda r: navigations.append(r.url) if r.is_navigation_request() else None,
    )
    sign_in(page, stack, user, ADMIN_PASSWORD if admin else None)
    page.goto(f"{stack.url}/services/progress/{path}")
    # the first visit really took the OAuth path, where the consent page would be
    assert any("/hub/api/oauth2/authorize" in u for u in navigations), navigations
    assert "Authorize access" not in page.content(), page.url
    assert urlsplit(page.url).path == f"/services/progress/{path}", page.url
    assert page.locator("h1").inner_text() == heading
    context.close()


def test_without_javascript_a_learner_still_signs_in_picks_and_starts(
    hub: tuple[LocalStack, Path], browser: Any
) -> None:
    """Progressive enhancement: every card is shown, search and filter stay hidden, and the
    start-up page reloads itself until the hub sends the learner to the Claude page."""
    stack, _ = hub
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    sign_in(page, stack, "jin")
    page.click("#claudehub-choose")
    page.wait_for_url("**/hub/spawn**")
    assert len(visible_titles(page)) == 4
    assert not page.locator("#claudehub-tools").is_visible()
    page.locator("li:has(input[value='t101']) label").click()
    page.click("form#spawn_form button[type=submit]")
    page.wait_for_url("**/user/jin/claude**", timeout=90_000)
    context.close()


def test_the_home_page_after_a_restarted_hub(
    hub: tuple[LocalStack, Path], browser: Any, request: pytest.FixtureRequest
) -> None:
    """Come back the next day: the hub and the server were stopped; the home page still
    says where the learner left off, and Continue reopens the previous conversation."""
    stack, tmp = hub
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, stack, "yuna")
    open_picker(page, stack.url, "yuna")
    pick_course(page, "attention")
    page.wait_for_url("**/user/yuna/claude**", timeout=90_000)
    answer_first_quiz(page)
    wait_for_terminal(page, "❯")
    stack.upstream.script(YESTERDAYS_ANSWER)
    ask(page, YESTERDAYS_QUESTION, YESTERDAYS_ANSWER)
    page.close()
    stop_local_stack(stack)
    time.sleep(1)
    again = start_local_stack(
        tmp,
        stack.upstream,
        extra_env={
            "CLAUDEHUB_CATALOG": str(tmp / "courses" / "catalog.json"),
            "CLAUDEHUB_ADMIN_USERS": "boss",
            "CLAUDEHUB_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "CLAUDEHUB_MODELS": ",".join(MODELS),
            "CLAUDEHUB_CLASSES": json.dumps(CLASSES),
        },
    )
    request.addfinalizer(lambda: stop_local_stack(again))
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, again, "yuna")
    assert "/hub/home" in page.url
    assert (
        page.locator("#claudehub-continue-title").inner_text()
        == "Continue Attention, step by step at stage 2"
    )
    page.click("#claudehub-continue-link")
    page.wait_for_url("**/user/yuna/claude**", timeout=90_000)
    page.wait_for_selector("#progress-list [data-stage='1'] [data-method='quiz']")
    # yesterday's conversation is on screen again (the history on the learner's home)
    wait_for_terminal(page, YESTERDAYS_QUESTION, 90_000)
    wait_for_terminal(page, YESTERDAYS_ANSWER)
    shoot(page, "continued-conversation.png")
    page.close()
