"""The launcher: what it writes (only under $HOME), what it runs, and what it never prints."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from claudehub.server_ext import launcher
from claudehub.server_ext.launcher import (
    ALLOWED_TOOLS,
    build_claude_json,
    build_command,
    build_system_prompt,
    read_resume_hint,
)

KEY = "chs1.eyJ1c2VyIjoiYWxpY2UifQ.c2lnbmF0dXJlLXRoYXQtaXMtbG9uZw"

# Stands in for the CLI binary to record exactly what the launcher execs.
RECORDER = """#!{python}
import json, os, signal, sys
with open(os.environ["RECORD_TO"], "w") as f:
    json.dump({{
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "sigint_default": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
    }}, f)
"""


def test_claude_json_from_nothing(tmp_path: Path) -> None:
    data = build_claude_json(None, course_dir=str(tmp_path), api_key=KEY)
    assert data["hasCompletedOnboarding"] is True
    assert data["theme"] == "dark"
    assert data["customApiKeyResponses"] == {"approved": [KEY[-20:]], "rejected": []}
    project = data["projects"][str(tmp_path)]
    assert project["hasTrustDialogAccepted"] is True
    assert project["hasCompletedProjectOnboarding"] is True
    assert KEY not in json.dumps(data)


def test_claude_json_keeps_claudes_own_state(tmp_path: Path) -> None:
    course = str(tmp_path)
    existing: dict[str, Any] = {
        "numStartups": 7,
        "theme": "light",
        "userID": "abc",
        "customApiKeyResponses": {"approved": ["old-key-suffix"], "rejected": [KEY[-20:]]},
        "projects": {
            course: {"history": [{"display": "what is attention?"}], "lastCost": 0.1},
            "/elsewhere": {"hasTrustDialogAccepted": False, "history": [{"display": "hi"}]},
        },
    }
    data = build_claude_json(existing, course_dir=course, api_key=KEY)
    assert data["numStartups"] == 7 and data["userID"] == "abc"
    assert data["theme"] == "light"  # the learner's choice stays
    assert data["customApiKeyResponses"] == {
        "approved": ["old-key-suffix", KEY[-20:]],
        "rejected": [],
    }
    assert data["projects"][course]["history"] == [{"display": "what is attention?"}]
    assert data["projects"][course]["lastCost"] == 0.1
    assert data["projects"]["/elsewhere"] == existing["projects"]["/elsewhere"]
    assert existing["projects"][course] == {
        "history": [{"display": "what is attention?"}],
        "lastCost": 0.1,
    }  # the input is not mutated
    again = build_claude_json(data, course_dir=course, api_key=KEY)
    assert again == data  # idempotent


def test_claude_json_trusts_the_real_path_too(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    data = build_claude_json(None, course_dir=str(link), api_key=None)
    assert {str(link), str(real)} <= set(data["projects"])
    assert "customApiKeyResponses" not in data


def test_command_is_read_only_and_passes_the_model() -> None:
    argv = build_command(
        claude_bin="/opt/claude", course_dir="/course", model="claude-x", system_prompt="P"
    )
    assert argv[0] == "/opt/claude"
    assert argv[argv.index("--tools") + 1] == "Read,Glob,Grep" == ",".join(ALLOWED_TOOLS)
    assert argv[argv.index("--setting-sources") + 1] == ""
    assert argv[argv.index("--permission-mode") + 1] == "dontAsk"
    assert argv[argv.index("--add-dir") + 1] == "/course"
    assert argv[argv.index("--model") + 1] == "claude-x"
    assert argv[argv.index("--append-system-prompt") + 1] == "P"
    assert {"--restricted", "--strict-mcp-config"} <= set(argv)
    for widening in ("--dangerously-skip-permissions", "--allowedTools", "--mcp-config"):
        assert widening not in argv
    assert "--model" not in build_command(claude_bin="c", course_dir="/c")


def test_a_cli_js_runs_on_node() -> None:
    argv = build_command(claude_bin="/x/cli.js", course_dir="/c")
    assert Path(argv[0]).name == "node" and argv[1] == "/x/cli.js"


def test_system_prompt_says_read_only_and_where_progress_lives() -> None:
    prompt = build_system_prompt("stage 3")
    assert "read-only" in prompt
    assert ".learner/progress.json" in prompt and "never try to create or update it" in prompt
    assert prompt.endswith("Where the learner is resuming: stage 3")
    assert "resuming" not in build_system_prompt("  ")
    assert len(build_system_prompt("x" * 10_000)) < len(launcher.READ_ONLY_PROMPT) + 2100


def test_resume_hint_sources(tmp_path: Path) -> None:
    course = tmp_path / "course"
    (course / ".learner").mkdir(parents=True)
    assert read_resume_hint({}, str(course)) == ""
    (course / ".learner" / "RESUME.md").write_text("Stage 2 next.\n")
    assert read_resume_hint({}, str(course)) == "Stage 2 next."
    hint_file = tmp_path / "hint.txt"
    hint_file.write_text("from the file")
    env = {"CLAUDEHUB_RESUME_HINT_FILE": str(hint_file)}
    assert read_resume_hint(env, str(course)) == "from the file"
    env["CLAUDEHUB_RESUME_HINT"] = "from the env"
    assert read_resume_hint(env, str(course)) == "from the env"


def _tree(path: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(path)): (p.stat().st_mode, p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
    }


@pytest.fixture
def recorder(tmp_path: Path) -> Path:
    script = tmp_path / "bin" / "claude"
    script.parent.mkdir()
    script.write_text(RECORDER.format(python=sys.executable))
    script.chmod(0o755)
    return script


def test_launcher_execs_the_cli_in_the_course_and_writes_only_home(
    tmp_path: Path, recorder: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    course = tmp_path / "course"
    (course / ".learner").mkdir(parents=True)
    (course / "CLAUDE.md").write_text("# tutor\n")
    (course / ".learner" / "RESUME.md").write_text("Resume at stage 4.")
    (home / ".claude.json").write_text(json.dumps({"projects": {"/old": {"history": [1]}}}))
    course_before = _tree(course)
    record = tmp_path / "record.json"
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "CLAUDEHUB_COURSE_DIR": str(course),
        "CLAUDEHUB_CLAUDE_BIN": str(recorder),
        "ANTHROPIC_MODEL": "claude-test-model",
        "ANTHROPIC_API_KEY": KEY,
        "RECORD_TO": str(record),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "claudehub.server_ext.launcher", "--log-level=DEBUG"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        # As a server started from a non-interactive shell would hand it down.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert KEY not in proc.stdout + proc.stderr
    rec = json.loads(record.read_text())
    assert rec["cwd"] == str(course)
    assert rec["argv"][0] == str(recorder)
    assert rec["argv"][rec["argv"].index("--model") + 1] == "claude-test-model"
    assert rec["argv"][rec["argv"].index("--tools") + 1] == "Read,Glob,Grep"
    assert "Resume at stage 4." in rec["argv"][rec["argv"].index("--append-system-prompt") + 1]
    assert rec["env"]["ANTHROPIC_API_KEY"] == KEY  # the CLI needs it; nobody else sees it
    assert rec["env"]["CLAUDE_CODE_SHELL"] == launcher.DEFAULT_SHELL_STUB
    assert rec["sigint_default"] is True

    # Wrote ~/.claude.json only (atomically: no temporary file left), mode 0600, merged.
    assert _tree(course) == course_before
    assert sorted(os.listdir(home)) == [".claude.json"]
    config_path = home / ".claude.json"
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
    config = json.loads(config_path.read_text())
    assert config["projects"]["/old"] == {"history": [1]}
    assert config["projects"][str(course)]["hasTrustDialogAccepted"] is True
    assert KEY not in config_path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bin",
        "course",
        "home",
        "record.json",
    ]


def test_unreadable_claude_json_is_set_aside(tmp_path: Path, recorder: Path) -> None:
    (tmp_path / ".claude.json").write_text("{not json")
    app = launcher.Launcher(course_dir="", claude_bin=str(recorder), api_key=KEY)
    argv, _env, cwd = app.prepare({"HOME": str(tmp_path)})
    assert cwd == str(tmp_path)  # no course: start in $HOME
    assert argv[argv.index("--add-dir") + 1] == str(tmp_path)
    names = sorted(os.listdir(tmp_path))
    assert ".claude.json" in names
    aside = [n for n in names if n.startswith(".claude.json.unreadable-")]
    assert len(aside) == 1 and (tmp_path / aside[0]).read_text() == "{not json"


def test_missing_course_folder_falls_back_to_home(tmp_path: Path, recorder: Path) -> None:
    app = launcher.Launcher(course_dir=str(tmp_path / "nope"), claude_bin=str(recorder))
    _argv, _env, cwd = app.prepare({"HOME": str(tmp_path)})
    assert cwd == str(tmp_path)


# -- the managed settings' env: one list of switches --------------------------------------------

PACKAGED = Path(launcher.__file__).with_name("managed-settings.json")


def test_the_cli_gets_every_managed_switch_from_the_one_list() -> None:
    switches = json.loads(PACKAGED.read_text())["env"]
    env = launcher.build_env(
        {"PATH": "/usr/bin", "HOME": "/h"},
        managed_env=launcher.load_managed_env(PACKAGED),
        shell_stub="/stub",
    )
    for name, value in switches.items():
        if name in launcher.LAYOUT_VARIABLES:
            continue
        assert env[name] == value, name
    # the two the hand-made copy missed, which made local mode clone a marketplace
    assert env["CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL"] == "1"
    assert env["CLAUDE_CODE_DISABLE_BACKGROUND_TASKS"] == "1"
    # the image's layout is not forced on the server: its PATH stays, the stub is the trait's
    assert env["PATH"] == "/usr/bin"
    assert {env[n] for n in launcher.SHELL_VARIABLES} == {"/stub"}


def test_no_switch_is_written_down_twice() -> None:
    """With an empty managed env, the launcher adds none of the switches by itself."""
    env = launcher.build_env({}, managed_env={}, shell_stub="")
    assert env == {"CLAUDE_CODE_ADDITIONAL_DIRECTORIES_CLAUDE_MD": "1"}


def test_the_switches_come_from_the_packaged_copy_unless_configured(tmp_path: Path) -> None:
    assert launcher.Launcher().managed_settings == str(PACKAGED)
    custom = tmp_path / "managed.json"
    custom.write_text(json.dumps({"env": {"DISABLE_TELEMETRY": "1", "EXTRA_SWITCH": "on"}}))
    app = launcher.Launcher(managed_settings=str(custom), claude_bin="claude")
    _argv, env, _cwd = app.prepare({"HOME": str(tmp_path)})
    assert env["EXTRA_SWITCH"] == "on" and "CLAUDE_CODE_DISABLE_BACKGROUND_TASKS" not in env


@pytest.mark.parametrize(
    ("text", "what"),
    [("{nope", "cannot read"), ('{"env": {"A": 1}}', "no valid env"), ("[]", "no valid env")],
)
def test_a_broken_managed_settings_file_stops_the_launch_in_one_line(
    tmp_path: Path, recorder: Path, text: str, what: str
) -> None:
    bad = tmp_path / "managed.json"
    bad.write_text(text)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "claudehub.server_ext.launcher",
            f"--Launcher.managed_settings={bad}",
            f"--Launcher.claude_bin={recorder}",
        ],
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "RECORD_TO": str(tmp_path / "r")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 78
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and what in lines[0] and str(bad) in lines[0], proc.stderr
    assert not (tmp_path / "r").exists()  # the CLI did not start


# -- continuing the course's conversation ---------------------------------------------------------


def _save_conversation(home: Path, cwd: str) -> Path:
    folder = home / ".claude" / "projects" / launcher.project_slug(cwd)
    folder.mkdir(parents=True)
    session = folder / "7a37bec1-0140-41f2-ac41-a287ea50169a.jsonl"
    session.write_text('{"type":"user"}\n')
    return session


def test_project_slug_is_claude_codes_folder_name() -> None:
    # as the pinned CLI named it for /tmp/gl-vai0eod6/my_course.v2
    assert launcher.project_slug("/tmp/gl-vai0eod6/my_course.v2") == "-tmp-gl-vai0eod6-my-course-v2"


def test_continue_only_when_the_course_has_a_conversation(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    course = tmp_path / "courses" / "attention"
    other = tmp_path / "courses" / "rnn"
    course.mkdir(parents=True)
    other.mkdir()

    def argv(course_dir: Path, **environ: str) -> list[str]:
        app = launcher.Launcher(course_dir=str(course_dir), claude_bin="claude")
        got, env, _cwd = app.prepare({"HOME": str(home), **environ})
        assert launcher.NEW_CONVERSATION_ENV not in env  # for this start only
        return got

    # nothing saved yet: `--continue` would exit with "No conversation found to continue"
    assert "--continue" not in argv(course)
    _save_conversation(home, str(course))
    assert "--continue" in argv(course)
    assert "--continue" not in argv(other)  # another course has its own history
    assert "--continue" not in argv(course, CLAUDEHUB_NEW_CONVERSATION="1")
    assert "--continue" in argv(course, CLAUDEHUB_NEW_CONVERSATION="0")


def test_a_session_file_without_a_message_is_no_conversation(tmp_path: Path) -> None:
    """The pinned CLI's `--continue` exits ("No conversation found to continue") for these."""
    session = _save_conversation(tmp_path, "/srv/course/x")
    assert launcher.has_conversation(tmp_path, "/srv/course/x")
    for text in ("", '{"type":"summary","summary":"x","leafUuid":"a"}\n', "not json\n"):
        session.write_text(text)
        assert not launcher.has_conversation(tmp_path, "/srv/course/x"), text
    assert not launcher.has_conversation(tmp_path / "missing", "/srv/course/x")


def test_the_token_goes_through_the_managed_key_helper_where_there_is_one(
    tmp_path: Path,
) -> None:
    with_helper = tmp_path / "managed.json"
    with_helper.write_text(json.dumps({"apiKeyHelper": "printf %s x", "env": {}}))
    assert launcher.has_key_helper(with_helper)
    assert not launcher.has_key_helper(tmp_path / "missing.json")
    environ = {"HOME": str(tmp_path), "ANTHROPIC_API_KEY": KEY}

    app = launcher.Launcher(claude_bin="claude", key_from_helper=True)
    _argv, env, _cwd = app.prepare(environ)
    # one way in: Claude Code warns when it has both a key helper and ANTHROPIC_API_KEY
    assert "ANTHROPIC_API_KEY" not in env
    assert env[launcher.SANDBOX_TOKEN_ENV] == KEY

    app = launcher.Launcher(claude_bin="claude", key_from_helper=False)  # local mode
    _argv, env, _cwd = app.prepare(environ)
    assert env["ANTHROPIC_API_KEY"] == KEY and launcher.SANDBOX_TOKEN_ENV not in env
    assert KEY not in (tmp_path / ".claude.json").read_text()
