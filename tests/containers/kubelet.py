"""Play the kubelet with podman: run a Kubernetes pod spec, as written, in real containers.

:func:`container_flags` turns each container of a pod into ``podman run`` flags, field by
field: the security context (user and group, read-only root, dropped capabilities, no new
privileges, seccomp), env, command and args, mounts, resource limits. Init containers run
first, one after another, to completion (podman 4.3's own ``kube play`` restarts init
containers in a loop, see ../shared/TOOLCHAIN.md); then the main containers start.

It is strict on purpose: a field it does not know raises :class:`Unsupported`, so a pod
spec that grows a field the runtime would enforce (or a weakening the runner would silently
drop) fails the test instead of passing unexamined. Scheduling-only fields (node selectors,
tolerations, priority) have no meaning on one machine and are accepted as is.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.containers.podman import Podman, PodmanError, podman, podman_env

#: Pod spec fields that only steer scheduling or API-side bookkeeping.
SCHEDULING_FIELDS = frozenset(
    {
        "nodeSelector",
        "tolerations",
        "affinity",
        "priorityClassName",
        "priority",
        "schedulerName",
        "topologySpreadConstraints",
        "serviceAccountName",
        "serviceAccount",
        "enableServiceLinks",
        "dnsPolicy",
        "preemptionPolicy",
        "runtimeClassName",
    }
)
POD_FIELDS = SCHEDULING_FIELDS | {
    "containers",
    "initContainers",
    "volumes",
    "securityContext",
    "automountServiceAccountToken",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "hostname",
    "imagePullSecrets",
}
CONTAINER_FIELDS = frozenset(
    {
        "name",
        "image",
        "imagePullPolicy",
        "command",
        "args",
        "env",
        "envFrom",
        "workingDir",
        "ports",
        "resources",
        "securityContext",
        "volumeMounts",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "lifecycle",
        "stdin",
        "tty",
    }
)
SECURITY_FIELDS = frozenset(
    {
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "readOnlyRootFilesystem",
        "allowPrivilegeEscalation",
        "privileged",
        "capabilities",
        "seccompProfile",
    }
)
POD_SECURITY_FIELDS = frozenset(
    {
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "fsGroup",
        "fsGroupChangePolicy",
        "seccompProfile",
        "supplementalGroups",
    }
)


class Unsupported(ValueError):
    """The pod spec has a field this kubelet cannot enforce."""


class ContainerConfigError(RuntimeError):
    """The kubelet refuses to create the container (as CreateContainerConfigError)."""


def _unknown(where: str, obj: Mapping[str, Any], known: frozenset[str]) -> None:
    extra = sorted(set(obj) - known)
    if extra:
        raise Unsupported(f"{where}: unsupported field(s) {extra}")


def memory_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", str(quantity))
    if not match:
        raise Unsupported(f"memory quantity {quantity!r}")
    return int(float(match.group(1)) * units.get(match.group(2) or "", 1))


def cpus(quantity: str) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


@dataclass
class Objects:
    """ConfigMaps and Secrets the pod may reference, by name (already base64-decoded)."""

    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)

    def value(self, ref: Mapping[str, Any], kind: str) -> str:
        store = self.secrets if kind == "secretKeyRef" else self.config_maps
        data = store.get(ref["name"])
        if data is None or ref["key"] not in data:
            raise ContainerConfigError(f"{kind} {ref['name']}/{ref['key']} not found")
        return data[ref["key"]]


def effective_security(pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Any]:
    """The container's security context with the pod's values as defaults (as the kubelet)."""
    pod_sc = dict(pod.get("securityContext") or {})
    _unknown("pod securityContext", pod_sc, POD_SECURITY_FIELDS)
    sc = dict(container.get("securityContext") or {})
    _unknown(f"container {container.get('name')!r} securityContext", sc, SECURITY_FIELDS)
    for key in ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile"):
        if key not in sc and key in pod_sc:
            sc[key] = pod_sc[key]
    return sc


def security_flags(
    pod: Mapping[str, Any], container: Mapping[str, Any], image_user: str
) -> list[str]:
    """``podman run`` flags that enforce the container's security context."""
    sc = effective_security(pod, container)
    pod_sc = pod.get("securityContext") or {}
    flags: list[str] = []
    uid = sc.get("runAsUser")
    gid = sc.get("runAsGroup")
    if sc.get("runAsNonRoot"):
        effective = uid if uid is not None else image_user.split(":")[0] or "0"
        if str(effective) in ("0", "root"):
            raise ContainerConfigError("container has runAsNonRoot and image will run as root")
    if uid is not None:
        flags += ["--user", f"{uid}:{gid if gid is not None else uid}"]
    for group in [pod_sc.get("fsGroup"), *(pod_sc.get("supplementalGroups") or [])]:
        if group is not None:
            flags += ["--group-add", str(group)]
    if sc.get("privileged"):
        flags.append("--privileged")
    if sc.get("readOnlyRootFilesystem"):
        # Only the pod's own volumes are writable: no tmpfs podman would add by itself.
        flags += ["--read-only", "--read-only-tmpfs=false"]
    caps = sc.get("capabilities") or {}
    _unknown("capabilities", caps, frozenset({"drop", "add"}))
    for cap in caps.get("drop") or []:
        flags += ["--cap-drop", cap.lower()]
    for cap in caps.get("add") or []:
        flags += ["--cap-add", cap.lower()]
    if sc.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    seccomp = (sc.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        flags += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":
        raise Unsupported(f"seccompProfile {seccomp}")
    return flags


def env_flags(
    container: Mapping[str, Any], objects: Objects, field_values: Mapping[str, str]
) -> list[str]:
    flags: list[str] = []
    for source in container.get("envFrom") or []:
        if "secretRef" in source:
            data = objects.secrets.get(source["secretRef"]["name"], {})
        elif "configMapRef" in source:
            data = objects.config_maps.get(source["configMapRef"]["name"], {})
        else:
            raise Unsupported(f"envFrom {source}")
        prefix = source.get("prefix", "")
        flags += [f"--env={prefix}{k}={v}" for k, v in data.items()]
    for var in container.get("env") or []:
        if "value" in var:
            value = str(var["value"])
        elif "valueFrom" in var:
            ref = var["valueFrom"]
            kind = next(iter(ref))
            if kind in ("secretKeyRef", "configMapKeyRef"):
                try:
                    value = objects.value(ref[kind], kind)
                except ContainerConfigError:
                    if ref[kind].get("optional"):
                        continue
                    raise
            elif kind == "fieldRef":
                path = ref[kind]["fieldPath"]
                if path not in field_values:
                    raise Unsupported(f"fieldRef {path}")
                value = field_values[path]
            else:
                raise Unsupported(f"env valueFrom {kind}")
        else:
            value = ""
        flags.append(f"--env={var['name']}={value}")
    return flags


def resource_flags(container: Mapping[str, Any]) -> list[str]:
    limits = (container.get("resources") or {}).get("limits") or {}
    flags: list[str] = []
    if "memory" in limits:
        flags += ["--memory", str(memory_bytes(limits["memory"]))]
    if "cpu" in limits:
        flags += ["--cpus", str(cpus(limits["cpu"]))]
    return flags


@dataclass
class ContainerStatus:
    name: str
    image: str
    container_id: str = ""
    state: str = "waiting"  # waiting | running | terminated
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    ready: bool = False

    def as_k8s(self) -> dict[str, Any]:
        if self.state == "running":
            state: dict[str, Any] = {"running": {"startedAt": _now()}}
        elif self.state == "terminated":
            state = {
                "terminated": {
                    "exitCode": self.exit_code if self.exit_code is not None else 1,
                    "reason": self.reason or "Error",
                    "message": self.message,
                }
            }
        else:
            state = {"waiting": {"reason": self.reason or "ContainerCreating"}}
            if self.message:
                state["waiting"]["message"] = self.message
        return {
            "name": self.name,
            "image": self.image,
            "imageID": f"podman://{self.container_id or 'none'}",
            "ready": self.ready,
            "restartCount": 0,
            "started": self.state == "running",
            "state": state,
        }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class RunningPod:
    """A pod this kubelet runs: its podman pod, containers and the status it reports."""

    manifest: dict[str, Any]
    pod_name: str
    network: str
    ip: str = ""
    phase: str = "Pending"
    init_statuses: list[ContainerStatus] = field(default_factory=list)
    statuses: list[ContainerStatus] = field(default_factory=list)
    containers: dict[str, str] = field(default_factory=dict)  # spec name -> podman name
    emptydirs: list[str] = field(default_factory=list)
    message: str = ""
    infra: str = ""

    def container(self, name: str | None = None) -> str:
        """podman name of a main container (the first one by default)."""
        if name is None:
            name = self.manifest["spec"]["containers"][0]["name"]
        return self.containers[name]

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"phase": self.phase}
        if self.ip:
            status["podIP"] = self.ip
            status["podIPs"] = [{"ip": self.ip}]
        if self.message:
            status["message"] = self.message
        if self.init_statuses:
            status["initContainerStatuses"] = [s.as_k8s() for s in self.init_statuses]
        status["containerStatuses"] = [s.as_k8s() for s in self.statuses]
        ready = self.phase == "Running" and all(s.ready for s in self.statuses)
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
        return status


