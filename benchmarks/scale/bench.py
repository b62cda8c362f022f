"""A thousand learners on one hub: Kubernetes mode at scale, the hub's own cost measured.

Runs, each in its own process: the Kubernetes API emulator of the test suite and a simulated
node (``cluster.py``: it reports pods Running and answers every pod's server from one process
listening on a loopback address per pod, a stand-in single-user server doing the hub OAuth
handshake and reporting activity); the real JupyterHub configured by ``configure_kubernetes``
from the chart's own rendering (ClaudeSpawner, password login, the start queue, the idle
culler as the chart runs it), with configurable-http-proxy; the key proxy and the course
service with the args and environment of their chart Deployments; a fake Anthropic upstream.

Then N learners at the same moment, each as a browser does: the login form, the course
picker's form (429: wait Retry-After and post again), the spawn-pending page and the hub's
progress event stream until ready, then ``/user/<name>/claude`` through the proxy (the
server's OAuth with the hub). Meanwhile a probe asks the hub's REST API for a learner's
model every 0.2 s. Measured:

- logins/s (login form answered) and spawns/s (servers ready) the hub sustains;
- the hub's CPU (``/proc/<pid>/stat`` utime+stime) from the first login to the last page,
  per learner, and the other processes' beside it;
- the latency of every hub request the learners made, by kind, and the probe's p50/p99;
- the start queue's fairness: pairs of learners whose servers became ready in the other
  order than their spawn requests were accepted, and the start wait by arrival decile;
- the hub's RSS before the storm and with N servers running;
- an idle culler pass (``jupyterhub_idle_culler.cull_idle``, the chart's timeouts, with the
  culler's own scopes) at N;
- every learner's sandbox token through the key proxy (``POST /v1/messages`` to the fake
  upstream: token check, hub's running servers, budget), p50/p99;
- the class page of a class holding every learner, for its instructor, through the proxy.

    .venv/bin/python benchmarks/scale/bench.py --learners 1000 --start-slots 32 [--json out.json]

Exits 1 if any learner got an error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.helm.charts import KEY_SECRET, Rendering, render, write_hub_files  # noqa: E402
from tests.helpers import free_port  # noqa: E402
from tests.hub.hubproc import NODE_BIN, base_config  # noqa: E402
from tests.hub.test_kubernetes import ENV  # noqa: E402
from tests.spawner.conftest import KUBECONFIG  # noqa: E402

NAMESPACE = "claudehub"
PASSWORD = "scale-bench-password"
ADMIN_TOKEN = "scale-bench-admin-token-0123456789"
CULLER_TOKEN = "scale-bench-culler-token-0123456789"
KEYPROXY_ADMIN_TOKEN = "m" * 32
CLASS = "big-class"
INSTRUCTOR = "instructor0"
MODEL = "claude-sonnet-4-5"
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
HERE = Path(__file__).resolve().parent


@dataclass
class Learner:
    name: str
    t_login: float | None = None  # login form answered
    t_accepted: float | None = None  # spawn form accepted (not 429)
    t_ready: float | None = None
    t_page: float | None = None
    spawn_429s: int = 0
    error: str = ""


@dataclass
class Run:
    t0: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    probe: list[float] = field(default_factory=list)
    probe_errors: int = 0

    def record(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds)


# -- processes ---------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(p) for p in text]
    return out


async def wait_for_port(port: int, within: float = 60) -> None:
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


class Processes:
    """Every process the benchmark starts, stopped (by its own pid) at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    async def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        log = (self.tmp / f"{name}.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.tmp,
            # The product from this checkout (REPO), whatever the venv's editable install names.
            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc.pid

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def log(self, name: str, tail: int = 3000) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-tail:]

    async def stop_all(self) -> None:
        # Every process is told first (so an interrupted wait leaves none behind), the hub
        # before the services it talks to.
        live = [p for p in reversed(list(self.procs.values())) if p.returncode is None]
        for proc in live:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in live:
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()


