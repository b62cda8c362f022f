"""The fault matrix's stack and drills, shared by tests/containers/test_faults.py and
benchmarks/faults/run.py.

The stack is the chart rendered for Kubernetes mode (as in test_kubernetes_mode.py) with the
key proxy at ``replicas: 2`` on PostgreSQL; PostgreSQL itself runs in a container of its own
(the host's PostgreSQL 15 binaries and libraries, read-only, in the hub image), reached by the
Service-like name ``postgres``. Each drill injects one fault for real (``podman kill``, or
nftables dropping DNS in a pod's network namespace) while a learner's answer streams slowly
from the fake upstream, plays the kubelet where Kubernetes would (the killed container
started again in its pod), and returns what the learner saw, how long until the service was
back, and what was lost.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from claudehub.proxy.usage import CUT_STATUS, UsageStore, inflight_table, usage_table
from tests.containers.cluster import Cluster, wait
from tests.containers.conftest import VALUES
from tests.containers.kubelet import RunningPod
from tests.containers.podman import HUB_IMAGE, Podman, podman
from tests.containers.test_kubernetes_mode import (
    COURSE,
    MODEL,
    REAL_KEY,
    anchor,
    course_repository,
)
from tests.fakes.upstream import FakeAnthropic
from tests.helm.charts import Rendering, render
from tests.helpers import PATIENCE
from tests.terminal_page import terminal_text, wait_for_terminal

PG_BIN = Path("/usr/lib/postgresql/15")
PG_SHARE = Path("/usr/share/postgresql/15")
PG_USER = "keyproxy"
#: Seconds between the fake upstream's events while a drill runs: an answer of 8 short lines
#: streams for about 5 s, long enough to cut it halfway.
SLOW = 0.25
LEARNER = "alice"
DEPLOYMENTS = ("claudehub-proxy", "claudehub-hub", "claudehub-keyproxy", "claudehub-progress")
KEYPROXIES = ("claudehub-keyproxy", "claudehub-keyproxy-1")

#: Started in the PostgreSQL container: initdb on the first start only, then the server as
#: PID 1 (a kill is a crash; the next start recovers from the write-ahead log).
PG_SCRIPT = (
    "set -e; D=/var/lib/pg/data;"
    f" if [ ! -s $D/PG_VERSION ]; then {PG_BIN}/bin/initdb -D $D -A trust -E UTF8 --locale=C -U {PG_USER} >/dev/null;"
    " echo 'host all all 0.0.0.0/0 trust' >> $D/pg_hba.conf; fi;"
    f" exec {PG_BIN}/bin/postgres -D $D -k /tmp -h '*'"
)


@dataclass
class Stack:
    pm: Podman
    cluster: Cluster
    rendering: Rendering
    upstream: FakeAnthropic
    url: str
    password: str
    internet: str
    postgres: str  # the PostgreSQL container's name
    libs: Path
    statuses: list[dict[str, Any]] = field(default_factory=list)

    def pod(self, deployment: str) -> RunningPod:
        return self.cluster.started[deployment]

    def usage_db(self) -> str:
        return f"postgresql+psycopg://{PG_USER}@{self.pm.ip(self.postgres, self.cluster.network)}:5432/postgres"


def _pg_libraries(folder: Path) -> Path:
    """The shared libraries the host's PostgreSQL binaries need (ldd), copied beside."""
    folder.mkdir(parents=True, exist_ok=True)
    for binary in ("postgres", "initdb"):
        out = subprocess.run(
            ["ldd", str(PG_BIN / "bin" / binary)], capture_output=True, text=True, check=True
        ).stdout
        for line in out.splitlines():
            parts = line.split("=>")
            if len(parts) == 2 and parts[1].split():
                path = Path(parts[1].split()[0])
                if path.is_file():
                    shutil.copy2(path.resolve(), folder / path.name)
    folder.chmod(0o755)
    return folder


