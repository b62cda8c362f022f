"""The pure pod builders: hardening, refusals, labels (no API server involved)."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
from kubespawner.slugs import is_valid_label

from claudehub.spawner import objects
from tests.spawner.pss import restricted_violations

K8S_VERSIONS = ["1.32.0", "1.33.0", "1.34.0", "1.35.0"]


def weak_pod() -> dict[str, Any]:
    """A pod that breaks every rule it can while still being schema-valid."""
    evil_ctx = {
        "privileged": True,
        "runAsUser": 0,
        "runAsNonRoot": False,
        "allowPrivilegeEscalation": True,
        "readOnlyRootFilesystem": False,
        "capabilities": {"add": ["SYS_ADMIN", "NET_RAW"]},
        "seccompProfile": {"type": "Unconfined"},
        "procMount": "Unmasked",
        "seLinuxOptions": {"type": "spc_t"},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "claudehub-mallory",
            "labels": {"app.kubernetes.io/component": "not-a-sandbox", "extra": "kept"},
        },
        "spec": {
            "hostNetwork": True,
            "hostPID": True,
            "hostIPC": True,
            "automountServiceAccountToken": True,
            "serviceAccountName": "default",
            "securityContext": {
                "runAsUser": 0,
                "sysctls": [{"name": "kernel.msgmax", "value": "65536"}],
            },
            "initContainers": [
                {
                    "name": "evil-init",
                    "image": "busybox",
                    "securityContext": copy.deepcopy(evil_ctx),
                }
            ],
            "containers": [
                {
                    "name": "notebook",
                    "image": "sandbox",
                    "ports": [{"containerPort": 8888, "hostPort": 8888, "hostIP": "0.0.0.0"}],
                    "securityContext": copy.deepcopy(evil_ctx),
                    "volumeMounts": [
                        {"name": "claudehub-course", "mountPath": "/srv/course", "readOnly": False},
                        {
                            "name": "scratch",
                            "mountPath": "/scratch",
                            "mountPropagation": "Bidirectional",
                        },
                    ],
                },
                {"name": "sidecar", "image": "busybox", "securityContext": copy.deepcopy(evil_ctx)},
            ],
            "volumes": [
                {"name": "claudehub-course", "emptyDir": {}},
                {"name": "scratch", "emptyDir": {}},
            ],
        },
    }


def test_the_checker_catches_a_weak_pod() -> None:
    violations = restricted_violations(weak_pod())
    joined = "\n".join(violations)
    for expected in (
        "hostNetwork",
        "hostPID",
        "privileged",
        "adds capability SYS_ADMIN",
        "allowPrivilegeEscalation",
        "runAsUser is 0",
        "seccompProfile is Unconfined",
        "hostPort",
        "unsafe sysctl",
        "procMount",
        "seLinuxOptions.type=spc_t",
    ):
        assert expected in joined


def test_hardening_forces_every_invariant() -> None:
    pod = objects.harden_pod(weak_pod(), uid=1000, gid=1000, fs_gid=1000, username="mallory")
    assert restricted_violations(pod) == []
    spec = pod["spec"]
    assert "hostNetwork" not in spec and "hostPID" not in spec and "hostIPC" not in spec
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"] == objects.pod_security_context(1000, 1000, 1000)
    for c in spec["containers"] + spec["initContainers"]:
        assert c["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    main = spec["containers"][0]
    assert main["ports"] == [{"containerPort": 8888}]
    assert main["volumeMounts"] == [
        {"name": "claudehub-course", "mountPath": "/srv/course", "readOnly": True},
        {"name": "scratch", "mountPath": "/scratch"},
    ]
    labels = pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "claudehub"
    assert labels["app.kubernetes.io/component"] == "sandbox"
    assert labels["claudehub.io/user"] == "mallory"
    assert labels["extra"] == "kept"
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)


def test_hardening_does_not_touch_its_input() -> None:
    pod = weak_pod()
    before = copy.deepcopy(pod)
    objects.harden_pod(pod, uid=1000, gid=1000, fs_gid=1000, username="mallory")
    assert pod == before


def test_hardening_is_idempotent() -> None:
    once = objects.harden_pod(weak_pod(), uid=1000, gid=1000, fs_gid=1000, username="m")
    twice = objects.harden_pod(once, uid=1000, gid=1000, fs_gid=1000, username="m")
    assert once == twice


@pytest.mark.parametrize(
    ("volume", "named"),
    [
        ({"name": "host", "hostPath": {"path": "/"}}, "volume 'host' uses 'hostPath'"),
        ({"name": "creds", "secret": {"secretName": "anthropic"}}, "volume 'creds' uses 'secret'"),
        ({"name": "nfs", "nfs": {"server": "x", "path": "/"}}, "volume 'nfs' uses 'nfs'"),
        (
            {"name": "sa", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
            "volume 'sa' projects 'serviceAccountToken'",
        ),
        (
            {"name": "driver", "csi": {"driver": "secrets-store.csi.k8s.io"}},
            "volume 'driver' uses 'csi'",
        ),
    ],
)
def test_disallowed_volumes_are_refused_by_name(volume: dict[str, Any], named: str) -> None:
    pod = weak_pod()
    pod["spec"]["volumes"].append(volume)
    with pytest.raises(objects.SandboxPolicyError, match=named):
        objects.harden_pod(pod, uid=1000, gid=1000, fs_gid=1000, username="m")


def test_secrets_in_the_environment_are_refused() -> None:
    pod = weak_pod()
    pod["spec"]["containers"][0]["env"] = [
        {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "anthropic", "key": "key"}}}
    ]
    with pytest.raises(objects.SandboxPolicyError, match="env 'KEY' reads a Secret"):
        objects.harden_pod(pod, uid=1000, gid=1000, fs_gid=1000, username="m")
    pod = weak_pod()
    pod["spec"]["initContainers"][0]["envFrom"] = [{"secretRef": {"name": "anthropic"}}]
    with pytest.raises(objects.SandboxPolicyError, match="envFrom reads Secret 'anthropic'"):
        objects.harden_pod(pod, uid=1000, gid=1000, fs_gid=1000, username="m")


@pytest.mark.parametrize(("uid", "gid"), [(0, 1000), (1000, 0), (-1, 1000)])
def test_root_ids_are_refused(uid: int, gid: int) -> None:
    with pytest.raises(objects.SandboxPolicyError, match="non-zero"):
        objects.harden_pod(weak_pod(), uid=uid, gid=gid, fs_gid=1000, username="m")


@pytest.mark.parametrize(
    "name", ["alice", "Alice.Smith@example.com", "ünïcødé", "a" * 100, "-dash-", "x_y"]
)
def test_user_label_is_always_a_valid_label(name: str) -> None:
    value = objects.user_label(name)
    assert is_valid_label(value)
    assert len(value) <= 63
    assert objects.user_label(name) == value  # stable, so selectors keep matching


def test_sandbox_storage_replaces_configured_volumes_of_the_same_name() -> None:
    pod = weak_pod()
    pod["spec"]["volumes"].append({"name": "claudehub-tmp", "configMap": {"name": "x"}})
    objects.add_sandbox_storage(
        pod,
        main_container="notebook",
        volumes=objects.sandbox_volumes("claudehub-home-m", "1Gi", ""),
        mounts=objects.sandbox_volume_mounts("/home/claude", "/srv/course"),
        init_container=None,
    )
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["claudehub-tmp"] == {"name": "claudehub-tmp", "emptyDir": {"sizeLimit": "1Gi"}}
    assert volumes["claudehub-course"] == {"name": "claudehub-course", "emptyDir": {}}
    assert volumes["claudehub-home"]["persistentVolumeClaim"] == {"claimName": "claudehub-home-m"}
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "claudehub-course", "mountPath": "/srv/course", "readOnly": True} in mounts
    assert [m["mountPath"] for m in mounts].count("/srv/course") == 1
