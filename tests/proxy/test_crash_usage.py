"""A key proxy killed mid-answer loses no usage: its reservation is charged instead.

The real ``claudehub-keyproxy`` process streams a slow answer from the fake upstream, is
killed with SIGKILL halfway (nothing flushed, no shutdown), and a new one starts on the same
usage database, as a Deployment's pod restarts. The learner's budget holds: the cut request
was charged the most it could have cost, so crashing the key proxy is no way around a budget.
A request that ends normally is charged what it cost, and leaves no reservation behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from claudehub.contract.tokens import mint_token
from claudehub.proxy.limits import Limits
from claudehub.proxy.usage import (
    CUT_STATUS,
    UsageStore,
    day_string,
    inflight_table,
)
from tests.fakes.upstream import FakeAnthropic
from tests.helpers import PATIENCE, free_port
from tests.proxy.conftest import StartProxy, message_body, token

SECRET = "crash-usage-test-secret-0123456789"
REAL_KEY = "sk-ant-api03-crash-usage-real-key-0123456789abcdef"
BUDGET = 5000
#: More output than the whole budget may be asked for: the reservation alone exhausts it.
MAX_TOKENS = 8000
ANSWER = "A slow answer, streamed sixteen characters at a time. " * 4


def start_keyproxy(upstream: str, db: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDEHUB_"))},
        "CLAUDEHUB_TOKEN_SECRET": SECRET,
        "ANTHROPIC_API_KEY": REAL_KEY,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "claudehub.proxy.app",
            "--standalone",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--upstream-url={upstream}",
            f"--db-url={db}",
            f"--daily-token-budget={BUDGET}",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=2):
                return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"the key proxy did not start: {err[-2000:]}")
            time.sleep(0.2)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=PATIENCE)


def ask(url: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"{url}/v1/messages",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "x-api-key": mint_token(SECRET.encode(), "mallory", "", ttl=3600),
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=PATIENCE) as resp:
            resp.read()
            return resp.status, {}
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_key_proxy_killed_mid_answer_still_counts_it_against_the_budget(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    # SQLite here; PostgreSQL with two replicas: tests/containers/test_faults.py
    db = f"sqlite:///{tmp_path / 'usage.sqlite'}"
    with FakeAnthropic(delay_between_events=0.3) as upstream:
        upstream.script(*[ANSWER] * 3)
        first, url = start_keyproxy(upstream.url, db, tmp_path)
        processes.append(first)
        body = message_body(stream=True, max_tokens=MAX_TOKENS, tools=[{"name": "Read"}])

        async def stream_then_kill() -> bytes:
            seen = b""
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    f"{url}/v1/messages",
                    json=body,
                    headers={"x-api-key": mint_token(SECRET.encode(), "mallory", "", ttl=3600)},
                ) as resp:
                    assert resp.status == 200
                    try:
                        async for chunk in resp.content.iter_any():
                            seen += chunk
                            if seen.count(b"content_block_delta") >= 2:
                                first.send_signal(signal.SIGKILL)  # mid-answer, nothing flushed
                    except aiohttp.ClientPayloadError:
                        pass  # the stream was cut: what a client sees when its proxy dies
            return seen

        seen = asyncio.run(stream_then_kill())
        assert first.wait(PATIENCE) == -signal.SIGKILL
        assert b"message_stop" not in seen, "the answer was cut before it ended"

        # The Deployment's pod restarts: a new key proxy on the same database.
        second, url = start_keyproxy(upstream.url, db, tmp_path)
        processes.append(second)

        # Once the dead proxy's heartbeat is stale, its reservation is charged: the learner
        # has spent their budget (without the reservation they would start afresh at 0).
        deadline = time.monotonic() + PATIENCE
        while True:
            status, error = ask(url, message_body(max_tokens=16))
            if status == 403:
                break
            assert status == 200, (status, error)
            assert time.monotonic() < deadline, "the cut request was never charged"
            time.sleep(0.5)
        message = error["error"]["message"]  # type: ignore[index]
        assert f"budget of {BUDGET:,} tokens" in message, message
        second.terminate()  # a clean stop settles the reservations of what it answered
        second.wait(PATIENCE)

    store = UsageStore(db)
    with store.engine.connect() as conn:
        cut = conn.execute(
            sa.text("SELECT input_tokens FROM claudehub_keyproxy_usage WHERE status = :s"),
            {"s": CUT_STATUS},
        ).all()
        left = conn.execute(sa.select(sa.func.count()).select_from(inflight_table)).scalar_one()
    store.close()
    assert [row[0] for row in cut] == [len(json.dumps(body).encode()) + MAX_TOKENS]
    assert left == 0


@pytest.mark.asyncio
async def test_an_answer_that_ends_is_charged_what_it_cost_and_releases_its_reservation(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(fake_upstream.url, limits=Limits(daily_token_budget=BUDGET))
    body = message_body(stream=True, max_tokens=MAX_TOKENS)
    async with http.post(
        f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": token("erin")}
    ) as resp:
        assert resp.status == 200
        await resp.read()
    assert proxy.recorder.reserved == 1  # it was reserved before it went upstream
    await proxy.recorder.flush()
    store = proxy.store
    assert store is not None
    with store.engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(inflight_table)).scalar_one()
    used = proxy.limits.used_today("erin")
    assert left == 0
    assert 0 < used < MAX_TOKENS  # its real usage, not the reservation
    assert store.daily_totals(day_string(time.time()))["erin"][1] > 0