def start_postgres(pm: Podman, network: str, libs: Path) -> str:
    """PostgreSQL in a container on the pod network, as ``postgres``; its data on a volume."""
    name = pm.name("postgres")
    volume = pm.volume(pm.name("pgdata"))
    pm.run(
        "--detach",
        "--network",
        network,
        "--network-alias",
        "postgres",
        "--user",
        "10001:10001",
        "--env",
        "LD_LIBRARY_PATH=/opt/pglibs",
        "--volume",
        f"{libs}:/opt/pglibs:ro",
        "--volume",
        f"{PG_BIN}:{PG_BIN}:ro",
        "--volume",
        f"{PG_SHARE}:{PG_SHARE}:ro",
        "--volume",
        f"{volume}:/var/lib/pg:U",
        "--entrypoint",
        "sh",
        HUB_IMAGE,
        "-c",
        PG_SCRIPT,
        name=name,
    )
    return name


def postgres_ready(stack_or_url: Stack | str) -> bool:
    url = stack_or_url if isinstance(stack_or_url, str) else stack_or_url.usage_db()
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


@contextlib.contextmanager
def fault_stack(folder: Path) -> Iterator[Stack]:
    """The chart's stack with two key proxies on PostgreSQL (see the module docstring)."""
    pm = Podman()
    cluster: Cluster | None = None
    upstream: FakeAnthropic | None = None
    libs = Path(tempfile.mkdtemp(prefix="chpglibs-"))
    try:
        pods = pm.network("pods", internal=True)
        internet = pm.network("internet", internal=True)
        anchor(pm, pods)
        anchor(pm, internet)
        upstream = FakeAnthropic(host=pm.gateway(internet)).start()
        course_repository(pm)
        postgres = start_postgres(pm, pods, _pg_libraries(libs / "lib"))
        wait(
            lambda: postgres_ready(
                f"postgresql+psycopg://{PG_USER}@{pm.ip(postgres, pods)}:5432/postgres"
            ),
            120,
            "PostgreSQL to accept connections",
        )
        values: dict[str, Any] = json.loads(json.dumps(VALUES))
        values["keyproxy"]["upstream"] = {"url": upstream.url}
        values["keyproxy"]["replicas"] = 2
        # a class with a budget: what a crash must not get around (reservations are made
        # for learners with one)
        values["keyproxy"]["limits"] = {"dailyTokenBudget": 50_000_000}
        values["keyproxy"]["usageDb"] = {
            "type": "postgresql",
            "url": f"postgresql+psycopg://{PG_USER}@postgres:5432/postgres",
            "passwordSecret": {"name": "usage-db", "key": "password"},
        }
        values["sandbox"]["models"] = [MODEL]
        values["progress"] = {
            "localRepositories": {"existingClaim": "course-repos"},
            "courses": [COURSE],
        }
        rendering = render(values)
        cluster = Cluster(
            pm,
            rendering,
            folder,
            operator_secrets={
                "anthropic": {"api-key": REAL_KEY},
                "usage-db": {"password": "unused-with-trust-auth"},
            },
            extra_networks={"claudehub-keyproxy": [internet]},
            pods_network=pods,
        )
        # CHP first (the hub reads its routes at start), then the rest at once, as a
        # Deployment rollout would: starting a stack is the expensive part of the module.
        cluster.start("claudehub-proxy")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            started = [pool.submit(cluster.start, d) for d in DEPLOYMENTS[1:]]
            started.append(pool.submit(cluster.start_replica, "claudehub-keyproxy", 1))
            for future in started:
                future.result()
        password = cluster.runner.objects.secrets["claudehub-hub"]["password"]
        public = f"http://{cluster.started['claudehub-proxy'].ip}:8000"
        yield Stack(pm, cluster, rendering, upstream, public, password, internet, postgres, libs)
    finally:
        if cluster is not None:
            # every pod at once (each removal waits out its stop timeout); stop() then finds
            # them gone
            pods = list(cluster.node.pods.values()) + list(cluster.started.values())
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(cluster.runner.delete, pods))
            cluster.stop()
        if upstream is not None:
            upstream.stop()
        podman("kill", pm.name("postgres"), check=False)
        pm.cleanup()
        shutil.rmtree(libs, ignore_errors=True)


# -- the learner's side ------------------------------------------------------------------------


def answer_text(tag: str) -> str:
    """Eight short lines (each its own paragraph, so none wraps into the next)."""
    return "\n\n".join(f"{tag} step {i} of 8." for i in range(1, 9))


