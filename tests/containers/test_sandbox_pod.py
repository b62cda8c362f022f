"""The sandbox pod ClaudeSpawner builds from the chart, run in a real container runtime.

The pod is built exactly as the hub builds it (chart values -> hub settings -> ClaudeSpawner
-> harden_pod) and run by tests/containers/kubelet.py, which turns each field into the
runtime's own enforcement. What is checked is what the runtime then does: from inside the
running sandbox, as the processes the learner's session runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.sync.client import connect

from claudehub.spawner.podstatus import start_failure
from tests.containers.conftest import HUB_HOST, sandbox_pod
from tests.containers.kubelet import PodRunner, RunningPod
from tests.containers.podman import Podman
from tests.helpers import PATIENCE
from tests.server_ext.fakehub import FakeHub

pytestmark = [pytest.mark.containers, pytest.mark.slow]

#: Run inside the sandbox container: who the server runs as, with which privileges, and
#: which paths anyone in the sandbox can write.
PROBE = r"""
import json, os, pathlib
def status(pid):
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return {k: fields.get(k) for k in ("Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapBnd",
                                       "CapAmb", "NoNewPrivs", "Seccomp")}
server = None
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            cmd = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if any(b"claudehub-singleuser" in part for part in cmd):
            server = entry
writable = {}
for path in ("/", "/etc", "/usr", "/usr/local/bin", "/opt/claudehub", "/etc/claude-code",
             "/var/tmp", "/run", "/srv/course", "/home/claude", "/tmp"):
    probe = pathlib.Path(path) / ".claudehub-write-probe"
    try:
        probe.write_text("x")
        probe.unlink()
        writable[path] = True
    except OSError as err:
        writable[path] = err.strerror
root = [l.split() for l in open("/proc/self/mountinfo") if l.split()[4] == "/"][0]
print(json.dumps({"server": status(server) if server else None, "me": status("self"),
                  "writable": writable, "root_options": root[5]}))
"""


def probe(pm: Podman, pod: RunningPod) -> dict[str, Any]:
    result = pm.exec(pod.container(), ["/opt/claudehub/bin/python", "-c", PROBE])
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def base_url(pod: RunningPod) -> str:
    """Where the pod's server serves (its JUPYTERHUB_SERVICE_PREFIX; "/" without one)."""
    prefix = env_of(pod.manifest).get("JUPYTERHUB_SERVICE_PREFIX", "/")
    return f"http://{pod.ip}:8888{prefix}"


def wait_for_server(pm: Podman, pod: RunningPod, hub: FakeHub, timeout: float = 60) -> str:
    """Wait until the Claude extension answers the user (the server is up and loaded)."""
    url = base_url(pod)
    headers = {"Authorization": f"token {hub.user_token}"}
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url + "claude/api/session", headers=headers, timeout=2).ok:
                return url
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "the server did not start:\n" + pm.logs(pod.container())
        time.sleep(0.3)


@pytest.fixture
def hub(pm: Podman, pod_network: str) -> Iterator[FakeHub]:
    """The hub API the sandbox talks to (JUPYTERHUB_API_URL), on the network's gateway."""
    fake = FakeHub(host=pm.gateway(pod_network), port=8081).start()
    try:
        yield fake
    finally:
        fake.stop()


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def test_spawned_pod_runs_locked_down_and_serves_claude(
    kubeconfig: Path, tmp_path: Path, runner: PodRunner, pm: Podman, hub: FakeHub
) -> None:
    pod = sandbox_pod(tmp_path)
    env = env_of(pod)
    assert env["JUPYTERHUB_API_URL"].startswith(f"http://{HUB_HOST}:8081/")
    hub.server_token = env["JUPYTERHUB_API_TOKEN"]
    running = runner.start(pod)
    assert running.phase == "Running", running.status()
    url = wait_for_server(pm, running, hub)

    seen = probe(pm, running)
    server = seen["server"]
    assert server is not None, "the single-user server process"
    for proc in (server, seen["me"]):
        assert proc["Uid"].split() == ["1000"] * 4
        assert proc["Gid"].split() == ["1000"] * 4
        for cap in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
            assert int(proc[cap], 16) == 0, (cap, proc[cap])
        assert proc["NoNewPrivs"] == "1"
        assert proc["Seccomp"] == "2"  # a seccomp filter is on
    assert seen["root_options"].split(",")[0] == "ro"
    writable = {path for path, ok in seen["writable"].items() if ok is True}
    assert writable == {"/home/claude", "/tmp"}, seen["writable"]

    # The page is served and Claude reaches its prompt over the real terminal websocket.
    headers = {"Authorization": f"token {hub.user_token}"}
    page = requests.get(url + "claude", headers=headers, timeout=PATIENCE)
    assert page.status_code == 200 and "xterm" in page.text, (
        page.text[:300] + pm.logs(running.container())[-1500:]
    )
    with connect(
        url.replace("http://", "ws://") + "claude/terminal",
        additional_headers=headers,
        open_timeout=PATIENCE,
    ) as ws:
        screen = ""
        deadline = time.monotonic() + 60
        while "❯" not in screen:
            message = ws.recv(timeout=max(deadline - time.monotonic(), 0.1))
            if isinstance(message, str):
                kind, *rest = json.loads(message)
                if kind == "stdout":
                    screen += rest[0]
        # `!cmd` reaches the refusing shell stub, never a real shell.
        ws.send(json.dumps(["stdin", "!id > /home/claude/pwned\r"]))
        time.sleep(3)
    check = pm.exec(
        running.container(),
        [
            "/opt/claudehub/bin/python",
            "-c",
            "import os; print(os.path.exists('/home/claude/pwned'))",
        ],
    )
    assert check.stdout.strip() == "False"


