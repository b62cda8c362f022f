"""Container benchmark: image sizes, `make images` cold and warm, sandbox pod -> Claude prompt.

Run from the repository root after `make images`:

    .venv/bin/python -m benchmarks.containers.bench [--runs 5] [--builds]

* sizes: each image uncompressed (podman's own figure) and compressed (`podman save | gzip`);
  the sandbox also without the Claude Code CLI binary (a 373 MB native file);
* with --builds: `make images` cold (``--no-cache``: every layer built again, the base image
  too) and warm (one source file of claudehub changed, in a copy of the tree);
* sandbox start: the pod ClaudeSpawner builds from the chart, run by the test kubelet with the
  image present: pod created -> the claude page's terminal shows Claude's prompt, median of
  --runs; beside it, the same flow in local mode (the same single-user server and CLI
  started on the host, as LocalSandboxSpawner does), in the same run;
* memory at the prompt: the sandbox container's cgroup usage, and local mode's process-tree
  RSS (server + Claude).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from websockets.sync.client import connect

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.containers.conftest import HUB_HOST, sandbox_pod  # noqa: E402
from tests.containers.kubelet import PodRunner  # noqa: E402
from tests.containers.podman import (  # noqa: E402
    HUB_IMAGE,
    SANDBOX_IMAGE,
    Podman,
    podman,
    podman_env,
)
from tests.helpers import free_port  # noqa: E402
from tests.server_ext.fakehub import FakeHub  # noqa: E402

#: Claude Code's prompt glyph (U+276F), drawn once the CLI is ready for input.
PROMPT = "\u276f"
CLI_BYTES = (REPO / "node_modules/@anthropic-ai/claude-code/bin/claude.exe").stat().st_size


def sizes() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for image in (SANDBOX_IMAGE, HUB_IMAGE):
        size = int(json.loads(podman("image", "inspect", image))[0]["Size"])
        save = subprocess.Popen(["podman", "save", image], stdout=subprocess.PIPE, env=podman_env())
        gz = subprocess.run(["gzip", "-6"], stdin=save.stdout, capture_output=True, check=True)
        save.wait()
        out[image] = {"uncompressed_mb": size / 1e6, "gzip_mb": len(gz.stdout) / 1e6}
    out[SANDBOX_IMAGE]["without_cli_mb"] = out[SANDBOX_IMAGE]["uncompressed_mb"] - CLI_BYTES / 1e6
    return out


def timed_make(cwd: Path, extra: dict[str, str]) -> float:
    env = {**os.environ, **extra}
    start = time.monotonic()
    subprocess.run(
        ["make", "-s", "images"], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL
    )
    return time.monotonic() - start


def builds() -> dict[str, float]:
    tree = Path(tempfile.mkdtemp(prefix="chbench-tree-"))
    try:
        for name in (
            "Makefile",
            "pyproject.toml",
            "README.md",
            "package.json",
            "package-lock.json",
        ):
            shutil.copy2(REPO / name, tree / name)
        for folder in ("claudehub", "images", "hub_config", "jupyter-config"):
            shutil.copytree(
                REPO / folder, tree / folder, ignore=shutil.ignore_patterns("__pycache__", "vendor")
            )
        tag = {"IMAGE_TAG": "bench"}
        base = "localhost/claudehub/debian:bookworm-bench"
        podman("rmi", "-f", base, check=False)
        cold = timed_make(
            tree, {**tag, "BASE_IMAGE": base, "PODMAN": "podman", "BUILD_EXTRA": "--no-cache"}
        )
        with (tree / "claudehub" / "server_ext" / "markers.py").open("a") as f:
            f.write("\n# benchmark: one source file changed\n")
        warm = timed_make(tree, {**tag, "BASE_IMAGE": base})
        return {"cold_s": cold, "warm_s": warm}
    finally:
        for image in (
            "localhost/claudehub/sandbox:bench",
            "localhost/claudehub/hub:bench",
            "localhost/claudehub/debian:bookworm-bench",
        ):
            podman("rmi", "-f", image, check=False)
        shutil.rmtree(tree, ignore_errors=True)


def read_prompt(url: str, headers: dict[str, str], timeout: float = 60) -> None:
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        screen = ""
        deadline = time.monotonic() + timeout
        while PROMPT not in screen:
            message = ws.recv(timeout=max(deadline - time.monotonic(), 0.1))
            if isinstance(message, str):
                kind, *rest = json.loads(message)
                if kind == "stdout":
                    screen += rest[0]


def wait_listening(url: str, headers: dict[str, str], timeout: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "claude/api/session", headers=headers, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RuntimeError("server did not start")


def container_run(tmp: Path) -> tuple[float, float]:
    pm = Podman()
    try:
        network = pm.network("pods", internal=True)
        anchor = pm.name("anchor")
        podman("pod", "create", "--name", anchor, "--network", network)
        pm.pods.append(anchor)
        podman("pod", "start", anchor)
        runner = PodRunner(pm, network, add_hosts=[f"{HUB_HOST}:{pm.gateway(network)}"])
        hub = FakeHub(host=pm.gateway(network), port=8081).start()
        try:
            pod = sandbox_pod(tmp)
            env = {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}
            hub.server_token = env["JUPYTERHUB_API_TOKEN"]
            headers = {"Authorization": f"token {hub.user_token}"}
            start = time.monotonic()
            running = runner.start(pod)
            url = f"http://{running.ip}:8888/"
            wait_listening(url, headers)
            read_prompt(url.replace("http", "ws") + "claude/terminal", headers)
            elapsed = time.monotonic() - start
            time.sleep(1)
            stats = json.loads(
                podman("stats", "--no-stream", "--format", "json", running.container())
            )
            mem = stats[0].get("mem_usage") or stats[0].get("MemUsage") or "0"
            return elapsed, _mb(str(mem).split("/")[0])
        finally:
            hub.stop()
    finally:
        pm.cleanup()


def _mb(text: str) -> float:
    text = text.strip()
    units = {"kB": 1e-3, "KB": 1e-3, "MB": 1, "GB": 1e3, "B": 1e-6}
    for unit, factor in units.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text) / 1e6


def local_run() -> tuple[float, float]:
    hub = FakeHub().start()
    port = free_port()
    home = Path(tempfile.mkdtemp(prefix="chbench-home-"))
    env = hub.singleuser_env(
        port,
        HOME=str(home),
        PATH=f"{REPO / 'node_modules/.bin'}:{REPO / '.venv/bin'}:/usr/bin:/bin",
    )
    headers = {"Authorization": f"token {hub.user_token}"}
    start = time.monotonic()
    argv = [sys.executable, "-m", "claudehub.server_ext.singleuser"]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/user/{hub.user}/"
        wait_listening(url, headers)
        read_prompt(url.replace("http", "ws") + "claude/terminal", headers)
        elapsed = time.monotonic() - start
        time.sleep(1)
        parent = psutil.Process(proc.pid)
        rss = sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])
        return elapsed, rss / 1e6
    finally:
        proc.terminate()
        proc.wait(10)
        hub.stop()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--builds", action="store_true", help="also time make images")
    args = parser.parse_args()
    from kubernetes_asyncio.config import kube_config

    from tests.helm.spawned import write_kubeconfig

    tmp = Path(tempfile.mkdtemp(prefix="chbench-"))
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(write_kubeconfig(tmp))
    result: dict[str, Any] = {"sizes": sizes()}
    pods, locals_ = [], []
    for _ in range(args.runs):  # interleaved, so both see the same machine
        pods.append(container_run(tmp))
        locals_.append(local_run())
    result["start_to_prompt_s"] = {
        "container_median": statistics.median(t for t, _ in pods),
        "container_all": [round(t, 2) for t, _ in pods],
        "local_median": statistics.median(t for t, _ in locals_),
        "local_all": [round(t, 2) for t, _ in locals_],
    }
    result["memory_at_prompt_mb"] = {
        "container_cgroup_median": statistics.median(m for _, m in pods),
        "local_rss_median": statistics.median(m for _, m in locals_),
    }
    if args.builds:
        result["make_images"] = builds()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
