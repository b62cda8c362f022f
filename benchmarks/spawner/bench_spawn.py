"""Hub-side spawn time per pod: ClaudeSpawner vs stock KubeSpawner, same run, same emulator.

Both spawners talk to the Kubernetes API emulator of the test suite (kmock over real HTTP,
kubernetes_asyncio client) while a simulated kubelet reports every new pod Running at once,
so what is measured is the hub's side of a spawn: building the pod (and, for ClaudeSpawner,
minting the sandbox token, adding the course init container and hardening the pod), the API
calls (PVC + pod), and noticing through the pod reflector that the pod runs.

Stock KubeSpawner is configured like ClaudeSpawner where it matters for the API traffic: same
namespace, same image, a home PVC created per user (storage_pvc_ensure). Rounds alternate
between the two spawners so machine load affects both alike. Each round starts ``--batch``
spawns concurrently (fresh users, so every spawn creates its PVC); pods are deleted between
rounds (not timed).

Also reported: the CPU cost of building the manifest alone (get_pod_manifest), per call.

    .venv/bin/python benchmarks/spawner/bench_spawn.py --rounds 20 --batch 10
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import kmock  # noqa: E402
import kubespawner.clients  # noqa: E402
from jupyterhub.objects import Hub  # noqa: E402
from kubernetes_asyncio.config import kube_config  # noqa: E402
from kubespawner import KubeSpawner  # noqa: E402
from traitlets.config import Config  # noqa: E402

from claudehub.spawner.kube import ClaudeSpawner  # noqa: E402
from tests.helpers import free_port  # noqa: E402
from tests.spawner.conftest import KUBECONFIG  # noqa: E402
from tests.spawner.emulator import ClusterEmulator, Kubelet  # noqa: E402

NAMESPACE = "claudehub"
IMAGE = "registry.local/claudehub/sandbox:1.2.3"


def config(api_url: str) -> Config:
    c = Config()
    for section in (c.KubeSpawner, c.ClaudeSpawner):
        section.k8s_api_host = api_url
        section.namespace = NAMESPACE
        section.image = IMAGE
        section.storage_pvc_ensure = True
        section.start_timeout = 60
    # Both classes share one pod reflector; by default it reconnects its watch every 10 s
    # (a new API client, an SSL context: ~25 ms of CPU) and whichever class is spawning at
    # that moment would be billed for it. Reconnect rarely, so the numbers are the spawns'.
    for reflector in (c.PodReflector, c.EventReflector):
        reflector.timeout_seconds = 3600
        reflector.restart_seconds = 3600
        reflector.request_timeout = 3600
    c.KubeSpawner.pvc_name_template = "claim-{username}"
    c.KubeSpawner.volumes = [
        {"name": "home", "persistentVolumeClaim": {"claimName": "claim-{username}"}}
    ]
    c.KubeSpawner.volume_mounts = [{"name": "home", "mountPath": "/home/jovyan"}]
    c.ClaudeSpawner.token_secret = b"0123456789abcdef0123456789abcdef"
    c.ClaudeSpawner.keyproxy_url = "http://claudehub-keyproxy.claudehub.svc:8080"
    c.ClaudeSpawner.progress_url = "http://claudehub-progress.claudehub.svc:8080/services/progress/"
    c.ClaudeSpawner.allowed_models = ["claude-sonnet-4-5"]
    c.ClaudeSpawner.course_choices = lambda spawner: [{"id": "git-basics", "title": "Git"}]
    return c


_ids = iter(range(1, 10**9))


async def make(cls: type[KubeSpawner], c: Config, name: str) -> KubeSpawner:
    user = SimpleNamespace(name=name, id=next(_ids), url=f"/user/{name}/", escaped_name=name)
    spawner = cls(
        config=c, user=user, hub=Hub(ip="10.43.0.10", port=8081, base_url="/hub/"), api_token="t"
    )
    if isinstance(spawner, ClaudeSpawner):
        await spawner.apply_sandbox_options({"course": "git-basics"})
    return spawner


async def timed_start(spawner: KubeSpawner) -> float:
    t0 = time.perf_counter()
    await spawner.start()
    return time.perf_counter() - t0


async def serve_cluster(port: int) -> None:
    """The emulated API server and kubelet, in their own process (see --serve)."""
    async with ClusterEmulator() as emulator, kmock.Server(emulator, port=port) as server:
        async with Kubelet(str(server.url).rstrip("/")) as kubelet:
            await kubelet.serve(NAMESPACE)


async def wait_for_port(port: int, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def run(rounds: int, batch: int, warmup: int) -> dict[str, Any]:
    port = free_port()
    cluster = await asyncio.create_subprocess_exec(sys.executable, __file__, "--serve", str(port))
    api_url = f"http://127.0.0.1:{port}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "kubeconfig"
            path.write_text(KUBECONFIG)
            kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(path)
            await wait_for_port(port)
            c = config(api_url)
            times: dict[str, list[float]] = {"KubeSpawner": [], "ClaudeSpawner": []}
            cpu: dict[str, list[float]] = {"KubeSpawner": [], "ClaudeSpawner": []}
            classes: list[type[KubeSpawner]] = [KubeSpawner, ClaudeSpawner]
            for r in range(warmup + rounds):
                order = classes if r % 2 == 0 else classes[::-1]
                for cls in order:
                    name = cls.__name__
                    spawners = [await make(cls, c, f"{name.lower()}-{r}-{i}") for i in range(batch)]
                    cpu0 = time.process_time()
                    results = await asyncio.gather(*(timed_start(s) for s in spawners))
                    used = (time.process_time() - cpu0) / batch
                    if r >= warmup:
                        times[name] += results
                        cpu[name].append(used)
                    await asyncio.gather(*(s.stop(now=True) for s in spawners))
            # Manifest building alone (CPU only, no API calls).
            build: dict[str, float] = {}
            for cls in classes:
                spawner = await make(cls, c, f"build-{cls.__name__.lower()}")
                n = 200
                t0 = time.process_time()
                for _ in range(n):
                    await spawner.get_pod_manifest()
                build[cls.__name__] = (time.process_time() - t0) / n
            await KubeSpawner._stop_all_reflectors()
            kubespawner.clients._client_cache.clear()
    finally:
        cluster.terminate()
        await cluster.wait()
    return {"times": times, "cpu": cpu, "build": build}


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return (
        f"n={len(values)} mean={statistics.mean(values) * 1000:.1f} ms "
        f"median={statistics.median(values) * 1000:.1f} ms p95={p95 * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_cluster(args.serve))
        return
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(run(args.rounds, args.batch, args.warmup))
    times, cpu, build = result["times"], result["cpu"], result["build"]
    for name in ("KubeSpawner", "ClaudeSpawner"):
        print(
            f"{name:14s} start() wall: {summary(times[name])}\n"
            f"{'':14s} hub CPU per spawn: {statistics.mean(cpu[name]) * 1000:.1f} ms; "
            f"get_pod_manifest alone: {build[name] * 1000:.2f} ms CPU"
        )
    ratio_cpu = statistics.mean(cpu["ClaudeSpawner"]) / statistics.mean(cpu["KubeSpawner"])
    print(f"ratio ClaudeSpawner/KubeSpawner: hub CPU per spawn {ratio_cpu:.3f}x")
    ratio_mean = statistics.mean(times["ClaudeSpawner"]) / statistics.mean(times["KubeSpawner"])
    ratio_median = statistics.median(times["ClaudeSpawner"]) / statistics.median(
        times["KubeSpawner"]
    )
    print(f"ratio ClaudeSpawner/KubeSpawner: mean {ratio_mean:.3f}x, median {ratio_median:.3f}x")


if __name__ == "__main__":
    main()
