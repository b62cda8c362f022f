"""Pure builders for the Kubernetes objects of a claudehub sandbox (no I/O, no spawner state).

Everything here works on plain JSON-shaped dicts (camelCase keys, as the API server sees
them), so tests can assert on exactly what reaches the API and validate it against the
Kubernetes schema. :class:`~claudehub.spawner.kube.ClaudeSpawner` feeds these from its
traits, the way kubespawner's ``objects.py`` serves ``KubeSpawner``.

The one function with teeth is :func:`harden_pod`: it takes whatever pod the configuration,
profiles and hooks produced and returns one that satisfies the sandbox invariants and the
Pod Security Standard "restricted". Fields that have a safe value are forced to it; things
that cannot be made safe without changing what the operator asked for (a ``hostPath``
volume, a Secret in the environment) make it raise :class:`SandboxPolicyError`, which
names the offending field, and the spawn is refused.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

from kubespawner.slugs import is_valid_label, safe_slug

# The labels NetworkPolicies, quotas and the chart select sandbox pods by are part of the
# written contract (the chart is the other side).
from claudehub.contract.labels import (
    APP_NAME,
    APP_NAME_LABEL,
    COMPONENT_LABEL,
    SANDBOX_COMPONENT,
    STORAGE_COMPONENT,
    USER_LABEL,
)

#: Names of the volumes every sandbox pod gets.
HOME_VOLUME = "claudehub-home"
TMP_VOLUME = "claudehub-tmp"
COURSE_VOLUME = "claudehub-course"
#: An author session's drafts folder: the one writable path it has besides $HOME and /tmp.
DRAFT_VOLUME = "claudehub-draft"
#: Name of the init container that fetches the course files.
FETCH_CONTAINER = "fetch-course"

#: Volume sources a sandbox may use. A subset of what "restricted" allows: no ``secret``
#: (nothing secret goes into a sandbox but its own tokens) and no inline ``csi``.
ALLOWED_VOLUME_SOURCES = frozenset(
    {"emptyDir", "persistentVolumeClaim", "configMap", "downwardAPI", "ephemeral", "projected"}
)
ALLOWED_PROJECTED_SOURCES = frozenset({"configMap", "downwardAPI"})

#: Pod spec fields that share a host namespace; always removed.
HOST_NAMESPACE_FIELDS = ("hostNetwork", "hostPID", "hostIPC")


class SandboxPolicyError(ValueError):
    """The configured pod asks for something a sandbox may not have.

    The message names the field, so the operator can find it in the configuration.
    """


def user_label(username: str) -> str:
    """The ``claudehub.io/user`` label value for a hub user name (a valid label value)."""
    return str(safe_slug(username, is_valid=is_valid_label, max_length=63))


def sandbox_labels(username: str) -> dict[str, str]:
    """The labels that identify a user's sandbox pod (NetworkPolicies select on these)."""
    return {
        APP_NAME_LABEL: APP_NAME,
        COMPONENT_LABEL: SANDBOX_COMPONENT,
        USER_LABEL: user_label(username),
    }


def storage_labels(username: str) -> dict[str, str]:
    """Labels of a user's home PVC (deliberately not matching the sandbox pod selector)."""
    return {
        APP_NAME_LABEL: APP_NAME,
        COMPONENT_LABEL: STORAGE_COMPONENT,
        USER_LABEL: user_label(username),
    }


