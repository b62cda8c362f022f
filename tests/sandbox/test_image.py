"""The sandbox image's promises, checked on its Dockerfile (no Docker engine runs here)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from claudehub.server_ext.launcher import DEFAULT_SHELL_STUB, PINNED_CLI_VERSION
from tests.helpers import PATIENCE

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "images" / "sandbox"
DOCKERFILE = IMAGE / "Dockerfile"
MANAGED = REPO / "claudehub" / "server_ext" / "managed-settings.json"
HADOLINT = Path(sys.executable).parent / "hadolint"

COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|cc|make|build-essential|cpp|sudo|doas)\b")


@dataclass
class Instruction:
    keyword: str
    args: str
    comments: list[str]


def global_args(path: Path) -> dict[str, str]:
    """``ARG NAME=default`` lines before the first FROM (the build's own parameters)."""
    args: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("FROM "):
            break
        if line.startswith("ARG "):
            name, _, value = line[4:].strip().partition("=")
            args[name] = value
    return args


def parse(path: Path) -> list[list[Instruction]]:
    """The Dockerfile's instructions, grouped by stage (continuations joined).

    Global ``ARG`` lines before the first FROM are left to :func:`global_args`."""
    stages: list[list[Instruction]] = []
    comments: list[str] = []
    current = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and stripped.startswith("#"):
            comments.append(stripped)
            continue
        if not stripped and not current:
            comments = []
            continue
        current += " " + stripped.rstrip("\\").strip()
        if stripped.endswith("\\"):
            continue
        keyword, _, args = current.strip().partition(" ")
        inst = Instruction(keyword.upper(), args.strip(), comments)
        comments, current = [], ""
        if inst.keyword == "FROM":
            stages.append([])
        if not stages and inst.keyword == "ARG":
            continue
        assert stages, "instruction before the first FROM"
        stages[-1].append(inst)
    return stages


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return parse(DOCKERFILE)


def test_hadolint_passes_and_every_ignore_is_explained() -> None:
    proc = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            before = lines[i - 1].strip() if i else ""
            assert before.startswith("#") and len(before) > 10, f"unexplained ignore: {line}"


def stage(stages: list[list[Instruction]], name: str) -> list[Instruction]:
    """The stage ``FROM ... AS name``."""
    for instructions in stages:
        if instructions[0].args.split()[-1] == name:
            return instructions
    raise AssertionError(f"no stage named {name}")


def test_base_images_are_pinned(stages: list[list[Instruction]]) -> None:
    """Every stage starts from the one BASE_IMAGE (or an earlier stage), a dated Debian
    snapshot by default; `make images` overrides it, nothing local is written here."""
    assert len(stages) >= 2, "multi-stage build expected"
    base = global_args(DOCKERFILE)["BASE_IMAGE"]
    assert "@sha256:" in base or re.fullmatch(
        r"docker\.io/library/debian:bookworm-\d{8}-slim", base
    )
    names = {s[0].args.split()[-1] for s in stages if " AS " in s[0].args}
    for instructions in stages:
        image = instructions[0].args.split()[0]
        assert image == "${BASE_IMAGE}" or image in names, image
    final = stages[-1][0].args.split()[0]
    assert final in names  # the runtime stage: Debian's Python on BASE_IMAGE


def test_debian_packages_are_pinned_to_versions(stages: list[list[Instruction]]) -> None:
    """Every package apt installs is pinned to an exact version (an ARG with a default)."""
    for instructions in stages:
        args = {
            i.args.partition("=")[0]: i.args.partition("=")[2]
            for i in instructions
            if i.keyword == "ARG"
        }
        for inst in instructions:
            for words in re.findall(r"apt-get install (.*?)(?:&&|$)", inst.args):
                packages = [w for w in words.split() if not w.startswith("-")]
                assert packages, inst.args
                for package in packages:
                    name, _, version = package.partition("=")
                    assert version, f"{name} is not pinned"
                    var = re.fullmatch(r"\$\{(\w+)\}", version)
                    assert var and re.fullmatch(r"[\w.:~+-]+", args.get(var.group(1), "")), package


def test_nothing_local_is_baked_in() -> None:
    """The same Dockerfile builds anywhere: no local image, host path or CA bundle in it."""
    for dockerfile in (DOCKERFILE, REPO / "images" / "hub" / "Dockerfile"):
        text = "\n".join(
            line for line in dockerfile.read_text().splitlines() if not line.startswith("#")
        )
        for local in (
            "localhost/",
            "/run/host-ca",
            "/etc/ssl/certs/ca-certificates.crt",
            "/opt/wheels",
            "127.0.0.1",
            "--volume",
        ):
            assert local not in text, f"{dockerfile.name}: {local}"
        # The CA bundle is only ever a build argument used for the package clients.
        for line in text.splitlines():
            if "BUILD_CA_BUNDLE" in line and not line.startswith("ARG "):
                assert "${BUILD_CA_BUNDLE:+" in line, line
        assert "ARG BASE_IMAGE=docker.io/library/debian:bookworm-" in text


def test_final_stage_runs_as_a_numeric_non_root_user(stages: list[list[Instruction]]) -> None:
    users = [i.args for i in stages[-1] if i.keyword == "USER"]
    assert users, "no USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, users[-1]
    assert gid.isdigit() and int(gid) > 0, users[-1]
    # The ids and home the spawner enforces and mounts are the image's own.
    from claudehub.spawner.kube import ClaudeSpawner

    traits = ClaudeSpawner.class_traits()
    assert int(uid) == traits["sandbox_uid"].default_value
    assert int(gid) == traits["sandbox_gid"].default_value
    home = traits["home_mount_path"].default_value
    assert any(f"HOME={home}" in i.args for i in stages[-1] if i.keyword == "ENV")
    assert [i.keyword for i in stages[-1]].index("USER") > max(
        n for n, i in enumerate(stages[-1]) if i.keyword == "RUN"
    ), "RUN after USER would run as the user at build time; keep USER last"


def test_final_stage_has_no_compiler_sudo_or_shell_for_claude(
    stages: list[list[Instruction]],
) -> None:
    for inst in stages[-1]:
        if inst.keyword != "RUN":
            continue
        for word in re.findall(r"install\s+(.*?)(?:&&|$)", inst.args):
            assert not COMPILERS.search(word), word
        assert not re.search(r"\bsudo\b", inst.args), inst.args
    run = " ".join(i.args for i in stages[-1] if i.keyword == "RUN")
    assert "--purge --force-remove-essential bash" in run  # Claude finds no bash to run
    assert "chmod a-s" in run  # no set-uid escalation


def _copies(stage: list[Instruction]) -> list[tuple[list[str], str, list[str]]]:
    out = []
    for inst in stage:
        if inst.keyword != "COPY":
            continue
        words = shlex.split(inst.args)
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        out.append((flags, paths[-1], paths[:-1]))
    return out


def test_managed_settings_and_shell_stub_are_installed(stages: list[list[Instruction]]) -> None:
    copies = {dest: (flags, srcs) for flags, dest, srcs in _copies(stages[-1])}
    flags, srcs = copies["/etc/claude-code/managed-settings.json"]
    assert srcs == ["claudehub/server_ext/managed-settings.json"]
    assert "--chmod=0644" in flags  # root-owned, not writable by the user
    # The managed settings point Claude's shell and editor at the stub the image installs.
    env = json.loads(MANAGED.read_text())["env"]
    assert env["CLAUDE_CODE_SHELL"] == env["EDITOR"] == env["VISUAL"] == DEFAULT_SHELL_STUB
    flags, srcs = copies[DEFAULT_SHELL_STUB]
    assert srcs == ["images/sandbox/noshell"] and "--chmod=0755" in flags
    assert "bash" in Path(DEFAULT_SHELL_STUB).name  # Claude only takes a bash/zsh path


def test_stub_shell_refuses() -> None:
    proc = subprocess.run(
        [str(IMAGE / "noshell"), "-c", "echo should-not-print"],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert proc.returncode == 126
    assert "should-not-print" not in proc.stdout
    assert "disabled in this sandbox" in proc.stderr


def test_cli_version_is_pinned_everywhere() -> None:
    package = json.loads((REPO / "package.json").read_text())
    assert package["dependencies"]["@anthropic-ai/claude-code"] == PINNED_CLI_VERSION
    lock = json.loads((REPO / "package-lock.json").read_text())
    entry = lock["packages"]["node_modules/@anthropic-ai/claude-code"]
    assert entry["version"] == PINNED_CLI_VERSION
    assert f"'{PINNED_CLI_VERSION}'" in DOCKERFILE.read_text()  # the build checks it too


def test_read_only_root_filesystem_settings(stages: list[list[Instruction]]) -> None:
    env = " ".join(i.args for i in stages[-1] if i.keyword == "ENV")
    assert "HOME=/home/claude" in env
    assert "XDG_CACHE_HOME=/tmp/" in env and "NPM_CONFIG_CACHE=/tmp/" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "CLAUDEHUB_CLAUDE_BIN=/usr/local/bin/claude" in env
    run = " ".join(i.args for i in stage(stages, "python") if i.keyword == "RUN")
    assert "compileall" in run  # bytecode exists before the filesystem turns read-only


def test_entrypoint_execs_the_server_with_default_sigint(
    stages: list[list[Instruction]],
) -> None:
    entry = [i.args for i in stages[-1] if i.keyword == "ENTRYPOINT"][-1]
    argv = json.loads(entry)
    assert argv[:2] == ["/usr/bin/tini", "--"]
    assert argv[-1] == "/usr/libexec/claudehub/entrypoint.py"
    check = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    proc = subprocess.run(
        [sys.executable, str(IMAGE / "entrypoint.py"), sys.executable, "-c", check],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        check=False,
    )
    assert proc.stdout.strip() == "True", proc.stderr


def test_build_context_has_every_copied_file(stages: list[list[Instruction]]) -> None:
    """Each COPY source exists and survives Dockerfile.dockerignore."""
    ignore = [
        line.strip()
        for line in (IMAGE / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in ignore:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            parts = Path(path).parts
            prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
            if any(fnmatch.fnmatch(p, pat) for p in prefixes):
                keep = negate
        return keep

    for stage in stages:
        for flags, _dest, srcs in _copies(stage):
            if any(f.startswith("--from=") for f in flags):
                continue
            for src in srcs:
                assert (REPO / src).exists(), src
                assert included(src.rstrip("/")), f"{src} is excluded from the build context"


def test_managed_settings_state_the_policy() -> None:
    """The file the image installs says what the issue asks, in keys the pinned CLI knows."""
    settings = json.loads(MANAGED.read_text())
    permissions = settings["permissions"]
    assert permissions["allow"] == ["Read", "Glob", "Grep"]
    required = {"Bash", "Edit", "Write", "NotebookEdit", "WebFetch", "WebSearch"}
    assert required | {"Task", "Agent", "mcp__*"} <= set(permissions["deny"])
    # 2.1.328 has no MultiEdit: a rule naming it only printed "Deny rule MultiEdit matches no
    # tool" to every learner; a call to it is refused all the same (test_cli_policy.py)
    assert "MultiEdit" not in permissions["deny"]
    assert not set(permissions["allow"]) & set(permissions["deny"])
    assert permissions["disableBypassPermissionsMode"] == "disable"
    assert permissions["defaultMode"] == "dontAsk" and permissions["denyInsteadOfPrompting"]
    for key in ("allowManagedPermissionRulesOnly", "allowManagedHooksOnly", "disableAllHooks"):
        assert settings[key] is True, key
    assert settings["allowManagedMcpServersOnly"] is True and settings["allowedMcpServers"] == []
    assert settings["enableAllProjectMcpServers"] is False
    # A course's settings cannot name a credential helper: the managed value wins. The API
    # key helper prints the sandbox token (where the launcher hands it over, else the
    # ANTHROPIC_API_KEY a plain `claude` has); the others refuse.
    assert settings["apiKeyHelper"] == 'printf %s "${CLAUDEHUB_SANDBOX_TOKEN:-$ANTHROPIC_API_KEY}"'
    for key in ("awsAuthRefresh", "awsCredentialExport", "gcpAuthRefresh"):
        assert settings[key] == DEFAULT_SHELL_STUB, key
    for key in ("otelHeadersHelper", "proxyAuthHelper"):
        assert settings[key] == DEFAULT_SHELL_STUB, key


def test_managed_api_key_helper_prints_exactly_the_token() -> None:
    """The CLI runs ``apiKeyHelper`` with /bin/sh (dash in the image); ``printf`` is built in."""
    helper = json.loads(MANAGED.read_text())["apiKeyHelper"]
    token = "chs1.a-token.with$dollar'quote"
    for env in (
        {"CLAUDEHUB_SANDBOX_TOKEN": token},  # from the launcher
        {"ANTHROPIC_API_KEY": token},  # a plain `claude`
        {"CLAUDEHUB_SANDBOX_TOKEN": token, "ANTHROPIC_API_KEY": "other"},
    ):
        proc = subprocess.run(
            ["/bin/sh", "-c", helper],
            env={**env, "PATH": "/nonexistent"},
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            check=False,
        )
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, token, ""), env


def test_managed_env_pins_the_image_path_and_no_preloads(
    stages: list[list[Instruction]],
) -> None:
    """A course's ``env`` block cannot put its own programs or libraries in front."""
    env = json.loads(MANAGED.read_text())["env"]
    image_env = " ".join(i.args for i in stages[-1] if i.keyword == "ENV")
    match = re.search(r"\bPATH=(\S+)", image_env)
    assert match is not None
    assert env["PATH"] == match.group(1)
    assert env["SHELL"] == DEFAULT_SHELL_STUB
    for key in ("LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "GCONV_PATH"):
        assert env[key] == "", key
