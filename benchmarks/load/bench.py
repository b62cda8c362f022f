"""A class logging in at once: N learners through the real login form, the course picker's
form and the terminal websocket, the real Claude CLI, a fake upstream (local mode).

Starts ``jupyterhub -f hub_config/local_config.py`` in a fresh state folder, then for every
learner at the same moment: log in through the login form, post the course picker's form
(the example course), wait on the hub's progress event stream until the server is ready (as
the spawn-pending page does), open ``/user/<name>/claude/terminal`` with subprotocol ``claudehub.v2`` as the page does, wait for
Claude's prompt (PROMPT), type a question (Enter once it is echoed, as a learner types) and wait
for the fake upstream's answer. Per learner it measures login → prompt and question → answer;
for the whole run the CPU seconds every process kind spent from the first login to the last
answer (``/proc/<pid>/stat`` utime+stime, plus cutime+cstime of children they reaped), divided
by N; and each learner's PSS (``/proc/<pid>/smaps_rollup`` of their server and everything below
it) with all N at their prompt.

    .venv/bin/python benchmarks/load/bench.py --users 10 [--json out.json]

Prints p50/p95 and the CPU/PSS table; exits 1 if any learner got an error or no answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.fakes.upstream import FakeAnthropic  # noqa: E402
from tests.helpers import free_port  # noqa: E402
from tests.local.running import descendants  # noqa: E402

PASSWORD = "load-bench-password"
QUESTION = "What is attention"
ANSWER = "Attention weighs every token against the others, zebracorn"
TICK = os.sysconf("SC_CLK_TCK")
PROMPT = "\u276f"  # Claude Code's input prompt
MIN_FREE_MB = 1500
#: how often a waiting learner asks the hub whether the server is ready, when the progress
#: event stream (what the real page listens to) ended before it said so
POLL_SECONDS = 2.0
KINDS = ("hub", "chp", "keyproxy", "course service", "single-user server", "claude cli")


@dataclass
class Learner:
    name: str
    prompt_s: float | None = None
    #: from the Claude page's websocket opening to Claude's prompt: what starting Claude
    #: with the server (before the page connects) could take off the wait at most
    ws_prompt_s: float | None = None
    answer_s: float | None = None
    error: str = ""
    spawn_429s: int = 0
    events: list[str] = field(default_factory=list)


def kind_of(pid: int, hub: int, servers: set[int]) -> str:
    """Which part of the stack ``pid`` is, from its command line and its ancestors."""
    if pid == hub:
        return "hub"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
    if "configurable-http-proxy" in cmd:
        return "chp"
    if "claudehub.proxy.app" in cmd:
        return "keyproxy"
    if "claudehub.progress.app" in cmd:
        return "course service"
    if pid in servers:
        return "single-user server"
    return "claude cli"


def cpu_seconds(pid: int) -> float:
    """utime+stime+cutime+cstime of ``pid`` in seconds (0 if gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / TICK


SERVER_MODULES = (b"claudehub.server_ext.singleuser", b"claudehub.server_ext.forkserver")


def servers_of(hub: int) -> dict[int, str]:
    """Single-user server pid -> user name; the fork server (local mode forks the servers
    from it, sharing its imports) -> "". A server's working folder is its user's home,
    ``.../users/<user>``; a forked server's /proc environ is the fork server's."""
    found = {}
    for pid in descendants(hub):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if not any(m in cmd for m in SERVER_MODULES):
                continue
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            continue
        found[pid] = cwd.name if cwd.parent.name == "users" else ""
    return found


def cpu_by_kind(hub: int, seen: dict[int, tuple[str, float]]) -> None:
    """Record every live process's kind and CPU so far in ``seen`` (kept after it exits)."""
    servers = set(servers_of(hub))
    for pid in descendants(hub) | {hub}:
        kind = kind_of(pid, hub, servers)
        if not kind:
            continue
        # A process a server or the hub reaped shows in its parent's cutime; descendants are
        # read directly, so the hub and the servers count only their own time.
        value = cpu_seconds(pid)
        # (the fork server's children are the servers: it too counts only its own time)
        if pid == hub or pid in servers:
            try:
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                value = (int(f[11]) + int(f[12])) / TICK
            except OSError:
                continue
        if value or pid not in seen:
            seen[pid] = (kind, max(value, seen.get(pid, ("", 0.0))[1]))


def mem_available_mb() -> int:
    m = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    return int(m.group(1)) // 1024 if m else 1 << 30


def pss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    m = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


def pss_per_user(hub: int) -> dict[str, dict[str, int]]:
    """Each learner's server and Claude; the fork server's own PSS is shared out evenly."""
    out = {}
    servers = servers_of(hub)
    for pid, user in servers.items():
        if not user:
            continue
        below = descendants(pid)
        out[user] = {
            "server": pss_kb(pid),
            "claude": sum(pss_kb(p) for p in below),
        }
    shared = sum(pss_kb(pid) for pid, user in servers.items() if not user)
    for entry in out.values():
        entry["server"] += shared // max(1, len(out))
    return out


async def wait_ready(
    s: aiohttp.ClientSession, url: str, name: str, headers: dict[str, str]
) -> str | None:
    """Wait for the learner's server as the spawn-pending page does: the progress event
    stream until an event says ready or failed. None when ready, else the failure. If the
    stream ends early (the hub restarts it), ask the REST API every POLL_SECONDS."""
    api = f"{url}/hub/api/users/{name}"
    async with s.get(f"{api}/server/progress", headers=headers) as r:
        if r.status == 200:
            async for line in r.content:
                if not line.startswith(b"data:"):
                    continue
                event = json.loads(line[5:])
                if event.get("ready"):
                    return None
                if event.get("failed"):
                    return str(event.get("message", "failed"))
    while True:
        info = await (await s.get(api, headers=headers)).json()
        server = info.get("servers", {}).get("")
        if server and server.get("ready"):
            return None
        if not server and not info.get("pending"):
            return "no server, not pending"
        await asyncio.sleep(POLL_SECONDS)


async def learner_run(url: str, who: Learner, t_start: float) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as s:
        page = await (await s.get(f"{url}/hub/login")).text()
        m = re.search(r'name="_xsrf" value="([^"]+)"', page)
        form = {"username": who.name, "password": PASSWORD, "_xsrf": m.group(1) if m else ""}
        r = await s.post(f"{url}/hub/login", data=form, allow_redirects=False)
        if r.status not in (302, 303):
            who.error = f"login: {r.status}"
            return
        xsrf = next((c.value for c in jar if c.key == "_xsrf"), "")
        # The picker's form, as the learner's browser posts it.
        while True:
            r = await s.post(
                f"{url}/hub/spawn/{who.name}",
                data={"course": "attention", "_xsrf": xsrf},
                allow_redirects=False,
            )
            if r.status == 429:  # the hub's concurrent_spawn_limit: try again later
                who.spawn_429s += 1
                await asyncio.sleep(float(r.headers.get("Retry-After", "5")))
                continue
            break
        if r.status not in (200, 302, 303):
            who.error = f"spawn form: {r.status} {(await r.text())[:300]}"
            return
        headers = {"X-XSRFToken": xsrf}
        # The spawn-pending page listens to the hub's progress event stream until the server
        # is ready (JupyterHub's own page does this, and so do claudehub's templates).
        failed = await wait_ready(s, url, who.name, headers)
        if failed is not None:
            # the spawn failed: the page the learner sees says why
            pending = await s.get(f"{url}/hub/spawn-pending/{who.name}")
            text = await pending.text()
            m = re.search(r"Spawn failed[^<]*", text)
            who.error = m.group(0) if m else f"spawn failed: {failed}"
            return
        # The Claude page, as the browser loads it: the server's OAuth with the hub sets the
        # cookie the websocket is authenticated with.
        r = await s.get(f"{url}/user/{who.name}/claude")
        if r.status != 200:
            who.error = f"claude page: {r.status}"
            return
        ws_url = f"{url}/user/{who.name}/claude/terminal".replace("http", "ws", 1)
        async with s.ws_connect(
            ws_url, protocols=("claudehub.v2",), origin=url, headers=headers, max_msg_size=0
        ) as ws:
            t_ws = time.monotonic()
            await ws.send_str(json.dumps(["set_size", 40, 120]))
            screen = ""
            asked = sent_enter = False
            t_ask = 0.0
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    screen += msg.data.decode(errors="replace")
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if data[0] == "stdout":
                        screen += data[1]
                    elif data[0] == "exit":
                        who.error = f"claude exited: {data[1]}"
                        return
                else:
                    break
                screen = screen[-20000:]
                if not asked and PROMPT in screen:
                    who.prompt_s = time.monotonic() - t_start
                    who.ws_prompt_s = time.monotonic() - t_ws
                    screen = ""
                    await ws.send_str(json.dumps(["stdin", QUESTION]))
                    asked = True
                    t_ask = time.monotonic()
                elif asked and not sent_enter and QUESTION.split()[-1] in screen:
                    await ws.send_str(json.dumps(["stdin", "\r"]))
                    sent_enter = True
                    screen = ""
                elif sent_enter and ANSWER.split()[-1] in screen:
                    who.answer_s = time.monotonic() - t_ask
                    return
        if who.answer_s is None and not who.error:
            who.error = "websocket closed before the answer"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


async def run(users: int, url: str, hub: int) -> tuple[list[Learner], dict[str, float], dict]:
    seen: dict[int, tuple[str, float]] = {}
    cpu_by_kind(hub, seen)
    before = dict(seen)
    learners = [Learner(f"learner{i}") for i in range(users)]
    t0 = time.monotonic()
    pss: dict = {}
    tasks = [asyncio.create_task(learner_run(url, w, t0)) for w in learners]
    done = asyncio.gather(*tasks, return_exceptions=True)
    while not done.done():
        await asyncio.sleep(1.0)
        if mem_available_mb() < MIN_FREE_MB:  # stop before the kernel's OOM killer does
            for task in tasks:
                task.cancel()
            for w in learners:
                w.error = w.error or f"aborted: under {MIN_FREE_MB} MB of memory left"
            break
        await asyncio.to_thread(cpu_by_kind, hub, seen)
        at_prompt = sum(1 for w in learners if w.prompt_s is not None)
        if not pss and at_prompt == users:
            pss = await asyncio.to_thread(pss_per_user, hub)
    for w, result in zip(learners, await done, strict=True):
        if isinstance(result, BaseException):
            w.error = w.error or f"{type(result).__name__}: {result}"
    cpu_by_kind(hub, seen)
    cpu: dict[str, float] = dict.fromkeys(KINDS, 0.0)
    for pid, (kind, value) in seen.items():
        cpu[kind] += value - before.get(pid, ("", 0.0))[1]
    return learners, cpu, pss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument(
        "--hub-config", default=str(REPO / "hub_config/local_config.py"), help="jupyterhub -f"
    )
    parser.add_argument("--keep", action="store_true", help="keep the state folder and log")
    parser.add_argument(
        "--fresh-servers",
        action="store_true",
        help="start every server as a fresh Python (CLAUDEHUB_PRELOAD_SERVER=false): the baseline",
    )
    args = parser.parse_args()
    upstream = FakeAnthropic()
    upstream.start()
    upstream.script(*[ANSWER + "."] * (args.users * 3))
    tmp = Path(tempfile.mkdtemp(prefix="claudehub-load-"))
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUPYTER", "CLAUDEHUB_", "ANTHROPIC_", "PYTEST_"))
    }
    env.update(
        {
            "PATH": f"{REPO / 'node_modules' / '.bin'}:{Path(sys.executable).parent}:{env['PATH']}",
            "CLAUDEHUB_BIND_URL": f"http://127.0.0.1:{port}",
            "CLAUDEHUB_STATE_DIR": str(tmp / "state"),
            "CLAUDEHUB_DEV_PASSWORD": PASSWORD,
            "CLAUDEHUB_HUB_PORT": str(free_port()),
            "CLAUDEHUB_PROXY_API_PORT": str(free_port()),
            "CLAUDEHUB_KEYPROXY_PORT": str(free_port()),
            "CLAUDEHUB_PROGRESS_PORT": str(free_port()),
            "ANTHROPIC_API_KEY": "sk-ant-api03-load-bench-0123456789abcdefghijklmnop",
            "ANTHROPIC_UPSTREAM_URL": upstream.url,
            "CLAUDEHUB_PRELOAD_SERVER": "false" if args.fresh_servers else "true",
        }
    )
    log = open(tmp / "jupyterhub.log", "wb")
    hub = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(Path(args.hub_config).resolve())],
        cwd=tmp,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url)
        time.sleep(2)  # let the services finish starting before the clock runs
        learners, cpu, pss = asyncio.run(run(args.users, url, hub.pid))
    finally:
        hub.terminate()
        try:
            hub.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(hub.pid, 9)
        upstream.stop()
        log.close()
    return report(args, learners, cpu, pss, tmp)