def first_line(tag: str) -> str:
    return f"{tag} step 1 of 8"


def last_line(tag: str) -> str:
    return f"{tag} step 8 of 8"


def watch_status(page: Any) -> None:
    """Keep every text the page's connection status shows, from now on (window.__statuses)."""
    page.evaluate(
        """() => {
        const el = document.getElementById('status');
        window.__statuses = [el.textContent];
        new MutationObserver(() => window.__statuses.push(el.textContent))
            .observe(el, {childList: true, characterData: true, subtree: true});
    }"""
    )


def statuses(page: Any) -> list[str]:
    return list(page.evaluate("() => window.__statuses || []"))


def status(page: Any) -> str:
    return str(page.evaluate("() => document.getElementById('status')?.textContent || ''"))


def ask_streaming(stack: Stack, page: Any, tag: str, replies: int = 1) -> None:
    """Ask a question whose answer streams slowly; return once its first line is on screen."""
    stack.upstream.delay_between_events = SLOW
    stack.upstream.clear_script()
    stack.upstream.script(*[answer_text(tag)] * replies)
    question = f"Walk me through the {tag} drill"
    page.click(".xterm")
    page.keyboard.type(question)
    wait_for_terminal(page, question, 30_000)
    page.keyboard.press("Enter")
    wait_for_terminal(page, first_line(tag), PATIENCE * 1000)


def ask_quickly(stack: Stack, page: Any, tag: str, timeout: float = PATIENCE) -> None:
    """Ask and wait for the whole answer, streamed at full speed."""
    stack.upstream.delay_between_events = 0.0
    stack.upstream.clear_script()
    stack.upstream.script(answer_text(tag))
    question = f"Now the {tag} check"
    page.click(".xterm")
    page.keyboard.type(question)
    wait_for_terminal(page, question, 30_000)
    page.keyboard.press("Enter")
    wait_for_terminal(page, last_line(tag), timeout * 1000)


def one_of(page: Any, needles: list[str], timeout: float) -> str:
    """Wait until one of ``needles`` is on the terminal's screen; return it."""
    deadline = time.monotonic() + timeout
    while True:
        screen = terminal_text(page)
        for needle in needles:
            if needle in screen:
                return needle
        if time.monotonic() > deadline:
            raise AssertionError(f"none of {needles} appeared; the terminal shows:\n{screen}")
        time.sleep(0.3)


# -- faults ------------------------------------------------------------------------------------


def kill(stack: Stack, deployment: str) -> float:
    """``podman kill`` the Deployment pod's container (SIGKILL: no shutdown at all)."""
    podman("kill", stack.pod(deployment).container())
    wait(lambda: not _running(stack.pod(deployment).container()), 30, f"{deployment} to be dead")
    return time.monotonic()


def _running(container: str) -> bool:
    out = podman("container", "inspect", "--format", "{{.State.Running}}", container, check=False)
    return out.strip() == "true"


def serving_keyproxy(stack: Stack) -> str:
    """The key proxy replica streaming the answer right now: of those holding a connection to
    the fake upstream (the host's view of its port), the one receiving the most."""
    port = stack.upstream.port
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    peers = {line.split()[-1].rsplit(":", 1)[0] for line in out.splitlines() if line.split()}
    holding = [
        name for name in KEYPROXIES if stack.pm.ip(stack.pod(name).infra, stack.internet) in peers
    ]
    assert holding, f"no key proxy replica holds a connection to the upstream:\n{out}"
    if len(holding) == 1:
        return holding[0]
    before = {name: _bytes_received(stack, name) for name in holding}
    time.sleep(4 * SLOW)
    return max(holding, key=lambda name: _bytes_received(stack, name) - before[name])


def _bytes_received(stack: Stack, name: str) -> int:
    """Bytes the replica's pod has received on the upstream's network (its interface)."""
    pid = stack.pm.inspect(stack.pod(name).infra)["State"]["Pid"]
    total = 0
    for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]:
        iface, data = line.split(":", 1)
        if iface.strip() != "lo":
            total += int(data.split()[0])
    return total


