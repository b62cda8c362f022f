"""A reusable browser walk through the stage and progress panels (Playwright, async).

Used by test_panels_browser.py and meant for the whole-stack e2e test too: open the
Claude page, then ``await walk_first_stage(page, quiz_id="q1", wrong="1", right="2",
stage_count=3)``.
"""

from __future__ import annotations

from typing import Any


async def progress_summary(page: Any) -> str:
    return str(await page.inner_text("#progress-summary"))


async def answer(page: Any, quiz_id: str, option: str, expect: str) -> None:
    """Pick option number ``option`` (or type it, for a free-response quiz) and submit;
    wait for feedback of class ``expect`` (correct / wrong / tutor)."""
    quiz = f"#quiz-{quiz_id}"
    if await page.locator(f"{quiz} input[type=radio]").count():
        await page.check(f"{quiz} input[value='{option}']")
    else:
        await page.fill(f"{quiz} textarea", option)
    await page.click(f"{quiz} .ch-submit")
    await page.wait_for_selector(f"{quiz} .ch-feedback.ch-{expect}")


async def walk_first_stage(
    page: Any, *, quiz_id: str, wrong: str, right: str, stage_count: int
) -> list[str]:
    """Read stage 1's concepts, answer its quiz wrong then right, check the progress panel,
    reload, check it again. Returns the concept titles read."""
    await page.wait_for_selector("#stage-1[open] .ch-concept-title")
    titles = [str(t) for t in await page.locator("#stage-1 .ch-concept-title").all_inner_texts()]
    assert titles, "stage 1 shows no concepts"
    assert await progress_summary(page) == f"0 of {stage_count} stages complete"
    await answer(page, quiz_id, wrong, "wrong")
    assert await progress_summary(page) == f"0 of {stage_count} stages complete"
    await answer(page, quiz_id, right, "correct")
    await page.wait_for_selector("#progress-list [data-stage='1'] [data-method='quiz']")
    assert await progress_summary(page) == f"1 of {stage_count} stages complete"
    await page.reload()
    await page.wait_for_selector("#progress-list [data-stage='1'] [data-method='quiz']")
    assert await progress_summary(page) == f"1 of {stage_count} stages complete"
    return titles
