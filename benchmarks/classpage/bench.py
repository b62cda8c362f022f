"""Issue 17's class page budget: server time of ``GET {prefix}classes/<class>`` for a big class.

Starts the course service (in this process, SQLite) and a real JupyterHub configured by
``claudehub.hub.classes.configure_classes`` with one class of ``--learners`` learners (a hub
group) and an instructor; fills the progress store (every learner has answered quizzes,
some wrongly, and some have tutor completions; a quarter have two courses), then requests
the class page ``--rounds`` times with the instructor's token, straight to the service.

Server time is the service's own request time (tornado's ``request_time()``, what its log
line shows), read for each request. Two series:

- ``hub asked``: the members and running sessions are asked of the hub on every request
  (the service's hub cache disabled), what a page pays when nobody had it open;
- ``cached``: within the cache's 3 s, what the live updates and a reload pay.

Usage::

    .venv/bin/python benchmarks/classpage/bench.py --learners 200 --rounds 30

Exit status 1 when the median of ``hub asked`` is over ``--target`` milliseconds (500).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from claudehub.progress import service  # noqa: E402
from claudehub.progress.app import ProgressService  # noqa: E402
from tests.helpers import free_port  # noqa: E402
from tests.progress.conftest import course_sources  # noqa: E402

SERVICE_TOKEN = "bench-progress-service-token-0123456789"
ADMIN_TOKEN = "bench-tester-token-0123456789abcdef"

HUB_CONFIG = """
c = get_config()  # noqa
from claudehub.contract.hub import service_roles
from claudehub.hub.classes import ClassSettings, configure_classes
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.auth_token = "proxy-token-0123456789abcdef"
c.JupyterHub.db_url = "sqlite:///{dir}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/cookie_secret"
c.JupyterHub.pid_file = "{dir}/hub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.extra_user_scopes = {{"access:services!service=progress"}}
c.JupyterHub.services = [
    {{"name": "progress", "url": "http://127.0.0.1:{service_port}", "api_token": {service_token!r},
      "oauth_no_confirm": True}},
    {{"name": "tester", "api_token": {admin_token!r}}},
]
c.JupyterHub.load_roles = [r for r in service_roles() if r["name"] == "claudehub-progress"] + [
    {{"name": "tester", "scopes": ["admin:users", "tokens"], "services": ["tester"]}},
]
configure_classes(c, ClassSettings(classes={{"big": {{"learners": {learners!r},
                                                     "instructors": ["tina"]}}}}))
"""


async def _fill(app: ProgressService, learners: list[str]) -> None:
    state = app.state
    assert state is not None
    for i, user in enumerate(learners):
        await service.submit_answer(state, user, "t101", "q1", "1")  # wrong first
        await service.submit_answer(state, user, "t101", "q1", "2")
        if i % 2:
            await service.submit_answer(state, user, "t101", "q2", "1")
        if i % 3 == 0:
            await service.record_tutor(state, user, "t101", stage=3)
        if i % 4 == 0:
            other = next(c for c in state.catalogue.courses if c != "t101")
            await service.record_tutor(state, user, other, stage=1)


async def _series(url: str, token: str, rounds: int, times: list[float]) -> list[float]:
    out = []
    for _ in range(rounds):
        before = len(times)
        resp = await AsyncHTTPClient().fetch(
            HTTPRequest(url, headers={"Authorization": f"token {token}"})
        )
        assert resp.code == 200 and b"<table" in resp.body
        out.append(times[before])
    return out


def _stats(name: str, ms: list[float]) -> dict[str, Any]:
    ms = sorted(ms)
    return {
        "series": name,
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 1),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1),
        "max_ms": round(ms[-1], 1),
    }


def _spawn_hub(hubdir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Any]:
    log = (hubdir / "hub.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(hubdir / "jupyterhub_config.py")],
        cwd=hubdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, log


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--learners", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--target", type=float, default=500.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="classpage-bench-"))
    learners = [f"learner{i:03d}" for i in range(args.learners)]
    ports = {k: free_port() for k in ("port", "hub_port", "proxy_api_port", "service_port")}
    hubdir = tmp / "hub"
    hubdir.mkdir()
    (hubdir / "jupyterhub_config.py").write_text(
        HUB_CONFIG.format(
            dir=hubdir,
            service_token=SERVICE_TOKEN,
            admin_token=ADMIN_TOKEN,
            learners=learners,
            **ports,
        )
    )
    hub_api = f"http://127.0.0.1:{ports['port']}/hub/api"
    os.environ.update(
        {
            "JUPYTERHUB_API_URL": hub_api,
            "JUPYTERHUB_API_TOKEN": SERVICE_TOKEN,
            "JUPYTERHUB_SERVICE_NAME": "progress",
            "JUPYTERHUB_SERVICE_PREFIX": "/services/progress/",
            "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{ports['service_port']}",
            "JUPYTERHUB_CLIENT_ID": "service-progress",
            "JUPYTERHUB_OAUTH_CALLBACK_URL": "/services/progress/oauth_callback",
        }
    )
    courses, catalogues = course_sources(tmp / "courses")
    app = ProgressService()
    app.courses = courses
    app.catalogues = catalogues
    app.db_url = f"sqlite:///{tmp / 'progress.sqlite'}"
    app.cache_dir = str(tmp / "cache")
    await app.start_async()
    await _fill(app, learners)

    times: list[float] = []
    assert app.http_server is not None
    web_app: Any = app.http_server.request_callback
    web_app.settings["log_function"] = lambda h: times.append(1000 * h.request.request_time())

    env = {
        **os.environ,
        "PATH": f"{REPO / 'node_modules' / '.bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    proc, log = _spawn_hub(hubdir, env)
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise SystemExit((hubdir / "hub.log").read_text()[-3000:])
            try:
                await AsyncHTTPClient().fetch(hub_api + "/", request_timeout=2)
                break
            except (HTTPClientError, OSError):
                await asyncio.sleep(0.2)
        admin = {"Authorization": f"token {ADMIN_TOKEN}"}
        resp = await AsyncHTTPClient().fetch(
            HTTPRequest(f"{hub_api}/users/tina", method="POST", headers=admin, body="{}"),
            raise_error=False,
        )
        resp = await AsyncHTTPClient().fetch(
            HTTPRequest(f"{hub_api}/users/tina/tokens", method="POST", headers=admin, body="{}")
        )
        token = json.loads(resp.body)["token"]
        url = f"http://127.0.0.1:{ports['service_port']}/services/progress/classes/big"
        await _series(url, token, 3, times)  # warm-up: token lookup, templates
        directory = web_app.settings["claudehub_hub_directory"]
        cached = await _series(url, token, args.rounds, times)
        directory.ttl = 0.0
        asked = await _series(url, token, args.rounds, times)
        results = [_stats("hub asked", asked), _stats("cached", cached)]
        print(json.dumps({"learners": args.learners, "results": results}, indent=2))
        return 0 if results[0]["median_ms"] <= args.target else 1
    finally:
        await app.stop_async()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
