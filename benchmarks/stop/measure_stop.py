"""How long local mode takes to stop after Ctrl-C, with learners' answers still streaming.

Starts `jupyterhub -f hub_config/local_config.py` on a pseudo-terminal, as `make run` in a
terminal does (a fresh single-user server inherits that terminal as its stdin; a forked one,
the default, the fork server's), logs N users in through the login form, starts their servers
through the hub's REST API, opens one slow streaming answer per user through the key proxy
(with a sandbox token for that user, signed with the key proxy's secret), then
types Ctrl-C on the terminal and measures until the hub and every process it started are gone.

    .venv/bin/python benchmarks/stop/measure_stop.py [--users 3] [--runs 3]

Prints one line per run and the median; exits 1 if any process had to be killed by the
measurement itself (30 s after Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import pty
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.e2e.conftest import local_mode_env  # noqa: E402
from tests.fakes.upstream import FakeAnthropic  # noqa: E402
from tests.local.running import (  # noqa: E402
    alive,
    descendants,
    log_in_and_start,
    sandbox_token,
    stream,
)

PASSWORD = "stop-bench-password"


def one_run(users: int, upstream: FakeAnthropic) -> tuple[float, float, int]:
    tmp = Path(tempfile.mkdtemp(prefix="claudehub-stop-"))
    env = local_mode_env(
        tmp, upstream.url, PASSWORD, "sk-ant-api03-stop-bench-0123456789abcdefghij"
    )
    port = int(env["CLAUDEHUB_BIND_URL"].rsplit(":", 1)[1])
    kp_port = int(env["CLAUDEHUB_KEYPROXY_PORT"])
    pid, master = pty.fork()
    if pid == 0:  # the hub, on the pseudo-terminal, as `make run` in a terminal
        os.chdir(tmp)
        argv = [sys.executable, "-m", "jupyterhub", "-f", str(REPO / "hub_config/local_config.py")]
        os.execve(sys.executable, argv, env)
    output = bytearray()
    reader = threading.Thread(target=_drain, args=(master, output), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(f"{url}/hub/api/", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(output.decode(errors="replace")[-3000:])
        time.sleep(0.3)
    names = [f"learner{i}" for i in range(users)]
    for name in names:
        log_in_and_start(url, name, PASSWORD)
    pids = descendants(pid)
    events = []
    for name in names:
        started = threading.Event()
        token = sandbox_token(name, pids)
        threading.Thread(
            target=stream, args=(f"http://127.0.0.1:{kp_port}", token, started), daemon=True
        ).start()
        events.append(started)
    for started in events:
        assert started.wait(30), "a stream did not start"
    pids = descendants(pid) | {pid}
    t0 = time.monotonic()
    os.write(master, b"\x03")  # Ctrl-C: the terminal sends SIGINT to the hub
    hub_gone = all_gone = None
    killed = 0
    while time.monotonic() - t0 < 30:
        if hub_gone is None:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                hub_gone = time.monotonic() - t0
        if hub_gone is not None and not any(alive(p) for p in pids):
            all_gone = time.monotonic() - t0
            break
        time.sleep(0.05)
    if all_gone is None:
        for p in pids:
            if alive(p):
                killed += 1
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if hub_gone is None:
            os.waitpid(pid, 0)
    os.close(master)
    reader.join(2)
    (tmp / "jupyterhub.log").write_bytes(bytes(output))  # for a look at what took the time
    return (hub_gone or 30.0), (all_gone or 30.0), killed


def _drain(fd: int, into: bytearray) -> None:
    try:
        while chunk := os.read(fd, 65536):
            into += chunk
    except OSError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    upstream = FakeAnthropic(delay_between_events=2.0)  # answers that last about a minute
    upstream.start()
    results = []
    try:
        for i in range(args.runs):
            hub, everything, killed = one_run(args.users, upstream)
            results.append((hub, everything, killed))
            print(
                f"run {i + 1}: hub exited {hub:.1f} s, every process {everything:.1f} s"
                f" after Ctrl-C, {killed} killed by the benchmark",
                flush=True,
            )
    finally:
        upstream.stop()
    print(
        f"median over {args.runs} runs, {args.users} streaming users: hub"
        f" {statistics.median(r[0] for r in results):.1f} s, every process"
        f" {statistics.median(r[1] for r in results):.1f} s"
    )
    return 1 if any(r[2] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
