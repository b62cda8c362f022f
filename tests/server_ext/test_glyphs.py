"""Every glyph drawn: Claude Code's mode line and symbols in the page's terminal, in real
Chromium, with no font but the ones the extension serves.

The terminal runs the real Claude Code CLI through the launcher (against the fake upstream),
so what is checked first is what it actually printed on the page: its welcome, prompt and
mode line (``⏵⏵ don't ask on``); then the other symbols it prints elsewhere (answers, tool
results, the spinner, task lists).

Chromium runs with a fontconfig that knows no font at all, so a character the page's web
fonts lack has nothing to fall back to and is drawn as the missing-glyph box ("tofu"). Each
glyph is drawn on a canvas in the terminal's own font (``term.options.fontFamily``) and
compared with the drawing of a code point no font has: equal pixels mean a box. The control
characters (Hangul, an emoji), which the page's fonts do not cover, must come out as boxes,
so the comparison does see tofu when there is some.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.upstream import FakeAnthropic
from tests.helpers import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.slow, pytest.mark.cli]

#: What Claude Code 2.1.328 prints around its prompt, as seen in a real terminal: the mode
#: line (⏵⏵ / ⏸), the prompt and its rules, the answer and tool-result marks, the spinner,
#: the welcome logo's blocks, warnings, task lists and the other box drawing it uses.
MODE_LINE = "⏵⏵ don't ask on (shift+tab to cycle) · ⏸ manual mode on · ? for shortcuts"
GLYPHS = "⏵⏸⏺❯●⎿✻✽✶✳✢·…⚠✓✔✗✘☐☒◯◐↑↓←→─│╭╮╰╯┌┐└┘├┤━┃═║▐▛▜▌▝▘▟▙█▀▄░▒▓"
#: Not in the page's fonts (nor in Claude Code's interface): these must be detected as boxes.
CONTROL = "가✨"
#: No font has a glyph for a noncharacter: its drawing is the box.
TOFU = "\U0010fffd"

# For each character: does its drawing in the terminal's font differ from the box's?
DRAWN_JS = """([chars, tofu]) => {
  const font = window.claudehub.term.options.fontSize + "px " +
    window.claudehub.term.options.fontFamily;
  const canvas = document.createElement("canvas");
  canvas.width = 64; canvas.height = 32;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  function pixels(ch) {
    ctx.clearRect(0, 0, 64, 32);
    ctx.font = font;
    ctx.textBaseline = "top";
    ctx.fillStyle = "#000";
    ctx.fillText(ch, 4, 4);
    return Array.from(ctx.getImageData(0, 0, 64, 32).data).join(",");
  }
  const box = pixels(tofu);
  const out = {};
  for (const ch of chars) out[ch] = pixels(ch) !== box;
  return out;
}"""

SCREEN_JS = """() => {
  const b = window.claudehub.term.buffer.active;
  const lines = [];
  for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
  return lines.join("\\n");
}"""


@pytest.fixture
def page_url(jp_serverapp: Any, jp_base_url: str, http_server: Any, jp_http_port: int) -> str:
    token = jp_serverapp.identity_provider.token
    return f"http://127.0.0.1:{jp_http_port}{jp_base_url}claude?token={token}"


@pytest.fixture
def jp_server_config(claude_cli: Path, fake_upstream: FakeAnthropic, tmp_path: Path) -> Any:
    home = tmp_path / "home"
    course = home / "courses" / "glyphs"
    course.mkdir(parents=True)
    (course / "CLAUDE.md").write_text("# Tutor\n", encoding="utf-8")
    return {
        "ServerApp": {"jpserver_extensions": {"claudehub.server_ext": True}},
        "ClaudeHubApp": {
            "command": [sys.executable, "-m", "claudehub.server_ext.launcher"],
            "term_env": {
                "HOME": str(home),
                "CLAUDEHUB_COURSE_DIR": str(course),
                "CLAUDEHUB_CLAUDE_BIN": str(claude_cli),
                "ANTHROPIC_BASE_URL": fake_upstream.url,
                "ANTHROPIC_API_KEY": "chs1.glyph-test-token.0123456789abcdef",
                "ANTHROPIC_MODEL": "claude-sonnet-4-5",
                "CLAUDEHUB_SHELL_STUB": "/bin/false",
            },
        },
    }


@pytest.fixture
def no_system_fonts(tmp_path: Path) -> dict[str, str]:
    """An environment in which Chromium finds no font on the system."""
    conf = tmp_path / "fonts.conf"
    conf.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n'
        f"<fontconfig><cachedir>{tmp_path / 'fc-cache'}</cachedir></fontconfig>\n",
        encoding="utf-8",
    )
    return {"FONTCONFIG_FILE": str(conf), "HOME": str(tmp_path)}


async def test_claude_codes_glyphs_are_drawn_by_the_served_fonts(
    page_url: str, no_system_fonts: dict[str, str]
) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, env=no_system_fonts
        )
        try:
            context = await browser.new_context(viewport={"width": 1200, "height": 800})
            fonts: list[str] = []
            external: list[str] = []

            def on_request(request: Any) -> None:
                if "127.0.0.1" not in request.url:
                    external.append(request.url)
                elif "/vendor/fonts/" in request.url:
                    fonts.append(request.url.rsplit("/", 1)[-1].split("?")[0])

            context.on("request", on_request)
            page = await context.new_page()
            await page.goto(page_url)
            await page.wait_for_selector("#status.ok", state="attached")  # no UI font: no size
            assert external == []  # served by the extension: works air-gapped
            assert {"DejaVuSansMono.ttf", "noto-sans-symbols-2-symbols-400-normal.woff2"} <= set(
                fonts
            ), fonts

            # Claude Code's first screen, in the terminal: the prompt and the mode line
            await page.wait_for_function(
                f'() => ({SCREEN_JS})().includes("don\'t ask on")', timeout=60_000
            )
            screen = await page.evaluate(SCREEN_JS)
            mode_line = next(line for line in screen.splitlines() if "don't ask on" in line)
            assert "⏵⏵" in mode_line, mode_line
            printed = {c for c in screen if ord(c) > 0x7F and not c.isspace()}
            assert {"⏵", "❯", "─"} <= printed, printed

            # the terminal measured its cells in the served font, not a fallback
            family = await page.evaluate("() => window.claudehub.term.options.fontFamily")
            assert family.startswith('"ClaudeHub Mono"')
            loaded = await page.evaluate(
                "() => document.fonts.check('14px \"ClaudeHub Mono\"', 'W')"
            )
            assert loaded

            chars = sorted(printed | set(GLYPHS))
            drawn = await page.evaluate(DRAWN_JS, [chars + list(CONTROL), TOFU])
            missing = [f"{c} U+{ord(c):04X}" for c in chars if not drawn[c]]
            assert missing == [], f"drawn as a missing-glyph box: {missing}"
            # the control: characters no served font has do come out as boxes
            assert [c for c in CONTROL if drawn[c]] == []

            await page.screenshot(path=str(Path(no_system_fonts["HOME"]) / "glyphs.png"))
        finally:
            await browser.close()
