"""Usage records on PostgreSQL (a real server started for this module)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator

import aiohttp
import pytest

from tests.fakes.upstream import FakeAnthropic
from tests.helpers import free_port
from tests.proxy.conftest import StartProxy, message_body, token

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server (initdb refuses root, so it runs as ``postgres``)."""
    base = tempfile.mkdtemp(prefix="claudehub-keyproxy-pg-")
    os.chmod(base, 0o755)
    data = os.path.join(base, "data")
    shutil.chown(base, "postgres")
    port = free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_pg, "initdb", "-D", data, "-A", "trust", "-U", "test"], check=True, capture_output=True
    )
    subprocess.run(
        [
            *as_pg,
            "pg_ctl",
            "-D",
            data,
            "-l",
            os.path.join(base, "log"),
            "-w",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {base} -F",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://test@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_pg, "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.asyncio
async def test_usage_is_written_to_postgresql_and_reported(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, postgres_url: str
) -> None:
    proxy = await start_proxy(fake_upstream.url, db_url=postgres_url, admin_tokens=["adm"])
    user = f"pg-user-{uuid.uuid4().hex[:8]}"  # the database outlives one test
    async with aiohttp.ClientSession() as http:
        for stream in (False, True):
            async with http.post(
                f"{proxy.url}/v1/messages",
                json=message_body(stream=stream),
                headers={"x-api-key": token(user)},
            ) as r:
                assert r.status == 200
                await r.read()
        async with http.get(
            f"{proxy.url}/usage?user={user}", headers={"Authorization": "Bearer adm"}
        ) as r:
            data = await r.json()
    (row,) = data["usage"]
    assert row["requests"] == 2 and row["errors"] == 0 and row["output_tokens"] > 0
    assert proxy.recorder.written == 2


@pytest.mark.asyncio
async def test_proxy_serves_while_the_database_is_down(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy
) -> None:
    dead = f"postgresql://test@127.0.0.1:{free_port()}/postgres"
    proxy = await start_proxy(fake_upstream.url, db_url=dead, usage_flush_interval=3600)
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{proxy.url}/v1/messages", json=message_body(), headers={"x-api-key": token("zoe")}
        ) as r:
            assert r.status == 200
    await proxy.recorder.flush()
    assert proxy.recorder.errors == 1 and proxy.recorder.pending == 1  # kept for a retry