def container_env(rendering: Rendering, deployment: str, overrides: dict[str, str]) -> dict:
    """The first container's environment of a rendered Deployment, its Secrets resolved."""
    spec = rendering.one("Deployment", deployment)["spec"]["template"]["spec"]
    secrets = {s["metadata"]["name"]: s for s in rendering.find("Secret")}
    out: dict[str, str] = {}
    for var in spec["containers"][0].get("env") or []:
        if "value" in var:
            out[var["name"]] = str(var["value"])
            continue
        ref = (var.get("valueFrom") or {}).get("secretKeyRef")
        if ref and ref["name"] in secrets:
            out[var["name"]] = base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode()
    out.update(overrides)
    return out


def container_args(rendering: Rendering, deployment: str) -> list[str]:
    spec = rendering.one("Deployment", deployment)["spec"]["template"]["spec"]
    return [str(a) for a in spec["containers"][0].get("args") or []]


# -- the learners ------------------------------------------------------------------------


async def timed(run: Run, kind: str, coro: Any) -> Any:
    t = time.monotonic()
    try:
        return await coro
    finally:
        run.record(kind, time.monotonic() - t)


async def learner_run(url: str, who: Learner, run: Run, course: str) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=900)
    connector = aiohttp.TCPConnector(limit=4)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout, connector=connector) as s:

        async def get_text(kind: str, path: str, **kw: Any) -> tuple[int, str]:
            t = time.monotonic()
            async with s.get(f"{url}{path}", **kw) as r:
                text = await r.text()
            run.record(kind, time.monotonic() - t)
            return r.status, text

        status, page = await get_text("GET /hub/login", "/hub/login")
        m = re.search(r'name="_xsrf" value="([^"]+)"', page)
        form = {"username": who.name, "password": PASSWORD, "_xsrf": m.group(1) if m else ""}
        t = time.monotonic()
        async with s.post(f"{url}/hub/login", data=form, allow_redirects=False) as r:
            await r.read()
        run.record("POST /hub/login", time.monotonic() - t)
        if r.status not in (302, 303):
            who.error = f"login: {r.status}"
            return
        who.t_login = time.monotonic() - run.t0
        xsrf = next((c.value for c in jar if c.key == "_xsrf"), "")
        # The home page the login lands on (the picker and the learner's summary).
        status, _ = await get_text("GET /hub/home", "/hub/home")
        if status != 200:
            who.error = f"home: {status}"
            return
        while True:
            t = time.monotonic()
            async with s.post(
                f"{url}/hub/spawn/{who.name}",
                data={"course": course, "_xsrf": xsrf},
                allow_redirects=False,
            ) as r:
                body = await r.text()
            run.record("POST /hub/spawn", time.monotonic() - t)
            if r.status == 429:  # the hub's concurrent_spawn_limit: the page says try later
                who.spawn_429s += 1
                await asyncio.sleep(float(r.headers.get("Retry-After", "5")))
                continue
            break
        if r.status not in (200, 302, 303):
            who.error = f"spawn form: {r.status} {body[:300]}"
            return
        who.t_accepted = time.monotonic() - run.t0
        status, _ = await get_text("GET /hub/spawn-pending", f"/hub/spawn-pending/{who.name}")
        headers = {"X-XSRFToken": xsrf}
        api = f"{url}/hub/api/users/{who.name}"
        ready = False
        t = time.monotonic()
        async with s.get(f"{api}/server/progress", headers=headers) as r:
            run.record("progress stream (headers)", time.monotonic() - t)
            if r.status == 200:
                async for line in r.content:
                    if not line.startswith(b"data:"):
                        continue
                    event = json.loads(line[5:])
                    if event.get("ready"):
                        ready = True
                        break
                    if event.get("failed"):
                        who.error = f"spawn failed: {event.get('message')}"
                        return
        while not ready:  # the stream ended early: ask the REST API, as the page does
            t = time.monotonic()
            async with s.get(api, headers=headers) as r:
                info = await r.json()
            run.record("GET /hub/api/users/<name>", time.monotonic() - t)
            server = info.get("servers", {}).get("")
            if server and server.get("ready"):
                break
            if not server and not info.get("pending"):
                who.error = "no server, not pending"
                return
            await asyncio.sleep(2)
        who.t_ready = time.monotonic() - run.t0
        # The Claude page through the proxy: the stand-in server's OAuth with the hub.
        t = time.monotonic()
        async with s.get(f"{url}/user/{who.name}/claude") as r:
            text = await r.text()
        run.record("GET /user/<name>/claude (with OAuth)", time.monotonic() - t)
        if r.status != 200 or f"stand-in server of {who.name}" not in text:
            who.error = f"claude page: {r.status} {text[:200]}"
            return
        who.t_page = time.monotonic() - run.t0


