"""An operator (or a profile) tries to weaken the sandbox pod, and fails."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from claudehub.spawner.kube import ClaudeSpawner, SandboxStartError
from tests.spawner.conftest import Cluster, spawner_config
from tests.spawner.pss import restricted_violations
from tests.spawner.test_kube_spawn import SANDBOX_CONTEXT, start_and_run, validate_everywhere

MakeSpawner = Callable[..., ClaudeSpawner]

PRIVILEGED_INIT = {
    "name": "setup",
    "image": "busybox",
    "command": ["sh", "-c", "chmod 777 /srv/course"],
    "securityContext": {"privileged": True, "runAsUser": 0},
    "volumeMounts": [{"name": "claudehub-course", "mountPath": "/srv/course"}],
}

# Everything KubeSpawner lets configuration say about privileges, at once.
WEAKENING = {
    "privileged": True,
    "allow_privilege_escalation": True,
    "uid": 0,
    "gid": 0,
    "fs_gid": 0,
    "automount_service_account_token": True,
    "service_account": "hub",
    "container_security_context": {
        "runAsUser": 0,
        "capabilities": {"add": ["SYS_ADMIN", "NET_ADMIN"]},
        "seccompProfile": {"type": "Unconfined"},
        "readOnlyRootFilesystem": False,
    },
    "pod_security_context": {"runAsUser": 0, "runAsNonRoot": False},
    "extra_pod_config": {"hostNetwork": True, "hostPID": True, "hostIPC": True},
    "extra_container_config": {
        "securityContext": {"privileged": True, "capabilities": {"add": ["ALL"]}},
        "ports": [{"containerPort": 8888, "hostPort": 8888}],
    },
    "init_containers": [PRIVILEGED_INIT],
    "extra_containers": [
        {"name": "sidecar", "image": "busybox", "securityContext": {"privileged": True}}
    ],
    "volume_mounts": [{"name": "claudehub-course", "mountPath": "/srv/course", "readOnly": False}],
}


def assert_locked_down(pod: dict[str, Any]) -> None:
    validate_everywhere(pod)
    assert restricted_violations(pod) == []
    spec = pod["spec"]
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        assert field not in spec
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsUser"] == 1000
    assert spec["securityContext"]["runAsNonRoot"] is True
    containers = spec["containers"] + spec.get("initContainers", [])
    assert {c["name"] for c in containers} >= {"notebook", "sidecar", "setup", "fetch-course"}
    for c in containers:
        assert c["securityContext"] == SANDBOX_CONTEXT, c["name"]
        assert all("hostPort" not in p for p in c.get("ports") or [])
        for m in c.get("volumeMounts") or []:
            if m["name"] == "claudehub-course" and c["name"] != "fetch-course":
                assert m.get("readOnly") is True, c["name"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "sandbox"


@pytest.mark.asyncio
async def test_config_cannot_weaken_the_pod(cluster: Cluster, make_spawner: MakeSpawner) -> None:
    def hook(spawner: ClaudeSpawner, pod: Any) -> Any:
        # A modify_pod_hook runs after get_pod_manifest; it is checked too.
        pod.spec.containers[0].security_context.privileged = True
        pod.spec.host_network = True
        pod.metadata.labels["app.kubernetes.io/component"] = "escaped"
        return pod

    spawner = make_spawner(
        "mallory",
        extra_labels={"app.kubernetes.io/component": "escaped"},
        modify_pod_hook=hook,
        **WEAKENING,
    )
    await spawner.apply_sandbox_options({"course": "git-basics"})
    await start_and_run(cluster, spawner)
    [pod] = cluster.emulator.created("pods")
    assert_locked_down(pod)


@pytest.mark.asyncio
async def test_profile_overrides_cannot_weaken_the_pod(
    cluster: Cluster, make_spawner: MakeSpawner
) -> None:
    profile = {
        "display_name": "Power user",
        "slug": "power",
        "default": True,
        "kubespawner_override": dict(WEAKENING, component_label="escaped"),
    }
    spawner = make_spawner("trudy", profile_list=[profile])
    await spawner.apply_sandbox_options({"course": "git-basics"})
    await start_and_run(cluster, spawner)
    [pod] = cluster.emulator.created("pods")
    assert_locked_down(pod)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("override", "named"),
    [
        (
            {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
            "volume 'root' uses 'hostPath'",
        ),
        (
            {"volumes": [{"name": "key", "secret": {"secretName": "anthropic-api-key"}}]},
            "volume 'key' uses 'secret'",
        ),
        (
            {
                "volumes": [
                    {
                        "name": "token",
                        "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]},
                    }
                ]
            },
            "volume 'token' projects 'serviceAccountToken'",
        ),
        (
            {"extra_container_config": {"envFrom": [{"secretRef": {"name": "anthropic-api-key"}}]}},
            "envFrom reads Secret 'anthropic-api-key'",
        ),
    ],
)
async def test_what_cannot_be_made_safe_is_refused(
    cluster: Cluster, make_spawner: MakeSpawner, override: dict[str, Any], named: str
) -> None:
    profile = {"display_name": "x", "slug": "x", "default": True, "kubespawner_override": override}
    spawner = make_spawner("oscar", profile_list=[profile])
    await spawner.apply_sandbox_options({})
    with pytest.raises(SandboxStartError) as info:
        await asyncio.wait_for(spawner.start(), 10)
    assert named in info.value.jupyterhub_message
    assert info.value.jupyterhub_message.startswith("The sandbox configuration is not allowed")
    assert cluster.emulator.created("pods") == []


@pytest.mark.asyncio
async def test_a_root_sandbox_uid_is_refused(cluster: Cluster, make_spawner: MakeSpawner) -> None:
    with pytest.raises(Exception, match=r"sandbox_uid must be a non-root id \(> 0\), got 0"):
        make_spawner("root", config=spawner_config(cluster, sandbox_uid=0))
    profile = {
        "display_name": "root",
        "slug": "root",
        "default": True,
        "kubespawner_override": {"sandbox_gid": 0},
    }
    spawner = make_spawner("root", profile_list=[profile])
    await spawner.apply_sandbox_options({})
    with pytest.raises(Exception, match=r"sandbox_gid must be a non-root id \(> 0\), got 0"):
        await asyncio.wait_for(spawner.start(), 10)
    assert cluster.emulator.created("pods") == []
