"""The Claude page in a real browser (Debian's Chromium via Playwright): the xterm.js terminal
works with no internet, a `yes` flood is held back by the page's flow control and Ctrl-C gets
the prompt back, a reload reattaches, and an exit offers to start again."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import CHROMIUM, CHROMIUM_ARGS, PATIENCE

pytestmark = pytest.mark.slow


# the terminal's visible text plus scrollback, as the user sees it
SCREEN_JS = """() => {
  const b = window.claudehub.term.buffer.active;
  const lines = [];
  for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
  return lines.join("\\n");
}"""


async def wait_for_text(page: Any, text: str, wait: float = PATIENCE) -> None:
    await page.wait_for_function(
        f"(text) => ({SCREEN_JS})().includes(text)", arg=text, timeout=wait * 1000
    )


@pytest.fixture
def page_url(jp_serverapp: Any, jp_base_url: str, http_server: Any, jp_http_port: int) -> str:
    port = jp_http_port
    token = jp_serverapp.identity_provider.token
    return f"http://127.0.0.1:{port}{jp_base_url}claude?token={token}"


async def test_terminal_flood_ctrl_c_reload_and_restart_in_the_browser(page_url: str) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1200, "height": 800})
            context.set_default_timeout(PATIENCE * 1000)  # every wait is a ceiling for a hang
            external: list[str] = []
            context.on(
                "request",
                lambda r: external.append(r.url) if "127.0.0.1" not in r.url else None,
            )
            page = await context.new_page()
            await page.goto(page_url)
            await page.wait_for_selector("#status.ok")
            await page.click("#terminal")
            await page.keyboard.type("echo hello-$((6*7))\n")
            await wait_for_text(page, "hello-42")
            assert external == []  # everything is served by the extension

            # resize follows the window (once the page has refitted the terminal)
            wide = await page.evaluate("() => window.claudehub.term.cols")
            await page.set_viewport_size({"width": 700, "height": 500})
            await page.wait_for_function(
                "(wide) => window.claudehub.term.cols < wide", arg=wide, timeout=PATIENCE * 1000
            )
            cols = await page.evaluate("() => window.claudehub.term.cols")
            await page.keyboard.type("stty size\n")
            await wait_for_text(page, f" {cols}\n")

            # flood, on a slow machine (CPU throttled): the page's flow control (pause/resume,
            # acks) holds the server back while xterm.js catches up, so its backlog stays small
            # and Ctrl-C still reaches the shell. How fast the prompt comes back is a number for
            # benchmarks/terminal ("flood: Ctrl-C -> prompt", docs/performance.md), not for a
            # test on a shared machine.
            cdp = await context.new_cdp_session(page)
            await cdp.send("Emulation.setCPUThrottlingRate", {"rate": 6})
            await page.keyboard.type("yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789\n")
            # a real flood goes through: output keeps arriving, 2 MB of it, however long the
            # machine takes (counting it in a fixed sleep failed on a slow moment)
            await page.wait_for_function(
                "() => window.claudehub.flow.received > 2000000", timeout=PATIENCE * 1000
            )
            await page.keyboard.press("Control+C")
            await page.keyboard.type("echo done-$((2*3))\n")
            # Ctrl-C reached the flood's process: the shell answers the next command
            await wait_for_text(page, "done-6")
            await cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
            flow = await page.evaluate("() => window.claudehub.flow")
            assert flow["received"] > 2_000_000, flow
            # never more than ~1 MB (10 write callbacks of 100 kB) waiting to be drawn: the
            # send window bounds it, however slowly the page draws
            assert flow["maxPending"] <= 10, flow

            # a reload reattaches to the same shell, with the output replayed
            await page.keyboard.type("export MARK=kept-$((3*3))\n")
            await page.reload()
            await page.wait_for_selector("#status.ok")
            await wait_for_text(page, "done-6")
            await page.click("#terminal")
            await page.keyboard.type("echo $MARK\n")
            await wait_for_text(page, "kept-9")

            # exit: the page says so and offers to start again
            await page.keyboard.type("exit\n")
            await page.wait_for_selector("#exit-banner", state="visible")
            assert "exited" in await page.inner_text("#exit-text")
            await page.click("#restart")
            await page.wait_for_selector("#exit-banner", state="hidden")
            await page.click("#terminal")
            await page.keyboard.type("echo again-$((4+4))\n")
            await wait_for_text(page, "again-8")
        finally:
            await browser.close()


async def test_new_conversation_button_starts_claude_afresh(page_url: str) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 800})
            page.set_default_timeout(PATIENCE * 1000)
            dialogs: list[str] = []

            async def accept(dialog: Any) -> None:
                dialogs.append(dialog.message)
                await dialog.accept()

            page.on("dialog", accept)
            await page.goto(page_url)
            await page.wait_for_selector("#status.ok")
            await page.click("#terminal")
            await page.keyboard.type("echo old-$((5*5)) [$CLAUDEHUB_NEW_CONVERSATION]\n")
            await wait_for_text(page, "old-25 []")

            await page.get_by_role("button", name="New conversation").click()
            await page.wait_for_function(
                f"() => !({SCREEN_JS})().includes('old-25')"
            )  # the screen was reset for the new process
            assert "new conversation" in dialogs[0].lower()
            await page.wait_for_selector("#status.ok")
            assert await page.is_hidden("#exit-banner")  # the old process's end is no news
            await page.click("#terminal")
            await page.keyboard.type("echo new-$((6*6)) [$CLAUDEHUB_NEW_CONVERSATION]\n")
            await wait_for_text(page, "new-36 [1]")  # the launcher would leave out --continue
            assert await page.is_enabled("#new-conversation")
        finally:
            await browser.close()
