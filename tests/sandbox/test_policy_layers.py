"""Each layer of the tool policy alone runs no command a course folder names.

The course is :func:`tests.sandbox.escapes.write_malicious_course`: both settings files with
every command-valued key, hooks for every event, a plugin, an MCP server, programs on its
own ``PATH``, a ``LD_PRELOAD`` library, git configuration, inline shell in a command, a skill
and an agent. Each command would leave a marker file.

- Managed settings alone: a plain ``claude`` (no launcher flag), as nobody, in that course,
  with a ``$HOME`` that already trusts it (as the launcher leaves it), in print mode and in a
  real terminal.
- Launcher alone: the launcher's exact command in a course that still ships its
  ``.claude/settings*.json``, with the repository's managed settings and with none.
- The control: the same plain run under the managed settings without the keys this file
  adds shows that those keys are what stops the course's helpers.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from claudehub.server_ext.launcher import build_claude_json, write_claude_json
from tests.fakes.upstream import DEFAULT_REPLY, FakeAnthropic
from tests.helpers import PATIENCE

from .escapes import (
    COMMAND_KEYS,
    EVIL_TUTOR_PHRASE,
    PROVIDERS,
    SETTINGS_FILES,
    check_no_marker,
    check_upstream,
    make_marker_dir,
    markers_found,
    scripted_attempts,
    write_malicious_course,
)
from .sandbox import (
    MANAGED_SETTINGS,
    SANDBOX_KEY,
    USER,
    Result,
    chown_tree,
    make_world_dir,
    prepare_launch,
    run_as_sandbox_user,
)
from .test_interactive import NOT_AT_PROMPT, cli_in_a_terminal

pytestmark = [pytest.mark.cli, pytest.mark.slow]

PROMPT = "Please help me with this course."

#: What managed-settings.json holds against a course's own settings, beyond its tool policy:
#: a value for every credential helper the CLI would otherwise take from the course, and
#: ``env`` values a course's ``env`` block cannot replace.
MANAGED_HELPERS = (
    *("apiKeyHelper", "awsAuthRefresh", "awsCredentialExport", "gcpAuthRefresh"),
    *("otelHeadersHelper", "proxyAuthHelper"),
)
MANAGED_ENV_PINS = ("SHELL", "PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "GCONV_PATH")


@dataclass
class World:
    """A malicious course, its marker folder and a ``$HOME`` for nobody, all under /tmp."""

    root: Path
    course: Path
    marks: Path
    home: Path

    def write_course(self, **kwargs: Any) -> list[str]:
        return write_malicious_course(self.course, str(self.marks), **kwargs)

    def trust_course(self) -> None:
        """``$HOME`` as the launcher leaves it: course trusted, the token's answer stored."""
        data = build_claude_json(None, course_dir=str(self.course), api_key=SANDBOX_KEY)
        write_claude_json(self.home, data)
        chown_tree(self.home, USER)


@pytest.fixture
def world() -> Iterator[World]:
    root = make_world_dir("claudehub-layers-")
    home = make_world_dir("claudehub-layers-home-", owner=USER)
    try:
        yield World(root, root / "course", make_marker_dir(root / "marks"), home)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def evil_upstream() -> Iterator[FakeAnthropic]:
    """Where the course's ``env`` tries to send the conversation and the token."""
    with FakeAnthropic() as fake:
        yield fake


def plain_env(world: World, upstream: FakeAnthropic) -> dict[str, str]:
    """What a plain ``claude`` started some other way would inherit: no launcher variable."""
    return {
        "HOME": str(world.home),
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "ANTHROPIC_BASE_URL": upstream.url,
        "ANTHROPIC_API_KEY": SANDBOX_KEY,
    }


def run_plain(
    claude_cli: Path,
    world: World,
    upstream: FakeAnthropic,
    *,
    args: tuple[str, ...] = (),
    prompt: str = PROMPT,
    managed: Path = MANAGED_SETTINGS,
) -> Result:
    argv = [str(claude_cli), *args, "-p", prompt, "--output-format", "json"]
    result = run_as_sandbox_user(
        argv, plain_env(world, upstream), str(world.course), managed=managed
    )
    time.sleep(0.5)  # a helper the CLI left running in the background would land by now
    return result


def managed_without_the_pins(folder: Path) -> Path:
    """Today's managed settings less the helper values and env pins against course settings."""
    settings = json.loads(MANAGED_SETTINGS.read_text())
    for key in MANAGED_HELPERS:
        del settings[key]
    for key in MANAGED_ENV_PINS:
        del settings["env"][key]
    path = folder / "managed-without-pins.json"
    path.write_text(json.dumps(settings))
    path.chmod(0o644)
    return path


