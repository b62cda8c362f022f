"""Images, citations, key ideas and the concept graph in the stage panel (real Chromium).

The page is the real extension's; its claude/api/ handlers call the real progress service
(in-process, real HubAuth/HubOAuth against a stand-in hub API), and lesson images reach the
browser through the extension's asset proxy.
"""

from __future__ import annotations

import tarfile
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from claudehub.server_ext.course_handlers import CourseBackend
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, PATIENCE

from .conftest import running_fake_hub, service_starter
from .imagekit import IMAGE_CATALOGUE, IMAGE_COURSE, write_image_catalogue

pytestmark = pytest.mark.slow

SERVER_TOKEN = "tok-server-alice"


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"claudehub.server_ext": True}},
        "ClaudeHubApp": {
            "command": ["bash", "--norc", "--noprofile", "-i"],
            "term_env": {"PS1": "$ ", "HISTFILE": "/dev/null"},
        },
    }


@pytest.fixture
def course_backend(jp_serverapp: Any) -> CourseBackend:
    backend: CourseBackend = jp_serverapp.web_app.settings["claudehub_course_backend"]
    return backend


@pytest.fixture
def page_url(jp_serverapp: Any, jp_base_url: str, http_server: Any, jp_http_port: int) -> str:
    token = jp_serverapp.identity_provider.token
    return f"http://127.0.0.1:{jp_http_port}{jp_base_url}claude?token={token}"


# No asyncio marker: pytest-jupyter runs this on the server's own event loop.
async def test_lesson_images_citation_key_ideas_and_concept_graph(
    course_backend: CourseBackend, tmp_path: Path, page_url: str
) -> None:
    from playwright.async_api import async_playwright

    repo = write_image_catalogue(tmp_path / "repo")
    async with running_fake_hub() as hub, service_starter(tmp_path, hub) as start:
        hub.add_user(SERVER_TOKEN, "alice")
        svc = await start(courses=[], catalogues=[{"id": IMAGE_CATALOGUE, "repo": str(repo)}])
        client = svc.client(SERVER_TOKEN)
        course_backend.progress_url = svc.url
        course_backend.token = SERVER_TOKEN
        course_backend.course_id = IMAGE_COURSE
        course_backend.course_dir = str(tmp_path / "sandbox")

        # the sandbox bundle gets no lesson image (they live outside the course folder)
        bundle = await client.bundle(IMAGE_COURSE)
        with tarfile.open(fileobj=BytesIO(bundle)) as tar:
            names = tar.getnames()
        assert not [n for n in names if "figure" in n or n.startswith("assets")]

        detail = await client.course(IMAGE_COURSE)
        rays_quiz, focus_quiz = (q["id"] for q in detail["stages"][0]["quizzes"])
        assert (await client.answer(IMAGE_COURSE, rays_quiz, "No"))["status"] == "correct"

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 900})
                requests: list[str] = []
                page.on("request", lambda r: requests.append(r.url))
                await page.goto(page_url)
                await page.wait_for_selector("#stage-1 .ch-concept-title")
                origin = page_url.split("/claude")[0]

                # the lesson's image is shown, loaded through this server
                img = page.locator("#stage-1 [data-concept-id='rays'] img.ch-image")
                assert await img.count() == 1
                await page.wait_for_function(
                    "() => { const i = document.querySelector('img.ch-image');"
                    " return i && i.complete && i.naturalWidth > 0; }"
                )
                assert await img.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [8, 6]
                assert await img.get_attribute("alt") == "A ray diagram"
                src = await img.evaluate("i => i.src")
                assert src.startswith(f"{origin}/claude/api/courses/{IMAGE_COURSE}/assets/")
                thumb = page.locator("#course-thumbnail")
                await page.wait_for_function(
                    "() => document.getElementById('course-thumbnail').naturalWidth > 0"
                )
                assert await thumb.evaluate("i => i.naturalWidth") == 5

                # the remote image is never requested; its alt text is shown
                rays = page.locator("#stage-1 [data-concept-id='rays']")
                alts = await rays.locator(".ch-image-alt").all_inner_texts()
                assert [a.strip() for a in alts] == ["Remote pixel", "Escaping"]
                assert not [u for u in requests if "tracker.example" in u]
                assert not [u for u in requests if not u.startswith(origin)]

                # citation and key ideas under the lesson
                assert (
                    "Newton, Opticks (1704), Book I"
                    in await rays.locator(".ch-paper-ref").inner_text()
                )
                ideas = await rays.locator(".ch-key-ideas li").all_inner_texts()
                assert ideas == ["straight lines", "reflection angle"]

                # the concept graph: two nodes, one arrow rays -> focus, rays marked done
                graph = page.locator("#concept-graph svg")
                assert await graph.locator(".ch-node").count() == 2
                edges = graph.locator(".ch-edge")
                assert await edges.count() == 1
                assert await edges.get_attribute("data-from") == "rays"
                assert await edges.get_attribute("data-to") == "focus"
                done = graph.locator(".ch-node-done")
                assert await done.count() == 1
                assert await done.get_attribute("data-concept-id") == "rays"
                assert "1 of 2 done" in await page.inner_text("#concept-graph summary")
                box = await graph.bounding_box()
                assert box and box["width"] > 100 and box["height"] > 50
                await page.screenshot(path=str(tmp_path / "graph.png"))
                # a node leads to its lesson, by mouse or keyboard
                await page.evaluate("() => document.getElementById('stage-panel').scrollTo(0, 0)")
                await graph.locator(".ch-node[data-concept-id='focus']").focus()
                await page.keyboard.press("Enter")
                focus = page.locator("#stage-1 section[data-concept-id='focus']")
                await focus.wait_for()
                assert await focus.evaluate(
                    "s => { const r = s.getBoundingClientRect(); return r.top >= 0 && r.top < innerHeight; }"
                )

                # the other concept done elsewhere: the graph follows live
                result = await client.answer(IMAGE_COURSE, focus_quiz, "focal length")
                assert result["status"] == "correct"
                await page.wait_for_function(
                    "() => document.querySelectorAll('#concept-graph .ch-node-done').length === 2",
                    timeout=PATIENCE * 1000,
                )

                # the page's own sanitiser: only this course's service image URLs survive
                base = detail["assets_url"]
                kept = await page.evaluate(
                    """base => { const d = document.createElement('div');
                    d.appendChild(window.claudehubPanels.sanitize(
                      '<img src="https://evil.example/x.png" alt="remote">' +
                      '<img src="data:image/png;base64,AAAA" alt="inline">' +
                      '<img src="/services/progress/api/courses/other/assets/x.png" alt="other">' +
                      '<img src="' + base + '../../x.png" alt="up">' +
                      '<img src="' + base + '%2e%2e/x.png" alt="encoded">' +
                      '<img src="' + base + 'assets/ok.png" alt="ok" onerror="alert(1)">'));
                    return [Array.from(d.querySelectorAll('img')).map(i => i.outerHTML),
                            Array.from(d.querySelectorAll('.ch-image-alt')).map(s => s.textContent)];
                    }""",
                    base,
                )
                imgs, alt_texts = kept
                assert len(imgs) == 1 and "assets/ok.png" in imgs[0] and "onerror" not in imgs[0]
                assert alt_texts == ["remote", "inline", "other", "up", "encoded"]
            finally:
                await browser.close()