def pod_security_context(uid: int, gid: int, fs_gid: int) -> dict[str, Any]:
    """The pod-level security context of every sandbox pod."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": fs_gid,
        # Only chown the home volume when it does not already belong to fs_gid: a big
        # home would otherwise be walked at every start.
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(uid: int, gid: int) -> dict[str, Any]:
    """The security context of every container in a sandbox pod (init containers too)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def sandbox_volumes(
    pvc_name: str,
    tmp_size_limit: str = "",
    course_size_limit: str = "",
    *,
    draft_size_limit: str | None = None,
) -> list[dict[str, Any]]:
    """The home PVC, a scratch ``/tmp`` and the course folder (filled by the init container);
    an author session's pod (``draft_size_limit`` not None) also gets its drafts folder, an
    emptyDir: drafts live with the course service, never on a volume a sandbox shares."""
    tmp: dict[str, Any] = {"sizeLimit": tmp_size_limit} if tmp_size_limit else {}
    course: dict[str, Any] = {"sizeLimit": course_size_limit} if course_size_limit else {}
    volumes: list[dict[str, Any]] = [
        {"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": pvc_name}},
        {"name": TMP_VOLUME, "emptyDir": tmp},
        {"name": COURSE_VOLUME, "emptyDir": course},
    ]
    if draft_size_limit is not None:
        draft: dict[str, Any] = {"sizeLimit": draft_size_limit} if draft_size_limit else {}
        volumes.append({"name": DRAFT_VOLUME, "emptyDir": draft})
    return volumes


def sandbox_volume_mounts(
    home_path: str, course_path: str, draft_path: str = ""
) -> list[dict[str, Any]]:
    """Mounts of the main container: home and /tmp writable, the course read-only; an
    author session's drafts folder (``draft_path``) writable."""
    mounts: list[dict[str, Any]] = [
        {"name": HOME_VOLUME, "mountPath": home_path},
        {"name": TMP_VOLUME, "mountPath": "/tmp"},
        {"name": COURSE_VOLUME, "mountPath": course_path, "readOnly": True},
    ]
    if draft_path:
        mounts.append({"name": DRAFT_VOLUME, "mountPath": draft_path})
    return mounts


