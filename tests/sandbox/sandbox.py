"""Run the real Claude Code CLI the way a sandbox runs it, on this machine.

The CLI runs as the unprivileged user ``nobody`` inside a private mount namespace
(``unshare -m``) in which

- ``/etc/claude-code/managed-settings.json`` is the repository's
  ``claudehub/server_ext/managed-settings.json`` (bind-mounted read-only, exactly that file);
- ``/usr/libexec/claudehub/bash`` is the image's refusing shell (``images/sandbox/noshell``).

Both paths are created on an overlay of ``/etc`` and ``/usr/libexec`` whose upper layer is a
temporary folder, so nothing on the host's ``/etc`` or ``/usr`` is created or changed, and
concurrent runs do not see each other's mounts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claudehub.server_ext.launcher import Launcher, has_key_helper
from tests.fakes.upstream import FakeAnthropic

REPO = Path(__file__).resolve().parents[2]
MANAGED_SETTINGS = REPO / "claudehub" / "server_ext" / "managed-settings.json"
NOSHELL = REPO / "images" / "sandbox" / "noshell"
#: Where the image installs the refusing shell (and where the managed settings point).
IMAGE_SHELL_STUB = "/usr/libexec/claudehub/bash"
USER = "nobody"

#: The sandbox token the CLI holds (not an Anthropic key; the fake upstream accepts it).
SANDBOX_KEY = "chs1.sandbox-test-token.0123456789abcdefABCDEF"
MODEL = "claude-sandbox-test-model"
TUTOR_PHRASE = "TUTOR-INSTRUCTIONS-5F2C"
LESSON_PHRASE = "LESSON-CONTENT-81D7"
RESUME_HINT = "stage 2 (Attention), after the quiz of stage 1"


# Runs as root in the new mount namespace, then drops to $SANDBOX_USER for the command ("$@").
_NAMESPACE_SCRIPT = r"""
set -e
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$OV/etc-up,workdir=$OV/etc-work" /etc
mount --bind -o ro "$MANAGED" /etc/claude-code/managed-settings.json
mount -t overlay overlay -o "lowerdir=/usr/libexec,upperdir=$OV/lx-up,workdir=$OV/lx-work" /usr/libexec
mount --bind -o ro "$NOSHELL" /usr/libexec/claudehub/bash
cd "$WORKDIR"
exec runuser -u "$SANDBOX_USER" -- env -i "$@"
"""


def namespace_argv(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    overlay_dir: Path,
    *,
    managed: Path = MANAGED_SETTINGS,
) -> tuple[list[str], dict[str, str]]:
    """The host argv/env that runs ``argv`` as nobody with exactly ``env`` in ``cwd``.

    ``managed`` is the file mounted as the managed settings (default: the repository's).
    """
    for sub in ("etc-up/claude-code", "etc-work", "lx-up/claudehub", "lx-work"):
        (overlay_dir / sub).mkdir(parents=True, exist_ok=True)
    (overlay_dir / "etc-up/claude-code/managed-settings.json").touch()
    (overlay_dir / "lx-up/claudehub/bash").touch()
    host_env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "OV": str(overlay_dir),
        "MANAGED": str(managed),
        "NOSHELL": str(NOSHELL),
        "WORKDIR": cwd,
        "SANDBOX_USER": USER,
    }
    pairs = [f"{k}={v}" for k, v in env.items()]
    return ["unshare", "-m", "sh", "-c", _NAMESPACE_SCRIPT, "sh", *pairs, *argv], host_env


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        data = json.loads(self.stdout)
        assert isinstance(data, dict)
        return data


def run_as_sandbox_user(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    *,
    timeout: float = 60,
    managed: Path = MANAGED_SETTINGS,
) -> Result:
    """Run ``argv`` as nobody under the managed settings; wait for it to exit."""
    with tempfile.TemporaryDirectory(prefix="claudehub-ns-") as ov:
        cmd, host_env = namespace_argv(argv, env, cwd, Path(ov), managed=managed)
        proc = subprocess.Popen(
            cmd,
            env=host_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # so a timeout takes the CLI down too, not just unshare
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return Result(proc.returncode, stdout, stderr)


def make_world_dir(prefix: str, *, owner: str | None = None, mode: int = 0o755) -> Path:
    """A fresh folder under /tmp that nobody can reach (pytest's own tmp is root-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(mode)
    if owner is not None:
        shutil.chown(path, owner, owner_group(owner))
    return path


def owner_group(user: str) -> str:
    import grp
    import pwd

    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def chown_tree(path: Path, user: str) -> None:
    """Give ``path`` and everything under it to ``user``."""
    group = owner_group(user)
    shutil.chown(path, user, group)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            shutil.chown(os.path.join(root, name), user, group)


@dataclass
class WebTarget:
    """A local HTTP server standing in for a URL a denied WebFetch would fetch."""

    url: str
    hits: list[str] = field(default_factory=list)


@dataclass
class Prepared:
    """What the launcher would exec: argv, environment and folder."""

    argv: list[str]
    env: dict[str, str]
    cwd: str


def prepare_launch(
    claude_cli: Path,
    course: Path,
    home: Path,
    upstream_url: str,
    *,
    extra_env: dict[str, str] | None = None,
    managed: Path = MANAGED_SETTINGS,
    api_key: str = SANDBOX_KEY,
    model: str = MODEL,
) -> Prepared:
    """Run the launcher's preparation in-process (as root) and hand HOME to nobody.

    ``managed`` is the file the CLI will run under (:func:`run_as_sandbox_user`'s): as in the
    image, the token goes through its ``apiKeyHelper`` when it names one.
    """
    environ = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "ANTHROPIC_BASE_URL": upstream_url,
        "ANTHROPIC_API_KEY": api_key,
        "CLAUDEHUB_RESUME_HINT": RESUME_HINT,
        **(extra_env or {}),
    }
    launcher = Launcher(
        course_dir=str(course),
        model=model,
        claude_bin=str(claude_cli),
        api_key=api_key,
        shell_stub=IMAGE_SHELL_STUB,
        key_from_helper=has_key_helper(managed),
    )
    argv, env, cwd = launcher.prepare(environ)
    chown_tree(home, USER)
    return Prepared(argv, env, cwd)


def user_settings_allowing_everything(marks: Path) -> dict[str, Any]:
    """A ~/.claude/settings.json that tries to open every door."""
    return {
        "permissions": {
            "allow": [
                *("Bash", "Write", "Edit", "MultiEdit", "NotebookEdit", "WebFetch"),
                *("WebSearch", "Task", "Agent", "mcp__*", "Bash(*)"),
            ],
            "defaultMode": "bypassPermissions",
        },
        "skipDangerousModePermissionPrompt": True,
        "hooks": {
            "SessionStart": [
                {"hooks": [{"type": "command", "command": f"touch {marks / 'user-hook'}"}]}
            ]
        },
        "env": {"CLAUDE_CODE_SHELL": "/bin/bash"},
    }


def assert_only_read_tools(fake: FakeAnthropic) -> None:
    """Every request that offered tools offered exactly Read, Glob and Grep."""
    agent = fake.agent_requests()
    assert agent, "the CLI sent no request offering tools"
    for req in agent:
        assert sorted(req.tool_names) == ["Glob", "Grep", "Read"], req.tool_names


def os_listing(path: Path) -> list[str]:
    return sorted(os.listdir(path))


LaunchFn = Callable[..., tuple[Result, FakeAnthropic]]