INLINE_QUIZZES = [
    # (concept id, exercise as authors write it, answer, option to click, options shown)
    ("one-line", "Is a ledger append-only? 1) Yes 2) No", "Yes", "Yes", ["Yes", "No"]),
    ("lettered", "Which hash is Bitcoin's?\nA) MD5\nB) SHA-256\nC) CRC32", "B", "SHA-256",
     ["MD5", "SHA-256", "CRC32"]),
    ("true-false", "True or False: blocks link to their parent.", "false.", "False",
     ["True", "False"]),
]  # fmt: skip


# No asyncio marker: pytest-jupyter runs this on the server's own event loop.
async def test_options_written_in_the_question_become_buttons_and_are_judged(
    course_backend: CourseBackend, tmp_path: Path, page_url: str
) -> None:
    """The catalogue's inline shapes (1) … 2) …, A) … B) …, True/False) are buttons on the
    page, judged by the service, and no answer reaches the page."""
    from playwright.async_api import async_playwright

    from .coursekit import write_catalogue_course

    lessons = [
        {"concept_id": cid, "title": cid, "prerequisites": [], "content": f"Lesson {cid}",
         "exercise": exercise, "answer": answer, "explanation": f"Because of {cid} reasons"}
        for cid, exercise, answer, _, _ in INLINE_QUIZZES
    ]  # fmt: skip
    modules = [{"id": "m1", "title": "Shapes", "description": "", "lessons": lessons}]
    graph = {"nodes": [{"id": c, "name": c} for c, *_ in INLINE_QUIZZES], "edges": []}
    repo = tmp_path / "inline"
    write_catalogue_course(repo / "paper", "core", modules=modules, graph=graph)
    async with running_fake_hub() as hub, service_starter(tmp_path, hub) as start:
        hub.add_user(SERVER_TOKEN, "alice")
        svc = await start(courses=[], catalogues=[{"id": "inline", "repo": str(repo)}])
        (card,) = await svc.client(SERVER_TOKEN).courses()
        course_backend.progress_url = svc.url
        course_backend.token = SERVER_TOKEN
        course_backend.course_id = card["id"]
        course_backend.course_dir = str(tmp_path / "sandbox")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 900})
                await page.goto(page_url)
                await page.wait_for_selector("#stage-1 .ch-quiz")
                # what the page was given: the course as the extension serves it
                served = await page.evaluate(
                    "id => fetch(window.claudehub.config.apiUrl + 'courses/' + id)"
                    ".then(r => r.text())",
                    card["id"],
                )
                assert '"options"' in served
                page_text = served + await page.content()
                for cid, *_ in INLINE_QUIZZES:
                    assert f"Because of {cid} reasons" not in page_text
                assert '"answer"' not in served and "false." not in page_text
                quizzes = page.locator("#stage-1 .ch-quiz")
                assert await quizzes.count() == len(INLINE_QUIZZES)
                for i, (cid, _, _, pick, shown) in enumerate(INLINE_QUIZZES):
                    quiz = quizzes.nth(i)
                    options = await quiz.locator(".ch-option-text").all_inner_texts()
                    assert [o.strip() for o in options] == shown, cid
                    await quiz.get_by_text(pick, exact=True).click()
                    await quiz.locator(".ch-submit").click()
                    await page.wait_for_function(
                        "id => document.querySelector('#quiz-' + CSS.escape(id) + ' .ch-submit')"
                        ".textContent.includes('Answered correctly')",
                        arg=await quiz.get_attribute("data-quiz-id"),
                        timeout=PATIENCE * 1000,
                    )
            finally:
                await browser.close()
