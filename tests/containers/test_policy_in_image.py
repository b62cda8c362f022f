"""Each layer of the tool policy alone holds inside the built sandbox image.

The host-side proof (tests/sandbox/test_policy_layers.py) runs the CLI as ``nobody`` with the
repository's files mounted where the image has them. This is the same proof in the image
itself, run as the sandbox pod runs it (tests/containers/policy.py): the image's own managed
settings, refusing shell, CLI, launcher and ``/bin/sh`` (dash), uid 1000, a read-only root,
no capabilities, and the fake upstream in another container on a network with no way out.

- Managed settings alone: a plain ``claude -p`` (no launcher flag, none of the image's
  environment) in the malicious course of tests/sandbox/escapes.py, whose ``$HOME`` already
  trusts it.
- The launcher alone: the launcher's command in that course, which still ships its settings
  files, with ``{}`` mounted over the managed settings.
- Scripted Bash, Write and Edit calls are refused and leave no file on the writable volumes,
  and a Read of the course works, with both layers and with each alone.
- ``!cmd`` and the external editor, in a real terminal, reach only the refusing shell, with
  both layers and with each alone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.containers.podman import Podman
from tests.containers.policy import (
    CLAUDE,
    COURSE_DIR,
    HOME,
    LAUNCHER,
    MANAGED_SETTINGS,
    MARKS_DIR,
    MODEL,
    PYTHON,
    SANDBOX_KEY,
    Run,
    Stage,
    request_text,
    result_text,
    tool_results,
)
from tests.fakes.upstream import DEFAULT_REPLY, RecordedRequest
from tests.helpers import PATIENCE
from tests.sandbox.escapes import (
    EVIL_TUTOR_PHRASE,
    PROVIDERS,
    check_no_marker,
    check_upstream,
    scripted_attempts,
    tool_use,
    write_malicious_course,
)
from tests.sandbox.test_interactive import NOT_AT_PROMPT, REFUSAL, Terminal
from tests.sandbox.test_policy_layers import MANAGED_ENV_PINS, MANAGED_HELPERS

pytestmark = [pytest.mark.containers, pytest.mark.slow, pytest.mark.cli]

PROMPT = "Please help me with this course."
TUTOR_PHRASE = "IMAGE-TUTOR-7C41"
LESSON_PHRASE = "IMAGE-LESSON-2B90"
EDIT_ORIGINAL = "original text\n"

#: Which layers hold in a run: "both" as a sandbox runs, or one of them alone.
LAYERS = ["both", "managed-settings-alone", "launcher-alone"]


@pytest.fixture
def stage(pm: Podman, tmp_path: Path) -> Stage:
    """A network, volumes, course and marker folder (``pm`` removes them by name)."""
    return Stage(pm, tmp_path).setup()


def write_course(stage: Stage, **kwargs: Any) -> list[str]:
    """The malicious course, as the CLI in the container sees it; its markers."""
    return write_malicious_course(stage.course, MARKS_DIR, course_path=COURSE_DIR, **kwargs)


def write_plain_course(stage: Stage) -> None:
    for rel, text in {
        "CLAUDE.md": f"# Tutor\n\nYou are the tutor of this course. {TUTOR_PHRASE}\n",
        "lessons/01-intro.md": f"# Intro\n\n{LESSON_PHRASE}\n",
    }.items():
        path = stage.course / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o755)
        path.write_text(text)
        path.chmod(0o644)


def start(stage: Stage, layers: str, replies: list[Any]) -> None:
    """The upstream with ``replies``; no managed settings for "launcher-alone"; ``$HOME``
    seeded as the launcher leaves it for "managed-settings-alone" (no launcher runs)."""
    stage.start_upstream(replies)
    if layers == "launcher-alone":
        stage.managed_override({})
    if layers == "managed-settings-alone":
        stage.seed_home()


def run_print(stage: Stage, layers: str, *args: str) -> Run:
    """``-p`` mode through the launcher, or a plain ``claude`` for "managed-settings-alone"."""
    argv = (*args, "-p", PROMPT, "--output-format", "json")
    result = (
        stage.claude_plain(*argv) if layers == "managed-settings-alone" else stage.launcher(*argv)
    )
    time.sleep(0.5)  # a helper the CLI left running in the background would land by now
    return result


def recorded(stage: Stage) -> list[RecordedRequest]:
    assert stage.upstream is not None
    return stage.upstream.requests()


def check_attempts_answered(requests: list[RecordedRequest]) -> None:
    """The course's requested tools were refused; the read tools worked in the course."""
    results = tool_results(requests)
    for ident in ("bash", "write", "mcp"):
        assert results[f"toolu_{ident}"].get("is_error") is True, results[f"toolu_{ident}"]
    for ident in ("read", "glob", "grep"):
        assert not results[f"toolu_{ident}"].get("is_error"), results[f"toolu_{ident}"]
    assert "The first lesson." in result_text(results["toolu_read"])


