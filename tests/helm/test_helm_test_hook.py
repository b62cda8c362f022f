"""`helm test`'s check, run for real: against a real key proxy process and a hub API stand-in.

The script is taken from the rendered test pod and run with the pod's own environment
(URLs pointed at 127.0.0.1), with the Debian python3 the way the pod runs its image's python3.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helm.charts import REPO, Rendering
from tests.helpers import PATIENCE, free_port

KEYPROXY = REPO / ".venv" / "bin" / "claudehub-keyproxy"


class _HubAPI(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/hub/api":
            body = json.dumps({"version": "6.1.1"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def hub_api() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HubAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def keyproxy(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "CLAUDEHUB_TOKEN_SECRET": "0123456789abcdef0123456789abcdef",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
        "ANTHROPIC_API_KEY": "sk-ant-api03-helm-test-not-a-real-key",
        # Nothing must be forwarded in this test; an unreachable upstream proves it.
        "ANTHROPIC_UPSTREAM_URL": "http://127.0.0.1:9",
        "CLAUDEHUB_KEYPROXY_DB_URL": f"sqlite:///{tmp_path / 'usage.sqlite'}",
    }
    proc = subprocess.Popen(
        [str(KEYPROXY), "--standalone"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("the key proxy did not start")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=PATIENCE)


def _run_hook(rendering: Rendering, hub: str, keyproxy: str) -> subprocess.CompletedProcess[str]:
    pod = rendering.one("Pod", "claudehub-test")
    main = pod["spec"]["containers"][0]
    assert main["command"][:2] == ["python3", "-c"]
    env = {e["name"]: e["value"] for e in main["env"]}
    env["HUB_URL"], env["KEYPROXY_URL"] = hub, keyproxy
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    return subprocess.run(
        [python, "-c", main["command"][2]],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_helm_test_passes_against_a_real_key_proxy(
    default: Rendering, hub_api: str, keyproxy: str
) -> None:
    result = _run_hook(default, hub_api, keyproxy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hub answers: JupyterHub 6.1.1" in result.stdout
    assert "key proxy refuses a request without a token: 401 authentication_error" in result.stdout


def test_helm_test_fails_when_the_key_proxy_lets_requests_through(
    default: Rendering, hub_api: str
) -> None:
    # A "key proxy" that forwards anything: the hub stand-in answers 404, not 401.
    result = _run_hook(default, hub_api, hub_api)
    assert result.returncode != 0
    assert "expected 401" in (result.stdout + result.stderr)


def test_helm_test_fails_when_the_hub_does_not_answer(default: Rendering, keyproxy: str) -> None:
    result = _run_hook(default, f"http://127.0.0.1:{free_port()}", keyproxy)
    assert result.returncode != 0
