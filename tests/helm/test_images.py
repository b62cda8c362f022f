"""The hub image is hadolint clean, non-root, pinned, and is what the chart runs."""

from __future__ import annotations

import re
import subprocess

from tests.helm.charts import REPO, Rendering, hub_files

HADOLINT = REPO / ".venv" / "bin" / "hadolint"
HUB_IMAGE = REPO / "images" / "hub"


def test_hadolint_is_clean() -> None:
    proc = subprocess.run(
        [str(HADOLINT), "--no-color", str(HUB_IMAGE / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_ignored_rule_is_explained() -> None:
    text = (HUB_IMAGE / "Dockerfile").read_text()
    for match in re.finditer(r"hadolint (?:global )?ignore=([A-Z0-9,]+)", text):
        for rule in match.group(1).split(","):
            explained = [
                line for line in text.splitlines() if rule in line and "ignore=" not in line
            ]
            assert explained, f"{rule} is ignored without a reason"


def test_bases_are_pinned_and_the_user_is_not_root() -> None:
    text = (HUB_IMAGE / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert len(bases) >= 2, "multi-stage"
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.MULTILINE))
    for base in bases:
        # One pinned base (a dated Debian snapshot by default) or an earlier stage.
        assert base == "${BASE_IMAGE}" or base in stages, base
    default = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.MULTILINE)
    assert default and re.fullmatch(
        r"docker\.io/library/debian:bookworm-\d{8}-slim|\S+@sha256:[0-9a-f]{64}", default[1]
    )
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] == "10001:10001"


def test_the_chart_runs_what_the_image_has(default: Rendering) -> None:
    text = (HUB_IMAGE / "Dockerfile").read_text()
    hub = default.one("Deployment", "claudehub-hub")["spec"]["template"]["spec"]
    assert hub["securityContext"]["runAsUser"] == 10001
    config = hub["containers"][0]["args"][-1]
    assert config == "/usr/local/share/claudehub/hub_config/jupyterhub_config.py"
    assert "COPY hub_config /usr/local/share/claudehub/hub_config" in text
    assert (REPO / "hub_config" / "jupyterhub_config.py").exists()
    assert hub["containers"][0]["image"] == "claudehub/hub:0.1.0"
    # configurable-http-proxy and the two console scripts are on the image's PATH.
    assert "/usr/local/bin/configurable-http-proxy" in text
    pyproject = (REPO / "pyproject.toml").read_text()
    for component, script in (
        ("keyproxy", "claudehub-keyproxy"),
        ("progress", "claudehub-progress"),
    ):
        args = default.one("Deployment", f"claudehub-{component}")["spec"]["template"]["spec"][
            "containers"
        ][0]["args"]
        assert args[0] == script
        assert f"{script} = " in pyproject
    # CHP: the same version the project pins in package.json.
    assert '"configurable-http-proxy": "5.3.0"' in (REPO / "package.json").read_text()
    assert "npm ci" in text and "COPY package.json package-lock.json" in text


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    text = (HUB_IMAGE / "Dockerfile").read_text()
    allowed = {
        line[1:].rstrip("/")
        for line in (HUB_IMAGE / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources = line.split()[1:-1]
            for source in sources:
                assert source.rstrip("/") in allowed, source
                assert (REPO / source).exists(), source


def test_sandbox_image_name_matches_the_spawner_default(default: Rendering) -> None:
    """The chart's default sandbox image is the one ClaudeSpawner itself would use."""
    from claudehub.spawner.kube import ClaudeSpawner

    spawner_default = ClaudeSpawner._default_image(None)  # type: ignore[arg-type]
    assert hub_files(default)[0]["chart"]["sandboxImage"] == spawner_default
