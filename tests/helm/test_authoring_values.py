"""The chart's authoring.* values (docs/authoring.md): the course service's authoring
volume, its arguments, the deploy key mounted into it alone, and the paper-fetch egress,
off unless enabled and never towards private or metadata addresses."""

from __future__ import annotations

import pytest

from tests.helm.charts import KEY_SECRET, Rendering, deep_merge, render
from tests.helm.netpol import External, Policies
from tests.helm.test_netpol import component_pods

PUBLIC = External("web", "93.184.215.14")
METADATA = External("metadata", "169.254.169.254")
LAN = External("lan", "192.168.1.20")


def progress_container(rendering: Rendering) -> dict:
    deployment = rendering.one("Deployment", "claudehub-progress")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_authoring_off_by_default_adds_nothing(default: Rendering) -> None:
    args = progress_container(default)["args"]
    assert not [a for a in args if a.startswith("--Authoring.")]
    assert not default.find("PersistentVolumeClaim", "claudehub-progress-authoring")
    policies = Policies(default.without_hooks())
    assert not policies.allows(component_pods(default)["progress"], PUBLIC, 80)


def test_authoring_values_reach_the_course_service(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["authoring"]
    pvc = rendering.one("PersistentVolumeClaim", "claudehub-progress-authoring")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    container = progress_container(rendering)
    args = container["args"]
    for arg in (
        "--Authoring.enabled=True",
        "--Authoring.drafts_dir=/var/lib/claudehub-authoring/drafts",
        "--Authoring.repository=/var/lib/claudehub-authoring/courses.git",
        "--Authoring.max_upload_bytes=20971520",
        "--Authoring.max_pages=120",
        "--Authoring.extract_memory_bytes=402653184",
        "--Authoring.extract_timeout=60",
        "--Authoring.remote_url=git@git.example.org:courses/published.git",
        "--Authoring.deploy_key_file=/etc/claudehub/deploy-key/ssh-privatekey",
        "--Authoring.known_hosts_file=/etc/claudehub/known_hosts",
    ):
        assert arg in args, arg
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["authoring"]["mountPath"] == "/var/lib/claudehub-authoring"
    assert mounts["deploy-key"]["readOnly"] is True
    volumes = {
        v["name"]: v
        for v in rendering.one("Deployment", "claudehub-progress")["spec"]["template"]["spec"][
            "volumes"
        ]
    }
    assert volumes["deploy-key"]["secret"]["secretName"] == "courses-deploy-key"
    assert volumes["deploy-key"]["secret"]["defaultMode"] == 0o400
    config = rendering.one("ConfigMap", "claudehub-progress")
    assert config["data"]["known_hosts"].startswith("git.example.org ssh-ed25519")
    # the deploy key is the course service's alone: no other pod of the chart mounts it
    for deployment in rendering.find("Deployment"):
        if deployment["metadata"]["name"] == "claudehub-progress":
            continue
        for volume in deployment["spec"]["template"]["spec"].get("volumes", []):
            assert volume.get("secret", {}).get("secretName") != "courses-deploy-key"


def test_paper_fetch_egress_only_when_enabled(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["authoring"]
    progress = component_pods(rendering)["progress"]
    policies = Policies(rendering.without_hooks())
    for port in (80, 443):
        assert policies.allows(progress, PUBLIC, port), port
        assert not policies.allows(progress, METADATA, port), port
        assert not policies.allows(progress, LAN, port), port
    off = render(deep_merge(rendering.values, {"authoring": {"fetch": {"enabled": False}}}))
    assert not Policies(off.without_hooks()).allows(component_pods(off)["progress"], PUBLIC, 80)


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"authoring": {"enabled": "yes"}}, "enabled"),
        ({"authoring": {"upload": {"maxPages": 0}}}, "maxPages"),
        ({"authoring": {"repository": {"branch": "-x"}}}, "branch"),
        ({"authoring": {"fetch": {"ports": []}}}, "ports"),
        ({"authoring": {"typo": True}}, "typo"),
    ],
)
def test_bad_authoring_values_fail_naming_the_key(values: dict, key: str) -> None:
    with pytest.raises(Exception) as refused:
        render(deep_merge(KEY_SECRET, values))
    assert key in str(refused.value)