DROP_DNS = """add table inet claudehub_fault
delete table inet claudehub_fault
table inet claudehub_fault {
  chain output {
    type filter hook output priority -10; policy accept;
    udp dport 53 drop
    tcp dport 53 drop
  }
}
"""


def _nft(running: RunningPod, script: str) -> None:
    pid = json.loads(podman("container", "inspect", running.infra))[0]["State"]["Pid"]
    subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "nft", "-f", "-"],
        input=script,
        text=True,
        capture_output=True,
        check=True,
        timeout=PATIENCE,
    )


def drop_dns(running: RunningPod) -> None:
    """Name lookups from the pod go unanswered (the cluster's DNS is down, for this pod)."""
    _nft(running, DROP_DNS)


def restore_dns(running: RunningPod) -> None:
    _nft(running, "add table inet claudehub_fault\ndelete table inet claudehub_fault\n")


# -- what is lost ------------------------------------------------------------------------------


def usage(stack: Stack, user: str = LEARNER, owed_before: float = 0.0) -> dict[str, int]:
    """The learner's usage as the key proxies wrote it: requests, requests cut by a crash
    (charged at their reservation), and reservations still open that were made before
    ``owed_before`` (a UNIX time: those of requests a crash at that time cut)."""
    store = UsageStore(stack.usage_db())
    try:
        t = usage_table
        with store.engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(t.c.requests), 0)).where(t.c.user == user)
            ).scalar_one()
            cut = conn.execute(
                sa.select(sa.func.count())
                .select_from(t)
                .where(t.c.user == user, t.c.status == CUT_STATUS)
            ).scalar_one()
            owed = conn.execute(
                sa.select(sa.func.count())
                .select_from(inflight_table)
                .where(inflight_table.c.user == user, inflight_table.c.ts < owed_before)
            ).scalar_one()
        return {"requests": int(total), "cut": int(cut), "owed": int(owed)}
    except sa.exc.SQLAlchemyError:
        return {"requests": -1, "cut": -1, "owed": -1}
    finally:
        store.close()


def hub_sees_server(stack: Stack, user: str = LEARNER) -> bool:
    """The hub's own view: ``user``'s server is running and ready."""
    hub = stack.pod("claudehub-hub")
    token = stack.cluster.runner.objects.secrets["claudehub-hub"]["keyproxy-api-token"]
    try:
        resp = requests.get(
            f"http://{hub.ip}:8081/hub/api/users?state=active",
            headers={"Authorization": f"token {token}"},
            timeout=10,
        )
    except requests.RequestException:
        return False
    if resp.status_code != 200:
        return False
    for entry in resp.json():
        if entry["name"] == user:
            return bool((entry.get("servers") or {}).get("", {}).get("ready"))
    return False


# -- the drills --------------------------------------------------------------------------------
# Each: a fault during a streaming answer, the kubelet's restart, and what the learner saw.
# They return {"seen": ..., "back_s": seconds from the fault until the part answered again,
# "restart_s": of which from the kubelet's restart on, "lost": ...} and assert only what a
# user would notice; durations are for the benchmark.


def drill_hub(stack: Stack, page: Any, tag: str) -> dict[str, Any]:
    """The hub dies mid-answer: the answer streams on (the hub is not on its path); the
    restarted hub finds the sandbox still running (nothing is killed)."""
    watch_status(page)
    ask_streaming(stack, page, tag)
    t0 = kill(stack, "claudehub-hub")
    r0 = time.monotonic()
    stack.cluster.restart("claudehub-hub")  # the kubelet does at once; the answer streams on
    wait(lambda: hub_sees_server(stack), PATIENCE, "the restarted hub to see the sandbox")
    now = time.monotonic()
    back, restart = now - t0, now - r0
    wait_for_terminal(page, last_line(tag), PATIENCE * 1000)
    seen = statuses(page)
    assert not any("disconnected" in s for s in seen), seen
    return {
        "seen": "nothing: the answer kept streaming",
        "back_s": back,
        "restart_s": restart,
        "lost": "nothing",
    }


