"""Run the real CLI inside the built sandbox image against a fake upstream in a container.

The sandbox container runs as the sandbox pod runs it: read-only root, every capability
dropped, no new privileges, uid/gid 1000, ``$HOME`` and ``/tmp`` on their own named volumes,
the course mounted read-only under ``/srv/course``. It shares an internal network (no way
out) with a container from the hub image that runs the fake Anthropic upstream
(``tests/fakes/upstream.py``, the repository's ``tests/`` mounted read-only), which the CLI
reaches by container name. The host scripts the fake with a file and reads what it recorded
from the fake's ``GET /_recorded`` at the container's address.

A marker folder, writable by uid 1000, is mounted at :data:`MARKS_DIR`: a command the course
names writes its marker there (tests/sandbox/escapes.py).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pexpect

from tests.containers.podman import HUB_IMAGE, REPO, SANDBOX_IMAGE, Podman, podman_env
from tests.fakes.upstream import RecordedRequest, Reply
from tests.helpers import PATIENCE

#: The sandbox token the CLI holds (what the key proxy would accept; the fake takes any).
SANDBOX_KEY = "chs1.sandbox-image-test-token.0123456789abcdefABCDEF"
MODEL = "claude-sandbox-image-test-model"
UPSTREAM_PORT = 8080
COURSE_ID = "evil"
#: Where the spawner mounts the course folder (ClaudeSpawner.course_mount_path) and the course.
COURSE_ROOT = "/srv/course"
COURSE_DIR = f"{COURSE_ROOT}/{COURSE_ID}"
MARKS_DIR = "/srv/marks"
HOME = "/home/claude"
MANAGED_SETTINGS = "/etc/claude-code/managed-settings.json"
CLAUDE = "/usr/local/bin/claude"
PYTHON = "/opt/claudehub/bin/python"
#: What the terminal runs (claudehub/server_ext/app.py ``command``: sys.executable -m ...).
LAUNCHER = [PYTHON, "-m", "claudehub.server_ext.launcher"]

#: The launcher exactly as :meth:`Launcher.start` runs, with arguments appended to the CLI's
#: argv (``-p PROMPT --output-format json``), which the console entry point has no way to take.
LAUNCH_WITH_ARGS = r"""
import os, signal, sys
from claudehub.server_ext.launcher import Launcher
app = Launcher.instance()
app.initialize([])
argv, env, cwd = app.prepare()
os.chdir(cwd)
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execvpe(argv[0], argv + sys.argv[1:], env)
"""

#: ``$HOME`` as the launcher leaves it (course trusted, onboarding done, the token's answer
#: stored), written in the image by the launcher's own functions, for a run without it.
SEED_HOME = r"""
import os
from pathlib import Path
from claudehub.server_ext.launcher import build_claude_json, load_claude_json, write_claude_json
home = Path(os.environ["HOME"])
data = build_claude_json(load_claude_json(home), course_dir=os.environ["CLAUDEHUB_COURSE_DIR"],
                         api_key=os.environ["ANTHROPIC_API_KEY"])
write_claude_json(home, data)
"""

#: Every file under the given folders (run in the image after a session, on its volumes).
LIST_FILES = r"""
import json, os, sys
found = []
for top in sys.argv[1:]:
    for folder, dirs, files in os.walk(top):
        found += [os.path.join(folder, name) for name in dirs + files]
print(json.dumps(sorted(found)))
"""

#: The flag form of the sandbox pod's security context (tests/containers/kubelet.py).
HARDENING = (
    "--read-only",
    "--read-only-tmpfs=false",
    "--cap-drop",
    "all",
    "--security-opt",
    "no-new-privileges",
    "--user",
    "1000:1000",
)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        data = json.loads(self.stdout)
        assert isinstance(data, dict), self.stdout
        return data


@dataclass
class Upstream:
    """The fake upstream's container: by name on the network, by address from the host."""

    container: str
    address: str

    @property
    def url(self) -> str:
        """Its URL as the sandbox sees it (the container's name resolves on the network)."""
        return f"http://{self.container}:{UPSTREAM_PORT}"

    def requests(self) -> list[RecordedRequest]:
        with urllib.request.urlopen(
            f"http://{self.address}:{UPSTREAM_PORT}/_recorded", timeout=PATIENCE
        ) as resp:
            return [RecordedRequest.from_json(r) for r in json.load(resp)]


