"""checkov finds nothing in any rendering that the chart does not skip with a written reason.

checkov lives in its own virtualenv (.venv-checkov, made by the Makefile) because it pins
versions that clash with the project's. It runs once over a folder holding every rendering.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.charts import REPO, Rendering

CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkov_report(
    renderings: dict[str, Rendering], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    if not CHECKOV.exists():
        pytest.fail(f"checkov missing at {CHECKOV}: run `make .venv-checkov/.installed`")
    root = tmp_path_factory.mktemp("renderings")
    for rendering in renderings.values():
        folder = root / rendering.name
        folder.mkdir()
        for i, obj in enumerate(rendering.objects):
            name = f"{i:02d}-{obj['kind']}-{obj['metadata']['name']}.yaml"
            (folder / name).write_text(yaml.safe_dump(obj, sort_keys=False))
    proc = subprocess.run(
        # Not --quiet: the JSON report then lists skipped checks too, whose reasons are tested.
        [
            str(CHECKOV),
            "-d",
            str(root),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--compact",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    merged: dict[str, Any] = {"passed": [], "failed": [], "skipped": [], "resources": 0}
    for rep in reports:
        results = rep.get("results", {})
        merged["passed"] += results.get("passed_checks", [])
        merged["failed"] += results.get("failed_checks", [])
        merged["skipped"] += results.get("skipped_checks", [])
        merged["resources"] += rep.get("summary", {}).get("resource_count", 0)
    merged["root"] = root
    return merged


def _where(check: dict[str, Any], root: Path) -> str:
    return (
        f"{check['check_id']} {check['check_name']!r} on {check['resource']} ({check['file_path']})"
    )


def test_checkov_ran_over_every_rendering(
    checkov_report: dict[str, Any], renderings: dict[str, Rendering]
) -> None:
    files = {c["file_path"].strip("/").split("/")[0] for c in checkov_report["passed"]}
    assert files == set(renderings), files
    objects = sum(len(r.objects) for r in renderings.values())
    # checkov also counts the pod inside each Deployment as a resource of its own.
    assert checkov_report["resources"] >= objects, (checkov_report["resources"], objects)


def test_no_failed_checks(checkov_report: dict[str, Any]) -> None:
    failed = [_where(c, checkov_report["root"]) for c in checkov_report["failed"]]
    assert not failed, "\n".join(failed)


def test_every_skip_has_a_reason(checkov_report: dict[str, Any]) -> None:
    assert checkov_report["skipped"], "the chart documents its skips; none were seen"
    for check in checkov_report["skipped"]:
        comment = check.get("check_result", {}).get("suppress_comment", "")
        assert comment and comment != "No comment provided" and len(comment) > 30, _where(
            check, checkov_report["root"]
        )
