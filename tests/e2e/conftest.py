"""The whole local stack — real JupyterHub, configurable-http-proxy, key proxy, course service,
jupyter-server with the claudehub extension and the Claude Code CLI — plus a real browser."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.fakes.upstream import FakeAnthropic
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, free_port, jp_asyncio_loop  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
REAL_KEY = "sk-ant-api03-REALKEY-e2e-0123456789abcdefghijklmnopqrstuvwxyz"
PASSWORD = "e2e-password-123"


@dataclass
class LocalStack:
    url: str
    state_dir: Path
    upstream: FakeAnthropic
    process: subprocess.Popen[bytes]
    log: Path
    keyproxy_url: str
    password: str = PASSWORD
    real_key: str = REAL_KEY

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _wait_for_hub(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyterhub exited early:\n{log.read_text()[-4000:]}")
        try:
            if requests.get(f"{url}/hub/api/", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"jupyterhub did not come up:\n{log.read_text()[-4000:]}")


def local_mode_env(tmp: Path, upstream_url: str, password: str, real_key: str) -> dict[str, str]:
    """The environment `make run` would give local mode, on free ports, state under ``tmp``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUPYTER", "CLAUDEHUB_", "ANTHROPIC_", "PYTEST_"))
    }
    env.update(
        {
            "PATH": f"{REPO / 'node_modules' / '.bin'}:{Path(sys.executable).parent}:{env.get('PATH', '')}",
            "CLAUDEHUB_BIND_URL": f"http://127.0.0.1:{free_port()}",
            "CLAUDEHUB_STATE_DIR": str(tmp / "state"),
            "CLAUDEHUB_DEV_PASSWORD": password,
            "CLAUDEHUB_HUB_PORT": str(free_port()),
            "CLAUDEHUB_PROXY_API_PORT": str(free_port()),
            "CLAUDEHUB_KEYPROXY_PORT": str(free_port()),
            "CLAUDEHUB_PROGRESS_PORT": str(free_port()),
            "ANTHROPIC_API_KEY": real_key,
            "ANTHROPIC_UPSTREAM_URL": upstream_url,
        }
    )
    return env


def start_local_stack(
    tmp: Path, upstream: FakeAnthropic, extra_env: dict[str, str] | None = None
) -> LocalStack:
    """Start `jupyterhub -f hub_config/local_config.py` the way `make run` does."""
    env = local_mode_env(tmp, upstream.url, PASSWORD, REAL_KEY)
    port = int(env["CLAUDEHUB_BIND_URL"].rsplit(":", 1)[1])
    env.update(extra_env or {})
    log = tmp / "jupyterhub.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterhub",
                "-f",
                str(REPO / "hub_config" / "local_config.py"),
            ],
            cwd=tmp,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_hub(url, proc, log)
    except RuntimeError:
        _stop(proc)
        raise
    return LocalStack(
        url=url,
        state_dir=tmp / "state",
        upstream=upstream,
        process=proc,
        log=log,
        keyproxy_url=f"http://127.0.0.1:{env['CLAUDEHUB_KEYPROXY_PORT']}",
    )


def stop_local_stack(stack: LocalStack) -> None:
    _stop(stack.process)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    # Single-user servers and services run in the hub's session: take any stragglers down.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def module_upstream() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def local_stack(
    tmp_path_factory: pytest.TempPathFactory, module_upstream: FakeAnthropic
) -> Iterator[LocalStack]:
    stack = start_local_stack(tmp_path_factory.mktemp("stack"), module_upstream)
    try:
        yield stack
    finally:
        _stop(stack.process)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
