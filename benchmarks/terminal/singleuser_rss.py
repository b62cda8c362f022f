#!/usr/bin/env python3
"""Idle RSS of the user's server: `jupyterhub-singleuser` + the claudehub extension.

Starts a stand-in hub API (tests/server_ext/fakehub.py), then the real single-user server
(`python -m claudehub.server_ext.singleuser`, the lean entry point, and plain
`jupyterhub-singleuser`), with the environment a spawner gives it; waits until
it serves /user/<name>/claude, lets it settle and reports its resident set size (and, for
comparison, a stock `jupyter-server` with jupyter_server_terminals in the same environment).

    .venv/bin/python benchmarks/terminal/singleuser_rss.py [--settle 12] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.server_ext.fakehub import FakeHub  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def wait_ok(url: str, token: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(url)
        time.sleep(0.2)


def measure(argv: list[str], env: dict[str, str], url: str, token: str, settle: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(env, JUPYTER_CONFIG_DIR=tmp, JUPYTER_RUNTIME_DIR=tmp, JUPYTER_DATA_DIR=tmp)
        proc = subprocess.Popen(
            argv, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_ok(url, token)
            time.sleep(settle)
            return rss_mb(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--settle",
        type=float,
        default=12.0,
        help="seconds idle before measuring (the lean entry point tidies its heap after 10 s)",
    )
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    bindir = Path(sys.executable).parent
    root_flag = ["--allow-root"] if os.geteuid() == 0 else []
    hub = FakeHub().start()
    lean, plain, stock = [], [], []
    try:
        for _ in range(args.runs):
            for argv, out in (
                ([sys.executable, "-m", "claudehub.server_ext.singleuser", *root_flag], lean),
                ([str(bindir / "jupyterhub-singleuser"), *root_flag], plain),
            ):
                port = free_port()
                out.append(
                    measure(
                        argv,
                        hub.singleuser_env(port),
                        f"http://127.0.0.1:{port}/user/{hub.user}/claude",
                        hub.user_token,
                        args.settle,
                    )
                )
            port = free_port()
            stock.append(
                measure(
                    [
                        str(bindir / "jupyter-server"),
                        *root_flag,
                        "--no-browser",
                        "--ip=127.0.0.1",
                        f"--port={port}",
                        "--IdentityProvider.token=stock",
                        "--ServerApp.jpserver_extensions={'claudehub.server_ext': False}",
                    ],
                    dict(os.environ),
                    f"http://127.0.0.1:{port}/api/terminals",
                    "stock",
                    args.settle,
                )
            )
    finally:
        hub.stop()
    for label, values in (
        ("python -m claudehub.server_ext.singleuser (lean) + claudehub", lean),
        ("jupyterhub-singleuser + claudehub", plain),
        ("stock jupyter-server + terminals (no hub)", stock),
    ):
        print(
            f"{label:<62} idle RSS MB: median {statistics.median(values):.1f}  runs {[round(x, 1) for x in values]}"
        )


if __name__ == "__main__":
    main()