def course_fetch_container(
    *,
    image: str,
    command: list[str],
    env: Mapping[str, str],
    course_path: str,
    image_pull_policy: str | None = None,
    resources: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The init container that downloads the course bundle into the course volume.

    It is the only container that may write the course volume; the sandbox sees it
    read-only. It reaches the course+progress service over the cluster network (sandboxes
    have no other egress).
    """
    container: dict[str, Any] = {
        "name": FETCH_CONTAINER,
        "image": image,
        "command": list(command),
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "volumeMounts": [
            {"name": COURSE_VOLUME, "mountPath": course_path},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},
        ],
    }
    if image_pull_policy:
        container["imagePullPolicy"] = image_pull_policy
    if resources:
        container["resources"] = copy.deepcopy(dict(resources))
    return container


def add_sandbox_storage(
    pod: dict[str, Any],
    *,
    main_container: str,
    volumes: Iterable[dict[str, Any]],
    mounts: Iterable[dict[str, Any]],
    init_container: dict[str, Any] | None,
) -> dict[str, Any]:
    """Put the sandbox's own volumes, mounts and fetch container into ``pod`` (in place).

    They replace any configured volume, mount or init container of the same name, so the
    configuration cannot swap the read-only course folder for something else.
    """
    spec = pod.setdefault("spec", {})
    ours = list(volumes)
    names = {v["name"] for v in ours}
    spec["volumes"] = [v for v in spec.get("volumes") or [] if v.get("name") not in names] + ours
    our_mounts = list(mounts)
    for container in spec.get("containers") or []:
        if container.get("name") == main_container:
            paths = {m["mountPath"] for m in our_mounts}
            kept = [
                m
                for m in container.get("volumeMounts") or []
                if m.get("name") not in names and m.get("mountPath") not in paths
            ]
            container["volumeMounts"] = kept + our_mounts
    inits = [c for c in spec.get("initContainers") or [] if c.get("name") != FETCH_CONTAINER]
    if init_container is not None:
        # The course must be in place before anything else in the pod starts.
        inits.insert(0, init_container)
    if inits:
        spec["initContainers"] = inits
    else:
        spec.pop("initContainers", None)
    return pod


def _check_volume(volume: Mapping[str, Any]) -> None:
    name = volume.get("name", "?")
    sources = [k for k in volume if k != "name"]
    for source in sources:
        if source not in ALLOWED_VOLUME_SOURCES:
            raise SandboxPolicyError(
                f"volume {name!r} uses {source!r}; sandbox pods may only use "
                f"{', '.join(sorted(ALLOWED_VOLUME_SOURCES))} volumes"
            )
    projected = volume.get("projected")
    if isinstance(projected, Mapping):
        for item in projected.get("sources") or []:
            for kind in item:
                if kind not in ALLOWED_PROJECTED_SOURCES:
                    raise SandboxPolicyError(
                        f"volume {name!r} projects {kind!r}; sandbox pods may only project "
                        f"{', '.join(sorted(ALLOWED_PROJECTED_SOURCES))}"
                    )


def _check_env(container: Mapping[str, Any]) -> None:
    cname = container.get("name", "?")
    for var in container.get("env") or []:
        source = var.get("valueFrom") or {}
        if "secretKeyRef" in source:
            raise SandboxPolicyError(
                f"container {cname!r}: env {var.get('name')!r} reads a Secret; "
                "a sandbox gets no secrets but its own tokens"
            )
    for src in container.get("envFrom") or []:
        if "secretRef" in src:
            raise SandboxPolicyError(
                f"container {cname!r}: envFrom reads Secret {src['secretRef'].get('name')!r}; "
                "a sandbox gets no secrets but its own tokens"
            )


def _harden_container(
    container: dict[str, Any], uid: int, gid: int, read_only_volumes: frozenset[str]
) -> None:
    container["securityContext"] = container_security_context(uid, gid)
    _check_env(container)
    for port in container.get("ports") or []:
        # Host ports would expose the sandbox on the node, outside any NetworkPolicy.
        port.pop("hostPort", None)
        port.pop("hostIP", None)
    for mount in container.get("volumeMounts") or []:
        # Bidirectional propagation needs a privileged container.
        mount.pop("mountPropagation", None)
        if mount.get("name") in read_only_volumes:
            mount["readOnly"] = True
    if container.get("volumeDevices"):
        raise SandboxPolicyError(
            f"container {container.get('name', '?')!r} asks for raw block devices"
        )


def harden_pod(
    pod: Mapping[str, Any],
    *,
    uid: int,
    gid: int,
    fs_gid: int,
    username: str,
    read_only_volumes: Iterable[str] = (COURSE_VOLUME,),
    writers: Iterable[str] = (FETCH_CONTAINER,),
) -> dict[str, Any]:
    """Return a copy of ``pod`` that satisfies the sandbox invariants.

    Forced, whatever the input said: non-root ``uid``/``gid`` (pod and every container),
    read-only root filesystem, no privilege escalation, no privileged mode, all
    capabilities dropped, ``RuntimeDefault`` seccomp, no service-account token, no host
    namespaces or host ports, no ephemeral containers, the sandbox labels. Mounts of
    ``read_only_volumes`` are read-only in every container except ``writers``.

    Raises :class:`SandboxPolicyError` for a disallowed volume type (``hostPath``,
    ``secret``, ...), a projected service-account token, a Secret in the environment or a
    raw block device.
    """
    if uid <= 0 or gid <= 0 or fs_gid <= 0:
        raise SandboxPolicyError("sandbox uid, gid and fs_gid must be non-zero (non-root)")
    # A JSON round trip copies a manifest several times faster than deepcopy.
    hardened: dict[str, Any] = json.loads(json.dumps(pod))
    metadata = hardened.setdefault("metadata", {})
    labels = metadata.get("labels") or {}
    labels.update(sandbox_labels(username))
    metadata["labels"] = labels

    spec = hardened.setdefault("spec", {})
    for field in HOST_NAMESPACE_FIELDS:
        spec.pop(field, None)
    spec.pop("ephemeralContainers", None)
    spec["automountServiceAccountToken"] = False
    spec["securityContext"] = pod_security_context(uid, gid, fs_gid)

    for volume in spec.get("volumes") or []:
        _check_volume(volume)

    read_only = frozenset(read_only_volumes)
    writer_names = frozenset(writers)
    for container in spec.get("containers") or []:
        _harden_container(container, uid, gid, read_only)
    for container in spec.get("initContainers") or []:
        exempt = read_only if container.get("name") not in writer_names else frozenset()
        _harden_container(container, uid, gid, exempt)
    return hardened