@dataclass
class ServiceAccount:
    """What a kubelet gives a pod that mounts its service-account token: the token, the
    API server's CA and where the API server is (KUBERNETES_SERVICE_HOST/PORT)."""

    token: str
    ca_pem: str
    host: str
    port: int


SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


class PodRunner:
    """Runs pod manifests with podman on one network (the cluster's pod network)."""

    def __init__(
        self,
        pm: Podman,
        network: str,
        *,
        objects: Objects | None = None,
        volume_name: Callable[[str], str] | None = None,
        extra_networks: Mapping[str, list[str]] | None = None,
        publish: Mapping[str, list[str]] | None = None,
        aliases: Mapping[str, list[str]] | None = None,
        add_hosts: list[str] | None = None,
        service_account: ServiceAccount | None = None,
        network_policy: Callable[[RunningPod], None] | None = None,
    ) -> None:
        self.pm = pm
        self.network = network
        self.objects = objects or Objects()
        self.volume_name = volume_name or pm.name
        self.extra_networks = dict(extra_networks or {})
        self.publish = dict(publish or {})
        self.aliases = dict(aliases or {})
        self.add_hosts = list(add_hosts or [])
        self.service_account = service_account
        self.network_policy = network_policy
        #: Pod name -> the (IP, MAC) address its next pod gets on the pod network (a Service's
        #: stable address across a replaced pod, for clients that cache what DNS answered, and
        #: the same MAC so that no peer's ARP entry points at the pod that is gone).
        self.addresses: dict[str, tuple[str, str]] = {}
        self._files = Path(tempfile.mkdtemp(prefix="chkubelet-"))

    # -- volumes -------------------------------------------------------------------------

    def _volume_sources(self, pod_name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """volume name -> ("named", podman volume) or ("dir", host folder)."""
        sources: dict[str, Any] = {}
        for volume in spec.get("volumes") or []:
            name = volume["name"]
            kinds = [k for k in volume if k != "name"]
            if len(kinds) != 1:
                raise Unsupported(f"volume {name!r}: {kinds}")
            kind = kinds[0]
            if kind == "persistentVolumeClaim":
                sources[name] = (
                    "named",
                    self.pm.volume(self.volume_name(volume[kind]["claimName"])),
                )
            elif kind == "emptyDir":
                vol = self.pm.volume(f"{pod_name}-{name}")
                sources[name] = ("named", vol)
            elif kind in ("configMap", "secret"):
                ref = volume[kind].get("name") or volume[kind].get("secretName")
                store = self.objects.config_maps if kind == "configMap" else self.objects.secrets
                data = store.get(ref)
                if data is None:
                    raise ContainerConfigError(f"{kind} {ref!r} not found")
                folder = self._files / pod_name / name
                folder.mkdir(parents=True, exist_ok=True)
                items = volume[kind].get("items")
                pairs = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
                mode = int(volume[kind].get("defaultMode", 0o644))
                fs_group = (spec.get("securityContext") or {}).get("fsGroup")
                for key, path in pairs:
                    target = folder / path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(data[key])
                    # As the kubelet: the mode asked for, group-readable by the fsGroup.
                    if fs_group is not None:
                        os.chown(target, 0, int(fs_group))
                        mode |= 0o040
                    target.chmod(mode)
                folder.chmod(0o755)
                sources[name] = ("dir", folder)
            else:
                raise Unsupported(f"volume {name!r} of kind {kind}")
        return sources

    def _mount_flags(
        self, container: Mapping[str, Any], sources: Mapping[str, Any], chown: bool
    ) -> list[str]:
        flags: list[str] = []
        for mount in container.get("volumeMounts") or []:
            _unknown("volumeMount", mount, frozenset({"name", "mountPath", "readOnly", "subPath"}))
            kind, source = sources[mount["name"]]
            read_only = bool(mount.get("readOnly"))
            if kind == "dir":
                src = Path(source) / mount["subPath"] if mount.get("subPath") else Path(source)
                flags += ["--volume", f"{src}:{mount['mountPath']}:ro"]
                continue
            if mount.get("subPath"):
                raise Unsupported("subPath on a persistent volume")
            options = ["ro"] if read_only else (["U"] if chown else [])
            suffix = ":" + ",".join(options) if options else ""
            flags += ["--volume", f"{source}:{mount['mountPath']}{suffix}"]
        return flags

    def _service_account_folder(self, pod_name: str, fs_group: int | None) -> Path:
        assert self.service_account is not None
        folder = self._files / pod_name / "serviceaccount"
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in (
            ("token", self.service_account.token),
            ("ca.crt", self.service_account.ca_pem),
            ("namespace", "claudehub"),
        ):
            target = folder / name
            target.write_text(text)
            if fs_group is not None:
                os.chown(target, 0, int(fs_group))
            target.chmod(0o644)
        folder.chmod(0o755)
        return folder

    # -- containers ----------------------------------------------------------------------

    def _image_user(self, image: str) -> str | None:
        try:
            data = json.loads(podman("image", "inspect", image))
        except PodmanError:
            return None
        return str(data[0].get("Config", {}).get("User") or "")

    def _container_args(
        self,
        pod_name: str,
        manifest: Mapping[str, Any],
        container: Mapping[str, Any],
        sources: Mapping[str, Any],
        ip: str,
    ) -> list[str]:
        spec = manifest["spec"]
        _unknown(f"container {container.get('name')!r}", container, CONTAINER_FIELDS)
        if (container.get("lifecycle") or {}) not in ({},):
            raise Unsupported("lifecycle hooks")
        image_user = self._image_user(container["image"])
        if image_user is None:
            raise FileNotFoundError(container["image"])
        meta = manifest.get("metadata") or {}
        field_values = {
            "metadata.name": meta.get("name", ""),
            "metadata.namespace": meta.get("namespace", ""),
            "status.podIP": ip,
        }
        fs_group = (spec.get("securityContext") or {}).get("fsGroup")
        sc = effective_security(spec, container)
        chown = fs_group is not None
        if chown and fs_group != sc.get("runAsGroup", fs_group):
            raise Unsupported("fsGroup other than the containers' group")
        args = ["--pod", pod_name, "--pull", "never", "--init=false"]
        args += security_flags(spec, container, image_user)
        args += env_flags(container, self.objects, field_values)
        args += resource_flags(container)
        args += self._mount_flags(container, sources, chown)
        if spec.get("automountServiceAccountToken", True) is not False and self.service_account:
            folder = self._service_account_folder(pod_name, fs_group)
            args += ["--volume", f"{folder}:{SA_MOUNT}:ro"]
            args += [
                f"--env=KUBERNETES_SERVICE_HOST={self.service_account.host}",
                f"--env=KUBERNETES_SERVICE_PORT={self.service_account.port}",
            ]
        if container.get("workingDir"):
            args += ["--workdir", container["workingDir"]]
        grace = spec.get("terminationGracePeriodSeconds")
        if grace is not None:
            args += ["--stop-timeout", str(grace)]
        if container.get("command"):
            args += ["--entrypoint", json.dumps(container["command"])]
        args.append(container["image"])
        args += [str(a) for a in container.get("args") or []]
        return args

    # -- the pod -------------------------------------------------------------------------

    def start(self, manifest: Mapping[str, Any], *, init_timeout: float = 120) -> RunningPod:
        """Create the pod, run its init containers to completion, start the rest.

        Never raises for what a kubelet reports in the pod's status (missing image, an init
        container that fails, a refused security context): the returned pod says it.
        """
        manifest = json.loads(json.dumps(manifest))
        spec = manifest["spec"]
        _unknown("pod spec", spec, POD_FIELDS)
        if spec.get("automountServiceAccountToken", True) is not False and not self.service_account:
            raise Unsupported("a service-account token, and this kubelet was given none")
        meta = manifest["metadata"]
        pod_name = self.pm.name(meta["name"])
        running = RunningPod(manifest=manifest, pod_name=pod_name, network=self.network)
        running.init_statuses = [
            ContainerStatus(c["name"], c["image"]) for c in spec.get("initContainers") or []
        ]
        running.statuses = [ContainerStatus(c["name"], c["image"]) for c in spec["containers"]]

        create = ["pod", "create", "--name", pod_name, "--hostname", meta["name"][:63]]
        create += ["--network", self.network]
        if meta["name"] in self.addresses:
            ip, mac = self.addresses[meta["name"]]
            create += ["--ip", ip, "--mac-address", mac]
        for alias in self.aliases.get(meta["name"], []):
            create += ["--network-alias", alias]
        for port in self.publish.get(meta["name"], []):
            create += ["--publish", port]
        for host in self.add_hosts:
            create += ["--add-host", host]
        podman(*create)
        self.pm.pods.append(pod_name)
        for extra in self.extra_networks.get(meta["name"], []):
            infra = json.loads(podman("pod", "inspect", pod_name))["InfraContainerID"]
            podman("network", "connect", extra, infra)
        podman("pod", "start", pod_name)
        infra = json.loads(podman("pod", "inspect", pod_name))["InfraContainerID"]
        running.ip = self.pm.ip(infra, self.network)
        running.infra = infra
        if self.network_policy is not None:
            self.network_policy(running)
        try:
            sources = self._volume_sources(pod_name, spec)
        except ContainerConfigError as err:
            running.statuses[0].reason = "CreateContainerConfigError"
            running.statuses[0].message = str(err)
            return running
        # Only the pod's emptyDirs go with it: a PVC's volume may share the pod's prefix
        # (claim claudehub-hub-db, pod claudehub-hub) and must outlive it.
        emptydirs = {v["name"] for v in spec.get("volumes") or [] if "emptyDir" in v}
        running.emptydirs = [
            src for v, (kind, src) in sources.items() if kind == "named" and v in emptydirs
        ]

        for status, container in zip(
            running.init_statuses, spec.get("initContainers") or [], strict=True
        ):
            if not self._run_one(
                running, status, container, sources, detach=False, timeout=init_timeout
            ):
                running.phase = "Failed" if spec.get("restartPolicy") == "Never" else "Pending"
                if status.state == "terminated":
                    running.phase = "Failed"
                    running.message = f"init container {status.name} failed"
                return running
        running.phase = "Running"
        for status, container in zip(running.statuses, spec["containers"], strict=True):
            if not self._run_one(running, status, container, sources, detach=True, timeout=60):
                running.phase = "Pending" if status.state == "waiting" else "Failed"
                return running
        return running

    def _run_one(
        self,
        running: RunningPod,
        status: ContainerStatus,
        container: Mapping[str, Any],
        sources: Mapping[str, Any],
        *,
        detach: bool,
        timeout: float,
    ) -> bool:
        name = f"{running.pod_name}-{container['name']}"
        try:
            args = self._container_args(
                running.pod_name, running.manifest, container, sources, running.ip
            )
        except FileNotFoundError as err:
            status.reason = "ErrImagePull"
            status.message = f'failed to pull and unpack image "{err.args[0]}": not found'
            return False
        except ContainerConfigError as err:
            status.reason = "CreateContainerConfigError"
            status.message = str(err)
            return False
        running.containers[container["name"]] = name
        if detach:
            try:
                status.container_id = self.pm.run("--detach", *args, name=name)
            except PodmanError as err:
                status.state, status.reason, status.message = "terminated", "StartError", str(err)
                status.exit_code = 128
                return False
            status.state, status.ready = "running", True
            return True
        self.pm.containers.append(name)
        proc = subprocess.run(
            ["podman", "run", "--name", name, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=podman_env(),
            check=False,
        )
        status.state = "terminated"
        status.exit_code = proc.returncode
        status.message = (proc.stderr or proc.stdout).strip()[-1000:]
        status.reason = "Completed" if proc.returncode == 0 else "Error"
        return proc.returncode == 0

    def probe(
        self, running: RunningPod, kind: str = "readinessProbe", name: str | None = None
    ) -> int:
        """Call the container's HTTP probe as the kubelet would; return the status code."""
        spec = next(c for c in running.manifest["spec"]["containers"] if name in (None, c["name"]))
        probe = spec[kind]["httpGet"]
        port = probe["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in spec["ports"] if p.get("name") == port)
        url = f"http://{running.ip}:{port}{probe.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            return int(err.code)
        except OSError:
            return 0

    def wait_ready(self, running: RunningPod, timeout: float = 90) -> None:
        """Poll the readiness probe until it passes (200-399), as the kubelet does."""
        deadline = time.monotonic() + timeout
        while not 200 <= self.probe(running) < 400:
            if time.monotonic() > deadline:
                logs = "\n".join(self.pm.logs(n)[-3000:] for n in running.containers.values())
                raise AssertionError(f"{running.pod_name} never became ready:\n{logs}")
            time.sleep(0.5)

    def refresh(self, running: RunningPod) -> None:
        """Read the containers' state back from podman (exit, OOM kill) into the status."""
        if running.phase not in ("Running",):
            return
        for status in running.statuses:
            name = running.containers.get(status.name)
            if not name or status.state != "running":
                continue
            try:
                state = self.pm.inspect(name)["State"]
            except PodmanError:
                state = {"Status": "exited", "ExitCode": 137, "OOMKilled": False}
            if state.get("Status") in ("exited", "stopped"):
                status.state = "terminated"
                status.ready = False
                status.exit_code = int(state.get("ExitCode", 1))
                status.reason = (
                    "OOMKilled"
                    if state.get("OOMKilled")
                    else ("Completed" if status.exit_code == 0 else "Error")
                )
        if any(s.state == "terminated" for s in running.statuses):
            codes = [s.exit_code for s in running.statuses]
            running.phase = "Succeeded" if all(c == 0 for c in codes) else "Failed"

    def restart(self, running: RunningPod, name: str | None = None) -> None:
        """Start a main container that exited (killed, stopped, crashed) again, as the kubelet
        does under restartPolicy Always: the same container (its spec, env, volumes) in the
        same pod, so it keeps the pod's address and Service names."""
        container = running.container(name)
        podman("start", container)
        for status in running.statuses:
            if running.containers.get(status.name) == container:
                status.state, status.ready, status.reason = "running", True, ""
                status.exit_code = None
        running.phase = "Running"

    def delete(self, running: RunningPod) -> None:
        """Remove the pod's containers and its emptyDir volumes (PVCs' volumes stay)."""
        for name in running.containers.values():
            self.pm.remove_container(name)
        podman("pod", "rm", "-f", "-t", "2", running.pod_name, check=False, timeout=60)
        for vol in running.emptydirs:
            podman("volume", "rm", "-f", vol, check=False)
