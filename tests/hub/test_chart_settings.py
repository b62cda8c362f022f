"""The settings file the chart renders is one the hub accepts, for every realistic value set."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes_validate
import pytest
import yaml
from jupyterhub.objects import Hub
from traitlets.config import Config

from claudehub.hub.kubernetes import configure_kubernetes
from claudehub.hub.settings import validate
from claudehub.spawner import codec
from claudehub.spawner.kube import ClaudeSpawner
from tests.helm.charts import CHART, KUBE_VERSIONS, VALUE_SETS, deep_merge, hub_files, render
from tests.hub.test_kubernetes import ENV, secrets_from
from tests.spawner.conftest import kubeconfig  # noqa: F401  (a fixture)
from tests.spawner.pss import restricted_violations

DEFAULT_VALUES = CHART / "values.yaml"
CHART_APP_VERSION = str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])


def hub_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The settings file the chart hands the hub for ``values``, checked as the hub does."""
    return validate(*hub_files(render(values)))


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_the_hub_accepts_what_the_chart_renders(name: str) -> None:
    values = VALUE_SETS[name]
    settings = hub_settings(values)
    c = Config()
    configure_kubernetes(c, settings, secrets_from(ENV))
    s = c.ClaudeSpawner
    sandbox = values.get("sandbox", {})
    assert s.sandbox_resources == settings["sandbox"]["resources"]
    if sandbox.get("gpu", {}).get("enabled"):
        gpu = next(p for p in s.profile_list if p["slug"] == "gpu")
        assert gpu["kubespawner_override"]["gpu_limit"] == sandbox["gpu"]["count"]
        assert (
            gpu["kubespawner_override"]["gpu_runtime_class"] == sandbox["gpu"]["runtimeClassName"]
        )
    if sandbox.get("namespace"):
        assert s.namespace == sandbox["namespace"]


@pytest.mark.asyncio
@pytest.mark.usefixtures("kubeconfig")
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
async def test_the_pod_is_what_the_values_promise(name: str, tmp_path: Path) -> None:
    """The sandbox pod ClaudeSpawner builds under the chart's rendered hub settings."""
    values = deep_merge(yaml.safe_load(DEFAULT_VALUES.read_text()), VALUE_SETS[name])
    c = Config()
    configure_kubernetes(c, hub_settings(VALUE_SETS[name]), secrets_from(ENV))
    (tmp_path / "token-secret").write_text("0123456789abcdef0123456789abcdef")
    c.ClaudeSpawner.token_secret_file = str(tmp_path / "token-secret")
    sandbox = values["sandbox"]
    profiles = ["default"] + (["gpu"] if sandbox["gpu"]["enabled"] else [])
    for profile in profiles:
        user = SimpleNamespace(name="alice", id=1, url="/user/alice/", escaped_name="alice")
        hub = Hub(ip="10.43.0.10", port=8081, base_url="/hub/")
        spawner = ClaudeSpawner(config=c, user=user, hub=hub, api_token="t")
        spawner.user_options = {"profile": profile}
        await spawner.apply_user_options(spawner, spawner.user_options)
        await spawner.load_user_options()
        pod = codec.to_dict(await spawner.get_pod_manifest())
        main = pod["spec"]["containers"][0]
        tag = sandbox["image"]["tag"] or CHART_APP_VERSION
        assert main["image"] == f"{sandbox['image']['repository']}:{tag}"
        assert main["imagePullPolicy"] == sandbox["image"]["pullPolicy"]
        assert pod["spec"]["imagePullSecrets"] == [{"name": n} for n in values["imagePullSecrets"]]
        if profile == "gpu":
            gpu = sandbox["gpu"]
            expected = {
                part: {**sandbox["resources"].get(part, {}), **gpu["resources"].get(part, {})}
                for part in ("requests", "limits")
            }
            expected["limits"]["nvidia.com/gpu"] = str(gpu["count"])
            assert main["resources"] == expected
            assert pod["spec"]["runtimeClassName"] == gpu["runtimeClassName"]
            assert pod["spec"]["nodeSelector"] == {**sandbox["nodeSelector"], **gpu["nodeSelector"]}
            assert pod["spec"]["tolerations"] == gpu["tolerations"]
        else:
            assert main["resources"] == sandbox["resources"]
            assert "runtimeClassName" not in pod["spec"]
        assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "sandbox"
        assert restricted_violations(pod) == []
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(pod, version, strict=True)