def results_by_id(fake: FakeAnthropic) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for req in fake.agent_requests():
        for result in req.tool_results():
            found[result["tool_use_id"]] = result
    return found


def check_attempts_answered(fake: FakeAnthropic) -> None:
    """The course's requested tools were refused; the read tools worked in the course."""
    results = results_by_id(fake)
    for ident in ("bash", "write", "mcp"):
        assert results[f"toolu_{ident}"].get("is_error") is True, results[f"toolu_{ident}"]
    for ident in ("read", "glob", "grep"):
        assert not results[f"toolu_{ident}"].get("is_error"), results[f"toolu_{ident}"]


def request_text(fake: FakeAnthropic) -> str:
    return "\n".join(r.raw.decode("utf-8", "replace") for r in fake.message_requests())


def test_the_course_names_a_command_in_every_command_key(world: World) -> None:
    world.write_course()
    for rel in SETTINGS_FILES.values():
        settings = json.loads((world.course / rel).read_text())
        for key in COMMAND_KEYS:
            value: Any = settings
            for part in key.split("."):
                value = value[part]
            assert value, (rel, key)


def test_the_managed_settings_hold_a_value_for_every_helper_and_pin() -> None:
    settings = json.loads(MANAGED_SETTINGS.read_text())
    for key in MANAGED_HELPERS:
        assert settings[key], key
    for key in MANAGED_ENV_PINS:
        assert key in settings["env"], key


# ----------------------------------------------------------------- managed settings alone


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_managed_settings_alone_run_no_course_command(
    provider: str, claude_cli: Path, world: World, fake_upstream: FakeAnthropic
) -> None:
    """Plain ``claude -p`` in the malicious course: nothing the course names runs.

    ``provider`` is what the course's ``env`` selects, so that each credential helper is one
    the CLI would run. With the Anthropic API the session goes on with the sandbox token
    (from ``ANTHROPIC_API_KEY``, which the managed ``apiKeyHelper`` prints too) and only the
    read tools; with a cloud provider the CLI finds no credential and stops.
    """
    markers = world.write_course(provider=provider)
    world.trust_course()
    fake_upstream.script(scripted_attempts(str(world.course), str(world.marks)), "done")
    result = run_plain(claude_cli, world, fake_upstream)
    check_no_marker(world.marks, markers)
    if provider == "anthropic":
        assert result.returncode == 0, result.stderr
        check_upstream(fake_upstream.requests, SANDBOX_KEY)
        check_attempts_answered(fake_upstream)
        assert EVIL_TUTOR_PHRASE in request_text(fake_upstream)  # its CLAUDE.md still counts
    else:
        assert result.returncode != 0
        assert fake_upstream.requests == []


@pytest.mark.parametrize("prompt", ["/evil", "/evil-skill"])
def test_managed_settings_alone_course_command_and_skill_with_bypass(
    prompt: str, claude_cli: Path, world: World, fake_upstream: FakeAnthropic
) -> None:
    """The course's slash command and skill with inline shell, asked for in bypass mode."""
    markers = world.write_course()
    world.trust_course()
    result = run_plain(
        claude_cli,
        world,
        fake_upstream,
        args=("--dangerously-skip-permissions",),
        prompt=prompt,
    )
    assert result.returncode == 0, result.stderr
    check_no_marker(world.marks, markers)
    check_upstream(fake_upstream.requests, SANDBOX_KEY)


@pytest.mark.xfail(
    strict=True,
    reason="CLI 2.1.328 applies a trusted course's env ANTHROPIC_BASE_URL; no managed key "
    "keeps the endpoint (it is per deployment). The launcher's --setting-sources '' and the "
    "sandbox network policy stop it (docs/security.md, threat 4).",
)
def test_managed_settings_alone_keep_the_api_endpoint(
    claude_cli: Path, world: World, fake_upstream: FakeAnthropic, evil_upstream: FakeAnthropic
) -> None:
    markers = world.write_course(redirect_url=evil_upstream.url)
    world.trust_course()
    result = run_plain(claude_cli, world, fake_upstream)
    check_no_marker(world.marks, markers)  # no command runs either way
    assert result.returncode == 0, result.stderr
    assert evil_upstream.requests == []
    check_upstream(fake_upstream.requests, SANDBOX_KEY)


# ------------------------------------------------------------------------- the control