def drill_chp(stack: Stack, page: Any, tag: str) -> dict[str, Any]:
    """configurable-http-proxy dies mid-answer: the page says it is reconnecting; the
    restarted CHP gets the routes back from the hub and the page reconnects to the same
    Claude, whose answer finished meanwhile (the terminal's replay buffer shows it)."""
    watch_status(page)
    ask_streaming(stack, page, tag)
    t0 = kill(stack, "claudehub-proxy")
    page.wait_for_function(
        "() => document.getElementById('status').textContent.includes('reconnecting')",
        timeout=PATIENCE * 1000,
    )
    r0 = time.monotonic()
    stack.cluster.restart("claudehub-proxy")
    page.wait_for_function(
        "() => document.getElementById('status')?.textContent === 'connected'",
        timeout=PATIENCE * 1000 * 2,
    )
    now = time.monotonic()
    back, restart = now - t0, now - r0
    wait_for_terminal(page, last_line(tag), PATIENCE * 1000)
    return {
        "seen": "'disconnected, reconnecting…', then the same Claude with its answer",
        "back_s": back,
        "restart_s": restart,
        "lost": "nothing",
    }


def drill_hub_and_chp(stack: Stack, page: Any, tag: str) -> dict[str, Any]:
    """The hub and CHP die together and stay down past the page's quick retries (an upgrade
    rolls both): the page keeps trying instead of reloading onto the browser's error page,
    and is back on the same Claude once both are (reloaded only once its address answers)."""
    from playwright.sync_api import Error as PlaywrightError

    watch_status(page)
    attempts: list[str] = []
    page.on("websocket", lambda ws: attempts.append(ws.url))
    ask_streaming(stack, page, tag)
    t0 = kill(stack, "claudehub-proxy")
    kill(stack, "claudehub-hub")
    # three quick retries (1 + 2 + 4 s), after which the page used to reload; it asks whether
    # its address answers instead, and goes on trying
    wait(lambda: (page.wait_for_timeout(200), len(attempts))[1] >= 5, PATIENCE, "5 attempts")
    r0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(stack.cluster.restart, ["claudehub-hub", "claudehub-proxy"]))

    def connected() -> bool:
        try:
            return status(page) == "connected"
        except PlaywrightError:  # the page reloading onto its answering address
            return False

    wait(connected, PATIENCE * 2, "the page to be connected again")
    now = time.monotonic()
    wait_for_terminal(page, last_line(tag), PATIENCE * 1000)
    wait(lambda: hub_sees_server(stack), PATIENCE, "the restarted hub to see the sandbox")
    return {
        "seen": "'disconnected, reconnecting…' until both are back, then the same Claude",
        "back_s": now - t0,
        "restart_s": now - r0,
        "lost": "nothing",
    }


def drill_keyproxy(
    stack: Stack, page: Any, tag: str, *, both: bool, charged: bool = True
) -> dict[str, Any]:
    """The key proxy streaming the answer dies (one of two replicas, or both): the cut
    request is charged at its reservation once the dead replica's heartbeat is stale
    (``charged``: wait for that; else only for the reservation to be found in the database,
    still owed or already charged)."""
    before = usage(stack)
    ask_streaming(stack, page, tag, replies=2)  # a retry by the CLI gets the same answer
    victims = list(KEYPROXIES) if both else [serving_keyproxy(stack)]
    t0, killed_at = time.monotonic(), time.time()
    for name in victims:
        podman("kill", stack.pod(name).container())
    for name in victims:
        wait(lambda n=name: not _running(stack.pod(n).container()), 30, f"{name} to be dead")
    r0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(victims)) as pool:
        list(pool.map(stack.cluster.restart, victims))
    now = time.monotonic()
    back, restart = now - t0, now - r0
    seen = one_of(page, [last_line(tag), "API Error", "Connection error", "Retrying"], PATIENCE)
    stack.upstream.clear_script()
    if seen != last_line(tag):  # the CLI said what happened; the next question works
        ask_quickly(stack, page, f"{tag}-again", timeout=PATIENCE * 2)
    if charged:
        wait(
            lambda: usage(stack)["cut"] > before["cut"],
            PATIENCE,
            "the cut request to be charged at its reservation",
        )
    else:
        after = usage(stack, owed_before=killed_at)
        assert after["cut"] > before["cut"] or after["owed"] > 0, (before, after)
    return {
        "seen": "the whole answer (the CLI retried)"
        if seen == last_line(tag)
        else f"the CLI's {seen!r}, then answers again",
        "back_s": back,
        "restart_s": restart,
        "lost": "nothing: the cut request charged at its reservation",
    }


