"""What sharing limits costs: one key proxy alone vs. one of two replicas on PostgreSQL.

Both run the same limits (a daily budget and a rate limit high enough never to refuse); the
shared pair syncs with PostgreSQL every ``--interval`` s (claudehub.proxy.shared). The client
sends non-streaming requests one at a time (concurrency 1) for ``--duration`` s per round and
measures each request's latency through the proxy and the proxy's CPU per request; rounds
alternate between the two setups so that machine noise hits both alike.

    .venv/bin/python benchmarks/keyproxy/replicas.py [--rounds 3] [--duration 5]

Needs PostgreSQL's server binaries (initdb, pg_ctl; Debian's postgresql package) and root
(the server runs as the ``postgres`` user).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from claudehub.contract.tokens import mint_token  # noqa: E402
from tests.helpers import free_port, postgres_server  # noqa: E402

SECRET = "replicas-bench-secret-0123456789"
KEYPROXY = str(REPO / ".venv" / "bin" / "claudehub-keyproxy")


def start_proxy(upstream: str, db_url: str, interval: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(
        os.environ,
        CLAUDEHUB_TOKEN_SECRET=SECRET,
        ANTHROPIC_API_KEY="sk-ant-api03-replicas-bench-0123456789abcdef",
    )
    proc = subprocess.Popen(
        [
            KEYPROXY,
            "--standalone",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--upstream-url={upstream}",
            f"--db-url={db_url}",
            "--rate-limit=100000",
            "--daily-token-budget=1000000000000",
            f"--KeyProxyApp.shared_limits_interval={interval}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(f"{url}/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def measure(url: str, pid: int, duration: float) -> tuple[float, float, float]:
    """(median latency ms, p99 ms, proxy CPU ms per request) at concurrency 1."""
    token = mint_token(SECRET.encode(), "bench", ttl=86400)
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {"x-api-key": token, "anthropic-version": "2023-06-01"}
    async with aiohttp.ClientSession() as http:
        for _ in range(200):  # warm up: connections, caches
            async with http.post(f"{url}/v1/messages", json=body, headers=headers) as r:
                await r.read()
        latencies = []
        cpu0, end = cpu_seconds(pid), time.monotonic() + duration
        while time.monotonic() < end:
            t = time.perf_counter()
            async with http.post(f"{url}/v1/messages", json=body, headers=headers) as r:
                await r.read()
                assert r.status == 200, r.status
            latencies.append((time.perf_counter() - t) * 1000)
        cpu = cpu_seconds(pid) - cpu0
    latencies.sort()
    return (
        statistics.median(latencies),
        latencies[int(len(latencies) * 0.99)],
        cpu * 1000 / len(latencies),
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--interval", type=float, default=1.0)
    a = p.parse_args()
    up_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks/keyproxy/fake_upstream.py"), f"--port={up_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    up = f"http://127.0.0.1:{up_port}"
    results: dict[str, list[tuple[float, float, float]]] = {"one": [], "two-pg": []}
    try:
        with postgres_server("bench") as pg, tempfile.TemporaryDirectory() as tmp:
            for i in range(a.rounds):
                for setup in ("one", "two-pg"):
                    procs = []
                    if setup == "one":
                        procs.append(start_proxy(up, f"sqlite:///{tmp}/one-{i}.sqlite", 0))
                    else:
                        procs += [start_proxy(up, pg, a.interval) for _ in range(2)]
                    try:
                        for _, url in procs:
                            asyncio.run(wait_up(url))
                        proc, url = procs[0]
                        r = asyncio.run(measure(url, proc.pid, a.duration))
                        results[setup].append(r)
                        print(
                            f"round {i + 1} {setup:7s}: median {r[0]:.3f} ms, p99 {r[1]:.3f} ms,"
                            f" proxy CPU {r[2]:.3f} ms/request",
                            flush=True,
                        )
                    finally:
                        for proc, _ in procs:
                            proc.terminate()
                            proc.wait(30)
    finally:
        upstream.terminate()
        upstream.wait(10)
    med = {k: [statistics.median(x[j] for x in v) for j in range(3)] for k, v in results.items()}
    print(
        f"one replica (SQLite, no sharing): median {med['one'][0]:.3f} ms, p99 "
        f"{med['one'][1]:.3f} ms, CPU {med['one'][2]:.3f} ms/request"
    )
    print(
        f"two replicas on PostgreSQL:       median {med['two-pg'][0]:.3f} ms, p99 "
        f"{med['two-pg'][1]:.3f} ms, CPU {med['two-pg'][2]:.3f} ms/request"
    )
    print(
        f"difference of medians: {med['two-pg'][0] - med['one'][0]:+.3f} ms latency, "
        f"{med['two-pg'][2] - med['one'][2]:+.3f} ms CPU per request"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
