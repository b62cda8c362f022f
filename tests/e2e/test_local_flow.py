"""Issue 2's acceptance: a person logs in and talks to Claude through the key proxy."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.e2e.conftest import LocalStack
from tests.helpers import PATIENCE
from tests.local.running import server_process
from tests.terminal_page import ask, open_picker, pick_course, terminal_text, wait_for_terminal

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOT_DIR = os.environ.get("CLAUDEHUB_SCREENSHOT_DIR", "")
ANSWER = "Attention lets every token look at every other token."


def login(page, stack: LocalStack, user: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{stack.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", stack.password)
    page.click("#login_submit")
    # A new learner lands on the home page, goes to the course picker and starts a course.
    open_picker(page, stack.url, user)
    if page.locator("form#spawn_form").count():
        pick_course(page)
    page.wait_for_url(f"**/user/{user}/claude**", timeout=90_000)


def test_login_to_claude_answer(local_stack: LocalStack, browser) -> None:  # type: ignore[no-untyped-def]
    """Login page -> /user/<name>/claude -> Claude's prompt -> a question -> the answer."""
    local_stack.upstream.script(ANSWER)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(local_stack.url)
    assert page.locator("#username_input").is_visible(), "the hub's login page is shown first"

    login(page, local_stack, "alice")
    # Claude Code is at its input prompt: no onboarding, trust or API-key question.
    wait_for_terminal(page, "❯")
    text = terminal_text(page)
    for question in ("trust", "API key", "Choose the text style", "Select login method"):
        assert question not in text, f"Claude Code asked {question!r}: {text[-2000:]}"

    ask(page, "What is attention in transformers?", ANSWER)
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOT_DIR) / "claude-page.png"))

    # The question went upstream through the key proxy with the real key, and only it.
    asked = [
        r
        for r in local_stack.upstream.agent_requests()
        if "What is attention in transformers?" in r.raw.decode(errors="replace")
    ]
    assert asked, "the question never reached the upstream"
    assert local_stack.upstream.keys_seen() == {local_stack.real_key}
    page.close()

    # Nothing the hub, the key proxy, the course service or the sandbox server logged holds a
    # key, a sandbox token, the question or the answer.
    log = local_stack.log_text()
    assert "Starting service" in log or "Spawning" in log, "the log is the whole stack's"
    for secret in (local_stack.real_key, "chs1.", "What is attention in transformers?", ANSWER):
        assert secret not in log, f"{secret[:12]}... appears in the log"


def _sandbox_processes(user: str) -> list[psutil.Process]:
    """The user's single-user server and everything it started (Claude among them)."""
    pid = server_process(user)
    if pid is None:
        return []
    try:
        p = psutil.Process(pid)
        family = [p, *p.children(recursive=True)]
        return [c for c in family if c.status() != psutil.STATUS_ZOMBIE]
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return []


def _process_views(procs: list[psutil.Process]) -> list[tuple[str, dict[str, str]]]:
    """(command line, environment) of each process still alive when looked at."""
    views = []
    for p in procs:
        try:
            views.append((" ".join(p.cmdline()), p.environ()))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue  # exited meanwhile (a short-lived helper): it holds nothing any more
    return views


def test_real_key_absent_from_sandbox(local_stack: LocalStack, browser) -> None:  # type: ignore[no-untyped-def]
    """The real key is in no sandbox process's environment or command line, nor in its home."""
    page = browser.new_page()
    login(page, local_stack, "bob")
    wait_for_terminal(page, "❯")
    seen = _process_views(_sandbox_processes("bob"))
    commands = [cmd for cmd, _ in seen]
    assert len(seen) >= 2, f"expected the server and Claude, found: {commands}"
    claude = [env for cmd, env in seen if "claude" in cmd]
    assert claude, commands
    for cmd, env in seen:
        assert local_stack.real_key not in cmd
        assert local_stack.real_key not in "\n".join(f"{k}={v}" for k, v in env.items())
    assert claude[-1]["ANTHROPIC_API_KEY"].startswith("chs1."), "Claude holds a sandbox token"
    home = local_stack.state_dir / "users" / "bob"
    assert home.is_dir()
    for f in home.rglob("*"):
        if f.is_file() and not f.is_symlink():
            try:
                data = f.read_bytes()
            except FileNotFoundError:
                continue  # Claude's own atomic writes (.claude.json.tmp.*) come and go
            assert local_stack.real_key.encode() not in data, f"real key found in {f}"
    page.close()


