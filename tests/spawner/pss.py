"""A checker for the Kubernetes Pod Security Standard "restricted" (baseline included).

Written from the policy text (https://kubernetes.io/docs/concepts/security/pod-security-standards/,
v1.32+): every control of the baseline and the restricted profile that applies to a Linux
pod. Returns the list of violations, empty when the pod passes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            yield f"{field}[{c.get('name')}]", c


def restricted_violations(pod: Mapping[str, Any]) -> list[str]:
    """Violations of PSS baseline + restricted in ``pod`` (a Pod manifest as a dict)."""
    spec = pod.get("spec") or {}
    psc = spec.get("securityContext") or {}
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    v: list[str] = []

    # -- baseline ------------------------------------------------------------------------
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            v.append(f"spec.{field} is true")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        v.append("spec.securityContext.windowsOptions.hostProcess")
    for vol in spec.get("volumes") or []:
        if "hostPath" in vol:
            v.append(f"volume {vol.get('name')} is hostPath")
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            v.append(f"unsafe sysctl {sysctl.get('name')}")
    for key, value in annotations.items():
        if (
            key.startswith("container.apparmor.security.beta.kubernetes.io/")
            and value not in ("runtime/default",)
            and not str(value).startswith("localhost/")
        ):
            v.append(f"apparmor annotation {key}={value}")

    def check_selinux(where: str, ctx: Mapping[str, Any]) -> None:
        se = ctx.get("seLinuxOptions") or {}
        if se.get("type", "") not in SELINUX_TYPES:
            v.append(f"{where}.seLinuxOptions.type={se.get('type')}")
        if se.get("user") or se.get("role"):
            v.append(f"{where}.seLinuxOptions user/role set")

    def check_apparmor(where: str, ctx: Mapping[str, Any]) -> None:
        profile = ctx.get("appArmorProfile") or {}
        if profile.get("type") == "Unconfined":
            v.append(f"{where}.appArmorProfile is Unconfined")

    check_selinux("spec.securityContext", psc)
    check_apparmor("spec.securityContext", psc)
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    pod_non_root = psc.get("runAsNonRoot")
    if psc.get("runAsUser") == 0:
        v.append("spec.securityContext.runAsUser is 0")

    # -- restricted: volumes -------------------------------------------------------------
    for vol in spec.get("volumes") or []:
        kinds = [k for k in vol if k != "name"]
        for kind in kinds:
            if kind not in RESTRICTED_VOLUMES:
                v.append(f"volume {vol.get('name')} type {kind} not allowed")

    for where, c in _containers(spec):
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            v.append(f"{where} privileged")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            v.append(f"{where} hostProcess")
        caps = sc.get("capabilities") or {}
        for cap in caps.get("add") or []:
            if cap not in BASELINE_CAPABILITIES:
                v.append(f"{where} adds capability {cap} (baseline)")
            if cap != "NET_BIND_SERVICE":
                v.append(f"{where} adds capability {cap} (restricted)")
        if "ALL" not in (caps.get("drop") or []):
            v.append(f"{where} does not drop ALL capabilities")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                v.append(f"{where} uses hostPort {port['hostPort']}")
        check_selinux(f"{where}.securityContext", sc)
        check_apparmor(f"{where}.securityContext", sc)
        if sc.get("procMount", "Default") != "Default":
            v.append(f"{where} procMount {sc['procMount']}")
        # restricted
        if sc.get("allowPrivilegeEscalation") is not False:
            v.append(f"{where} allowPrivilegeEscalation is not false")
        non_root = sc.get("runAsNonRoot", pod_non_root)
        if non_root is not True:
            v.append(f"{where} runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            v.append(f"{where} runAsUser is 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            v.append(f"{where} seccompProfile is {seccomp}")
    return v
