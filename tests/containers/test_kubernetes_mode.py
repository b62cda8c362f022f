"""Kubernetes mode end to end, on a real container runtime.

The chart is rendered with a realistic values file for images built by `make images`; each
of its Deployments (configurable-http-proxy, the hub, the key proxy, the course service)
runs from the hub image with the args, env, ConfigMaps, Secrets, volumes and securityContext
`helm template` renders, and answers its own probes. The hub spawns through the Kubernetes
API emulator over TLS with its service-account token; the test's node runs every pod the
API stores with podman (tests/containers/cluster.py). A real browser then walks: login page
-> course -> Claude page -> question -> answer -> End session -> the sandbox container is
gone and its sandbox token is refused by the key proxy.

The sandbox's network is what its rendered NetworkPolicy allows, enforced in its network
namespace; the fake Anthropic API is on a separate network only the key proxy joins.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.containers.cluster import Cluster, wait
from tests.containers.conftest import VALUES
from tests.containers.kubelet import RunningPod
from tests.containers.podman import HUB_IMAGE, REPO, Podman, podman, podman_env
from tests.fakes.upstream import FakeAnthropic
from tests.helm.charts import Rendering, render
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, PATIENCE, jp_asyncio_loop  # noqa: F401
from tests.terminal_page import ask, open_picker, pick_course, wait_for_terminal

pytestmark = [pytest.mark.containers, pytest.mark.slow, pytest.mark.e2e]

REAL_KEY = "sk-ant-api03-REALKEY-k8s-0123456789abcdefghijklmnopqrstuvwxyz"
ANSWER = "Attention weighs every token against every other token."
QUESTION = "What does attention compute?"
#: The one model learners may choose (sandbox.models): the only one the key proxy forwards.
MODEL = "claude-sonnet-4-5"
COURSE = {
    "id": "attention",
    "title": "Attention, step by step",
    "description": "Read 'Attention Is All You Need' one idea at a time.",
    "repo": "file:///srv/course-repos/examples.git",
    "ref": "main",
    "folder": "courses/attention",
}


@dataclass
class Stack:
    pm: Podman
    cluster: Cluster
    rendering: Rendering
    upstream: FakeAnthropic
    url: str
    password: str
    internet: str

    def pod(self, deployment: str) -> RunningPod:
        return self.cluster.started[deployment]


def course_repository(pm: Podman) -> str:
    """The examples as a bare git repository on a volume (what an operator's PVC holds)."""
    volume = pm.volume(pm.name("course-repos"))
    script = (
        "set -e; cp -r /src /tmp/work; cd /tmp/work; git init -q -b main;"
        " git add -A; git -c user.name=ops -c user.email=ops@example.org commit -qm courses;"
        " git clone -q --bare /tmp/work /dst/examples.git"
    )
    podman(
        "run",
        "--rm",
        "--user",
        "10001:10001",
        "--volume",
        f"{REPO / 'examples'}:/src:ro",
        "--volume",
        f"{volume}:/dst:U",
        "--env",
        "HOME=/tmp",
        HUB_IMAGE,
        "sh",
        "-c",
        script,
        timeout=120,
    )
    return volume


def anchor(pm: Podman, network: str) -> None:
    """Hold the network's bridge up (host-side listeners bind its gateway)."""
    name = pm.name(f"anchor-{network[-8:]}")
    podman("pod", "create", "--name", name, "--network", network)
    pm.pods.append(name)
    podman("pod", "start", name)


@pytest.fixture(scope="module")
def stack(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    pm = Podman()
    cluster: Cluster | None = None
    upstream: FakeAnthropic | None = None
    try:
        pods = pm.network("pods", internal=True)
        internet = pm.network("internet", internal=True)
        anchor(pm, pods)
        anchor(pm, internet)
        upstream = FakeAnthropic(host=pm.gateway(internet)).start()
        course_repository(pm)
        values: dict[str, Any] = json.loads(json.dumps(VALUES))
        values["keyproxy"]["upstream"] = {"url": upstream.url}
        values["sandbox"]["models"] = [MODEL]
        values["progress"] = {
            "localRepositories": {"existingClaim": "course-repos"},
            "courses": [COURSE],
        }
        rendering = render(values)
        cluster = Cluster(
            pm,
            rendering,
            tmp_path_factory.mktemp("cluster"),
            operator_secrets={"anthropic": {"api-key": REAL_KEY}},
            extra_networks={"claudehub-keyproxy": [internet]},
            pods_network=pods,
        )
        for deployment in (
            "claudehub-proxy",
            "claudehub-hub",
            "claudehub-keyproxy",
            "claudehub-progress",
        ):
            cluster.start(deployment)
        password = cluster.runner.objects.secrets["claudehub-hub"]["password"]
        # The public Service (a NodePort): the browser reaches CHP's pod on its network, as
        # a node's address forwards to it (podman publishes no ports from internal networks).
        public = f"http://{cluster.started['claudehub-proxy'].ip}:8000"
        yield Stack(pm, cluster, rendering, upstream, public, password, internet)
    finally:
        if cluster is not None:
            cluster.stop()
        if upstream is not None:
            upstream.stop()
        pm.cleanup()


def test_every_component_answers_its_probes_as_rendered(stack: Stack) -> None:
    for deployment in (
        "claudehub-proxy",
        "claudehub-hub",
        "claudehub-keyproxy",
        "claudehub-progress",
    ):
        running = stack.pod(deployment)
        spec = running.manifest["spec"]["containers"][0]
        for kind in ("readinessProbe", "livenessProbe"):
            if kind in spec:
                code = stack.cluster.runner.probe(running, kind)
                assert 200 <= code < 400, (deployment, kind, code)
        # Each runs as the image's non-root user on a read-only root, no capabilities.
        state = stack.pm.exec(running.container(), ["cat", "/proc/1/status"]).stdout
        fields = dict(line.split(":\t", 1) for line in state.splitlines() if ":\t" in line)
        assert fields["Uid"].split()[0] == "10001", deployment
        assert int(fields["CapEff"], 16) == 0 and fields["NoNewPrivs"].strip() == "1"
        inspect = stack.pm.inspect(running.container())
        assert inspect["HostConfig"]["ReadonlyRootfs"] is True, deployment


def sandbox(stack: Stack, user: str) -> RunningPod:
    pod = stack.cluster.node.by_name(f"claudehub-{user}")
    assert pod is not None, "the sandbox pod runs"
    return pod


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_claude(stack: Stack, browser: Any, user: str) -> Any:
    """Login page -> the course picker -> the Claude page at Claude's prompt."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(stack.url)
    page.fill("#username_input", user)
    page.fill("#password_input", stack.password)
    page.click("#login_submit")
    # the hub image's own templates: the home page, then the course picker's cards
    page.wait_for_url("**/hub/home**", timeout=60_000)
    open_picker(page, stack.url, user)
    pick_course(page, COURSE["id"])
    try:
        page.wait_for_url(f"**/user/{user}/claude**", timeout=180_000)
        wait_for_terminal(page, "\u276f", 90_000)
    except Exception as err:
        raise AssertionError(f"{user} never reached Claude:\n{diagnose(stack)}") from err
    return page


def diagnose(stack: Stack) -> str:
    """What a developer needs when the walk stops: the node's pods, errors and hub log."""
    lines = [f"node errors: {stack.cluster.node.errors[-5:]}"]
    for running in stack.cluster.node.pods.values():
        lines.append(f"pod {running.pod_name}: {json.dumps(running.status())[:1500]}")
        for name in running.containers.values():
            lines.append(f"--- {name}\n{stack.pm.logs(name)[-2500:]}")
    hub = stack.pod("claudehub-hub").container()
    lines.append(f"--- hub\n{stack.pm.logs(hub)[-6000:]}")
    return "\n".join(lines)


#: Run in a container: try a TCP connection to each (host, port); "open", "refused" (the
#: peer answered: nothing listens), "dropped" (no answer: filtered) or "unreachable" (no route).
CONNECT = r"""
import errno, json, socket, sys
out = {}
for target in json.loads(sys.argv[1]):
    host, port = target.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, int(port)))
        out[target] = "open"
    except socket.timeout:
        out[target] = "dropped"
    except ConnectionRefusedError:
        out[target] = "refused"
    except OSError as err:
        out[target] = "unreachable" if err.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH) else repr(err)
    finally:
        s.close()
try:
    socket.getaddrinfo("claudehub-keyproxy.claudehub.svc", 8080)
    out["dns:service"] = "resolved"
except OSError:
    out["dns:service"] = "failed"
routes = open("/proc/net/route").read().splitlines()[1:]
out["default_route"] = any(line.split()[1] == "00000000" for line in routes)
print(json.dumps(out))
"""


def connections(stack: Stack, container: str, python: str, targets: list[str]) -> dict[str, Any]:
    result = stack.pm.exec(container, [python, "-c", CONNECT, json.dumps(targets)])
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_sandbox_reaches_only_what_its_network_policy_allows(stack: Stack, browser: Any) -> None:
    """Derived from the rendered policy, enforced in the pod's netns: the key proxy, the hub
    API, the course service and DNS; not the upstream, CHP, the hub's other ports, the API
    server or the way out. Claude still answers through the key proxy."""
    page = open_claude(stack, browser, "bob")
    running = sandbox(stack, "bob")
    ip = {name: stack.pod(name).ip for name in stack.cluster.started}
    upstream = stack.upstream.url.removeprefix("http://")
    targets = {
        f"{ip['claudehub-keyproxy']}:8080": "open",
        f"{ip['claudehub-hub']}:8081": "open",
        f"{ip['claudehub-progress']}:8080": "open",
        f"{ip['claudehub-proxy']}:8001": "dropped",  # CHP's API: routes for everyone
        f"{ip['claudehub-proxy']}:8000": "dropped",
        f"{ip['claudehub-hub']}:8000": "dropped",  # the hub's pod, any other port
        f"{stack.cluster.gateway}:6443": "dropped",  # the Kubernetes API server
        upstream: "unreachable",  # the fake Anthropic API: another network
    }
    seen = connections(stack, running.container(), "/opt/claudehub/bin/python", list(targets))
    assert {t: seen[t] for t in targets} == targets, seen
    assert seen["dns:service"] == "resolved" and seen["default_route"] is False
    # Controls: the same connections from pods the policy does not restrict work, so what
    # stops the sandbox is its policy, not the test's wiring.
    hub = connections(
        stack, stack.pod("claudehub-hub").container(), "python", [f"{ip['claudehub-proxy']}:8001"]
    )
    assert hub[f"{ip['claudehub-proxy']}:8001"] == "open"
    keyproxy = connections(stack, stack.pod("claudehub-keyproxy").container(), "python", [upstream])
    assert keyproxy[upstream] == "open"

    stack.upstream.script(ANSWER)
    ask(page, QUESTION, ANSWER)
    page.close()


def test_login_course_answer_end_session(stack: Stack, browser: Any) -> None:
    page = open_claude(stack, browser, "alice")
    stack.upstream.script(ANSWER)
    ask(page, QUESTION, ANSWER)

    # The question went upstream with the real key, from the key proxy alone.
    asked = [r for r in stack.upstream.agent_requests() if QUESTION in r.raw.decode()]
    assert asked and {r.credential for r in asked} == {REAL_KEY}
    running = sandbox(stack, "alice")
    env = {e["name"]: e.get("value", "") for e in running.manifest["spec"]["containers"][0]["env"]}
    token = env["ANTHROPIC_API_KEY"]
    assert token.startswith("chs1.") and REAL_KEY not in json.dumps(running.manifest)
    # The course was fetched by the init container into the read-only course folder.
    listing = stack.pm.exec(
        running.container(),
        [
            "/opt/claudehub/bin/python",
            "-c",
            "import os; print(os.listdir('/srv/course/attention'))",
        ],
    )
    assert "CLAUDE.md" in listing.stdout, listing

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#end-session")
    container = running.container()
    wait(lambda: not _exists(container), 60, "the sandbox container to be removed")
    page.close()

    # Its sandbox token no longer opens the key proxy.
    keyproxy = stack.pod("claudehub-keyproxy")

    def refused() -> bool:
        resp = requests.post(
            f"http://{keyproxy.ip}:8080/v1/messages",
            headers={"x-api-key": token, "anthropic-version": "2023-06-01"},
            json={
                "model": "claude-sonnet-4-5",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "hi"}],
            },
            timeout=PATIENCE,
        )
        return resp.status_code == 401 and resp.json()["type"] == "error"

    wait(refused, 90, "the key proxy to refuse the ended session's token")