def _wait_up(url: str) -> None:
    import requests

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/hub/api/", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError("the hub did not come up")


def report(
    args: argparse.Namespace, learners: list[Learner], cpu: dict, pss: dict, tmp: Path
) -> int:
    n = args.users
    ok = [w for w in learners if w.answer_s is not None]
    failed = [w for w in learners if w.answer_s is None]
    prompts = [w.prompt_s for w in learners if w.prompt_s is not None]
    answers = [w.answer_s for w in ok if w.answer_s is not None]
    log = (tmp / "jupyterhub.log").read_text(errors="replace")
    took = [float(x) for x in re.findall(r"took ([\d.]+) seconds to start", log)]
    mode = "fresh servers" if args.fresh_servers else "forked servers"
    print(f"users {n} ({mode}): {len(ok)} answered, {len(failed)} failed, cores {os.cpu_count()}")
    if prompts:
        print(f"login -> prompt   p50 {pct(prompts, 0.5):6.1f} s  p95 {pct(prompts, 0.95):6.1f} s")
    ws_prompts = [w.ws_prompt_s for w in learners if w.ws_prompt_s is not None]
    if ws_prompts:
        p50, p95 = pct(ws_prompts, 0.5), pct(ws_prompts, 0.95)
        print(f"terminal open -> prompt p50 {p50:6.1f} s  p95 {p95:6.1f} s")
    if answers:
        print(f"question -> answer p50 {pct(answers, 0.5):6.1f} s  p95 {pct(answers, 0.95):6.1f} s")
    if took:
        print(f"hub 'took N seconds to start': p50 {pct(took, 0.5):.1f} s, max {max(took):.1f} s")
    print(f"spawn 429 answers (retried): {sum(w.spawn_429s for w in learners)}")
    print("CPU seconds per login:")
    for kind in KINDS:
        print(f"  {kind:20s} {cpu[kind] / n:6.2f}")
    ours = sum(cpu[k] for k in KINDS if k != "claude cli") / n
    print(f"  {'claudehub (not CLI)':20s} {ours:6.2f}")
    if pss:
        server = [v["server"] / 1024 for v in pss.values()]
        total = [(v["server"] + v["claude"]) / 1024 for v in pss.values()]
        print(
            f"PSS per user: median {statistics.median(total):.0f} MB"
            f" (server {statistics.median(server):.0f} MB)"
        )
    for w in failed[:10]:
        print(f"  {w.name}: {w.error or 'no answer'}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "users": n,
                    "fresh_servers": args.fresh_servers,
                    "learners": [w.__dict__ for w in learners],
                    "cpu": cpu,
                    "pss_kb": pss,
                    "took": took,
                },
                indent=1,
            )
        )
    if args.keep:
        print(f"state and log kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