async def probe(url: str, names: list[str], run: Run, stop: asyncio.Event) -> None:
    """The hub's REST API, asked for a learner's model every 0.2 s during the storm."""
    headers = {"Authorization": f"token {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        while not stop.is_set():
            t = time.monotonic()
            try:
                async with s.get(
                    f"{url}/hub/api/users/{random.choice(names)}", headers=headers
                ) as r:
                    await r.read()
                    if r.status not in (200, 404):
                        run.probe_errors += 1
            except (aiohttp.ClientError, TimeoutError):
                run.probe_errors += 1
            run.probe.append(time.monotonic() - t)
            await asyncio.sleep(0.2)


# -- after the storm ---------------------------------------------------------------------


async def culler_passes(api_url: str, passes: int) -> list[float]:
    from jupyterhub_idle_culler import cull_idle

    logger = logging.getLogger("culler")
    times = []
    for _ in range(passes):
        t = time.monotonic()
        await cull_idle(
            url=api_url,
            api_token=CULLER_TOKEN,
            inactive_limit=3600,
            logger=logger,
            max_age=28800,
            concurrency=10,
        )
        times.append(time.monotonic() - t)
    return times


async def keyproxy_round(node_url: str, concurrency: int) -> dict[str, Any]:
    """Every running server's sandbox token through the key proxy, ``concurrency`` at once."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        async with s.get(f"{node_url}/servers") as r:
            servers = await r.json()
        sem = asyncio.Semaphore(concurrency)
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        body = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}

        async def one(server: dict[str, Any]) -> None:
            async with sem:
                t = time.monotonic()
                try:
                    async with s.post(
                        f"{server['keyproxy'].rstrip('/')}/v1/messages",
                        json=body,
                        headers={"x-api-key": server["token"], "anthropic-version": "2023-06-01"},
                    ) as r:
                        await r.read()
                        status = r.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0  # no answer
                latencies.append(time.monotonic() - t)
                statuses[status] = statuses.get(status, 0) + 1

        t0 = time.monotonic()
        await asyncio.gather(*(one(srv) for srv in servers))
        wall = time.monotonic() - t0
    return {"n": len(servers), "latencies": latencies, "statuses": statuses, "wall": wall}


async def class_page(url: str, rounds: int) -> dict[str, Any]:
    """The instructor's class page, as their browser loads it (login, then the page)."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as s:
        async with s.get(f"{url}/hub/login") as r:
            page = await r.text()
        m = re.search(r'name="_xsrf" value="([^"]+)"', page)
        form = {"username": INSTRUCTOR, "password": PASSWORD, "_xsrf": m.group(1) if m else ""}
        async with s.post(f"{url}/hub/login", data=form, allow_redirects=False) as r:
            assert r.status in (302, 303), r.status
        times = []
        rows = 0
        status = 0
        for _ in range(rounds):
            t = time.monotonic()
            async with s.get(f"{url}/services/progress/classes/{CLASS}") as r:
                text = await r.text()
                status = r.status
            times.append(time.monotonic() - t)
            rows = len(re.findall(r"<tr[ >]", text))
            await asyncio.sleep(3.5)  # past the service's hub cache: each request asks the hub
    return {"times": times, "rows": rows, "status": status}


# -- the run -----------------------------------------------------------------------------


def values(learners: int, start_slots: int, spawn_limit: int) -> dict[str, Any]:
    return {
        **KEY_SECRET,
        "auth": {"type": "password"},
        "limits": {
            "maxActiveSessions": learners + 10,
            "concurrentSpawnLimit": spawn_limit or learners,
            "startSlots": start_slots,
        },
        "classes": {
            CLASS: {
                "learners": [f"learner{i}" for i in range(learners)],
                "instructors": [INSTRUCTOR],
            }
        },
    }


def catalogue(tmp: Path) -> Path:
    examples = REPO / "examples"
    path = tmp / "courses.json"
    path.write_text(
        json.dumps(
            {
                "courses": [
                    {
                        "id": "attention",
                        "title": "Attention, step by step",
                        "repo": str(examples),
                        "folder": "courses/attention",
                    }
                ],
                "catalogues": [],
            }
        )
    )
    return path


def keep_logs(tmp: Path, keep: Path) -> None:
    keep.mkdir(parents=True, exist_ok=True)
    for log in tmp.glob("*.log"):
        (keep / log.name).write_bytes(log.read_bytes())


def find_chp(hub_pid: int) -> int:
    """configurable-http-proxy, which the hub started (0 if it is not there)."""
    for pid in children(hub_pid):
        if b"http-proxy" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    return 0


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp_name:
        tmp = Path(tmp_name)
        procs = Processes(tmp)
        try:
            return await storm(args, tmp, procs)
        finally:
            await procs.stop_all()
            if args.keep_logs:
                keep_logs(tmp, Path(args.keep_logs))


async def storm(args: argparse.Namespace, tmp: Path, procs: Processes) -> dict[str, Any]:
    n = args.learners
    py = sys.executable
    ports = {k: free_port() for k in ("api", "node", "keyproxy", "progress", "upstream")}
    public, proxy_api, hub_port = free_port(), free_port(), free_port()
    url = f"http://127.0.0.1:{public}"
    hub_api = f"http://127.0.0.1:{hub_port}/hub/api"
    api_url = f"http://127.0.0.1:{ports['api']}"

    rendering = render(values(n, args.start_slots, args.spawn_limit))
    path = write_hub_files(rendering, tmp / "hub-config")
    settings = yaml.safe_load(path.read_text())
    settings["chart"]["tokenSecretFile"] = str(tmp / "token-secret")
    settings["chart"]["keyproxyUrl"] = f"http://127.0.0.1:{ports['keyproxy']}"
    settings["chart"]["progressUrl"] = f"http://127.0.0.1:{ports['progress']}"
    path.write_text(yaml.safe_dump(settings))
    (tmp / "token-secret").write_text("0123456789abcdef0123456789abcdef\n")
    (tmp / "kubeconfig").write_text(KUBECONFIG.replace("http://127.0.0.1:1", api_url))

    await procs.start("api", [py, str(HERE / "cluster.py"), "api", str(ports["api"])])
    await procs.start(
        "upstream",
        [py, "-m", "tests.fakes.upstream", "--port", str(ports["upstream"])],
        env={"PYTHONPATH": str(REPO)},
    )
    await wait_for_port(ports["api"])
    await procs.start(
        "node",
        [
            py,
            str(HERE / "cluster.py"),
            "node",
            api_url,
            NAMESPACE,
            str(ports["node"]),
            f"--activity-interval={args.activity_interval}",
        ],
    )
    services_env = {
        "JUPYTERHUB_API_URL": hub_api,
        "CLAUDEHUB_KEYPROXY_ADMIN_TOKEN": KEYPROXY_ADMIN_TOKEN,
        "CLAUDEHUB_TOKEN_SECRET_FILE": str(tmp / "token-secret"),
    }
    kp_env = container_env(
        rendering,
        "claudehub-keyproxy",
        {
            **services_env,
            "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{ports['keyproxy']}",
            "ANTHROPIC_UPSTREAM_URL": f"http://127.0.0.1:{ports['upstream']}",
            "ANTHROPIC_API_KEY_FILE": str(tmp / "api-key"),
            "CLAUDEHUB_KEYPROXY_DB_URL": f"sqlite:///{tmp / 'usage.sqlite'}",
            "JUPYTERHUB_API_TOKEN": ENV["CLAUDEHUB_KEYPROXY_API_TOKEN"],
        },
    )
    (tmp / "api-key").write_text("sk-ant-api03-" + "x" * 80 + "\n")
    kp_args = container_args(rendering, "claudehub-keyproxy")
    assert kp_args[0] == "claudehub-keyproxy", kp_args
    await procs.start("keyproxy", [py, "-m", "claudehub.proxy.app", *kp_args[1:]], env=kp_env)
    pg_env = container_env(
        rendering,
        "claudehub-progress",
        {
            **services_env,
            "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{ports['progress']}",
            "CLAUDEHUB_PROGRESS_DB_URL": f"sqlite:///{tmp / 'progress.sqlite'}",
            "CLAUDEHUB_COURSE_CACHE": str(tmp / "courses"),
            "CLAUDEHUB_KEYPROXY_URL": f"http://127.0.0.1:{ports['keyproxy']}",
            "JUPYTERHUB_API_TOKEN": ENV["CLAUDEHUB_PROGRESS_API_TOKEN"],
            "HOME": str(tmp),
        },
    )
    pg_args = [
        a if not a.startswith("--courses-json=") else f"--courses-json={catalogue(tmp)}"
        for a in container_args(rendering, "claudehub-progress")
    ]
    assert pg_args[0] == "claudehub-progress", pg_args
    await procs.start("progress", [py, "-m", "claudehub.progress.app", *pg_args[1:]], env=pg_env)

    culler_scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
    config = f"""c = get_config()  # noqa
from claudehub.hub.kubernetes import HubEnvironment, configure_kubernetes
from claudehub.hub.settings import load
environment = HubEnvironment(config=c)
configure_kubernetes(c, load(environment.config_file), environment)
c.JupyterHub.services.append({{"name": "bench", "api_token": {ADMIN_TOKEN!r}}})
c.JupyterHub.services.append({{"name": "bench-culler", "api_token": {CULLER_TOKEN!r}}})
c.JupyterHub.load_roles.append(
    {{"name": "bench", "scopes": ["admin:users", "admin:servers"], "services": ["bench"]}}
)
c.JupyterHub.load_roles.append(
    {{"name": "bench-culler", "scopes": {culler_scopes!r}, "services": ["bench-culler"]}}
)
{args.extra_config}
""" + base_config(tmp, public, proxy_api, hub_port)
    (tmp / "jupyterhub_config.py").write_text(config)
    hub_env = {
        **ENV,
        "CLAUDEHUB_CONFIG": str(path),
        "KUBECONFIG": str(tmp / "kubeconfig"),
        "CLAUDEHUB_KEYPROXY_ADMIN_TOKEN": KEYPROXY_ADMIN_TOKEN,
        "CLAUDEHUB_DEV_PASSWORD": PASSWORD,
        "PATH": f"{NODE_BIN}:{Path(py).parent}:{os.environ.get('PATH', '')}",
    }
    hub_pid = await procs.start(
        "hub", [py, "-m", "jupyterhub", "-f", str(tmp / "jupyterhub_config.py")], env=hub_env
    )
    t_hub = time.monotonic()
    async with aiohttp.ClientSession() as s:
        while True:
            if procs.procs["hub"].returncode is not None:
                raise RuntimeError(f"hub exited:\n{procs.log('hub')}")
            try:
                async with s.get(f"{url}/hub/api/", timeout=aiohttp.ClientTimeout(total=5)) as r:
                    if r.status == 200:
                        break
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() - t_hub > 180:
                raise RuntimeError(f"hub did not start:\n{procs.log('hub')}")
            await asyncio.sleep(0.3)
    hub_start = time.monotonic() - t_hub
    await wait_for_port(ports["progress"])
    await wait_for_port(ports["keyproxy"])
    await asyncio.sleep(2)
    chp_pid = find_chp(hub_pid)
    watched = {
        "hub": hub_pid,
        "chp": chp_pid,
        "api emulator": procs.pid("api"),
        "node": procs.pid("node"),
        "keyproxy": procs.pid("keyproxy"),
        "progress": procs.pid("progress"),
        "upstream": procs.pid("upstream"),
        "client": os.getpid(),
    }
    rss_before = rss_mb(hub_pid)
    print(f"hub up in {hub_start:.1f} s, RSS {rss_before:.0f} MB; {n} learners now", flush=True)

    run = Run()
    learners = [Learner(f"learner{i}") for i in range(n)]
    names = [w.name for w in learners]
    cpu0 = {k: cpu_seconds(p) for k, p in watched.items() if p}
    spy = None
    if args.py_spy:  # on-CPU samples of the hub during the storm (collapsed stacks)
        spy = await asyncio.create_subprocess_exec(
            args.py_spy,
            "record",
            "--pid",
            str(hub_pid),
            "--rate",
            "100",
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            args.profile_out,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
    run.t0 = time.monotonic()
    stop = asyncio.Event()
    prober = asyncio.ensure_future(probe(url, names, run, stop))

    async def arrive(i: int, who: Learner) -> None:
        # --ramp: the class arrives evenly over that many seconds (0: all at once)
        await asyncio.sleep(args.ramp * i / n)
        await learner_run(url, who, run, "attention")

    tasks = [asyncio.ensure_future(arrive(i, w)) for i, w in enumerate(learners)]
    rss_peak = rss_before
    done = asyncio.gather(*tasks, return_exceptions=True)
    last_print = 0.0
    while not done.done():
        await asyncio.wait([done], timeout=1.0)
        rss_peak = max(rss_peak, rss_mb(hub_pid))
        elapsed = time.monotonic() - run.t0
        if elapsed - last_print >= 15:
            last_print = elapsed
            print(
                f"  {elapsed:5.0f} s: logged in {sum(1 for w in learners if w.t_login)}, "
                f"accepted {sum(1 for w in learners if w.t_accepted)}, "
                f"ready {sum(1 for w in learners if w.t_ready)}, "
                f"page {sum(1 for w in learners if w.t_page)}, "
                f"errors {sum(1 for w in learners if w.error)}",
                flush=True,
            )
        if elapsed > args.give_up:
            for task in tasks:
                task.cancel()
    for w, result in zip(learners, await done, strict=True):
        if isinstance(result, BaseException) and not w.error:
            w.error = f"{type(result).__name__}: {result}"
    storm_s = time.monotonic() - run.t0
    cpu = {k: cpu_seconds(p) - cpu0[k] for k, p in watched.items() if p}
    stop.set()
    await prober
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        await spy.wait()
    rss_after = rss_mb(hub_pid)

    # Idle: servers running, activity reported; the hub's CPU over a quiet minute.
    idle_cpu0 = cpu_seconds(hub_pid)
    await asyncio.sleep(args.idle_seconds)
    idle_cpu = (cpu_seconds(hub_pid) - idle_cpu0) / args.idle_seconds

    culls = await culler_passes(hub_api, 3)
    kp = await keyproxy_round(f"http://127.0.0.1:{ports['node']}", 50)
    kp2 = await keyproxy_round(f"http://127.0.0.1:{ports['node']}", 50)
    cls = await class_page(url, args.class_rounds)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{ports['node']}/stats") as r:
            node_stats = await r.json()
    rss_end = rss_mb(hub_pid)
    hub_log = procs.log("hub", 10**7)
    return {
        "learners": n,
        "start_slots": args.start_slots,
        "ramp_s": args.ramp,
        "profile": args.profile_out if args.py_spy else "",
        "hub_start_s": hub_start,
        "storm_s": storm_s,
        "learner_rows": [w.__dict__ for w in learners],
        "latencies": run.latencies,
        "probe": run.probe,
        "probe_errors": run.probe_errors,
        "cpu": cpu,
        "rss_mb": {"before": rss_before, "peak": rss_peak, "after": rss_after, "end": rss_end},
        "hub_idle_cpu_per_s": idle_cpu,
        "culler_s": culls,
        "keyproxy": [kp, kp2],
        "class_page": cls,
        "node": node_stats,
        "hub_log_tracebacks": hub_log.count("Traceback"),
        "hub_log_errors": len(re.findall(r"^\[E ", hub_log, re.M)),
        "hub_log_error_samples": re.findall(r"^\[E .*$", hub_log, re.M)[:10],
    }


# -- the report --------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))] if s else float("nan")


def inversions(order: list[tuple[float, float]]) -> float:
    """Fraction of pairs ready in the other order than accepted (0: FIFO, 0.5: random)."""
    pairs = inv = 0
    for i in range(len(order)):
        for j in range(i + 1, len(order)):
            (a1, r1), (a2, r2) = order[i], order[j]
            if a1 == a2:
                continue
            pairs += 1
            if (a1 < a2) != (r1 < r2):
                inv += 1
    return inv / pairs if pairs else 0.0


#: Where a sample of the hub's profile goes: the first frame (outermost first) naming one.
PHASES = (
    ("login form", ("LoginHandler",)),
    ("home page", ("HomeHandler",)),
    ("request auth (cookie, token)", ("get_current_user",)),
    (
        "spawn (form, start, pod, progress)",
        (
            "SpawnHandler",
            "SpawnPendingHandler",
            "spawn_single_user",
            "User.spawn",
            "Spawner",
            "ResourceReflector",
            "SpawnProgressAPIHandler",
            "_wait_up",
            "StartQueue",
        ),
    ),
    ("server OAuth (authorize, token, user)", ("OAuth", "SelfAPIHandler")),
    ("activity reports", ("ActivityAPIHandler",)),
    ("REST API reads", ("UserAPIHandler", "UserListAPIHandler", "GroupAPIHandler")),
    ("proxy routes, last activity", ("update_last_activity", "check_routes", "Proxy.")),
    ("audit hook", ("AuditHook",)),
)


def profile_phases(path: Path) -> dict[str, float]:
    """Shares of the hub's profile (py-spy raw: ``frame;frame;... count``) by phase."""
    counts: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        phase = "other (event loop, logging, ...)"
        for frame in stack.split(";"):
            hit = next((name for name, marks in PHASES if any(m in frame for m in marks)), None)
            if hit:
                phase = hit
                break
        counts[phase] = counts.get(phase, 0) + int(n)
    return {k: v / total for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}


def report(result: dict[str, Any]) -> int:
    rows = [Learner(**r) for r in result["learner_rows"]]
    n = result["learners"]
    ok = [w for w in rows if w.t_page is not None and not w.error]
    errors = [w for w in rows if w.error]
    print(
        f"\n== {n} learners, startSlots {result['start_slots']}, "
        f"arriving over {result.get('ramp_s', 0):g} s =="
    )
    print(f"hub start-up: {result['hub_start_s']:.1f} s")
    print(f"servers running and page loaded: {len(ok)}/{n}; errors: {len(errors)}")
    for w in errors[:10]:
        print(f"  {w.name}: {w.error}")
    logins = sorted(w.t_login for w in rows if w.t_login is not None)
    readies = sorted(w.t_ready for w in rows if w.t_ready is not None)
    if logins:
        print(
            f"logins: all {len(logins)} in {logins[-1]:.1f} s = {len(logins) / logins[-1]:.1f}/s; "
            f"p50 {pct(logins, 0.5):.1f} s"
        )
    if readies:
        first_accept = min(w.t_accepted for w in rows if w.t_accepted is not None)
        span = readies[-1] - first_accept
        print(
            f"servers ready: last at {readies[-1]:.1f} s; "
            f"{len(readies) / max(span, 1e-9):.1f} spawns/s from the first accepted spawn"
        )
    print(f"storm (first login to last page): {result['storm_s']:.1f} s")
    cpu = result["cpu"]
    print("CPU seconds during the storm (and ms per learner):")
    for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"  {k:14s} {v:8.1f} s  {v / n * 1000:7.1f} ms")
    profile = Path(result.get("profile", ""))
    if result.get("profile") and profile.exists():
        hub_ms = cpu["hub"] / n * 1000
        print(f"hub profile by phase (share, and ms of the {hub_ms:.0f} ms per learner):")
        for phase, share in profile_phases(profile).items():
            print(f"  {phase:40s} {share * 100:5.1f}%  {share * hub_ms:6.1f} ms")
    all_hub = [x for kind, xs in result["latencies"].items() if "/user/" not in kind for x in xs]
    print(
        f"hub requests during the storm: n={len(all_hub)} p50 {pct(all_hub, 0.5) * 1000:.0f} ms "
        f"p99 {pct(all_hub, 0.99) * 1000:.0f} ms"
    )
    for kind, xs in result["latencies"].items():
        print(
            f"  {kind:40s} n={len(xs):5d} p50 {pct(xs, 0.5) * 1000:7.0f} ms "
            f"p99 {pct(xs, 0.99) * 1000:7.0f} ms max {max(xs) * 1000:7.0f} ms"
        )
    probe = result["probe"]
    print(
        f"probe GET /hub/api/users/<name>: n={len(probe)} p50 {pct(probe, 0.5) * 1000:.0f} ms "
        f"p99 {pct(probe, 0.99) * 1000:.0f} ms errors {result['probe_errors']}"
    )
    order = [(w.t_accepted, w.t_ready) for w in rows if w.t_accepted and w.t_ready]
    if order:
        waits = [r - a for a, r in order]
        by_arrival = sorted(order)
        deciles = [
            statistics.median(
                r - a
                for a, r in by_arrival[i * len(order) // 10 : (i + 1) * len(order) // 10]
                or [(0, 0)]
            )
            for i in range(10)
        ]
        print(
            f"start queue: accepted -> ready p50 {pct(waits, 0.5):.1f} s p99 {pct(waits, 0.99):.1f} s; "
            f"inverted pairs {inversions(order) * 100:.2f}%"
        )
        print("  median wait by arrival decile: " + " ".join(f"{d:.0f}" for d in deciles))
    print(f"spawn 429s (retried): {sum(w.spawn_429s for w in rows)}")
    rss = result["rss_mb"]
    print(
        f"hub RSS: {rss['before']:.0f} MB before, {rss['after']:.0f} MB with {len(ok)} running "
        f"(peak {rss['peak']:.0f}, end {rss['end']:.0f}); "
        f"{(rss['after'] - rss['before']) / max(1, len(ok)) * 100:.1f} MB per 100 learners"
    )
    print(
        f"hub CPU idle with {len(ok)} running: {result['hub_idle_cpu_per_s'] * 100:.1f}% of a core"
    )
    culls = result["culler_s"]
    print(f"culler pass at {len(ok)}: " + ", ".join(f"{c:.2f} s" for c in culls))
    for i, kp in enumerate(result["keyproxy"]):
        lat = kp["latencies"]
        print(
            f"key proxy round {i + 1} ({kp['n']} tokens, 50 at once): statuses {kp['statuses']}, "
            f"p50 {pct(lat, 0.5) * 1000:.0f} ms p99 {pct(lat, 0.99) * 1000:.0f} ms, "
            f"{kp['n'] / kp['wall']:.0f} req/s"
        )
    cls = result["class_page"]
    print(
        f"class page ({n} learners, status {cls['status']}, {cls['rows']} rows): "
        + ", ".join(f"{t * 1000:.0f} ms" for t in cls["times"])
    )
    print(f"node: {result['node']}")
    print(
        f"hub log: {result['hub_log_tracebacks']} tracebacks, {result['hub_log_errors']} errors "
        f"{result['hub_log_error_samples'][:3]}"
    )
    return 1 if errors or len(ok) < n else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=100)
    parser.add_argument("--start-slots", type=int, default=4, help="the chart's limits.startSlots")
    parser.add_argument(
        "--spawn-limit", type=int, default=0, help="concurrentSpawnLimit (0: the class size)"
    )
    parser.add_argument(
        "--ramp", type=float, default=0.0, help="seconds over which the learners arrive"
    )
    parser.add_argument("--activity-interval", type=float, default=300.0)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--class-rounds", type=int, default=3)
    parser.add_argument("--give-up", type=float, default=3600.0)
    parser.add_argument("--extra-config", default="", help="lines appended to the hub config")
    parser.add_argument("--py-spy", default="", help="py-spy binary: profile the hub's storm")
    parser.add_argument("--profile-out", default="hub-profile.txt")
    parser.add_argument("--json", default="")
    parser.add_argument("--keep-logs", default="")
    parser.add_argument("--report", default="", help="print the report of a saved --json")
    args = parser.parse_args()
    args.profile_out = str(Path(args.profile_out).resolve())
    if args.report:
        sys.exit(report(json.loads(Path(args.report).read_text())))
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(main_async(args))
    if args.json:
        Path(args.json).write_text(json.dumps(result))
    sys.exit(report(result))


if __name__ == "__main__":
    main()
