"""`helm upgrade` from the previous version to this one, with learners at work.

The previous version is a fixed older commit of this repository (the Makefile's
PREVIOUS_COMMIT): `make images-previous` builds its two images from its own tree under the
tag `previous`, labelled with the commit, and this test renders that commit's chart. Its
Deployments run on the container tier's one-machine cluster (tests/containers/cluster.py);
a learner logs in through a real browser, picks a course, asks Claude (usage through the key
proxy), the tutor's marker records a stage (progress in the course service), and a forged
token leaves an audit event. Then the upgrade, as `helm upgrade` does it: the current
chart's rendering is applied (new ConfigMaps and policies, the live Secrets kept, as the
chart's `lookup` keeps them) and every Deployment whose pod template changed is replaced by
its strategy (Recreate), all at once; the sandbox pod, which no Deployment owns, is left
alone. Afterwards the learner's page is back on the same Claude process, the earlier answer
still on its screen (the previous version's page stops retrying after about 15 s and reloads
onto CHP's or the hub's error page when they are not back yet: the learner then reloads it
once, as docs/operator-guide.md says), Claude answers through the new key proxy, the new hub
still sees the server, and progress, usage, today's budget and the audit log are all there,
each database at the newest schema revision its new service knows. How long the Claude page
was not served is printed (docs/performance.md, "Upgrades").
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import requests
import yaml

from tests.containers.cluster import Cluster, ServicePort, wait
from tests.containers.conftest import VALUES
from tests.containers.podman import REPO, Podman, PodmanError, podman
from tests.containers.test_kubernetes_mode import (
    COURSE,
    MODEL,
    REAL_KEY,
    anchor,
    course_repository,
)
from tests.fakes.upstream import FakeAnthropic
from tests.helm.charts import NAMESPACE, RELEASE, Rendering, render
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, PATIENCE, jp_asyncio_loop  # noqa: F401
from tests.terminal_page import ask, open_picker, pick_course, wait_for_terminal

pytestmark = [pytest.mark.containers, pytest.mark.slow, pytest.mark.e2e]

PREVIOUS = {
    "hub": "localhost/claudehub/hub:previous",
    "sandbox": "localhost/claudehub/sandbox:previous",
}
LABEL = "io.claudehub.previous-commit"
SECRETS = {"anthropic": {"api-key": REAL_KEY}}
DEPLOYMENTS = ("claudehub-proxy", "claudehub-hub", "claudehub-keyproxy", "claudehub-progress")
USER = "alice"
FIRST = ("What does attention compute?", "Attention weighs every token against the others.")
SECOND = ("Why divide by the square root of d?", "It keeps the softmax out of flat regions.")

#: Run in the sandbox: the Claude CLI's processes, each as (pid, start time in ticks).
CLAUDE_PROCESSES = r"""
import json, os
out = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    if argv and argv[0].endswith(b"claude"):
        out.append([int(pid), int(stat.rsplit(")", 1)[1].split()[19])])
print(json.dumps(sorted(out)))
"""

#: Run in a new pod: the schema revision of a database and the newest one the image knows.
REVISIONS = r"""
import json, os, sqlite3, sys
from alembic.config import Config
from alembic.script import ScriptDirectory
database, package, folder = sys.argv[1:]
module = __import__(package, fromlist=["_"])
cfg = Config()
cfg.set_main_option("script_location", os.path.join(os.path.dirname(module.__file__), folder))
head = ScriptDirectory.from_config(cfg).get_current_head()
rows = sqlite3.connect(database).execute("select version_num from alembic_version").fetchall()
print(json.dumps({"database": [r[0] for r in rows], "head": head}))
"""

#: Run in the new key proxy's pod: the tables of its database and those its code defines.
KEYPROXY_TABLES = r"""
import json, sqlite3
import claudehub.proxy.audit  # noqa: F401  (defines claudehub_audit on the same metadata)
from claudehub.proxy.usage import metadata
rows = sqlite3.connect("/var/lib/claudehub/usage.sqlite").execute(
    "select name from sqlite_master where type = 'table'").fetchall()
