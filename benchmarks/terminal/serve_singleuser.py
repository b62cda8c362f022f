#!/usr/bin/env python3
"""Run the user's server as production does, for the terminal benchmark.

Starts a stand-in hub API (tests/server_ext/fakehub.py) in this process and the real
single-user server (`python -m claudehub.server_ext.singleuser`) as a child, with a spawner's
environment and a config that runs bash in the terminal, one process per connection (so the
50-terminal test gets 50 shells). Writes "<server pid> <port> <user> <token>" to --info once
the server answers, then waits until it is terminated (and stops the server).

    serve_singleuser.py --info FILE [--port N]
"""

from __future__ import annotations

import argparse
import os
import signal
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

CONFIG = """
c.ClaudeHubApp.command = ["bash", "--norc", "--noprofile", "-i"]
c.ClaudeHubApp.session_mode = "per-connection"
"""


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--info", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="bench")
    args = ap.parse_args()
    hub = FakeHub(user=args.user).start()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "jupyter_server_config.py").write_text(CONFIG)
        env = hub.singleuser_env(
            args.port, JUPYTER_CONFIG_DIR=tmp, JUPYTER_RUNTIME_DIR=tmp, JUPYTER_DATA_DIR=tmp
        )
        argv = [sys.executable, "-m", "claudehub.server_ext.singleuser"]
        if os.geteuid() == 0:
            argv.append("--allow-root")
        proc = subprocess.Popen(argv, env=env, cwd=tmp)
        stop = False

        def on_signal(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        url = f"http://127.0.0.1:{args.port}/user/{args.user}/api/status"
        try:
            while not stop:
                try:
                    req = urllib.request.Request(
                        url, headers={"Authorization": f"token {hub.user_token}"}
                    )
                    with urllib.request.urlopen(req, timeout=5):
                        break
                except (urllib.error.URLError, ConnectionError):
                    if proc.poll() is not None:
                        sys.exit("the single-user server exited")
                    time.sleep(0.2)
            Path(args.info).write_text(f"{proc.pid} {args.port} {args.user} {hub.user_token}\n")
            while not stop and proc.poll() is None:
                time.sleep(0.2)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            hub.stop()


if __name__ == "__main__":
    main()
