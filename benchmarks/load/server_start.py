"""One single-user server's start: a fresh Python against a fork from the fork server.

For each round, starts the same real single-user server (claudehub's lean entry point, the
extension enabled) twice, alternating: as a fresh process (what JupyterHub's
LocalProcessSpawner runs, ``CLAUDEHUB_PRELOAD_SERVER=false``) and forked by local mode's fork
server (``claudehub.spawner.forked.ForkServer``, the default). It reports, per way, the median
wall time until the server accepts connections and the median CPU the server process has used
by then (utime+stime from /proc/<pid>/stat), and the fork server's own one-time start-up CPU.
A stand-in hub API answers the server's one start-up request (its version check).

    .venv/bin/python benchmarks/load/server_start.py --rounds 10
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from claudehub.spawner.forked import ForkServer

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.fakes.hub_api import base_env, server_env, start_hub_api  # noqa: E402
from tests.helpers import free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def listening(port: int, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.005)
            continue
        writer.close()
        return
    raise TimeoutError(f"nothing listened on {port} within {within} s")


async def run(rounds: int) -> dict[str, list[tuple[float, float]]]:
    hub_port = free_port()
    hub = start_hub_api(hub_port)
    base = base_env(f"http://127.0.0.1:{hub_port}/hub/api")
    argv = ["--allow-root"] if os.geteuid() == 0 else []
    tmp = Path(tempfile.mkdtemp(prefix="claudehub-start-"))
    forkserver = ForkServer(base, str(tmp), logging.getLogger("bench"))
    results: dict[str, list[tuple[float, float]]] = {"fresh": [], "forked": []}
    try:
        # the fork server's own start (paid once per hub)
        home = tmp / "users" / "warm"
        home.mkdir(parents=True)
        port = free_port()
        warm = await forkserver.spawn(argv, server_env(base, "warm", port, home), str(home))
        await listening(port)
        assert forkserver.proc is not None
        results["fork server start-up"] = [(0.0, cpu(forkserver.proc.pid))]
        os.kill(warm.pid, signal.SIGKILL)
        await warm.wait()
        for i in range(rounds):
            for way in ("fresh", "forked") if i % 2 == 0 else ("forked", "fresh"):
                user = f"{way}{i}"
                home = tmp / "users" / user
                home.mkdir(parents=True)
                port = free_port()
                env = server_env(base, user, port, home)
                began = time.monotonic()
                if way == "fresh":
                    proc = await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "claudehub.server_ext.singleuser",
                        *argv,
                        env=env,
                        cwd=home,
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.DEVNULL,
                        start_new_session=True,
                    )
                    pid = proc.pid
                else:
                    forked = await forkserver.spawn(argv, env, str(home))
                    pid = forked.pid
                await listening(port)
                results[way].append((time.monotonic() - began, cpu(pid)))
                os.kill(pid, signal.SIGKILL)
                if way == "fresh":
                    await proc.wait()
                else:
                    await forked.wait()  # the fork server reports its exit
                await asyncio.sleep(0.2)
    finally:
        await forkserver.stop()
        hub.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    results = asyncio.run(run(args.rounds))
    print(f"{args.rounds} rounds, cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    startup = results.pop("fork server start-up")[0][1]
    print(f"  fork server's own start-up (once per hub): CPU {startup:.3f} s")
    for way, runs in results.items():
        walls = [w for w, _ in runs]
        cpus = [c for _, c in runs]
        print(
            f"  {way:22s} until listening: wall median {statistics.median(walls) * 1000:6.0f} ms,"
            f" server CPU median {statistics.median(cpus):.3f} s"
            f" (min {min(cpus):.3f}, max {max(cpus):.3f})"
        )


if __name__ == "__main__":
    main()