#: Run inside the sandbox: each (name, path, header, model) asked of the key proxy with the
#: sandbox's own token, as Claude in the sandbox holds it; prints {name: status}.
LEAK_PROBE = r"""
import json, os, sys, urllib.error, urllib.request
base, token, leaks = sys.argv[1], os.environ["ANTHROPIC_API_KEY"], json.loads(sys.argv[2])
out = {}
for name, path, header, model in leaks:
    value = "Bearer " + token if header == "authorization" else token
    body = {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
        headers={header: value, "anthropic-version": "2023-06-01",
                 "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            out[name] = resp.status
    except urllib.error.HTTPError as e:
        out[name] = e.code
print(json.dumps(out))
"""

LEAKS = [
    ("opus", "/v1/messages?beta=true", "x-api-key", "claude-opus-4-1"),
    ("haiku", "/v1/messages", "x-api-key", "claude-haiku-4-5"),
    ("upper-case", "/v1/messages", "x-api-key", "CLAUDE-SONNET-4-5"),
    ("trailing-space", "/v1/messages", "x-api-key", MODEL + " "),
    ("bearer", "/v1/messages", "authorization", "claude-opus-4-1"),
    ("query", "/v1/messages?model=claude-opus-4-1", "x-api-key", MODEL),
    ("count-tokens", "/v1/messages/count_tokens", "x-api-key", "claude-opus-4-1"),
    ("allowed", "/v1/messages", "x-api-key", MODEL),
]