print(json.dumps({"database": sorted(r[0] for r in rows), "code": sorted(metadata.tables)}))
"""


def previous_commit() -> str:
    """The commit both `previous` images were built from (their label)."""
    commits = set()
    for image in PREVIOUS.values():
        try:
            data = json.loads(podman("image", "inspect", image))
        except PodmanError:
            pytest.fail(f"{image} is not in podman's store: run `make images-previous`")
        commits.add((data[0].get("Config", {}).get("Labels") or {}).get(LABEL))
    if len(commits) != 1 or None in commits:
        pytest.fail(f"the previous images disagree on {LABEL} ({commits}): make images-previous")
    return str(commits.pop())


def previous_chart(commit: str, folder: Path) -> Path:
    """That commit's chart, from this repository's history."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "helm/claudehub"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if archive.returncode != 0:
        pytest.fail(
            f"commit {commit} (the previous version) is not in this clone"
            f" ({archive.stderr.decode().strip()}); a shallow clone lacks it: git fetch --unshallow"
        )
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "helm" / "claudehub"


def render_chart(chart: Path, values: dict[str, Any]) -> Rendering:
    """``chart`` rendered as `helm install` would (tests.helm.charts.render, for any tree)."""
    with helm_python.Chart.load(chart) as loaded:
        files = loaded.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = [
        doc
        for path, text in sorted(files.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    return Rendering(name=str(chart), values=values, files=files, objects=objects, notes="")


def values(tag: str, upstream: str) -> dict[str, Any]:
    """What the operator's values file says, for images tagged ``tag``."""
    out: dict[str, Any] = json.loads(json.dumps(VALUES))
    out["image"]["tag"] = tag
    out["sandbox"]["image"]["tag"] = tag
    out["keyproxy"]["upstream"] = {"url": upstream}
    out["sandbox"]["models"] = [MODEL]
    out["progress"] = {"localRepositories": {"existingClaim": "course-repos"}, "courses": [COURSE]}
    return out


def template(rendering: Rendering, deployment: str) -> str:
    return json.dumps(rendering.one("Deployment", deployment)["spec"]["template"], sort_keys=True)


def forged_token() -> str:
    """A sandbox token in the right shape whose signature no secret made."""
    claims = base64.urlsafe_b64encode(json.dumps({"sub": USER, "srv": ""}).encode()).decode()
    return f"chs1.{claims.rstrip('=')}.{'A' * 43}"


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def test_upgrade_keeps_sessions_progress_usage_and_audit(
    images: dict[str, str], browser: Any, tmp_path: Path
) -> None:
    commit = previous_commit()
    pm = Podman()
    cluster: Cluster | None = None
    upstream: FakeAnthropic | None = None
    public: ServicePort | None = None
    try:
        pods = pm.network("pods", internal=True)
        internet = pm.network("internet", internal=True)
        anchor(pm, pods)
        anchor(pm, internet)
        upstream = FakeAnthropic(host=pm.gateway(internet)).start()
        course_repository(pm)
        old = render_chart(previous_chart(commit, tmp_path), values("previous", upstream.url))
        new = render(values("dev", upstream.url))
        cluster = Cluster(
            pm,
            old,
            tmp_path / "cluster",
            operator_secrets=SECRETS,
            extra_networks={"claudehub-keyproxy": [internet]},
            pods_network=pods,
        )
        # CHP first (the hub's start-up reaches its API), then the rest at once.
        cluster.start("claudehub-proxy")
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            list(pool.map(cluster.start, DEPLOYMENTS[1:]))
        # The public Service: a stable address in front of whichever CHP pod runs.
        started = cluster.started

        def chp() -> tuple[str, int] | None:
            running = started.get("claudehub-proxy")
            return (running.ip, 8000) if running is not None else None

        public = ServicePort(chp).start()
        hub_secret = cluster.runner.objects.secrets["claudehub-hub"]
        admin = {"Authorization": f"Bearer {hub_secret['keyproxy-admin-token']}"}

        def keyproxy(path: str) -> Any:
            url = f"http://{cluster.started['claudehub-keyproxy'].ip}:8080{path}"
            resp = requests.get(url, headers=admin, timeout=PATIENCE)
            resp.raise_for_status()
            return resp.json()

        # -- the previous version at work ---------------------------------------------------
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(public.url)
        page.fill("#username_input", USER)
        page.fill("#password_input", hub_secret["password"])
        page.click("#login_submit")
        open_picker(page, public.url, USER)
        pick_course(page, COURSE["id"])
        page.wait_for_url(f"**/user/{USER}/claude**", timeout=180_000)
        wait_for_terminal(page, "\u276f", 90_000)
        upstream.script(FIRST[1] + "\n\n[STAGE_COMPLETE:1]")
        ask(page, *FIRST)

        sandbox = cluster.node.by_name(f"claudehub-{USER}")
        assert sandbox is not None
        assert sandbox.manifest["spec"]["containers"][0]["image"] == PREVIOUS["sandbox"]
        sandbox_uid = sandbox.manifest["metadata"]["uid"]

        def claude_processes() -> list[list[int]]:
            result = pm.exec(
                sandbox.container(), ["/opt/claudehub/bin/python", "-c", CLAUDE_PROCESSES]
            )
            assert result.returncode == 0, result.stderr
            return list(json.loads(result.stdout))

        def progress() -> dict[str, Any]:
            path = f"/user/{USER}/claude/api/courses/{COURSE['id']}/progress"
            # as the page's progress panel asks (jupyter-server wants its xsrf token)
            script = (
                "async (p) => { const c = JSON.parse("
                "document.getElementById('claudehub-config').textContent);"
                " const r = await fetch(p, {headers: {'X-XSRFToken': c.xsrfToken}});"
                " return [r.status, await r.text()]; }"
            )
            status, text = page.evaluate(script, path)
            assert status == 200, (status, text[:500])
            return dict(json.loads(text))

        def tutor_stages(data: dict[str, Any]) -> set[int]:
            return {s["number"] for s in data["stages"] if s.get("tutor_at")}

        wait(lambda: tutor_stages(progress()) == {1}, PATIENCE, "stage 1 recorded by the tutor")
        before_progress = progress()
        claude_before = claude_processes()
        assert claude_before, "Claude runs in the sandbox"

        forged = requests.post(
            f"http://{cluster.started['claudehub-keyproxy'].ip}:8080/v1/messages",
            headers={"x-api-key": forged_token(), "anthropic-version": "2023-06-01"},
            json={"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]},
            timeout=PATIENCE,
        )
        assert forged.status_code == 401, forged.text

        def audit_actions() -> list[str]:
            return [e["action"] for e in keyproxy("/audit")["events"]]

        wait(lambda: "token.forged" in audit_actions(), PATIENCE, "the forged token's event")
        before_audit = keyproxy("/audit")["events"]
        before_usage = keyproxy(f"/usage?user={USER}")
        assert before_usage["budgets"][USER]["used_today"] > 0, before_usage

        # -- helm upgrade ---------------------------------------------------------------------
        changed = [d for d in DEPLOYMENTS if template(old, d) != template(new, d)]
        assert set(changed) == set(DEPLOYMENTS), changed  # new images: every pod rolls
        cluster.apply(new, SECRETS)
        cookie = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())

        def claude_page_served() -> bool:
            """Whether the learner's Claude page answers through the public Service now."""
            try:
                resp = requests.get(
                    f"{public.url}/user/{USER}/claude",
                    headers={"Cookie": cookie},
                    allow_redirects=False,
                    timeout=10,
                )
            except requests.RequestException:
                return False
            return resp.status_code == 200 and "claudehub-config" in resp.text

        timeline: list[tuple[float, bool, str]] = []
        start = time.monotonic()

        def sample() -> bool:
            served = claude_page_served()
            timeline.append((time.monotonic() - start, served, page_status(page)))
            return served

        ready: dict[str, float] = {}

        def roll(deployment: str) -> None:
            cluster.roll(deployment)
            ready[deployment] = round(time.monotonic() - start, 1)

        with concurrent.futures.ThreadPoolExecutor(len(changed)) as pool:
            rolls = [pool.submit(roll, d) for d in changed]
            while not all(r.done() for r in rolls):
                sample()
                time.sleep(0.2)
            for roll in rolls:
                roll.result()
        cluster.refresh_policies()
        rolled = time.monotonic() - start
        for deployment in DEPLOYMENTS:
            image = cluster.started[deployment].manifest["spec"]["containers"][0]["image"]
            assert image == "localhost/claudehub/hub:dev", (deployment, image)
        wait(sample, 3 * PATIENCE, "the learner's Claude page to be served again")
        down = [t for t, served, _ in timeline if not served]
        back = next(t for t, served, _ in timeline if served and (not down or t > down[0]))
        statuses = [e[2] for i, e in enumerate(timeline) if i == 0 or e[2] != timeline[i - 1][2]]
        print(
            f"\nupgrade: every pod rolled in {rolled:.1f} s; the learner's page was not served"
            f" from {down[0] if down else 0:.1f} s to {back:.1f} s (pods ready at {ready});"
            f" the page showed {statuses}"
        )
        # The previous version's page stops retrying after 15 s and reloads, which lands on
        # the proxy's or hub's error page if they are not back yet: then the learner reloads.
        if page_status(page) != "connected":
            page.goto(f"{public.url}/user/{USER}/claude")
        page.wait_for_function(
            "() => document.getElementById('status')?.textContent === 'connected'",
            timeout=PATIENCE * 1000,
        )

        # -- the same session on the new version ----------------------------------------------
        assert cluster.node.by_name(f"claudehub-{USER}") is sandbox
        assert sandbox.manifest["metadata"]["uid"] == sandbox_uid
        assert claude_processes() == claude_before, "the same Claude process"
        wait_for_terminal(page, FIRST[1], PATIENCE * 1000)  # its screen, as it was
        upstream.script(SECOND[1] + "\n\n[STAGE_COMPLETE:2]")
        ask(page, *SECOND)
        asked = [r for r in upstream.agent_requests() if SECOND[0] in r.raw.decode()]
        assert asked and {r.credential for r in asked} == {REAL_KEY}

        # The new hub sees the server the old one started.
        hub = cluster.started["claudehub-hub"]
        resp = requests.get(
            f"http://{hub.ip}:8081/hub/api/users/{USER}",
            headers={"Authorization": f"token {hub_secret['keyproxy-api-token']}"},
            timeout=PATIENCE,
        )
        resp.raise_for_status()
        assert resp.json()["servers"][""]["ready"] is True

        # Progress: what the old service recorded, and what the new one adds.
        wait(lambda: tutor_stages(progress()) == {1, 2}, PATIENCE, "stage 2 recorded")
        after_progress = progress()
        assert after_progress["stages"][0] == before_progress["stages"][0]

        # Usage and today's budget: nothing lost, the new answer counted on top.
        after_usage = keyproxy(f"/usage?user={USER}")
        assert (
            after_usage["budgets"][USER]["used_today"] > before_usage["budgets"][USER]["used_today"]
        )
        requests_before = sum(r["requests"] for r in before_usage["usage"])
        assert sum(r["requests"] for r in after_usage["usage"]) > requests_before

        # The audit log: every event from before the upgrade is still there.
        after_audit = keyproxy("/audit")["events"]
        assert all(event in after_audit for event in before_audit), (before_audit, after_audit)

        # Each database is at the newest revision its new service knows (migrated on start).
        for deployment, database, package, folder in (
            ("claudehub-hub", "/srv/jupyterhub/jupyterhub.sqlite", "jupyterhub", "alembic"),
            (
                "claudehub-progress",
                "/var/lib/claudehub/progress.sqlite",
                "claudehub.progress",
                "migrations",
            ),
        ):
            container = cluster.started[deployment].container()
            result = pm.exec(container, ["python", "-c", REVISIONS, database, package, folder])
            assert result.returncode == 0, result.stderr
            revisions = json.loads(result.stdout)
            assert revisions["database"] == [revisions["head"]], (deployment, revisions)
        container = cluster.started["claudehub-keyproxy"].container()
        result = pm.exec(container, ["python", "-c", KEYPROXY_TABLES])
        assert result.returncode == 0, result.stderr
        tables = json.loads(result.stdout)
        assert set(tables["code"]) <= set(tables["database"]), tables
        page.close()
    except Exception:
        if cluster is not None:
            print(diagnose(pm, cluster))
        raise
    finally:
        # Every step runs even if one before it fails: nothing is left behind on the machine.
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(pm.cleanup)
            if upstream is not None:
                cleanup.callback(upstream.stop)
            if cluster is not None:
                cleanup.callback(cluster.stop)
            if public is not None:
                cleanup.callback(public.stop)


def page_status(page: Any) -> str:
    """The terminal's status line ('connected', 'disconnected, reconnecting…'), or what the
    page is when it is not the Claude page (reloading, an error page)."""
    try:
        text = page.evaluate(
            "() => { const s = document.getElementById('status');"
            " return s ? s.textContent : 'no status: ' + location.pathname; }"
        )
    except Exception as err:  # the page is navigating: no document to ask
        return f"navigating ({type(err).__name__})"
    return str(text)


def diagnose(pm: Podman, cluster: Cluster) -> str:
    lines = [f"node errors: {cluster.node.errors[-5:]}"]
    for name, running in cluster.started.items():
        lines.append(f"--- {name}\n{pm.logs(running.container())[-6000:]}")
    for running in cluster.node.pods.values():
        for name in running.containers.values():
            lines.append(f"--- {name}\n{pm.logs(name)[-2000:]}")
    return "\n".join(lines)
