"""The stage and progress panels in a real browser (Debian Chromium via Playwright).

The Claude page is the real extension's (pytest-jupyter server, bash in the terminal
instead of Claude); its claude/api/ course handlers call the real progress service
(in-process, HubAuth against a stand-in hub API endpoint) with the server's token.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from claudehub.contract.course_client import fetch_course_bundle
from claudehub.server_ext.course_handlers import CourseBackend
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, PATIENCE

from .conftest import (
    FakeHubAPI,
    RunningService,
    ServiceFactory,
    running_fake_hub,
    service_starter,
)
from .coursekit import write_claude_md_course
from .walk import walk_first_stage

pytestmark = pytest.mark.slow


XSS = "window.__xss=(window.__xss||0)+1;alert(1)"
PAYLOADS = [
    f"<script>{XSS}</script>",
    f'<img src=x onerror="{XSS}">',
    f'<svg onload="{XSS}"></svg>',
    f'<iframe srcdoc="<script>parent.{XSS}</script>"></iframe>',
    f"[click me](javascript:{XSS})",
    f'<a href="javascript:{XSS}">x</a>',
    f'<details open ontoggle="{XSS}">',
    f"<style>body{{background:url(javascript:{XSS})}}</style>",
]


def xss_stages() -> list[dict[str, Any]]:
    bad = " ".join(PAYLOADS)
    return [
        {
            "stageNumber": 1,
            "title": f"Stage {bad}",
            "description": bad,
            "concepts": [
                {"id": "c1", "title": f"Concept {bad}", "content": f"# Heading\n\n{bad}\n\n**ok**"}
            ],
            "quiz": {
                "id": "q1",
                "question": f"Pick {bad}",
                "type": "multiple-choice",
                "options": [f"A {PAYLOADS[1]}", f"B {PAYLOADS[0]}"],
                "correctAnswer": f"A {PAYLOADS[1]}",
                "explanation": f"Because {PAYLOADS[1]}",
            },
        }
    ]


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
    """The running server's link to the course service (pointed at the service in-test)."""
    backend: CourseBackend = jp_serverapp.web_app.settings["claudehub_course_backend"]
    return backend


@pytest.fixture
def page_url(jp_serverapp: Any, jp_base_url: str, http_server: Any, jp_http_port: int) -> str:
    token = jp_serverapp.identity_provider.token
    return f"http://127.0.0.1:{jp_http_port}{jp_base_url}claude?token={token}"


async def _service_for(
    start_service: ServiceFactory,
    fake_hub_api: FakeHubAPI,
    backend: CourseBackend,
    tmp_path: Path,
    course_id: str,
) -> tuple[RunningService, Path]:
    """Start the service with the t101 and XSS courses; point this server's backend at it
    (as the spawner's environment would, had the service been running before the server)."""
    fake_hub_api.add_user("tok-server-alice", "alice")
    write_claude_md_course(tmp_path / "courses" / "xss", xss_stages(), title=f"XSS {PAYLOADS[0]}")
    svc = await start_service(
        courses=[
            {"id": "t101", "repo": str(tmp_path / "courses" / "t101")},
            {"id": "xss", "repo": str(tmp_path / "courses" / "xss")},
        ]
    )
    course_dir = await fetch_course_bundle(
        svc.url, "tok-server-alice", course_id, tmp_path / "sandbox" / course_id
    )
    backend.progress_url = svc.url
    backend.token = "tok-server-alice"
    backend.course_id = course_id
    backend.course_dir = str(course_dir)
    return svc, course_dir


async def _launch(pw: Any) -> Any:
    return await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# No asyncio marker: pytest-jupyter runs these on the server's own event loop, and the
# fake hub and the service are started on that same loop inside the test.
async def test_walk_a_stage_wrong_then_right_then_tutor_marker_and_reload(
    course_backend: CourseBackend, tmp_path: Path, page_url: str
) -> None:
    async with running_fake_hub() as hub, service_starter(tmp_path, hub) as start:
        await _walk(start, hub, course_backend, tmp_path, page_url)


