"""``claudehub-keyproxy export-usage`` / ``import-usage``: usage, budgets and the audit log
survive a restore.

Real databases (SQLite files, the session's PostgreSQL server for the ``postgres`` one), the
real CLI in a subprocess, and a real KeyProxy started on the restored database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import sqlalchemy as sa

from claudehub.contract import env
from claudehub.contract.tokens import mint_token
from claudehub.proxy.backup import FORMAT, TABLES, BackupError, import_backup, parse_backup
from claudehub.proxy.limits import Limits
from claudehub.proxy.service import KeyProxy
from claudehub.proxy.usage import UsageStore, day_string
from tests.fakes.upstream import FakeAnthropic

from .conftest import REAL_KEY, SECRET, StartProxy, message_body, token

LEARNERS = ("alice", "bob")
PROMPT = "Say hello."


def cli(
    *args: str, stdin: str | None = None, db_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI; ``db_url`` goes in the environment, as the chart's pod has it."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDEHUB_")}
    if db_url is not None:
        environ[env.KEYPROXY_DB_URL] = db_url
    return subprocess.run(
        [sys.executable, "-m", "claudehub.proxy.app", *args],
        input=stdin,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _counts(url: str) -> dict[str, int]:
    store = UsageStore(url)
    try:
        store._ensure_schema()
        with store.engine.connect() as conn:
            return {
                t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in TABLES
            }
    finally:
        store.close()


async def _use(proxy: KeyProxy) -> list[str]:
    """Requests by two learners (streamed and not) and a forged token; the tokens used."""
    used = [token(user) for user in LEARNERS]
    forged = mint_token(b"not-the-secret", "carol")
    async with aiohttp.ClientSession() as http:
        for tok in used:
            for stream in (False, True):
                async with http.post(
                    f"{proxy.url}/v1/messages",
                    json=message_body(stream=stream),
                    headers={"x-api-key": tok},
                ) as r:
                    assert r.status == 200
                    await r.read()
        async with http.post(
            f"{proxy.url}/v1/messages", json=message_body(), headers={"x-api-key": forged}
        ) as r:
            assert r.status == 401
    await proxy.recorder.flush()
    await proxy.audit.flush()
    return [*used, forged]


async def _round_trip(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, tmp_path: Path, target: str
) -> None:
    source = f"sqlite:///{tmp_path / 'source.sqlite'}"
    proxy = await start_proxy(
        fake_upstream.url, db_url=source, limits=Limits(daily_token_budget=10**6)
    )
    tokens = await _use(proxy)
    spent = {user: proxy.limits.used_today(user) for user in LEARNERS}
    assert all(spent.values())
    today = day_string(proxy.limits.wallclock())
    usage = await proxy.recorder.run_in_db(proxy.store.summary, today, today)
    audit = await proxy.audit.query()
    assert [e["action"] for e in audit] == ["token.forged"]

    backup = tmp_path / "usage.json"
    done = cli("export-usage", f"--db-url={source}", f"--output={backup}")
    assert done.returncode == 0, done.stderr
    text = backup.read_text()
    doc = json.loads(text)
    assert doc["format"] == FORMAT and doc["version"] == 1
    assert set(doc["tables"]) == {
        "claudehub_keyproxy_usage",
        "claudehub_keyproxy_daily",
        "claudehub_audit",
    }  # not the replicas' heartbeats
    assert len(doc["tables"]["claudehub_keyproxy_daily"]) == 2
    for secret in [
        *tokens,
        *(t.split(".")[2] for t in tokens),
        REAL_KEY,
        SECRET.decode(),
        PROMPT,
        "sk-ant",
    ]:
        assert secret not in text, secret

    done = cli("import-usage", f"--db-url={target}", f"--input={backup}")
    assert done.returncode == 0, done.stderr
    restored = await start_proxy(
        fake_upstream.url, db_url=target, limits=Limits(daily_token_budget=10**6)
    )
    # the budgets read back at start-up are what was spent
    assert {user: restored.limits.used_today(user) for user in LEARNERS} == spent
    assert await restored.recorder.run_in_db(restored.store.summary, today, today) == usage
    assert await restored.audit.query() == audit
    # and the restored database takes new usage on top
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{restored.url}/v1/messages", json=message_body(), headers={"x-api-key": token()}
        ) as r:
            assert r.status == 200
            await r.read()
    await restored.recorder.flush()
    assert restored.limits.used_today("alice") > spent["alice"]


@pytest.mark.asyncio
async def test_sqlite_to_sqlite_keeps_budgets_usage_and_audit(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, tmp_path: Path
) -> None:
    await _round_trip(fake_upstream, start_proxy, tmp_path, f"sqlite:///{tmp_path}/restored.sqlite")


def fresh_database(server_url: str) -> str:
    """A new, empty database on the server at ``server_url``; its URL."""
    name = f"restore_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.asyncio
async def test_sqlite_to_postgresql_keeps_budgets_usage_and_audit(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, tmp_path: Path, postgres_url: str
) -> None:
    await _round_trip(fake_upstream, start_proxy, tmp_path, fresh_database(postgres_url))


@pytest.mark.asyncio
async def test_stdout_stdin_and_the_merge_rule(
    fake_upstream: FakeAnthropic, start_proxy: StartProxy, tmp_path: Path
) -> None:
    source = f"sqlite:///{tmp_path / 'source.sqlite'}"
    await _use(await start_proxy(fake_upstream.url, db_url=source))
    # as in the pod: the key proxy's own default, from its environment
    exported = cli("export-usage", "--output", "-", db_url=source)
    assert exported.returncode == 0, exported.stderr
    target = f"sqlite:///{tmp_path / 'target.sqlite'}"
    done = cli("import-usage", f"--db-url={target}", "--input", "-", stdin=exported.stdout)
    assert done.returncode == 0, done.stderr
    counts = _counts(source)
    assert _counts(target) == counts
    # again: the database now holds usage, so it is refused, and left as it was
    again = cli("import-usage", f"--db-url={target}", "--input", "-", stdin=exported.stdout)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        "import refused: the database already holds usage (claudehub_keyproxy_usage: "
        f"{counts['claudehub_keyproxy_usage']} rows): restore into an empty one, or pass "
        "--replace to replace it"
    ]
    replaced = cli(
        "import-usage", f"--db-url={target}", "--input", "-", "--replace", stdin=exported.stdout
    )
    assert replaced.returncode == 0, replaced.stderr
    assert _counts(target) == counts  # replaced whole, not added twice


def _backup() -> str:
    row = {
        "ts": 1_800_000_000.0,
        "day": "2027-01-15",
        "user": "alice",
        "server": "",
        "model": "claude-sonnet-4-5",
        "path": "/v1/messages",
        "status": 200,
        "stream": True,
        "requests": 2,
        "input_tokens": 10,
        "output_tokens": 20,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "latency_ms_sum": 5.0,
        "latency_ms_max": 3.0,
        "ttfb_ms_sum": 1.0,
    }
    daily = {
        "day": "2027-01-15",
        "user": "alice",
        "requests": 2,
        "input_tokens": 10,
        "output_tokens": 20,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    event = {
        "ts": 1_800_000_000.0,
        "action": "key.rotate",
        "actor": "operator (key file)",
        "actor_kind": "operator",
        "target": "",
        "source": "",
        "detail": "{}",
    }
    doc = {
        "format": FORMAT,
        "version": 1,
        "tables": {
            "claudehub_keyproxy_usage": [row],
            "claudehub_keyproxy_daily": [daily, {**daily, "user": "bob"}],
            "claudehub_audit": [event],
        },
    }
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: t[: len(t) // 2], "import refused: not a usage backup: not JSON"),
        (
            lambda t: t.replace(FORMAT, "claudehub-progress-backup"),
            "import refused: not a usage backup (format is not 'claudehub-keyproxy-usage-backup')",
        ),
        (
            lambda t: t.replace('"version": 1', '"version": 2'),
            "import refused: backup format version 2 is not supported (this key proxy reads 1)",
        ),
        (
            lambda t: t.replace('"user": "bob"', '"user": "alice"'),
            "import refused: usage backup violates a constraint: UNIQUE constraint failed",
        ),
        (
            lambda t: t.replace('"stream": true', '"stream": "yes"'),
            "import refused: claudehub_keyproxy_usage row 0: bad value for stream",
        ),
        (
            lambda t: t.replace('"claudehub_audit"', '"claudehub_keyproxy_replicas"'),
            "import refused: usage backup has an unknown table 'claudehub_keyproxy_replicas'",
        ),
    ],
    ids=["truncated", "other-kind", "newer-version", "constraint", "type", "unknown-table"],
)
def test_bad_backups_are_refused_and_nothing_is_half_imported(
    tmp_path: Path, mangle: Any, message: str
) -> None:
    target = f"sqlite:///{tmp_path / 'usage.sqlite'}"
    text = _backup()
    good = cli("import-usage", f"--db-url={target}", "--input=-", stdin=text)
    assert good.returncode == 0, good.stderr
    before = _counts(target)
    assert before == {
        "claudehub_keyproxy_usage": 1,
        "claudehub_keyproxy_daily": 2,
        "claudehub_audit": 1,
    }
    bad = tmp_path / "bad.json"
    bad.write_text(mangle(text))
    # even with --replace (which deletes first, in the same transaction): all or nothing
    refused = cli("import-usage", f"--db-url={target}", f"--input={bad}", "--replace")
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert _counts(target) == before


def test_a_constraint_violation_rolls_back_on_a_fresh_database(tmp_path: Path) -> None:
    store = UsageStore(f"sqlite:///{tmp_path / 'usage.sqlite'}")
    doc = parse_backup(_backup().replace('"user": "bob"', '"user": "alice"'))
    try:
        with pytest.raises(BackupError, match="violates a constraint"):
            import_backup(store, doc)
    finally:
        store.close()
    assert set(_counts(f"sqlite:///{tmp_path / 'usage.sqlite'}").values()) == {0}


def test_a_column_with_a_default_may_be_left_out(tmp_path: Path) -> None:
    doc = json.loads(_backup())
    del doc["tables"]["claudehub_keyproxy_usage"][0]["ttfb_ms_sum"]
    del doc["tables"]["claudehub_keyproxy_daily"][1]["requests"]
    store = UsageStore(f"sqlite:///{tmp_path / 'usage.sqlite'}")
    try:
        import_backup(store, parse_backup(json.dumps(doc)))
        assert store.daily_totals("2027-01-15") == {"alice": [10, 20, 0, 0], "bob": [10, 20, 0, 0]}
        with store.engine.connect() as conn:
            requests = conn.execute(
                sa.text("SELECT user, requests FROM claudehub_keyproxy_daily ORDER BY user")
            ).all()
        assert [tuple(r) for r in requests] == [("alice", 2), ("bob", 0)]
    finally:
        store.close()


@pytest.mark.parametrize("command", ["export-usage", "import-usage"])
def test_help_names_the_key_proxys_database_setting(command: str) -> None:
    done = cli(command, "--help")
    assert done.returncode == 0, done.stderr
    assert "--KeyProxyApp.db_url" in done.stdout