@dataclass
class Stage:
    """One test's network, volumes, fake upstream, course and marker folder."""

    pm: Podman
    root: Path
    network: str = ""
    home: str = ""
    tmp: str = ""
    upstream: Upstream | None = None
    mounts: list[str] = field(default_factory=list)

    @property
    def course(self) -> Path:
        """The host folder mounted read-only as :data:`COURSE_ROOT` (holds :data:`COURSE_DIR`)."""
        return self.root / "course" / COURSE_ID

    @property
    def marks(self) -> Path:
        return self.root / "marks"

    def setup(self) -> Stage:
        self.network = self.pm.network("net", internal=True)
        self.home = self.pm.volume(self.pm.name("home"))
        self.tmp = self.pm.volume(self.pm.name("tmp"))
        self.course.mkdir(parents=True)
        for folder in (self.root / "course", self.course):
            folder.chmod(0o755)
        self.marks.mkdir()
        self.marks.chmod(0o1777)
        return self

    def start_upstream(self, replies: Sequence[Reply] = ()) -> Upstream:
        """The fake upstream in a hub-image container, with ``replies`` scripted."""
        script = self.root / "upstream-script.json"
        script.write_text(json.dumps(list(replies)))
        script.chmod(0o644)
        name = self.pm.name("upstream")
        self.pm.run(
            "--detach",
            "--network",
            self.network,
            *HARDENING[:-2],
            "--volume",
            f"{REPO / 'tests'}:/srv/tests:ro",
            "--volume",
            f"{script}:/srv/script.json:ro",
            "--env",
            "PYTHONPATH=/srv",
            "--entrypoint",
            "/usr/bin/tini",
            HUB_IMAGE,
            *("--", "python", "-m", "tests.fakes.upstream"),
            *("--host", "0.0.0.0", "--port", str(UPSTREAM_PORT)),
            *("--serve-recorded", "--script", "/srv/script.json"),
            name=name,
        )
        upstream = Upstream(name, self.pm.ip(name, self.network))
        deadline = time.monotonic() + 2 * PATIENCE  # a container start
        while True:
            try:
                upstream.requests()
                break
            except OSError:
                assert time.monotonic() < deadline, "fake upstream: " + self.pm.logs(name)
                time.sleep(0.2)
        self.upstream = upstream
        return upstream

    def image_managed_settings(self) -> dict[str, Any]:
        """The managed settings the image holds (read in a sandbox container)."""
        code = f"print(open({MANAGED_SETTINGS!r}).read())"
        result = self.run("managed", [PYTHON, "-c", code], {})
        assert result.returncode == 0, result.stderr
        settings = json.loads(result.stdout)
        assert isinstance(settings, dict)
        return settings

    def managed_override(self, settings: Mapping[str, Any]) -> None:
        """Mount ``settings`` (read-only) over the image's managed settings."""
        path = self.root / "managed-settings.json"
        path.write_text(json.dumps(settings) + "\n")
        path.chmod(0o644)
        self.mounts += ["--volume", f"{path}:{MANAGED_SETTINGS}:ro"]

    # -- the sandbox container -----------------------------------------------------------

    def spawner_env(self) -> dict[str, str]:
        """What ClaudeSpawner.sandbox_env gives the sandbox (with the fake as the key proxy)."""
        assert self.upstream is not None
        return {
            "ANTHROPIC_BASE_URL": self.upstream.url,
            "ANTHROPIC_API_KEY": SANDBOX_KEY,
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "ANTHROPIC_MODEL": MODEL,
            "CLAUDEHUB_COURSE_ID": COURSE_ID,
            "CLAUDEHUB_COURSE_DIR": COURSE_DIR,
        }

    def plain_env(self) -> dict[str, str]:
        """What a plain ``claude`` started some other way would have: no launcher variable
        and none of the image's (``--unsetenv-all``): no ``SHELL``, no ``CLAUDEHUB_*``."""
        assert self.upstream is not None
        return {
            "HOME": HOME,
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "TERM": "xterm-256color",
            "ANTHROPIC_BASE_URL": self.upstream.url,
            "ANTHROPIC_API_KEY": SANDBOX_KEY,
        }

    def sandbox_args(
        self,
        env: Mapping[str, str],
        *,
        workdir: str = COURSE_DIR,
        clean_env: bool = False,
        entrypoint: str,
    ) -> list[str]:
        args = [
            "--network",
            self.network,
            *HARDENING,
            "--volume",
            f"{self.home}:{HOME}",
            "--volume",
            f"{self.tmp}:/tmp",
            "--volume",
            f"{self.root / 'course'}:{COURSE_ROOT}:ro",
            "--volume",
            f"{self.marks}:{MARKS_DIR}",
            *self.mounts,
            "--workdir",
            workdir,
            "--entrypoint",
            entrypoint,
        ]
        if clean_env:
            args.append("--unsetenv-all")
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        return args

    def run(
        self,
        what: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        clean_env: bool = False,
        timeout: float = 120,
    ) -> Run:
        """Run ``argv`` in a sandbox container to completion (a failing exit is returned)."""
        name = self.pm.name(what)
        self.pm.containers.append(name)
        cmd = [
            "podman",
            "run",
            "--name",
            name,
            *self.sandbox_args(env, clean_env=clean_env, entrypoint=argv[0]),
            SANDBOX_IMAGE,
            *argv[1:],
        ]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=podman_env(),
            stdin=subprocess.DEVNULL,
            check=False,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def spawn(
        self, what: str, argv: Sequence[str], env: Mapping[str, str], *, clean_env: bool = False
    ) -> pexpect.spawn:
        """Start ``argv`` in a sandbox container on a terminal (``podman run -it``)."""
        name = self.pm.name(what)
        self.pm.containers.append(name)
        args = [
            "run",
            "--interactive",
            "--tty",
            "--name",
            name,
            *self.sandbox_args(env, clean_env=clean_env, entrypoint=argv[0]),
            SANDBOX_IMAGE,
            *argv[1:],
        ]
        return pexpect.spawn(
            "podman",
            args,
            env=podman_env(),
            dimensions=(40, 120),
            encoding="utf-8",
            codec_errors="replace",
        )

    def seed_home(self) -> None:
        """``$HOME`` as the launcher leaves it, for a run without the launcher."""
        env = {**self.spawner_env(), "HOME": HOME}
        result = self.run("seed", [PYTHON, "-c", SEED_HOME], env)
        assert result.returncode == 0, result.stderr

    def files(self, *folders: str) -> list[str]:
        """Every file under ``folders`` in a sandbox container (its volumes: home, /tmp)."""
        result = self.run("list", [PYTHON, "-c", LIST_FILES, *folders], {})
        assert result.returncode == 0, result.stderr
        found = json.loads(result.stdout)
        assert isinstance(found, list)
        return [str(f) for f in found]

    def claude_plain(self, *args: str) -> Run:
        """``claude ARGS`` as uid 1000 in the course, no launcher flag, the plain env."""
        return self.run("claude", [CLAUDE, *args], self.plain_env(), clean_env=True)

    def launcher(self, *args: str) -> Run:
        """The launcher's command with ``args`` appended to the CLI's argv."""
        return self.run("launcher", [PYTHON, "-c", LAUNCH_WITH_ARGS, *args], self.spawner_env())


def tool_results(requests: Iterable[RecordedRequest]) -> dict[str, dict[str, Any]]:
    """Every ``tool_result`` the CLI sent, by its ``tool_use_id``."""
    found: dict[str, dict[str, Any]] = {}
    for req in requests:
        if req.path == "/v1/messages" and req.tool_names:
            for result in req.tool_results():
                found[result["tool_use_id"]] = result
    return found


def result_text(result: Mapping[str, Any]) -> str:
    content = result.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


def request_text(requests: Iterable[RecordedRequest]) -> str:
    return "\n".join(r.raw.decode("utf-8", "replace") for r in requests)