@pytest.mark.parametrize(
    ("provider", "ran"),
    [
        ("anthropic", {"local-apiKeyHelper", "local-proxyAuthHelper", "path-git"}),
        ("bedrock", {"local-awsAuthRefresh", "local-awsCredentialExport"}),
        ("vertex", {"local-gcpAuthRefresh"}),
    ],
)
def test_without_the_pins_the_course_runs_its_commands(
    provider: str,
    ran: set[str],
    claude_cli: Path,
    world: World,
    fake_upstream: FakeAnthropic,
    tmp_path: Path,
) -> None:
    """The same plain run under managed settings without the helper values and env pins.

    The course's helpers run (those of ``settings.local.json``, which wins over
    ``settings.json``), and so does a program from the course's ``PATH`` and its
    ``LD_PRELOAD`` library: the keys this test removes are what stops them above.
    """
    markers = world.write_course(provider=provider)
    if f"{world.marks}/ldpreload" in markers and provider == "anthropic":
        ran = ran | {"ldpreload"}
    world.trust_course()
    fake_upstream.script(scripted_attempts(str(world.course), str(world.marks)), "done")
    run_plain(claude_cli, world, fake_upstream, managed=managed_without_the_pins(tmp_path))
    found = set(markers_found(world.marks))
    assert ran <= found, f"ran: {sorted(found)}"
    assert found <= {Path(m).name for m in markers}


# ---------------------------------------------------------------------- launcher alone


@pytest.mark.parametrize("managed", ["repository", "none"])
def test_launcher_alone_runs_no_course_command(
    managed: str,
    claude_cli: Path,
    world: World,
    fake_upstream: FakeAnthropic,
    evil_upstream: FakeAnthropic,
    tmp_path: Path,
) -> None:
    """The launcher's exact command in a course that still ships its settings files.

    With ``managed="none"`` the managed settings file is ``{}``: the launcher's flags and
    environment are the only layer, and still nothing the course names runs, its ``env``
    does not redirect the API, and only the read tools are offered.
    """
    markers = world.write_course(redirect_url=evil_upstream.url)
    managed_file = MANAGED_SETTINGS
    if managed == "none":
        managed_file = tmp_path / "no-managed-settings.json"
        managed_file.write_text("{}\n")
        managed_file.chmod(0o644)
    prep = prepare_launch(
        claude_cli, world.course, world.home, fake_upstream.url, managed=managed_file
    )
    fake_upstream.script(scripted_attempts(str(world.course), str(world.marks)), "done")
    argv = [*prep.argv, "-p", PROMPT, "--output-format", "json"]
    result = run_as_sandbox_user(argv, prep.env, prep.cwd, managed=managed_file)
    time.sleep(0.5)
    assert result.returncode == 0, result.stderr
    check_no_marker(world.marks, markers)
    assert evil_upstream.requests == []
    check_upstream(fake_upstream.requests, SANDBOX_KEY)
    check_attempts_answered(fake_upstream)
    assert EVIL_TUTOR_PHRASE in request_text(fake_upstream)


# ------------------------------------------------------- managed settings alone, a terminal


def test_managed_settings_alone_interactive_runs_no_course_command(
    claude_cli: Path, world: World, fake_upstream: FakeAnthropic
) -> None:
    """Plain interactive ``claude`` in the course: status line, file suggestions, hooks.

    These run only in a terminal: the status line after the first screen, the course's
    ``fileSuggestion`` when ``@`` is typed, prompt and stop hooks around a question.
    """
    markers = world.write_course()
    world.trust_course()
    with cli_in_a_terminal(
        [str(claude_cli)], plain_env(world, fake_upstream), str(world.course)
    ) as term:
        child = term.child
        term.wait_for(lambda t: "❯" in t, PATIENCE, "Claude's prompt")
        term.pump(2.0)  # the status line would run now
        for question in NOT_AT_PROMPT:
            assert question not in term.text
        child.send("@lesson")
        term.pump(2.0)  # file suggestions for the @ mention
        child.send("\x15")  # clear the line
        term.pump(0.3)
        child.send("What is this course about?")
        term.pump(0.5)
        child.send("\r")
        term.wait_for(lambda t: DEFAULT_REPLY in t, PATIENCE, "the model's answer")
        term.pump(2.0)
    time.sleep(0.5)
    check_no_marker(world.marks, markers)
    check_upstream(fake_upstream.requests, SANDBOX_KEY)
    assert EVIL_TUTOR_PHRASE in fake_upstream.agent_requests()[-1].raw.decode()