def test_a_learners_token_reaches_no_other_model_from_the_sandbox(
    stack: Stack, browser: Any
) -> None:
    """sandbox.models reaches the rendered key proxy: from inside the learner's pod, with
    the pod's own token, every other model and spelling is refused; the chosen one answers."""
    page = open_claude(stack, browser, "dora")
    running = sandbox(stack, "dora")
    env = {e["name"]: e.get("value", "") for e in running.manifest["spec"]["containers"][0]["env"]}
    base = env["ANTHROPIC_BASE_URL"]
    assert env["ANTHROPIC_MODEL"] == MODEL
    before = len(stack.upstream.requests)
    result = stack.pm.exec(
        running.container(),
        ["/opt/claudehub/bin/python", "-c", LEAK_PROBE, base, json.dumps(LEAKS)],
    )
    assert result.returncode == 0, result.stderr
    statuses = json.loads(result.stdout)
    assert statuses.pop("allowed") == 200
    assert all(code in (400, 403) for code in statuses.values()), statuses
    went_up = [(r.body or {}).get("model") for r in stack.upstream.requests[before:]]
    assert went_up == [MODEL], went_up
    page.close()


def _exists(container: str) -> bool:
    proc = subprocess.run(
        ["podman", "container", "exists", container],
        env=podman_env(),
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


def test_a_killed_sandbox_tells_the_learner_and_the_hub_sees_it_stop(
    stack: Stack, browser: Any
) -> None:
    """The sandbox container dies mid-session (as on an OOM kill): the page says it lost the
    server, the hub notices the pod stopped, and the learner lands on the hub's page saying
    the server is down or not running (which of the hub's two pages depends on whether the
    page reloads before or after the hub drops the route), with the way back to the hub."""
    page = open_claude(stack, browser, "carol")
    running = sandbox(stack, "carol")
    podman("kill", running.container())
    page.wait_for_function(
        "() => document.getElementById('status').textContent.includes('disconnected')",
        timeout=PATIENCE * 1000,
    )
    # The hub's own view of carol's server, through its REST API with an admin's token.
    hub = stack.pod("claudehub-hub")
    token = stack.cluster.runner.objects.secrets["claudehub-hub"]["keyproxy-api-token"]

    def stopped() -> bool:
        resp = requests.get(
            f"http://{hub.ip}:8081/hub/api/users?state=active",
            headers={"Authorization": f"token {token}"},
            timeout=PATIENCE,
        )
        resp.raise_for_status()
        return "carol" not in {u["name"] for u in resp.json()}

    wait(stopped, 120, "the hub to see carol's server stop")
    # The page gives up reconnecting and reloads: the hub's page says what happened.
    try:
        page.wait_for_function(
            "() => ['is not running', 'Your server appears to be down']"
            ".some(t => document.body.innerText.includes(t))",
            timeout=90_000,
        )
    except Exception as err:
        raise AssertionError(f"{page.url}:\n{page.inner_text('body')[:2000]}") from err
    page.close()
