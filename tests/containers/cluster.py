"""A one-machine stand-in for a k3s cluster, built from the chart's rendered objects.

- the Kubernetes API is the spawner tests' emulator (tests/spawner/emulator.py), served over
  TLS on the pod network's gateway, so the hub reaches it the way it reaches a real API
  server from a pod: in-cluster config, a service-account token, the cluster's CA;
- the node is :class:`Node`: every pod the API stores is run with podman from its own spec
  (tests/containers/kubelet.py), its phase, IP and container statuses are written back, and
  a deleted pod's containers are removed;
- Services are DNS names on the pod network (podman's resolver), one alias per Service that
  selects the pod; the public Service is a port published on the host's loopback;
- NetworkPolicies: sandbox pods get the rendered policies that select them as nftables rules
  in their network namespace (tests/containers/netpolicy.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web

from tests.containers import netpolicy
from tests.containers.kubelet import Objects, PodRunner, RunningPod, ServiceAccount
from tests.containers.podman import Podman
from tests.helm.charts import Rendering
from tests.helpers import PATIENCE, free_port
from tests.spawner.emulator import ClusterEmulator

NAMESPACE = "claudehub"
API_PORT = 6443


def make_certificates(folder: Path, ip: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for ``ip`` (the API server's address)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, csr, crt = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ext = folder / "ext.cnf"
    ext.write_text(f"subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_crt),
        "-days",
        "2",
        "-subj",
        "/CN=claudehub-test-ca",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=kubernetes",
    )
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_crt),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(crt),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return ca_crt, crt, key


@dataclass
class Node:
    """Runs what the API stores: polls the pods, starts new ones, reports, removes deleted."""

    runner: PodRunner
    api: str  # plain-HTTP URL of the emulator (test side)
    pods: dict[str, RunningPod] = field(default_factory=dict)  # uid -> pod
    reported: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        url = f"{self.api}/api/v1/namespaces/{NAMESPACE}/pods"
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    async with session.get(url) as resp:
                        items = (await resp.json())["items"]
                    await self._sync(session, items)
                except (aiohttp.ClientError, KeyError, ValueError) as err:
                    self.errors.append(repr(err))
                try:
                    await asyncio.wait_for(stop.wait(), 0.3)
                except TimeoutError:
                    pass

    async def _sync(self, session: aiohttp.ClientSession, items: list[dict[str, Any]]) -> None:
        live = {p["metadata"]["uid"]: p for p in items}
        for uid, manifest in live.items():
            if uid not in self.pods:
                running = await asyncio.to_thread(self.runner.start, manifest)
                self.pods[uid] = running
            running = self.pods[uid]
            await asyncio.to_thread(self.runner.refresh, running)
            status = running.status()
            text = json.dumps(status, sort_keys=True)
            if self.reported.get(uid) != text:
                name = manifest["metadata"]["name"]
                patch = f"{self.api}/api/v1/namespaces/{NAMESPACE}/pods/{name}/status"
                headers = {"Content-Type": "application/merge-patch+json"}
                async with session.patch(patch, json={"status": status}, headers=headers) as r:
                    if r.status < 300:
                        self.reported[uid] = text
        for uid in [u for u in self.pods if u not in live]:
            running = self.pods.pop(uid)
            await asyncio.to_thread(self.runner.delete, running)

    def by_name(self, name: str) -> RunningPod | None:
        for running in self.pods.values():
            if running.manifest["metadata"]["name"] == name:
                return running
        return None


class ApiServer:
    """The emulator on TLS (for pods) and plain HTTP on loopback (for the node), in a thread."""

    def __init__(self, tls_host: str, cert: Path, key: Path) -> None:
        self.tls_host = tls_host
        self.cert, self.key = cert, key
        self.local_port = free_port()
        self.local_url = f"http://127.0.0.1:{self.local_port}"
        self.emulator: ClusterEmulator | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._node: Node | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._failure: BaseException | None = None

    def start(self, node_runner: PodRunner) -> Node:
        self._node = Node(node_runner, self.local_url)
        self._thread.start()
        if not self._ready.wait(PATIENCE):
            raise RuntimeError(f"API server did not start: {self._failure!r}")
        if self._failure is not None:
            raise RuntimeError(f"API server failed: {self._failure!r}")
        return self._node

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        import ssl

        self._stop = asyncio.Event()
        try:
            async with ClusterEmulator() as emulator:
                self.emulator = emulator
                server = aiohttp.web.Server(emulator)
                runner = aiohttp.web.ServerRunner(server)
                await runner.setup()
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(str(self.cert), str(self.key))
                await aiohttp.web.TCPSite(
                    runner, self.tls_host, API_PORT, ssl_context=context
                ).start()
                await aiohttp.web.TCPSite(runner, "127.0.0.1", self.local_port).start()
                self._ready.set()
                assert self._node is not None
                await self._node.run(self._stop)
                await runner.cleanup()
        except Exception as err:  # reported by start()
            self._failure = err
            self._ready.set()

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        if not self._thread.is_alive():
            self._loop.close()


def decoded_objects(
    rendering: Rendering, operator_secrets: Mapping[str, dict[str, str]]
) -> Objects:
    objects = Objects()
    for cm in rendering.find("ConfigMap"):
        objects.config_maps[cm["metadata"]["name"]] = dict(cm.get("data") or {})
    for secret in rendering.find("Secret"):
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        data.update(secret.get("stringData") or {})
        objects.secrets[secret["metadata"]["name"]] = data
    for name, data in operator_secrets.items():
        objects.secrets[name] = dict(data)
    return objects


def service_aliases(rendering: Rendering) -> dict[str, list[str]]:
    """Deployment name -> the DNS names of the Services that select its pods."""
    out: dict[str, list[str]] = {}
    for deployment in rendering.find("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        names = []
        for service in rendering.find("Service"):
            selector = service["spec"].get("selector") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                svc = service["metadata"]["name"]
                names += [
                    svc,
                    f"{svc}.{NAMESPACE}",
                    f"{svc}.{NAMESPACE}.svc",
                    f"{svc}.{NAMESPACE}.svc.cluster.local",
                ]
        out[deployment["metadata"]["name"]] = names
    return out


class Cluster:
    """The chart's Deployments as pods on one machine, with an API server and a node."""

    def __init__(
        self,
        pm: Podman,
        rendering: Rendering,
        folder: Path,
        *,
        operator_secrets: Mapping[str, dict[str, str]],
        publish: Mapping[str, list[str]] | None = None,
        extra_networks: Mapping[str, list[str]] | None = None,
        pods_network: str,
    ) -> None:
        self.pm = pm
        self.rendering = rendering
        self.network = pods_network
        self.gateway = pm.gateway(pods_network)
        ca, cert, key = make_certificates(folder / "pki", self.gateway)
        self.policies = rendering.find("NetworkPolicy")
        self.started: dict[str, RunningPod] = {}
        self.runner = PodRunner(
            pm,
            pods_network,
            objects=decoded_objects(rendering, operator_secrets),
            aliases=service_aliases(rendering),
            publish=publish,
            extra_networks=extra_networks,
            service_account=ServiceAccount(
                token=f"test-token-{uuid.uuid4().hex}",
                ca_pem=ca.read_text(),
                host=self.gateway,
                port=API_PORT,
            ),
            network_policy=self._enforce,
        )
        self.api = ApiServer(self.gateway, cert, key)
        self.node = self.api.start(self.runner)

    def _peers(self) -> list[tuple[Mapping[str, str], str]]:
        peers = [(p.manifest["metadata"].get("labels") or {}, p.ip) for p in self.started.values()]
        peers += [
            (p.manifest["metadata"].get("labels") or {}, p.ip) for p in self.node.pods.values()
        ]
        return peers

    def _enforce(self, running: RunningPod) -> None:
        labels = running.manifest["metadata"].get("labels") or {}
        if labels.get("app.kubernetes.io/component") != "sandbox":
            return  # only the sandbox's isolation is under test here
        script = netpolicy.nft_script(self.policies, labels, self._peers(), self.gateway)
        netpolicy.apply(running.infra, script)

    def start(self, deployment: str, timeout: float = 120) -> RunningPod:
        """Run a Deployment's pod (one replica) and wait for its readiness probe."""
        running = self._run_pod(deployment, deployment)
        self._await_ready(deployment, running, timeout)
        return running

    def _run_pod(self, deployment: str, name: str) -> RunningPod:
        """Run a pod named ``name`` from the current rendering's template of ``deployment``."""
        template = self.rendering.one("Deployment", deployment)["spec"]["template"]
        manifest = {
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "labels": dict(template["metadata"].get("labels") or {}),
            },
            "spec": template["spec"],
        }
        running = self.runner.start(manifest)
        assert running.phase == "Running", running.status()
        self.started[name] = running
        return running

    def _await_ready(self, deployment: str, running: RunningPod, timeout: float) -> None:
        """Wait for the pod's readiness probe, if the Deployment's template has one."""
        template = self.rendering.one("Deployment", deployment)["spec"]["template"]
        if "readinessProbe" in template["spec"]["containers"][0]:
            self.runner.wait_ready(running, timeout)

    def start_replica(self, deployment: str, index: int, timeout: float = 120) -> RunningPod:
        """Run one more pod of a Deployment (``keyproxy.replicas: 2``), named
        ``<deployment>-<index>``, behind the same Service names (each name then resolves to
        every replica, as a headless Service would)."""
        name = f"{deployment}-{index}"
        self.runner.aliases[name] = list(self.runner.aliases.get(deployment, []))
        extra = self.runner.extra_networks.get(deployment)
        if extra:
            self.runner.extra_networks[name] = list(extra)
        running = self._run_pod(deployment, name)
        self._await_ready(deployment, running, timeout)
        return running

    def restart(self, name: str, timeout: float = 120) -> RunningPod:
        """The kubelet's answer to a Deployment pod's container exiting: started again in
        the same pod (same spec, volumes and address), then ready by its probe."""
        running = self.started[name]
        self.runner.restart(running)
        if "readinessProbe" in running.manifest["spec"]["containers"][0]:
            self.runner.wait_ready(running, timeout)
        return running

    def apply(self, rendering: Rendering, operator_secrets: Mapping[str, dict[str, str]]) -> None:
        """What `helm upgrade` changes before any pod rolls: the new rendering's ConfigMaps,
        Secrets, Service names and NetworkPolicies. A Secret that exists keeps the values it
        has (the chart reads the live Secret with `lookup`, so generated secrets survive an
        upgrade); keys new in this rendering are added."""
        fresh = decoded_objects(rendering, operator_secrets)
        for name, live in self.runner.objects.secrets.items():
            if name in fresh.secrets:
                fresh.secrets[name] = {**fresh.secrets[name], **live}
        self.runner.objects = fresh
        self.runner.aliases = service_aliases(rendering)
        self.rendering = rendering
        self.policies = rendering.find("NetworkPolicy")

    def roll(self, deployment: str, timeout: float = 120) -> RunningPod:
        """Replace a Deployment's pod by one of the current rendering, as its strategy
        Recreate does: the old pod is gone before the new one starts. The new pod keeps the
        old one's address: the Service's, which in a cluster never changes (its DNS name is
        an alias of the pod here, and a client such as the Claude CLI caches what DNS said).
        Sandbox pods' policies are loaded again once it runs (a CNI re-evaluates selectors)."""
        old = self.started.pop(deployment)
        mac = self.pm.inspect(old.infra)["NetworkSettings"]["Networks"][self.network]["MacAddress"]
        self.runner.delete(old)
        self.runner.addresses[deployment] = (old.ip, str(mac))
        running = self._run_pod(deployment, deployment)
        self.refresh_policies()
        self._await_ready(deployment, running, timeout)
        return running

    def refresh_policies(self) -> None:
        """Load every sandbox pod's rules again, from the current policies and pod addresses."""
        for running in list(self.node.pods.values()):
            if running.infra and running.phase == "Running":
                self._enforce(running)

    def stop(self) -> None:
        self.api.stop()
        for running in list(self.node.pods.values()) + list(self.started.values()):
            self.runner.delete(running)


class ServicePort:
    """A Service's stable address in front of a pod whose address changes when it is
    replaced (what kube-proxy gives a NodePort): a TCP forwarder on the host's loopback to
    whatever ``target()`` names at each new connection, in a thread of its own."""

    def __init__(self, target: Any) -> None:
        self.target = target  # () -> (host, port), or None while no pod is behind it
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> ServicePort:
        self._thread.start()
        if not self._ready.wait(PATIENCE):
            raise RuntimeError("the service port did not start")
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
            self._ready.set()

        self._loop.run_until_complete(main())
        self._loop.run_forever()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = self.target()
        try:
            if address is None:
                raise ConnectionRefusedError("no pod behind the Service")
            up_reader, up_writer = await asyncio.open_connection(*address)
        except OSError:
            writer.close()  # nothing behind the Service: the connection is refused
            return

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))

    def stop(self) -> None:
        """Close the listener and every connection through it."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(close(), self._loop)
        self._thread.join(30)
        if not self._thread.is_alive():
            self._loop.close()


def wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)