def drill_postgres(stack: Stack, page: Any, tag: str) -> dict[str, Any]:
    """PostgreSQL (the key proxies' usage database) dies mid-answer: answers go on, usage
    waits in the key proxies' memory and is written once the database is back."""
    before, asked = usage(stack), len(stack.upstream.message_requests())
    ask_streaming(stack, page, tag)
    podman("kill", stack.postgres)
    t0 = time.monotonic()
    wait_for_terminal(page, last_line(tag), PATIENCE * 1000)
    ask_quickly(stack, page, f"{tag}-during", timeout=PATIENCE)  # while it is down
    r0 = time.monotonic()
    podman("start", stack.postgres)
    wait(lambda: postgres_ready(stack), PATIENCE, "PostgreSQL to be back")
    now = time.monotonic()
    back, restart = now - t0, now - r0
    forwarded = len(stack.upstream.message_requests()) - asked
    wait(
        lambda: usage(stack)["requests"] - before["requests"] >= forwarded,
        PATIENCE,
        f"the {forwarded} requests made while PostgreSQL was down to be recorded",
    )
    return {
        "seen": "nothing",
        "back_s": back,
        "restart_s": restart,
        "written_s": time.monotonic() - now,  # the outage's usage, in the database again
        "lost": "nothing: usage written when it is back",
    }


def drill_progress(stack: Stack, page: Any, tag: str) -> dict[str, Any]:
    """The course service dies after the learner passed a quiz: Claude goes on answering;
    the restarted service still has the progress (its database is on the volume)."""
    summary = "#progress-summary"
    if "1 of" not in page.inner_text(summary):
        page.check("#quiz-q-why input[value='2']")
        page.click("#quiz-q-why .ch-submit")
        page.wait_for_selector("#quiz-q-why .ch-feedback.ch-correct")
    page.wait_for_function(
        "() => document.querySelector('#progress-summary').textContent.startsWith('1 of')"
    )
    t0 = kill(stack, "claudehub-progress")
    ask_quickly(stack, page, f"{tag}-during", timeout=PATIENCE)
    r0 = time.monotonic()
    stack.cluster.restart("claudehub-progress")
    now = time.monotonic()
    back, restart = now - t0, now - r0
    page.reload()
    page.wait_for_selector("#progress-list [data-stage='1'] [data-method='quiz']")
    assert page.inner_text(summary).startswith("1 of"), page.inner_text(summary)
    wait_for_terminal(page, "\u276f", PATIENCE * 1000)
    return {
        "seen": "Claude answers; the panels answer again after the restart",
        "back_s": back,
        "restart_s": restart,
        "lost": "nothing: progress on the service's volume",
    }


def drill_dns(stack: Stack, page: Any, tag: str, sandbox: RunningPod) -> dict[str, Any]:
    """DNS stops answering the sandbox mid-answer: the open connection to the key proxy
    carries on; once DNS answers again, new questions work."""
    ask_streaming(stack, page, tag)
    drop_dns(sandbox)
    try:
        wait_for_terminal(page, last_line(tag), PATIENCE * 1000)
        lookup = stack.pm.exec(
            sandbox.container(),
            [
                "/opt/claudehub/bin/python",
                "-c",
                "import socket; socket.getaddrinfo('claudehub-keyproxy.claudehub.svc', 8080)",
            ],
        )
        assert lookup.returncode != 0, "DNS still answered inside the sandbox"
    finally:
        restore_dns(sandbox)
    t0 = time.monotonic()
    ask_quickly(stack, page, f"{tag}-after", timeout=PATIENCE * 2)
    back = time.monotonic() - t0  # DNS back: the next question answered
    return {
        "seen": "nothing (the connection is open)",
        "back_s": back,
        "restart_s": back,
        "lost": "nothing",
    }