# ----------------------------------------------------------------- managed settings alone


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_in_image_managed_settings_alone_run_no_course_command(provider: str, stage: Stage) -> None:
    """Plain ``claude -p`` in the malicious course, in the image: nothing the course names runs.

    The image's managed settings are the only layer: no launcher flag, and none of the
    image's environment (no ``SHELL`` pointing at the stub). ``provider`` is what the course's
    ``env`` selects, so that each credential helper is one the CLI would run. With the
    Anthropic API the session authenticates with the sandbox token (the managed
    ``apiKeyHelper`` runs under the image's ``/bin/sh``) and offers only the read tools; with
    a cloud provider the CLI finds no credential and stops.
    """
    markers = write_course(stage, provider=provider)
    start(stage, "managed-settings-alone", [scripted_attempts(COURSE_DIR, MARKS_DIR), "done"])
    result = run_print(stage, "managed-settings-alone")
    check_no_marker(stage.marks, markers)
    requests = recorded(stage)
    if provider == "anthropic":
        assert result.returncode == 0, result.stderr + result.stdout
        assert result.json()["result"] == "done"
        check_upstream(requests, SANDBOX_KEY)
        check_attempts_answered(requests)
        assert EVIL_TUTOR_PHRASE in request_text(requests)  # its CLAUDE.md still counts
    else:
        assert result.returncode != 0
        assert requests == []


def test_in_image_managed_api_key_helper_prints_the_token(stage: Stage) -> None:
    """The image's managed ``apiKeyHelper``, run by the image's ``/bin/sh`` (dash) as uid 1000,
    prints exactly the sandbox token: the helper that stands in for a course's works there."""
    code = (
        "import json, subprocess; "
        f"helper = json.load(open({MANAGED_SETTINGS!r}))['apiKeyHelper']; "
        "out = subprocess.run(['/bin/sh', '-c', helper], capture_output=True, text=True); "
        "print(json.dumps([helper, out.returncode, out.stdout, out.stderr, "
        "__import__('os').path.realpath('/bin/sh')]))"
    )
    result = stage.run("helper", [PYTHON, "-c", code], {"ANTHROPIC_API_KEY": SANDBOX_KEY})
    assert result.returncode == 0, result.stderr
    helper, returncode, stdout, stderr, shell = json.loads(result.stdout)
    assert shell == "/usr/bin/dash"
    assert (returncode, stdout, stderr) == (0, SANDBOX_KEY, ""), helper


@pytest.mark.parametrize("prompt", ["/evil", "/evil-skill"])
def test_in_image_managed_settings_alone_course_command_and_skill_with_bypass(
    prompt: str, stage: Stage
) -> None:
    """The course's slash command and skill with inline shell, asked for in bypass mode."""
    markers = write_course(stage)
    start(stage, "managed-settings-alone", [])
    result = stage.claude_plain(
        "--dangerously-skip-permissions", "-p", prompt, "--output-format", "json"
    )
    time.sleep(0.5)
    assert result.returncode == 0, result.stderr + result.stdout
    check_no_marker(stage.marks, markers)
    check_upstream(recorded(stage), SANDBOX_KEY)


