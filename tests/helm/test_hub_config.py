"""The hub the chart configures spawns the pod the chart's values promise.

The chart's rendered settings file goes through the hub's own loader
(claudehub.hub.settings + kubernetes), and the resulting ClaudeSpawner builds the
sandbox pod with its own pod builder. The pod must carry the values' image, resources,
profile, namespace and URLs, fit the chart's LimitRange and be counted by its ResourceQuota.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from claudehub.hub import settings as hub_settings
from claudehub.hub.pages import TEMPLATES_DIR
from tests.helm.charts import NAMESPACE, Rendering, deep_merge, hub_files, render
from tests.helm.spawned import build_sandbox_pod, hub_config


def container(pod: dict[str, Any], name: str = "notebook") -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in c.get("env") or []}


def _mi(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / (1024 * 1024)


def _cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def assert_fits_limit_range(rendering: Rendering, pod: dict[str, Any]) -> None:
    limit_range = rendering.one("LimitRange", "claudehub-sandbox")
    maximum = next(x for x in limit_range["spec"]["limits"] if x["type"] == "Container")["max"]
    for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
        limits = c["resources"]["limits"]
        assert _cpu(limits["cpu"]) <= _cpu(maximum["cpu"]), c["name"]
        assert _mi(limits["memory"]) <= _mi(maximum["memory"]), c["name"]


SANDBOX_VALUES: dict[str, Any] = {
    "keyproxy": {"apiKey": {"existingSecret": "anthropic-key"}},
    "sandbox": {
        "image": {
            "repository": "registry.example.org/claudehub/sandbox",
            "tag": "2.0.1",
            "pullPolicy": "Always",
        },
        "resources": {
            "requests": {"cpu": "300m", "memory": "600Mi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        },
        "storage": {"capacity": "3Gi", "storageClassName": "local-path"},
        "models": ["claude-sonnet-4-5", "claude-haiku-4-5"],
        "nodeSelector": {"claudehub.io/sandboxes": "yes"},
        "gpu": {
            "enabled": True,
            "displayName": "GPU (A100)",
            "count": 1,
            "runtimeClassName": "nvidia",
            "resources": {
                "requests": {"cpu": "1", "memory": "2Gi"},
                "limits": {"cpu": "4", "memory": "8Gi"},
            },
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
        },
        "quota": {"gpus": 2},
    },
    "imagePullSecrets": ["registry-creds"],
}


@pytest.mark.asyncio
async def test_default_profile_pod_matches_the_values(kubeconfig: Path, tmp_path: Path) -> None:
    rendering = render(SANDBOX_VALUES)
    c, _ = hub_config(rendering, tmp_path)
    pod = await build_sandbox_pod(c, "alice", user_options={"profile": "default"})
    main = container(pod)
    assert main["image"] == "registry.example.org/claudehub/sandbox:2.0.1"
    assert main["imagePullPolicy"] == "Always"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert main["resources"] == SANDBOX_VALUES["sandbox"]["resources"]
    assert pod["spec"]["nodeSelector"] == {"claudehub.io/sandboxes": "yes"}
    assert pod["metadata"]["namespace"] == NAMESPACE
    assert "runtimeClassName" not in pod["spec"]
    # Counted by the chart's ResourceQuota (scoped to the chart's PriorityClass).
    quota = rendering.one("ResourceQuota", "claudehub-sandbox")
    assert (
        pod["spec"]["priorityClassName"]
        in quota["spec"]["scopeSelector"]["matchExpressions"][0]["values"]
    )
    rendering.one("PriorityClass", pod["spec"]["priorityClassName"])
    assert_fits_limit_range(rendering, pod)
    # The URLs the sandbox gets are the chart's Services.
    env = env_of(main)
    services = {
        f"http://{s['metadata']['name']}.{NAMESPACE}.svc:{s['spec']['ports'][0]['port']}"
        for s in rendering.find("Service")
    }
    assert env["ANTHROPIC_BASE_URL"] in services
    assert env["ANTHROPIC_BASE_URL"].startswith("http://claudehub-keyproxy.")
    progress = env["CLAUDEHUB_PROGRESS_URL"]
    assert progress.startswith("http://claudehub-progress.claudehub.svc:8080/services/progress/")
    assert env["ANTHROPIC_API_KEY"].startswith("chs1.")  # a sandbox token, not the key


@pytest.mark.asyncio
async def test_gpu_profile_pod_matches_the_values(kubeconfig: Path, tmp_path: Path) -> None:
    rendering = render(SANDBOX_VALUES)
    c, _ = hub_config(rendering, tmp_path)
    pod = await build_sandbox_pod(c, "bob", user_options={"profile": "gpu"})
    main = container(pod)
    gpu = SANDBOX_VALUES["sandbox"]["gpu"]
    assert main["resources"]["requests"] == gpu["resources"]["requests"]
    assert main["resources"]["limits"] == {**gpu["resources"]["limits"], "nvidia.com/gpu": "1"}
    assert pod["spec"]["runtimeClassName"] == "nvidia"
    # The GPU profile's node selector is added to the sandboxes' own.
    assert pod["spec"]["nodeSelector"] == {
        **SANDBOX_VALUES["sandbox"]["nodeSelector"],
        **gpu["nodeSelector"],
    }
    assert gpu["tolerations"][0] in pod["spec"]["tolerations"]
    assert_fits_limit_range(rendering, pod)


def test_profile_list_offers_what_the_values_promise(tmp_path: Path) -> None:
    c, _ = hub_config(render(SANDBOX_VALUES), tmp_path)
    profiles = c.ClaudeSpawner.profile_list
    assert [(p["slug"], p["display_name"], p["default"]) for p in profiles] == [
        ("default", "Standard", True),
        ("gpu", "GPU (A100)", False),
    ]
    assert c.ClaudeSpawner.allowed_models == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    assert c.ClaudeSpawner.storage_capacity == "3Gi"
    assert c.ClaudeSpawner.storage_class == "local-path"
    # Without the GPU profile only the standard one is offered.
    c2, _ = hub_config(
        render(deep_merge(SANDBOX_VALUES, {"sandbox": {"gpu": {"enabled": False}}})), tmp_path
    )
    assert [p["slug"] for p in c2.ClaudeSpawner.profile_list] == ["default"]


@pytest.mark.parametrize(
    "name",
    ["default", "github-oauth", "external-postgresql", "ingress-tls", "gpu", "separate-namespace"],
)
def test_every_value_set_gives_a_hub_config_that_loads(
    renderings: dict[str, Rendering], name: str, tmp_path: Path
) -> None:
    rendering = renderings[name]
    c, checked = hub_config(rendering, tmp_path)
    v = rendering.values
    assert checked["chart"]["sandboxNamespace"] == (
        v.get("sandbox", {}).get("namespace") or NAMESPACE
    )
    assert c.JupyterHub.active_server_limit == 4
    assert c.ConfigurableHTTPProxy.api_url == "http://claudehub-proxy-api.claudehub.svc:8001"
    assert c.JupyterHub.hub_connect_url == "http://claudehub-hub.claudehub.svc:8081"
    # The learner's pages: claudehub's templates, from the package the hub image installs.
    assert c.JupyterHub.template_paths == [str(TEMPLATES_DIR)]
    assert (TEMPLATES_DIR / "spawn.html").is_file()
    assert c.JupyterHub.default_url == "/hub/home"
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert "url" not in services["keyproxy"]  # never routed through the public proxy
    assert services["progress"]["url"] == "http://claudehub-progress.claudehub.svc:8080"
    # The services' tokens are the ones their Deployments get.
    for svc, deployment in (("keyproxy", "claudehub-keyproxy"), ("progress", "claudehub-progress")):
        spec = rendering.one("Deployment", deployment)["spec"]["template"]["spec"]
        ref = next(e for e in spec["containers"][0]["env"] if e["name"] == "JUPYTERHUB_API_TOKEN")
        token = base64.b64decode(
            rendering.one("Secret", ref["valueFrom"]["secretKeyRef"]["name"])["data"][
                ref["valueFrom"]["secretKeyRef"]["key"]
            ]
        ).decode()
        assert services[svc]["api_token"] == token
    if v.get("hub", {}).get("db", {}).get("type") == "postgresql":
        assert c.JupyterHub.db_url == v["hub"]["db"]["url"]
    else:
        assert c.JupyterHub.db_url == "sqlite:////srv/jupyterhub/jupyterhub.sqlite"
    if v.get("auth", {}).get("type") == "github":
        assert c.GitHubOAuthenticator.oauth_callback_url == v["auth"]["github"]["callbackUrl"]


def test_admins_with_password_auth_get_their_own_password(tmp_path: Path) -> None:
    rendering = render(
        {"keyproxy": {"apiKey": {"existingSecret": "k"}}, "auth": {"admins": ["root-user"]}}
    )
    c, _ = hub_config(rendering, tmp_path)
    assert len(c.SharedPasswordAuthenticator.admin_password) >= 32
    assert (
        c.SharedPasswordAuthenticator.admin_password != c.SharedPasswordAuthenticator.user_password
    )
    assert "admin-password" in rendering.notes


def test_settings_file_shape_is_what_the_loader_accepts(default: Rendering) -> None:
    data, schema = hub_files(default)
    hub_settings.validate(data, schema)  # no unknown keys, no bad values
