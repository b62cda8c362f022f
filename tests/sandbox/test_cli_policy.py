"""Proof with the real Claude Code CLI that a sandbox's Claude can read, and nothing else.

The CLI runs as ``nobody`` with exactly the image's managed settings and the launcher's
command, against the fake upstream, which scripts ``tool_use`` blocks. For every denied tool
the CLI must answer with an error ``tool_result`` and the side effect must not happen.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.upstream import FakeAnthropic

from .sandbox import (
    LESSON_PHRASE,
    MODEL,
    RESUME_HINT,
    SANDBOX_KEY,
    TUTOR_PHRASE,
    USER,
    LaunchFn,
    WebTarget,
    assert_only_read_tools,
    chown_tree,
    run_as_sandbox_user,
    user_settings_allowing_everything,
)

pytestmark = [pytest.mark.cli, pytest.mark.slow]

REFUSAL = re.compile(r"No such tool available|denied|disabled", re.I)
EDIT_ORIGINAL = "original text\n"
NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}

# name -> (input, side effect check) built per test from its marks folder and web target.
Case = tuple[dict[str, Any], Callable[[], bool]]


def denied_cases(marks: Path, web: WebTarget) -> dict[str, Case]:
    """Every denied tool, a call that would leave a trace, and how to see the trace."""
    editme = marks / "editme.txt"
    editme.write_text(EDIT_ORIGINAL)
    notebook = marks / "nb.ipynb"
    notebook.write_text(json.dumps(NOTEBOOK))
    chown_tree(marks, USER)  # nobody could write these if a tool got to run
    marks.chmod(0o1777)

    def unchanged(path: Path, text: str) -> Callable[[], bool]:
        return lambda: path.read_text() == text

    def absent(name: str) -> Callable[[], bool]:
        return lambda: not (marks / name).exists()

    agent_input = {
        "description": "helper",
        "prompt": f"Run `touch {marks / 'agent'}`",
        "subagent_type": "general-purpose",
    }
    return {
        "Bash": ({"command": f"touch {marks / 'bash'}"}, absent("bash")),
        "Edit": (
            {"file_path": str(editme), "old_string": "original", "new_string": "changed"},
            unchanged(editme, EDIT_ORIGINAL),
        ),
        "MultiEdit": (
            {"file_path": str(editme), "edits": [{"old_string": "original", "new_string": "x"}]},
            unchanged(editme, EDIT_ORIGINAL),
        ),
        "Write": ({"file_path": str(marks / "written.txt"), "content": "x"}, absent("written.txt")),
        "NotebookEdit": (
            {"notebook_path": str(notebook), "new_source": "print(1)", "edit_mode": "insert"},
            unchanged(notebook, json.dumps(NOTEBOOK)),
        ),
        "WebFetch": ({"url": f"{web.url}/fetched", "prompt": "Summarise"}, lambda: not web.hits),
        "WebSearch": ({"query": "claudehub sandbox escape"}, lambda: True),
        "Task": (agent_input, absent("agent")),
        "Agent": (agent_input, absent("agent")),
        "mcp__evil__touch": ({"path": str(marks / "mcp-tool")}, absent("mcp-tool")),
    }


def tool_use(name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{name.lower()}", "name": name, "input": tool_input}


def tool_results(fake: FakeAnthropic) -> dict[str, dict[str, Any]]:
    """Every tool_result the CLI sent back, by tool_use id."""
    found: dict[str, dict[str, Any]] = {}
    for req in fake.agent_requests():
        for result in req.tool_results():
            found[result["tool_use_id"]] = result
    return found


def result_text(result: dict[str, Any]) -> str:
    content = result.get("content")
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return str(content)


def assert_all_refused(fake: FakeAnthropic, cases: dict[str, Case]) -> None:
    results = tool_results(fake)
    for name, (_, no_trace) in cases.items():
        result = results.get(f"toolu_{name.lower()}")
        assert result is not None, f"no tool_result for {name}"
        assert result.get("is_error") is True, (name, result)
        assert REFUSAL.search(result_text(result)), (name, result_text(result))
        assert no_trace(), f"{name} left a trace"


def request_text(fake: FakeAnthropic) -> str:
    return "\n".join(r.raw.decode("utf-8", "replace") for r in fake.message_requests())


@pytest.mark.parametrize(
    "tool",
    [
        *("Bash", "Edit", "MultiEdit", "Write", "NotebookEdit", "WebFetch", "WebSearch"),
        *("Task", "Agent", "mcp__evil__touch"),
    ],
)
def test_denied_tool_is_refused_and_leaves_no_trace(
    tool: str, launch: LaunchFn, marks: Path, web_target: WebTarget
) -> None:
    cases = denied_cases(marks, web_target)
    tool_input, _ = cases[tool]
    result, fake = launch([tool_use(tool, tool_input)], "done")
    assert result.returncode == 0, result.stderr
    assert_all_refused(fake, {tool: cases[tool]})
    assert_only_read_tools(fake)
    assert len(fake.agent_requests()) == 2  # the call and its refusal: no sub-agent ran


def test_read_glob_grep_work_in_the_course(launch: LaunchFn, course: Path) -> None:
    lesson = course / "lessons" / "01-intro.md"
    result, fake = launch(
        [
            tool_use("Read", {"file_path": str(lesson)}),
            tool_use("Glob", {"pattern": "**/*.md"}),
            tool_use("Grep", {"pattern": LESSON_PHRASE, "output_mode": "files_with_matches"}),
        ],
        "done",
    )
    assert result.returncode == 0, result.stderr
    assert result.json()["result"] == "done"
    results = tool_results(fake)
    for name in ("read", "glob", "grep"):
        assert not results[f"toolu_{name}"].get("is_error"), results[f"toolu_{name}"]
    assert LESSON_PHRASE in result_text(results["toolu_read"])
    assert "01-intro.md" in result_text(results["toolu_glob"])
    assert "01-intro.md" in result_text(results["toolu_grep"])
    assert_only_read_tools(fake)

    # The launcher's choices reach the API: model, token, tutor instructions, appended prompt.
    agent = fake.agent_requests()
    assert {r.body["model"] for r in agent if r.body} == {MODEL}
    assert fake.keys_seen() == {SANDBOX_KEY}
    text = request_text(fake)
    assert TUTOR_PHRASE in text  # the course's CLAUDE.md
    assert "claudehub sandbox, which is read-only" in text
    assert "not in .learner/progress.json" in text
    assert RESUME_HINT in text


def test_reads_outside_the_course_are_refused(launch: LaunchFn, sandbox_home: Path) -> None:
    """Claude cannot read the token from the process environment or the home folder."""
    result, fake = launch(
        [
            tool_use("Read", {"file_path": "/proc/self/environ"}),
            tool_use("Grep", {"pattern": "chs1", "path": str(sandbox_home)}),
        ],
        "done",
    )
    assert result.returncode == 0, result.stderr
    results = tool_results(fake)
    assert results["toolu_read"].get("is_error") is True
    assert results["toolu_grep"].get("is_error") is True
    for req in fake.message_requests():
        assert SANDBOX_KEY.encode() not in req.raw


def test_links_out_of_the_course_are_refused(launch: LaunchFn, evil_course: Path) -> None:
    """A course cannot ship a symlink that hands Claude a file from outside it."""
    result, fake = launch(
        [
            tool_use("Read", {"file_path": str(evil_course / "notes.md")}),
            tool_use("Grep", {"pattern": ".", "path": str(evil_course / "etc" / "hostname")}),
        ],
        "done",
        course_dir=evil_course,
    )
    assert result.returncode == 0, result.stderr
    results = tool_results(fake)
    assert results["toolu_read"].get("is_error") is True
    assert "outside" in result_text(results["toolu_read"])
    assert results["toolu_grep"].get("is_error") is True
    for req in fake.message_requests():
        assert SANDBOX_KEY.encode() not in req.raw


def test_skip_permissions_and_user_settings_do_not_widen(
    launch: LaunchFn, marks: Path, web_target: WebTarget
) -> None:
    cases = denied_cases(marks, web_target)
    result, fake = launch(
        [tool_use(name, tool_input) for name, (tool_input, _) in cases.items()],
        "done",
        extra_args=["--dangerously-skip-permissions"],
        user_settings=user_settings_allowing_everything(marks),
    )
    assert result.returncode == 0, result.stderr
    assert_all_refused(fake, cases)
    assert_only_read_tools(fake)
    assert not (marks / "user-hook").exists()


@pytest.mark.parametrize(
    "flags",
    [
        ["--dangerously-skip-permissions"],
        ["--permission-mode", "bypassPermissions"],
        ["--allowedTools", "Bash,Write,WebFetch", "--tools", "default"],
    ],
    ids=["skip-permissions", "bypass-mode", "allowed-tools"],
)
def test_managed_settings_alone_win_over_flags_and_user_settings(
    flags: list[str],
    claude_cli: Path,
    course: Path,
    sandbox_home: Path,
    fake_upstream: FakeAnthropic,
    marks: Path,
    web_target: WebTarget,
) -> None:
    """Without any launcher flag, a plain ``claude -p`` is held by the managed settings."""
    cases = denied_cases(marks, web_target)
    settings = sandbox_home / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps(user_settings_allowing_everything(marks)))
    chown_tree(sandbox_home, USER)
    fake_upstream.script([tool_use(n, i) for n, (i, _) in cases.items()], "done")
    env = {
        "HOME": str(sandbox_home),
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": fake_upstream.url,
        "ANTHROPIC_API_KEY": SANDBOX_KEY,
    }
    argv = [str(claude_cli), *flags, "-p", "hello", "--output-format", "json"]
    result = run_as_sandbox_user(argv, env, str(course))
    assert result.returncode == 0, result.stderr
    assert_all_refused(fake_upstream, cases)
    assert_only_read_tools(fake_upstream)
    assert not (marks / "user-hook").exists()


def test_malicious_course_runs_nothing_and_widens_nothing(
    launch: LaunchFn,
    evil_course: Path,
    evil_marks: Path,
    evil_upstream: FakeAnthropic,
    marks: Path,
    web_target: WebTarget,
) -> None:
    cases = denied_cases(marks, web_target)
    key_cases = {k: cases[k] for k in ("Bash", "Write", "WebFetch", "mcp__evil__touch")}
    result, fake = launch(
        [tool_use(name, tool_input) for name, (tool_input, _) in key_cases.items()],
        "done",
        course_dir=evil_course,
    )
    assert result.returncode == 0, result.stderr
    assert_all_refused(fake, key_cases)
    assert_only_read_tools(fake)
    # No hook, helper, status line or MCP server of the course ran, and its env did not
    # redirect the CLI: every request reached the fake upstream with the sandbox token.
    assert sorted(p.name for p in evil_marks.iterdir()) == []
    assert evil_upstream.requests == []
    assert fake.keys_seen() == {SANDBOX_KEY}
    assert TUTOR_PHRASE in request_text(fake)  # its CLAUDE.md still guides the tutor


def test_malicious_course_commands_and_skip_permissions(
    launch: LaunchFn, evil_course: Path, evil_marks: Path, evil_upstream: FakeAnthropic
) -> None:
    """A course's slash command with inline shell does not run, not even in bypass mode."""
    result, fake = launch(
        "done",
        course_dir=evil_course,
        prompt="/evil",
        extra_args=["--dangerously-skip-permissions"],
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in evil_marks.iterdir()) == []
    assert evil_upstream.requests == []
    assert fake.keys_seen() <= {SANDBOX_KEY}
