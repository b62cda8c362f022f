"""The author sandbox's escape probe inside the built author image (docs/authoring.md).

The same proof as tests/sandbox/test_author_policy.py, in ``localhost/claudehub/sandbox-author``
run as an author session's pod runs it (tests/containers/policy.py): the image's own managed
settings (the author policy, root-owned), its launcher and CLI, uid 1000, a read-only root, no
capabilities, ``$HOME``, ``/tmp`` and the drafts folder on volumes of their own, and the fake
upstream in another container on a network with no way out. Writes inside the draft land;
every write outside it is refused although the filesystem would take it (``$HOME``, ``/tmp``,
the drafts folder above the draft, a marker folder), and Bash and WebFetch are refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.containers.podman import Podman, podman
from tests.containers.policy import (
    HOME,
    LAUNCH_WITH_ARGS,
    LIST_FILES,
    MANAGED_SETTINGS,
    MARKS_DIR,
    PYTHON,
    SANDBOX_KEY,
    Run,
    Stage,
    result_text,
    tool_results,
)

pytestmark = [pytest.mark.containers, pytest.mark.slow, pytest.mark.cli]

AUTHOR_IMAGE = "localhost/claudehub/sandbox-author:dev"
REPO = Path(__file__).resolve().parents[2]
DRAFTS = f"{HOME}/drafts"
DRAFT = f"{DRAFTS}/d1"

#: The draft as the server extension leaves it (the course service's copy: the paper).
MAKE_DRAFT = r"""
import os, sys
draft = sys.argv[1]
os.makedirs(draft + "/paper", exist_ok=True)
open(draft + "/paper/paper.md", "w").write("## Page 1\nPAPER-IN-IMAGE-51C2\n")
open(draft + "/notes.md", "w").write("old notes\n")
"""


class AuthorStage(Stage):
    """The stage with the author image and a drafts volume mounted as the pod mounts it."""

    def run(
        self,
        what: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        clean_env: bool = False,
        timeout: float = 120,
    ) -> Run:
        import subprocess

        from tests.containers.podman import podman_env

        name = self.pm.name(what)
        self.pm.containers.append(name)
        cmd = [
            "podman",
            "run",
            "--name",
            name,
            *self.sandbox_args(env, clean_env=clean_env, entrypoint=argv[0]),
            AUTHOR_IMAGE,
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

    def author_env(self) -> dict[str, str]:
        """What ClaudeSpawner gives an author session (the fake standing in for the key proxy)."""
        env = self.spawner_env()
        env.pop("CLAUDEHUB_COURSE_ID")
        env.pop("CLAUDEHUB_COURSE_DIR")
        env.update({"CLAUDEHUB_DRAFT_ID": "d1", "CLAUDEHUB_DRAFT_DIR": DRAFT})
        return env


@pytest.fixture
def stage(pm: Podman, tmp_path: Path) -> AuthorStage:
    try:
        podman("image", "exists", AUTHOR_IMAGE)
    except Exception:
        pytest.fail(f"{AUTHOR_IMAGE} is missing: run `make images`")
    s = AuthorStage(pm, tmp_path).setup()
    drafts = pm.volume(pm.name("drafts"))
    s.mounts += ["--volume", f"{drafts}:{DRAFTS}"]
    return s


def write(ident: str, path: str, content: str = "x") -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": f"toolu_{ident}",
        "name": "Write",
        "input": {"file_path": path, "content": content},
    }


def test_the_author_image_holds_the_author_policy(stage: AuthorStage) -> None:
    packaged = json.loads(
        (REPO / "claudehub" / "server_ext" / "managed-settings-author.json").read_text()
    )
    assert stage.image_managed_settings() == packaged
    owner = stage.run(
        "owner",
        [
            PYTHON,
            "-c",
            f"import os; s = os.stat({MANAGED_SETTINGS!r}); print(s.st_uid, oct(s.st_mode))",
        ],
        {},
    )
    assert owner.stdout.split() == ["0", "0o100644"], owner.stdout + owner.stderr


def test_in_image_writes_land_in_the_draft_only(stage: AuthorStage) -> None:
    made = stage.run("draft", [PYTHON, "-c", MAKE_DRAFT, DRAFT], {})
    assert made.returncode == 0, made.stderr
    outside = {
        "home": f"{HOME}/written.md",
        "tmp": "/tmp/written.md",
        "marks": f"{MARKS_DIR}/written.md",
        "drafts_root": f"{DRAFTS}/escape.md",
        "paper_up": f"{DRAFT}/paper/../../up.md",
        "course": "/srv/course/evil/new.md",
    }
    calls: list[dict[str, Any]] = [
        write("inside", "demo/knowledge/courses.json", '[{"id": "m", "lessons": []}]'),
        {
            "type": "tool_use",
            "id": "toolu_edit",
            "name": "Edit",
            "input": {"file_path": f"{DRAFT}/notes.md", "old_string": "old", "new_string": "new"},
        },
        *(write(k, p) for k, p in outside.items()),
        {
            "type": "tool_use",
            "id": "toolu_bash",
            "name": "Bash",
            "input": {"command": f"touch {MARKS_DIR}/bash"},
        },
        {
            "type": "tool_use",
            "id": "toolu_fetch",
            "name": "WebFetch",
            "input": {"url": "http://example.org/", "prompt": "Summarise"},
        },
    ]
    stage.start_upstream([calls, "done"])
    result = stage.run(
        "launcher",
        [PYTHON, "-c", LAUNCH_WITH_ARGS, "-p", "Write the course.", "--output-format", "json"],
        stage.author_env(),
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert stage.upstream is not None
    requests = stage.upstream.requests()
    results = tool_results(requests)
    assert not results["toolu_inside"].get("is_error"), results["toolu_inside"]
    assert not results["toolu_edit"].get("is_error"), results["toolu_edit"]
    for key in [*outside, "bash", "fetch"]:
        assert results[f"toolu_{key}"].get("is_error") is True, (key, results[f"toolu_{key}"])
    assert "No such tool" in result_text(results["toolu_bash"])
    for req in requests:
        if req.path == "/v1/messages" and req.tool_names:
            assert sorted(req.tool_names) == ["Edit", "Glob", "Grep", "Read", "Write"]
            assert req.credential == SANDBOX_KEY
    files = json.loads(
        stage.run("list", [PYTHON, "-c", LIST_FILES, HOME, "/tmp"], {}).stdout or "[]"
    )
    assert f"{DRAFT}/demo/knowledge/courses.json" in files
    for key in ("home", "tmp", "drafts_root"):
        assert outside[key] not in files, key
    assert f"{DRAFTS}/up.md" not in files
    notes = stage.run("notes", [PYTHON, "-c", f"print(open({DRAFT + '/notes.md'!r}).read())"], {})
    assert notes.stdout.strip() == "new notes"
    assert sorted(p.name for p in stage.marks.iterdir()) == []
    assert not (stage.course / "new.md").exists()
