"""What the built images hold, checked by running them (not by reading their Dockerfiles)."""

from __future__ import annotations

import json

import pytest

from claudehub.server_ext.launcher import PINNED_CLI_VERSION
from tests.containers.podman import HUB_IMAGE, SANDBOX_IMAGE, podman

pytestmark = [pytest.mark.containers]

SANDBOX_CHECK = r"""
import importlib.util, json, os, shutil, stat
found = {}
for root in ("/usr", "/bin", "/sbin", "/opt", "/etc", "/var", "/home"):
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                found.setdefault("setid", []).append(path)
settings = os.stat("/etc/claude-code/managed-settings.json")
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "home": os.environ.get("HOME"),
    "setid": found.get("setid", []),
    "programs": {p: shutil.which(p) for p in ("bash", "zsh", "sudo", "su", "gcc", "cc", "make",
                                              "node", "npm", "pip", "apt-get", "git")},
    "modules": {m: importlib.util.find_spec(m) is not None for m in (
        "jupyterhub", "jupyter_server", "claudehub.server_ext", "claudehub.spawner.fetch_course",
        "kubespawner", "oauthenticator", "httptools", "nh3", "markdown_it", "psycopg",
        "sqlalchemy", "alembic", "uvloop", "pip")},
    "settings": [oct(settings.st_mode & 0o7777), settings.st_uid, settings.st_gid,
                 os.access("/etc/claude-code/managed-settings.json", os.W_OK)],
    "stub": os.path.realpath(shutil.which("bash", path="/usr/libexec/claudehub") or ""),
}))
"""


def run_python(image: str, code: str, python: str) -> dict[str, object]:
    out = podman("run", "--rm", "--entrypoint", python, image, "-c", code, timeout=120)
    return dict(json.loads(out))


def test_sandbox_image_holds_only_what_a_sandbox_runs(images: dict[str, str]) -> None:
    seen = run_python(SANDBOX_IMAGE, SANDBOX_CHECK, "/opt/claudehub/bin/python")
    assert (seen["uid"], seen["gid"], seen["home"]) == (1000, 1000, "/home/claude")
    assert seen["setid"] == [], "set-uid/set-gid files"
    programs = seen["programs"]
    assert isinstance(programs, dict)
    # No shell Claude could use, no sudo, no compiler, no package installer it could run.
    # Debian's essential `su` and `apt-get` stay: without set-uid bits (checked above) and
    # as uid 1000 on a read-only root neither can do anything.
    assert {p for p, where in programs.items() if where} == {"su", "apt-get"}, programs
    modules = seen["modules"]
    assert isinstance(modules, dict)
    for needed in ("jupyterhub", "jupyter_server", "claudehub.server_ext"):
        assert modules[needed], needed
    assert modules["claudehub.spawner.fetch_course"]  # the course init container's command
    hub_side = (
        "kubespawner",
        "oauthenticator",
        "httptools",
        "nh3",
        "markdown_it",
        "psycopg",
        "sqlalchemy",
        "alembic",
        "uvloop",
        "pip",
    )
    assert [m for m in hub_side if modules[m]] == []
    # The tool policy: root-owned, read-only to the sandbox user.
    assert seen["settings"] == ["0o644", 0, 0, False]
    assert seen["stub"] == "/usr/libexec/claudehub/bash"


def test_sandbox_image_runs_the_pinned_cli_and_the_image_default_user(
    images: dict[str, str],
) -> None:
    out = podman("run", "--rm", "--entrypoint", "/usr/local/bin/claude", SANDBOX_IMAGE, "--version")
    assert out.split()[0] == PINNED_CLI_VERSION
    config = json.loads(podman("image", "inspect", SANDBOX_IMAGE))[0]["Config"]
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"][:2] == ["/usr/bin/tini", "--"]


def test_hub_image_runs_every_component_and_no_cli(images: dict[str, str]) -> None:
    out = podman(
        "run",
        "--rm",
        HUB_IMAGE,
        "python",
        "-c",
        "import os, shutil, json; print(json.dumps({'uid': os.getuid(), 'which': {p: "
        "shutil.which(p) for p in ('jupyterhub', 'configurable-http-proxy', "
        "'claudehub-keyproxy', 'claudehub-progress', 'git', 'claude', 'gcc', 'sudo')}}))",
    )
    seen = json.loads(out)
    assert seen["uid"] == 10001
    which = seen["which"]
    for program in (
        "jupyterhub",
        "configurable-http-proxy",
        "claudehub-keyproxy",
        "claudehub-progress",
        "git",
    ):
        assert which[program], program
    assert which["claude"] is None and which["gcc"] is None and which["sudo"] is None
    version = podman("run", "--rm", HUB_IMAGE, "configurable-http-proxy", "--version")
    assert version.strip() == "5.3.0"
