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

Then the live update's latency (``--answers`` per series; 0 skips it): the instructor's event
stream (``GET {prefix}classes/<class>/events``) is held open on one connection, as the page's
``EventSource`` holds it, and learners who have not answered quiz q2 yet answer it through the
course service's answer API (``POST {prefix}api/courses/t101/quizzes/q2/answer``, each with
their own hub token), one after another. For each answer, from just before the request:

- ``answer request``: until its response has arrived (the baseline, in the same run);
- ``answer -> update event``: until the stream's ``update`` event showing that learner's new row
  has arrived (the page's whole body, as the browser gets it).

Both series run twice: with the hub cache as configured (3 s) and with it disabled. The client
runs on the service's event loop (as the page series do), so the figures include the service's
own scheduling but no network.

Usage::

    .venv/bin/python benchmarks/classpage/bench.py --learners 200 --rounds 30 --answers 40

Exit status 1 when the median of ``hub asked`` is over ``--target`` milliseconds (500) or the
p95 of ``answer -> update event`` over ``--live-target`` milliseconds (2000, what the class
page test once asserted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from claudehub.contract.course_client import ProgressClient  # noqa: E402
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
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1),
        "max_ms": round(ms[-1], 1),
    }


class _EventStream:
    """The class page's event stream held open, as the page's ``EventSource`` holds it: each
    ``update`` event's html with the time its last byte arrived."""

    def __init__(self, url: str, token: str) -> None:
        self.updates: list[tuple[float, str]] = []
        self._buf = b""
        self._arrived = asyncio.Event()
        self._http = AsyncHTTPClient(force_instance=True)
        req = HTTPRequest(
            url,
            headers={"Authorization": f"token {token}"},
            streaming_callback=self._chunk,
            request_timeout=3600,
        )
        self._fetch = asyncio.ensure_future(self._http.fetch(req, raise_error=False))

    def _chunk(self, chunk: bytes) -> None:
        now = time.perf_counter()
        self._buf += chunk
        while b"\n\n" in self._buf:
            block, self._buf = self._buf.split(b"\n\n", 1)
            if block.startswith(b"event: update\n"):
                data = block.split(b"\ndata: ", 1)[1]
                self.updates.append((now, json.loads(data)["html"]))
                self._arrived.set()

    async def update(self, n: int, within: float = 60.0) -> tuple[float, str]:
        """The ``n``-th update event (from 0), once it has arrived."""
        while len(self.updates) <= n:
            if self._fetch.done():
                raise SystemExit(f"the event stream ended: {self._fetch.result().code}")
            self._arrived.clear()
            await asyncio.wait_for(self._arrived.wait(), within)
        return self.updates[n]

    def close(self) -> None:
        # cutting a stream mid-body makes tornado log the cut on both ends: expected here
        for name in ("tornado.application", "tornado.general"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self._fetch.cancel()
        self._http.close()


def _rows(html: str, user: str) -> list[str]:
    """The user's rows (one per course) in a class page body."""
    rows = re.findall(rf'<tr data-user="{re.escape(user)}">.*?</tr>', html, re.S)
    assert rows, f"no row for {user} in the update"
    return rows


async def _live(
    stream: _EventStream, service_url: str, tokens: dict[str, str]
) -> tuple[list[float], list[float]]:
    """Each learner in ``tokens`` answers q2 in turn; the answer request's time and the time
    until the update event with that learner's changed row, both from before the request."""
    request_ms, update_ms = [], []
    for user, token in tokens.items():
        n = len(stream.updates)
        before = _rows(stream.updates[-1][1], user)
        client = ProgressClient(service_url, token)
        t0 = time.perf_counter()
        result = await client.answer("t101", "q2", "1")
        t1 = time.perf_counter()
        arrived, html = await stream.update(n)
        assert result["status"] == "correct", result
        assert _rows(html, user) != before, f"the update after {user}'s answer misses it"
        request_ms.append(1000 * (t1 - t0))
        update_ms.append(1000 * (arrived - t0))
    return request_ms, update_ms


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
    parser.add_argument("--answers", type=int, default=40, help="answers per live series")
    parser.add_argument("--live-target", type=float, default=2000.0)
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
        service_url = f"http://127.0.0.1:{ports['service_port']}/services/progress/"
        url = service_url + "classes/big"
        # learners without an answer to q2 (_fill: the even ones), one per live answer
        fresh = learners[0::2]
        if 2 * args.answers > len(fresh):
            raise SystemExit(f"--answers {args.answers} needs {4 * args.answers} learners")
        answering = []
        for user in fresh[: 2 * args.answers]:
            resp = await AsyncHTTPClient().fetch(
                HTTPRequest(
                    f"{hub_api}/users/{user}/tokens", method="POST", headers=admin, body="{}"
                )
            )
            answering.append((user, json.loads(resp.body)["token"]))
        await _series(url, token, 3, times)  # warm-up: token lookup, templates
        directory = web_app.settings["claudehub_hub_directory"]
        cached = await _series(url, token, args.rounds, times)
        live: list[dict[str, Any]] = []

        async def live_series(label: str, tokens: dict[str, str]) -> None:
            if not tokens:
                return
            stream = _EventStream(url + "/events", token)
            try:
                await stream.update(0)  # the page's first body
                request_ms, update_ms = await _live(stream, service_url, tokens)
            finally:
                stream.close()
            live.append(_stats(f"answer request ({label})", request_ms))
            live.append(_stats(f"answer -> update event ({label})", update_ms))

        await live_series(f"hub cache {directory.ttl:g} s", dict(answering[: args.answers]))
        directory.ttl = 0.0
        asked = await _series(url, token, args.rounds, times)
        await live_series("hub asked", dict(answering[args.answers :]))
        results = [_stats("hub asked", asked), _stats("cached", cached)]
        out = {"learners": args.learners, "results": results, "live": live}
        print(json.dumps(out, indent=2))
        slow_live = [s for s in live if s["series"].startswith("answer ->")]
        ok = results[0]["median_ms"] <= args.target and all(
            s["p95_ms"] <= args.live_target for s in slow_live
        )
        return 0 if ok else 1
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