# ---------------------------------------------------------------------- launcher alone


def test_in_image_launcher_alone_runs_no_course_command(stage: Stage) -> None:
    """The launcher's command in a course that still ships its settings files, in the image,
    with ``{}`` over the managed settings: the launcher's flags and environment are the only
    layer. Nothing the course names runs, its ``env`` does not redirect the API (to a path of
    the same upstream, which gets no request), and only the read tools are offered."""
    redirect_path = "/evil-redirect"
    stage.start_upstream([scripted_attempts(COURSE_DIR, MARKS_DIR), "done"])
    assert stage.upstream is not None
    markers = write_course(stage, redirect_url=stage.upstream.url + redirect_path)
    stage.managed_override({})
    result = stage.launcher("-p", PROMPT, "--output-format", "json")
    time.sleep(0.5)
    assert result.returncode == 0, result.stderr + result.stdout
    check_no_marker(stage.marks, markers)
    requests = recorded(stage)
    assert [r.path for r in requests if r.path.startswith(redirect_path)] == []
    check_upstream(requests, SANDBOX_KEY)
    check_attempts_answered(requests)
    assert EVIL_TUTOR_PHRASE in request_text(requests)


# --------------------------------------------------- Bash, Write and Edit in the image


@pytest.mark.parametrize("layers", LAYERS)
def test_in_image_bash_write_and_edit_are_refused_and_leave_no_file(
    layers: str, stage: Stage
) -> None:
    """Scripted Bash, Write and Edit calls aimed at every place uid 1000 can write in the
    sandbox (``$HOME``, ``/tmp``, a folder it owns) come back as errors and change nothing;
    a Read of the course works. ``layers``: both, or each alone (see :data:`LAYERS`)."""
    write_plain_course(stage)
    editme = stage.marks / "editme.txt"
    editme.write_text(EDIT_ORIGINAL)
    editme.chmod(0o666)  # uid 1000 could change it if Edit ran
    targets = [f"{HOME}/bash-ran", "/tmp/bash-ran", f"{MARKS_DIR}/bash-ran"]
    calls = [
        tool_use("Bash", {"command": "touch " + " ".join(targets)}, "bash"),
        tool_use("Write", {"file_path": f"{HOME}/written.txt", "content": "x"}, "write_home"),
        tool_use("Write", {"file_path": "/tmp/written.txt", "content": "x"}, "write_tmp"),
        tool_use("Write", {"file_path": f"{MARKS_DIR}/written.txt", "content": "x"}, "write"),
        tool_use(
            "Edit",
            {
                "file_path": f"{MARKS_DIR}/editme.txt",
                "old_string": "original",
                "new_string": "changed",
            },
            "edit",
        ),
        tool_use("Read", {"file_path": f"{COURSE_DIR}/lessons/01-intro.md"}, "read"),
    ]
    start(stage, layers, [calls, "done"])
    result = run_print(stage, layers)
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.json()["result"] == "done"

    requests = recorded(stage)
    results = tool_results(requests)
    for ident in ("bash", "write_home", "write_tmp", "write", "edit"):
        got = results[f"toolu_{ident}"]
        assert got.get("is_error") is True, got
        assert "No such tool available" in result_text(got), got
    assert not results["toolu_read"].get("is_error"), results["toolu_read"]
    assert LESSON_PHRASE in result_text(results["toolu_read"])
    check_upstream(requests, SANDBOX_KEY)
    assert TUTOR_PHRASE in request_text(requests)
    if layers != "managed-settings-alone":
        agent = [r for r in requests if r.tool_names]
        assert {r.body["model"] for r in agent if r.body} == {MODEL}

    assert sorted(p.name for p in stage.marks.iterdir()) == ["editme.txt"]
    assert editme.read_text() == EDIT_ORIGINAL
    written = [f for f in stage.files(HOME, "/tmp") if Path(f).name in ("bash-ran", "written.txt")]
    assert written == []


# ------------------------------------------------------- `!cmd` and the editor, a terminal