async def _walk(
    start_service: ServiceFactory,
    fake_hub_api: FakeHubAPI,
    backend: CourseBackend,
    tmp_path: Path,
    page_url: str,
) -> None:
    from playwright.async_api import async_playwright

    svc, course_dir = await _service_for(start_service, fake_hub_api, backend, tmp_path, "t101")
    async with async_playwright() as pw:
        browser = await _launch(pw)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.goto(page_url)
            await page.wait_for_selector("#stage-1[open] .ch-concept-title")
            concepts = await page.locator("#stage-1 .ch-concept-title").all_inner_texts()
            assert concepts == ["What is a token", "BPE"]
            assert "A token is a piece." in await page.inner_text("#stage-1 .ch-content")
            assert await page.inner_text("#progress-summary") == "0 of 3 stages complete"
            assert "Resume at stage 1: Tokens" in await page.inner_text("#resume-point")

            # wrong then right (the reusable walk, also for the whole-stack e2e test)
            read = await walk_first_stage(page, quiz_id="q1", wrong="1", right="2", stage_count=3)
            assert read == concepts
            await page.wait_for_selector("#stage-2[open]")
            snapshot = json.loads((course_dir / ".learner" / "progress.json").read_text())
            assert snapshot["completed_stages"] == [1] and snapshot["current_stage"] == 2

            # the tutor's marker in the terminal: stripped from the screen, recorded as
            # a tutor completion, and the progress panel shows it live
            await page.wait_for_selector("#status.ok")
            await page.click("#terminal")
            await page.keyboard.type("printf 'well done [STAGE_COMP''LETE:2] next\\n'\n")
            await page.wait_for_selector(
                "#progress-list [data-stage='2'] [data-method='tutor']", timeout=PATIENCE * 1000
            )
            screen = await page.evaluate(
                """() => { const b = window.claudehub.term.buffer.active; const out = [];
                for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
                return out.join("\\n"); }"""
            )
            assert "well done" in screen and "[STAGE_COMPLETE:2]" not in screen
            quiz_tag = await page.inner_text("#progress-list [data-stage='1'] .ch-method")
            tutor_tag = await page.inner_text("#progress-list [data-stage='2'] .ch-method")
            assert quiz_tag != tutor_tag  # shown differently

            # reload: still there (it lives in the service)
            await page.reload()
            await page.wait_for_selector("#progress-list [data-stage='2'] [data-method='tutor']")
            assert await page.inner_text("#progress-summary") == "2 of 3 stages complete"
            assert "Resume at stage 3: Reflection" in await page.inner_text("#resume-point")
            await page.screenshot(path=str(tmp_path / "panels.png"))

            # a change made elsewhere (another tab, another device) arrives live (SSE)
            await svc.client("tok-server-alice").tutor_completion("t101", 3)
            await page.wait_for_selector(
                "#progress-list [data-stage='3'] [data-method='tutor']", timeout=PATIENCE * 1000
            )
            await page.wait_for_selector("#course-complete")
        finally:
            await browser.close()
    progress = await svc.client("tok-server-alice").progress("t101")
    assert [(s["number"], s["method"]) for s in progress["stages"]] == [
        (1, "quiz"),
        (2, "tutor"),
        (3, "tutor"),
    ]


async def test_xss_payloads_in_course_text_stay_inert(
    course_backend: CourseBackend, tmp_path: Path, page_url: str
) -> None:
    async with running_fake_hub() as hub, service_starter(tmp_path, hub) as start:
        await _xss(start, hub, course_backend, tmp_path, page_url)


async def _xss(
    start_service: ServiceFactory,
    fake_hub_api: FakeHubAPI,
    backend: CourseBackend,
    tmp_path: Path,
    page_url: str,
) -> None:
    from playwright.async_api import async_playwright

    await _service_for(start_service, fake_hub_api, backend, tmp_path, "xss")
    async with async_playwright() as pw:
        browser = await _launch(pw)
        try:
            page = await browser.new_page()
            dialogs: list[str] = []

            async def on_dialog(dialog: Any) -> None:
                dialogs.append(dialog.message)
                await dialog.dismiss()

            page.on("dialog", on_dialog)
            await page.goto(page_url)
            await page.wait_for_selector("#stage-1 .ch-concept-title")
            # the payloads show up as text, not as markup
            assert "<script>" in await page.inner_text("#course-title")
            assert "onerror" in await page.inner_text("#stage-1 .ch-concept-title")
            assert "Heading" in await page.inner_text("#stage-1 .ch-content h1")
            # answer (the correct option carries a payload too) to render feedback
            await page.check("#quiz-q1 input[value='1']")
            await page.click("#quiz-q1 .ch-submit")
            await page.wait_for_selector("#quiz-q1 .ch-feedback.ch-correct")
            await page.reload()
            await page.wait_for_selector("#course-complete")
            await page.click("#stage-1 > summary")  # completed stages start closed
            await page.wait_for_selector("#stage-1 .ch-concept-title")
            await asyncio.sleep(1.0)
            found = await page.evaluate(
                """() => {
                const panels = [document.getElementById('stage-panel'),
                                document.getElementById('progress-panel')];
                let bad = [];
                for (const p of panels) {
                  for (const e of p.querySelectorAll('*')) {
                    const tag = e.tagName.toLowerCase();
                    if (['script','iframe','img','svg','style','object','embed'].includes(tag))
                      bad.push(tag);
                    for (const a of e.attributes) {
                      if (a.name.startsWith('on')) bad.push(tag + '@' + a.name);
                      if (/javascript:/i.test(a.value)) bad.push(tag + '@' + a.name + '=' + a.value);
                    }
                  }
                }
                return {xss: window.__xss || 0, bad: bad};
              }"""
            )
            assert found == {"xss": 0, "bad": []}
            assert dialogs == []
            # clicking what used to be a javascript: link does nothing either
            links = page.locator("#stage-panel .ch-content a")
            for i in range(await links.count()):
                await links.nth(i).click()
            await asyncio.sleep(0.3)
            assert await page.evaluate("() => window.__xss || 0") == 0
            assert dialogs == []
        finally:
            await browser.close()
