"""The progress store on SQLite and on a real PostgreSQL started by the test:
concurrent writers lose nothing and never duplicate; data survives restarts."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from claudehub.progress.store import Store
from tests.helpers import free_port

PG_BIN = Path(os.environ.get("CLAUDEHUB_PG_BIN", "/usr/local/bin"))


@dataclass
class Postgres:
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://test@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -F"
        cmd = [str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir / "db"), "-o", opts, "-w", *args]
        cmd += ["-l", str(self.data_dir / "log")] if args[0] == "start" else []
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=60
        )


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL server on 127.0.0.1 (initdb refuses root: run as postgres)."""
    pw = pwd.getpwnam("postgres")
    base = Path(tempfile.mkdtemp(prefix="claudehub-pg-", dir="/tmp"))
    os.chown(base, pw.pw_uid, pw.pw_gid)
    pg = Postgres(base, free_port())
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(base / "db"),
         "-A", "trust", "-U", "test"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    pg.ctl("start")
    try:
        yield pg
    finally:
        try:
            pg.ctl("stop", "-m", "fast")
        finally:
            shutil.rmtree(base, ignore_errors=True)


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'progress.sqlite'}"


async def _reset(url: str) -> None:
    store = await Store.open(url)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM completions"))
        conn.execute(text("DELETE FROM quiz_results"))
    await store.close()


async def _concurrent_writes(url: str) -> None:
    """8 independent clients (own engine + pool each) hammer overlapping keys."""
    await _reset(url)
    clients = [await Store.open(url) for _ in range(8)]
    users = [f"user{i}" for i in range(6)]
    stages = [1, 2, 3]
    calls: list[Any] = []
    for i, store in enumerate(clients):
        for user in users:
            for stage in stages:
                method = "quiz" if (i + stage) % 3 == 0 else "tutor"
                calls.append(store.complete(user, "course", stage, method))
                calls.append(store.quiz_attempt(user, "course", f"q{stage}", stage, i == 5))
    try:
        await asyncio.gather(*calls)
        rows = await clients[0].completions()
        keys = [(r.user, r.course_id, r.stage) for r in rows]
        # nothing lost, nothing duplicated
        assert sorted(keys) == sorted((u, "course", s) for u in users for s in stages)
        for r in rows:
            # some client wrote "quiz" for every stage: a quiz pass is never lost to a tutor write
            assert r.method == "quiz" and r.quiz_at is not None and r.tutor_at is not None
        for user in users:
            results = await clients[0].quiz_results(user, "course")
            assert {q: r.attempts for q, r in results.items()} == {"q1": 8, "q2": 8, "q3": 8}
            assert all(r.passed_at is not None for r in results.values())
    finally:
        for store in clients:
            await store.close()


@pytest.mark.asyncio
async def test_sqlite_concurrent_writes(tmp_path: Path) -> None:
    await _concurrent_writes(_sqlite_url(tmp_path))


@pytest.mark.asyncio
async def test_sqlite_restart_durability_and_wal(tmp_path: Path) -> None:
    url = _sqlite_url(tmp_path)
    store = await Store.open(url)
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    await store.complete("alice", "c", 1, "quiz")
    await store.close()
    store = await Store.open(url)  # migrations run again: a no-op
    rows = await store.completions("alice")
    assert [(r.stage, r.method) for r in rows] == [(1, "quiz")]
    assert set(inspect(store.engine).get_table_names()) >= {
        "alembic_version",
        "completions",
        "quiz_results",
    }
    await store.close()


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.asyncio
async def test_postgres_concurrent_writes(postgres: Postgres) -> None:
    await _concurrent_writes(postgres.url)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.asyncio
async def test_postgres_restart_durability(postgres: Postgres) -> None:
    await _reset(postgres.url)
    store = await Store.open(postgres.url)
    await store.complete("alice", "c", 2, "tutor")
    await store.quiz_attempt("alice", "c", "q", 2, True)
    await store.close()
    await asyncio.to_thread(postgres.ctl, "stop", "-m", "fast")
    await asyncio.to_thread(postgres.ctl, "start")
    store = await Store.open(postgres.url)
    try:
        rows = await store.completions("alice", "c")
        assert [(r.stage, r.method) for r in rows] == [(2, "tutor")]
        assert (await store.quiz_results("alice", "c"))["q"].passed_at is not None
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_migrations_match_the_models(tmp_path: Path) -> None:
    """The alembic revisions build exactly the schema the ORM models describe."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from claudehub.progress.store import Base

    store = await Store.open(_sqlite_url(tmp_path))
    try:
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        await store.close()