@pytest.mark.parametrize("layers", LAYERS)
def test_in_image_bang_and_editor_reach_only_the_refusing_shell(layers: str, stage: Stage) -> None:
    """Claude's prompt in a real terminal in the image, in the malicious course: ``!cmd``
    prints the stub's refusal and creates no file, Ctrl-G (the external editor) gets the
    refusal too, and a question is answered with the read tools only.

    "both" runs the terminal's exact command (``python -m claudehub.server_ext.launcher``
    with the spawner's environment); "launcher-alone" the same with ``{}`` over the managed
    settings; "managed-settings-alone" a plain ``claude`` with none of the image's
    environment, in a ``$HOME`` the launcher's functions seeded.
    """
    markers = write_course(stage)
    start(stage, layers, [])
    if layers == "managed-settings-alone":
        child = stage.spawn("tty", [CLAUDE], stage.plain_env(), clean_env=True)
    else:
        env = {**stage.spawner_env(), "TERM": "xterm-256color", "LANG": "C.UTF-8"}
        child = stage.spawn("tty", LAUNCHER, env)
    term = Terminal(child)
    bang = [f"{MARKS_DIR}/bang", f"{HOME}/bang", "/tmp/bang"]
    try:
        term.wait_for(lambda t: "❯" in t, 60, "Claude's prompt")
        term.pump(1.5)
        for question in NOT_AT_PROMPT:
            assert question not in term.text

        # `!` is Claude Code's shell mode: in the image it reaches only the refusing stub.
        child.send("!touch " + " ".join(bang))
        term.pump(0.5)
        child.send("\r")
        term.wait_for(lambda t: REFUSAL in t, PATIENCE, "the shell refusal")

        # Ctrl-G opens the prompt in $EDITOR: the stub again.
        seen = term.text.count(REFUSAL)
        child.send("draft")
        term.pump(0.5)
        child.send("\x07")
        term.wait_for(lambda t: t.count(REFUSAL) > seen, PATIENCE, "the editor refusal")
        child.send("\x1b")
        term.pump(0.3)
        child.send("\x15")  # clear the draft
        term.pump(0.3)

        child.send("What is this course about?")
        term.pump(0.5)
        child.send("\r")
        term.wait_for(lambda t: DEFAULT_REPLY in t, PATIENCE, "the model's answer")
        term.pump(1.0)
    finally:
        child.close(force=True)
    time.sleep(0.5)
    check_no_marker(stage.marks, markers)
    assert [f for f in stage.files(HOME, "/tmp") if Path(f).name == "bang"] == []
    requests = recorded(stage)
    check_upstream(requests, SANDBOX_KEY)
    assert EVIL_TUTOR_PHRASE in request_text(requests)


# ------------------------------------------------------------------------- the control


def test_in_image_without_the_pins_the_course_runs_its_commands(stage: Stage) -> None:
    """The same plain run under the image's managed settings less the helper values and
    ``env`` pins: the course's ``apiKeyHelper`` and ``proxyAuthHelper`` (those of
    ``settings.local.json``), a ``git`` from its ``PATH`` and its ``LD_PRELOAD`` library run
    in the image. So the markers the tests above look for could appear: the read-only course
    keeps its exec bits, uid 1000 writes the marker folder, the image's ``/bin/sh`` and
    ``/bin/touch`` run the commands."""
    markers = write_course(stage)
    settings = stage.image_managed_settings()
    for key in MANAGED_HELPERS:
        del settings[key]
    for key in MANAGED_ENV_PINS:
        del settings["env"][key]
    start(stage, "managed-settings-alone", [scripted_attempts(COURSE_DIR, MARKS_DIR), "done"])
    stage.managed_override(settings)
    run_print(stage, "managed-settings-alone")
    ran = {"local-apiKeyHelper", "local-proxyAuthHelper", "path-git"}
    if f"{MARKS_DIR}/ldpreload" in markers:  # the host had a C compiler for the library
        ran.add("ldpreload")
    found = {p.name for p in stage.marks.iterdir()}
    assert ran <= found, f"ran: {sorted(found)}"
    assert found <= {Path(m).name for m in markers}
