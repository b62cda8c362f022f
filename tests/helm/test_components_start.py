"""The key proxy and course+progress containers, as rendered, start and answer their probes.

A small stand-in for the kubelet: it materialises the container's volumes (ConfigMap and
Secret items as files, PVCs and emptyDirs as folders) under a temporary directory, resolves
its environment from the rendered Secrets, points paths at those folders and the listen
address at a free port on 127.0.0.1, runs the container's args with the project's
virtualenv on PATH, and calls the readiness and liveness probes the Deployment declares.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helm.charts import REPO, Rendering
from tests.helpers import PATIENCE, free_port

BIN = REPO / ".venv" / "bin"


class Container:
    """One rendered container, runnable on this machine."""

    def __init__(self, rendering: Rendering, deployment: str, root: Path, port: int) -> None:
        self.spec = rendering.one("Deployment", deployment)["spec"]["template"]["spec"]
        self.main = self.spec["containers"][0]
        self.port = port
        self.paths: dict[str, str] = {}
        volumes = {v["name"]: v for v in self.spec["volumes"]}
        for mount in self.main["volumeMounts"]:
            volume = volumes[mount["name"]]
            local = root / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            files = self._files(rendering, volume)
            if "subPath" in mount:
                target = local / mount["subPath"]
                target.write_bytes(files[mount["subPath"]])
                self.paths[mount["mountPath"]] = str(target)
            else:
                for name, data in files.items():
                    (local / name).write_bytes(data)
                self.paths[mount["mountPath"]] = str(local)
        self.env = self._env(rendering)

    @staticmethod
    def _files(rendering: Rendering, volume: dict[str, Any]) -> dict[str, bytes]:
        if "configMap" in volume:
            data = rendering.one("ConfigMap", volume["configMap"]["name"])["data"]
            return {k: v.encode() for k, v in data.items()}
        if "secret" in volume:
            found = rendering.find("Secret", volume["secret"]["secretName"])
            data = (
                {k: base64.b64decode(v) for k, v in found[0]["data"].items()}
                if found
                else {
                    "api-key": b"sk-ant-api03-operator-secret-not-a-real-key"
                }  # operator's Secret
            )
            items = volume["secret"].get("items")
            if items:
                return {i["path"]: data[i["key"]] for i in items}
            return data
        return {}  # persistentVolumeClaim, emptyDir: an empty folder

    def local(self, value: str) -> str:
        """``value`` with every mount path replaced by its local folder."""
        mounts = sorted(self.paths, key=len, reverse=True)
        pattern = "|".join(re.escape(m) for m in mounts)
        # One pass, so a local folder under /tmp is not itself rewritten by the /tmp mount.
        return re.sub(f"({pattern})(?=/|$)", lambda m: self.paths[m.group(1)], value)

    def _env(self, rendering: Rendering) -> dict[str, str]:
        env: dict[str, str] = {}
        for var in self.main["env"]:
            if "value" in var:
                env[var["name"]] = self.local(var["value"])
                continue
            ref = var["valueFrom"]["secretKeyRef"]
            secret = rendering.one("Secret", ref["name"])
            env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        env["JUPYTERHUB_SERVICE_URL"] = f"http://127.0.0.1:{self.port}"
        return env

    def probe(self, kind: str) -> int:
        path = self.main[kind]["httpGet"]["path"]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return e.code

    def run(self, cwd: Path, hub_api: str) -> subprocess.Popen[bytes]:
        args = [self.local(a) for a in self.main["args"]]
        env = {**self.env, "JUPYTERHUB_API_URL": hub_api + "/hub/api"}
        env["PATH"] = f"{BIN}:{os.environ['PATH']}"
        return subprocess.Popen(
            args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )


@pytest.fixture
def started(tmp_path: Path, default: Rendering) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(deployment: str) -> Container:
        container = Container(default, deployment, tmp_path / deployment, free_port())
        # The hub is not running here: an address where nothing listens.
        proc = container.run(tmp_path, f"http://127.0.0.1:{free_port()}")
        procs.append(proc)
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                container.probe("livenessProbe")
                return container
            except OSError:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"{deployment} exited: {err[-2000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"{deployment} did not listen on its port")
                time.sleep(0.2)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=PATIENCE)


def test_course_service_starts_as_rendered_and_answers_its_probes(started: Any) -> None:
    progress = started("claudehub-progress")
    assert progress.probe("livenessProbe") == 200
    assert progress.probe("readinessProbe") == 200
    # It read the course list the chart rendered (an empty one by default).
    with urllib.request.urlopen(
        f"http://127.0.0.1:{progress.port}/services/progress/api/health", timeout=2
    ) as resp:
        assert resp.status == 200
    assert Path(progress.env["CLAUDEHUB_PROGRESS_DB_URL"].removeprefix("sqlite:///")).exists()


def test_key_proxy_starts_as_rendered_and_answers_its_probes(started: Any) -> None:
    keyproxy = started("claudehub-keyproxy")
    assert keyproxy.probe("livenessProbe") == 200
    # Not ready while it cannot see the hub: no traffic is sent to a key proxy that cannot
    # tell running servers from stopped ones.
    assert keyproxy.probe("readinessProbe") == 503
    key_file = Path(keyproxy.env["ANTHROPIC_API_KEY_FILE"])
    assert key_file.read_text().startswith("sk-ant-")
    assert Path(keyproxy.env["CLAUDEHUB_TOKEN_SECRET_FILE"]).stat().st_size >= 32


def test_the_course_services_admin_token_opens_the_key_proxys_usage(
    started: Any, default: Rendering, tmp_path: Path
) -> None:
    """The class page's tokens column: the token the course service is given is one the
    key proxy, as rendered, accepts for /usage (and a wrong one is refused)."""
    keyproxy = started("claudehub-keyproxy")
    progress = Container(default, "claudehub-progress", tmp_path / "progress-env", free_port())
    url = f"http://127.0.0.1:{keyproxy.port}/usage"

    def status(token: str) -> int:
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=PATIENCE) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as e:
            return e.code

    assert status(progress.env["CLAUDEHUB_KEYPROXY_ADMIN_TOKEN"]) == 200
    assert status("not-the-admin-token") in (401, 403)
