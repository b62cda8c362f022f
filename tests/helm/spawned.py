"""Build the sandbox pod the way the hub does: through ClaudeSpawner's own pod builder.

No Kubernetes API is contacted: KubeSpawner only needs a kubeconfig to construct its client,
and ``get_pod_manifest`` is pure.
"""

from __future__ import annotations

import base64
import itertools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from jupyterhub.objects import Hub
from traitlets.config import Config

from tests.helm.charts import Rendering, write_hub_files

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: none, user: {token: not-a-real-token}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""

_ids = itertools.count(1)


def write_kubeconfig(folder: Path) -> Path:
    """A kubeconfig pointing nowhere (KubeSpawner loads one when it is constructed)."""
    path = folder / "kubeconfig"
    path.write_text(KUBECONFIG)
    return path


def reset_kubespawner() -> None:
    """KubeSpawner keeps clients and the loaded config in module globals."""
    import kubespawner.clients
    from kubespawner import KubeSpawner

    kubespawner.clients._client_cache.clear()
    KubeSpawner.reflectors.clear()
    kubespawner.clients.load_config.cache_clear()


async def build_sandbox_pod(
    config: Config,
    username: str = "alice",
    user_options: dict[str, Any] | None = None,
    spawner_class: Any = None,
    hub_host: str = "10.43.0.10",
    apply_options: bool = False,
) -> dict[str, Any]:
    """The pod manifest (a JSON-shaped dict) ClaudeSpawner would send for ``username``.

    Must run inside an event loop (KubeSpawner creates its API client there).
    """
    from claudehub.spawner import codec
    from claudehub.spawner.kube import ClaudeSpawner

    cls = spawner_class or ClaudeSpawner
    user = SimpleNamespace(
        name=username, id=next(_ids), url=f"/user/{username}/", escaped_name=username
    )
    hub = Hub(ip=hub_host, port=8081, base_url="/hub/")
    spawner = cls(config=config, user=user, hub=hub, api_token=f"hub-token-{username}")
    if user_options is not None:
        spawner.user_options = user_options
        await spawner.load_user_options()
        if apply_options:  # as the hub does before start: course and model chosen
            await spawner.apply_user_options(spawner, dict(user_options))
    pod = await spawner.get_pod_manifest()
    manifest: dict[str, Any] = codec.to_dict(pod)
    manifest.setdefault("metadata", {}).setdefault("namespace", spawner.namespace)
    return manifest


def hub_environment(rendering: Rendering) -> dict[str, str]:
    """The environment the hub container gets, resolved from the rendered Secrets."""
    hub = rendering.one("Deployment", "claudehub-hub")
    secrets = {s["metadata"]["name"]: s for s in rendering.find("Secret")}
    env: dict[str, str] = {}
    for var in hub["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"].get("secretKeyRef")
        if ref is None:
            continue
        if ref["name"] in secrets:
            env[var["name"]] = base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode()
        else:  # an operator's Secret (GitHub OAuth app): any value will do here
            env[var["name"]] = f"operator-secret-{ref['key']}-0123456789abcdef"
    return env


def hub_config(rendering: Rendering, tmp_path: Path) -> tuple[Config, dict[str, Any]]:
    """What jupyterhub_config.py builds from the rendered ConfigMap and Secret."""
    from claudehub.hub import settings as hub_settings
    from claudehub.hub.kubernetes import HubEnvironment, configure_kubernetes

    checked = hub_settings.load(write_hub_files(rendering, tmp_path / "hub-config"))
    c = Config()
    variables = hub_environment(rendering)
    secrets = HubEnvironment(
        **{trait: variables.get(name, "") for trait, name in HubEnvironment.VARIABLES.items()}
    )
    configure_kubernetes(c, checked, secrets)
    # The chart mounts the hub Secret's token-secret key at the path the settings name.
    mounted = checked["chart"]["tokenSecretFile"]
    hub = rendering.one("Deployment", "claudehub-hub")["spec"]["template"]["spec"]
    mounts = {m["mountPath"] for m in hub["containers"][0]["volumeMounts"]}
    assert str(Path(mounted).parent) in mounts
    secret = rendering.one("Secret", "claudehub-hub")["data"]["token-secret"]
    local = tmp_path / "token-secret"
    local.write_bytes(base64.b64decode(secret))
    c.ClaudeSpawner.token_secret_file = str(local)
    return c, checked