def test_a_weakened_pod_still_runs_hardened(
    kubeconfig: Path, tmp_path: Path, runner: PodRunner, pm: Podman, hub: FakeHub
) -> None:
    """Configuration and a modify_pod_hook ask for root and privileges; the runtime gets none."""

    def hook(spawner: Any, pod: Any) -> Any:
        container = pod.spec.containers[0]
        container.security_context.privileged = True
        container.security_context.run_as_user = 0
        container.security_context.read_only_root_filesystem = False
        container.security_context.allow_privilege_escalation = True
        pod.spec.host_network = True
        return pod

    pod = sandbox_pod(
        tmp_path,
        modify_pod_hook=hook,
        privileged=True,
        allow_privilege_escalation=True,
        uid=0,
        container_security_context={
            "runAsUser": 0,
            "capabilities": {"add": ["SYS_ADMIN", "NET_ADMIN"]},
            "seccompProfile": {"type": "Unconfined"},
            "readOnlyRootFilesystem": False,
        },
        extra_pod_config={"hostPID": True, "hostIPC": True},
    )
    hub.server_token = env_of(pod)["JUPYTERHUB_API_TOKEN"]
    running = runner.start(pod)
    assert running.phase == "Running", running.status()
    wait_for_server(pm, running, hub)
    seen = probe(pm, running)
    assert seen["server"]["Uid"].split()[0] == "1000"
    assert int(seen["server"]["CapEff"], 16) == 0 and int(seen["server"]["CapBnd"], 16) == 0
    assert seen["server"]["NoNewPrivs"] == "1" and seen["server"]["Seccomp"] == "2"
    assert {p for p, ok in seen["writable"].items() if ok is True} == {"/home/claude", "/tmp"}
    inspect = pm.inspect(running.container())
    assert inspect["HostConfig"]["Privileged"] is False
    assert inspect["HostConfig"]["NetworkMode"] != "host"


def test_a_missing_image_gives_the_spawners_plain_words(
    kubeconfig: Path, tmp_path: Path, runner: PodRunner
) -> None:
    pod = sandbox_pod(
        tmp_path,
        values={"sandbox": {"image": {"repository": "localhost/claudehub/nowhere", "tag": "dev"}}},
    )
    running = runner.start(pod)
    assert running.phase == "Pending"
    message = start_failure({"status": running.status()})
    assert message is not None
    assert "localhost/claudehub/nowhere:dev" in message and "could not be pulled" in message
    assert "Traceback" not in message


def test_a_course_that_cannot_be_fetched_ends_the_spawn_naming_the_course(
    kubeconfig: Path, tmp_path: Path, runner: PodRunner
) -> None:
    """The init container runs for real; the course service is not reachable from it."""
    pod = sandbox_pod(tmp_path, user_options={"course": "git-basics"})
    inits = pod["spec"]["initContainers"]
    assert [c["name"] for c in inits] == ["fetch-course"]
    running = runner.start(pod, init_timeout=120)
    assert running.phase == "Failed", running.status()
    message = start_failure({"status": running.status()})
    assert message is not None and "git-basics" in message, message


def test_a_killed_sandbox_is_reported_as_stopped(
    kubeconfig: Path, tmp_path: Path, runner: PodRunner, pm: Podman, hub: FakeHub
) -> None:
    pod = sandbox_pod(tmp_path)
    hub.server_token = env_of(pod)["JUPYTERHUB_API_TOKEN"]
    running = runner.start(pod)
    wait_for_server(pm, running, hub)
    from tests.containers.podman import podman

    podman("kill", running.container())
    deadline = time.monotonic() + PATIENCE
    while running.phase == "Running":
        runner.refresh(running)
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert running.phase == "Failed"
    message = start_failure({"status": running.status()})
    assert message is not None and "Traceback" not in message, message