def test_without_a_key_claude_tells_the_operator_what_to_set(
    tmp_path_factory: pytest.TempPathFactory, browser
) -> None:  # type: ignore[no-untyped-def]
    """With no real key configured, the key proxy's explanation reaches the terminal."""
    from tests.e2e.conftest import start_local_stack, stop_local_stack
    from tests.fakes.upstream import FakeAnthropic

    with FakeAnthropic() as upstream:
        stack = start_local_stack(
            tmp_path_factory.mktemp("nokey"), upstream, extra_env={"ANTHROPIC_API_KEY": ""}
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            login(page, stack, "carol")
            wait_for_terminal(page, "❯")
            ask(page, "hello?", "no Anthropic API key")
            assert upstream.message_requests() == [], "nothing may reach the upstream keyless"
            page.close()
        finally:
            stop_local_stack(stack)


def test_walk_a_stage_and_progress_survives_reload(local_stack: LocalStack, browser) -> None:  # type: ignore[no-untyped-def]
    """Read stage 1's concepts, answer its quiz wrong then right, see progress, reload."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{local_stack.url}/hub/login")
    page.fill("#username_input", "dave")
    page.fill("#password_input", local_stack.password)
    page.click("#login_submit")
    open_picker(page, local_stack.url, "dave")
    pick_course(page, "attention")
    page.wait_for_url("**/user/dave/claude**", timeout=90_000)

    page.wait_for_selector("#stage-1[open] .ch-concept-title")
    titles = page.locator("#stage-1 .ch-concept-title").all_inner_texts()
    assert "The recurrent bottleneck" in titles and "Looking back" in titles
    # Course Markdown is rendered: bold text arrives as <strong>, not as asterisks.
    assert page.locator("#stage-1 strong", has_text="one token at a time").count() == 1
    summary = page.locator("#progress-summary")
    assert summary.inner_text() == "0 of 3 stages complete"

    quiz = "#quiz-q-why"
    page.check(f"{quiz} input[value='1']")
    page.click(f"{quiz} .ch-submit")
    page.wait_for_selector(f"{quiz} .ch-feedback.ch-wrong")
    assert summary.inner_text() == "0 of 3 stages complete"

    page.check(f"{quiz} input[value='2']")
    page.click(f"{quiz} .ch-submit")
    page.wait_for_selector(f"{quiz} .ch-feedback.ch-correct")
    page.wait_for_selector("#progress-list [data-stage='1'] [data-method='quiz']")
    assert summary.inner_text() == "1 of 3 stages complete"

    page.reload()
    page.wait_for_selector("#progress-list [data-stage='1'] [data-method='quiz']")
    assert page.locator("#progress-summary").inner_text() == "1 of 3 stages complete"
    # The right answer never reached the browser: not in the page, not in any API reply.
    assert "correctAnswer" not in page.content()
    page.close()


def test_end_session_stops_the_server_and_its_token_dies(local_stack: LocalStack, browser) -> None:  # type: ignore[no-untyped-def]
    """ "End session" stops the user's server, and its sandbox token stops working in <= 60 s."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    login(page, local_stack, "erin")
    wait_for_terminal(page, "❯")
    claude = [env for cmd, env in _process_views(_sandbox_processes("erin")) if "claude" in cmd]
    token = claude[-1]["ANTHROPIC_API_KEY"]
    body = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    ok = requests.post(
        f"{local_stack.keyproxy_url}/v1/messages",
        json=body,
        headers={"x-api-key": token},
        timeout=PATIENCE,
    )
    assert ok.status_code == 200, ok.text

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#end-session")
    page.wait_for_selector("#ended-banner:not([hidden])", timeout=PATIENCE * 1000)
    deadline = time.monotonic() + PATIENCE
    while _sandbox_processes("erin") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _sandbox_processes("erin"), "the server and Claude are gone"

    deadline = time.monotonic() + 60
    while True:
        refused = requests.post(
            f"{local_stack.keyproxy_url}/v1/messages",
            json=body,
            headers={"x-api-key": token},
            timeout=PATIENCE,
        )
        if refused.status_code == 401 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert refused.status_code == 401, "the token outlived its server by more than 60 s"
    assert refused.json()["error"]["type"] == "authentication_error"
    page.close()
