"""``claudehub-progress export`` / ``import``: a restored hub shows every learner where they were.

Real databases (SQLite files, a PostgreSQL server for the ``postgres`` ones), the real CLI in
a subprocess, and the real service app started on the restored database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select

from claudehub.contract import env
from claudehub.progress.backup import FORMAT, BackupError, import_backup, parse_backup
from claudehub.progress.store import CompletionRow, QuizResultRow, make_engine
from tests.helpers import postgres_server

from .conftest import FakeHubAPI, RunningService, ServiceFactory

CATALOGUE_COURSE = "papers--bitcoin--core"
COURSES = ("t101", CATALOGUE_COURSE)
LEARNERS = {"tok-alice": "alice", "tok-bob": "bob", "tok-dan": "dan"}
#: what must never be in a backup: tokens, the answers given, the courses' answers
NEVER = [
    *LEARNERS,
    "Frequent pairs",
    "A ledger is a record of transactions.",
    "The nonce makes the hash meet the target.",
    '"answer"',
    "correctAnswer",
    "explanation",
]


def cli(
    *args: str, stdin: str | None = None, db_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI; ``db_url`` goes in the environment, as the chart's pod has it."""
    environ = {k: v for k, v in os.environ.items() if k != env.PROGRESS_DB_URL}
    if db_url is not None:
        environ[env.PROGRESS_DB_URL] = db_url
    return subprocess.run(
        [sys.executable, "-m", "claudehub.progress.app", *args],
        input=stdin,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def learners(fake_hub_api: FakeHubAPI) -> FakeHubAPI:
    for token, name in LEARNERS.items():
        fake_hub_api.add_user(token, name)
    return fake_hub_api


async def _learn(svc: RunningService) -> None:
    """Progress of every kind: quiz passes after a wrong try, tutor completions, a course."""
    alice, bob = svc.client("tok-alice"), svc.client("tok-bob")
    await alice.answer("t101", "q1", "1")
    await alice.answer("t101", "q1", "Frequent pairs")
    await alice.tutor_completion("t101", 2)
    await bob.answer(CATALOGUE_COURSE, "ledger", "1")
    await bob.answer(CATALOGUE_COURSE, "ledger", "2")
    await bob.tutor_completion("t101", 1)
    await bob.tutor_completion("t101", None)


async def _where(svc: RunningService) -> dict[str, Any]:
    """Every learner's progress in every course, as the API answers it (but ``version``, the
    process's change counter for live updates, which any restart resets)."""
    where: dict[str, Any] = {}
    for token, name in LEARNERS.items():
        for course in COURSES:
            view = await svc.client(token).progress(course)
            assert isinstance(view.pop("version"), int)
            where.setdefault(name, {})[course] = view
    return where


def _counts(url: str) -> tuple[int, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return (
                conn.execute(select(func.count()).select_from(CompletionRow)).scalar_one(),
                conn.execute(select(func.count()).select_from(QuizResultRow)).scalar_one(),
            )
    finally:
        engine.dispose()


async def _round_trip(start_service: ServiceFactory, tmp_path: Path, target: str) -> None:
    source = f"sqlite:///{tmp_path / 'source.sqlite'}"
    svc = await start_service(db_url=source)
    await _learn(svc)
    before = await _where(svc)
    assert before["alice"]["t101"]["completed_stages"] == [1, 2]
    await svc.app.stop_async()

    backup = tmp_path / "progress.json"
    done = cli("export", f"--db-url={source}", f"--output={backup}")
    assert done.returncode == 0, done.stderr
    text = backup.read_text()
    doc = json.loads(text)
    assert doc["format"] == FORMAT and doc["version"] == 1 and doc["revision"] == "0002"
    counts = (len(doc["tables"]["completions"]), len(doc["tables"]["quiz_results"]))
    assert counts == _counts(source) == (4, 2)
    for secret in NEVER:
        assert secret not in text, secret

    done = cli("import", f"--db-url={target}", f"--input={backup}")
    assert done.returncode == 0, done.stderr
    restored = await start_service(db_url=target)
    assert await _where(restored) == before
    # the restored database takes new progress (no id or sequence left behind)
    await restored.client("tok-dan").answer("t101", "q1", "Frequent pairs")
    assert (await restored.client("tok-dan").progress("t101"))["completed_stages"] == [1]


@pytest.mark.asyncio
async def test_sqlite_to_sqlite_restores_every_learner(
    start_service: ServiceFactory, learners: FakeHubAPI, tmp_path: Path
) -> None:
    await _round_trip(start_service, tmp_path, f"sqlite:///{tmp_path / 'restored.sqlite'}")


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def fresh_database(server_url: str) -> str:
    """A new, empty database on the server at ``server_url``; its SQLAlchemy URL."""
    name = f"restore_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = server_url.rsplit("/", 1)[0]
    return base.replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_sqlite_to_postgresql_restores_every_learner(
    start_service: ServiceFactory, learners: FakeHubAPI, tmp_path: Path, postgres: str
) -> None:
    await _round_trip(start_service, tmp_path, fresh_database(postgres))


@pytest.mark.asyncio
async def test_stdout_and_stdin_and_the_merge_rule(
    start_service: ServiceFactory, learners: FakeHubAPI, tmp_path: Path
) -> None:
    source = f"sqlite:///{tmp_path / 'source.sqlite'}"
    svc = await start_service(db_url=source)
    await _learn(svc)
    before = await _where(svc)
    await svc.app.stop_async()
    # as in the pod: the service's own default, from its environment
    exported = cli("export", "--output=-", db_url=source)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["format"] == FORMAT

    # a database that holds progress: refused without --replace, and left as it was
    target = f"sqlite:///{tmp_path / 'target.sqlite'}"
    other = await start_service(db_url=target)
    await other.client("tok-dan").answer("t101", "q1", "Frequent pairs")
    await other.app.stop_async()
    refused = cli("import", f"--db-url={target}", "--input=-", stdin=exported.stdout)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "import refused: the database already holds progress (completions: 1 rows): "
        "restore into an empty one, or pass --replace to replace it"
    ]
    assert _counts(target) == (1, 1)
    # --replace: the backup wins whole
    done = cli("import", f"--db-url={target}", "--input=-", "--replace", stdin=exported.stdout)
    assert done.returncode == 0, done.stderr
    assert _counts(target) == _counts(source) == (4, 2)
    restored = await start_service(db_url=target)
    assert await _where(restored) == before


def _backup(tmp_path: Path) -> tuple[str, str]:
    """A backup of two completions and a quiz result, and the SQLite URL it came from."""
    url = f"sqlite:///{tmp_path / 'made.sqlite'}"
    doc = {
        "format": FORMAT,
        "version": 1,
        "revision": "0001",
        "tables": {
            "completions": [
                {
                    "user": "alice",
                    "course_id": "t101",
                    "stage": stage,
                    "method": "tutor",
                    "completed_at": "2026-01-02T03:04:05+00:00",
                    "quiz_at": None,
                    "tutor_at": "2026-01-02T03:04:05+00:00",
                }
                for stage in (1, 2)
            ],
            "quiz_results": [
                {
                    "user": "alice",
                    "course_id": "t101",
                    "quiz_id": "q1",
                    "stage": 1,
                    "attempts": 3,
                    "passed_at": None,
                    "last_attempt_at": "2026-01-02T03:04:05+00:00",
                }
            ],
        },
    }
    return json.dumps(doc), url


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: t[: len(t) // 2], "import refused: not a progress backup: not JSON"),
        (
            lambda t: t.replace(FORMAT, "claudehub-keyproxy-usage-backup"),
            "import refused: not a progress backup (format is not 'claudehub-progress-backup')",
        ),
        (
            lambda t: t.replace('"version": 1', '"version": 2'),
            "import refused: backup format version 2 is not supported (this service reads 1)",
        ),
        (
            lambda t: t.replace('"revision": "0001"', '"revision": "0099"'),
            "import refused: backup schema revision '0099' is unknown here",
        ),
        (
            lambda t: t.replace('"stage": 2', '"stage": 1'),
            "import refused: progress backup violates a constraint: UNIQUE constraint failed",
        ),
        (
            lambda t: t.replace('"attempts": 3', '"attempts": "3"'),
            "import refused: quiz_results row 0: bad value for attempts",
        ),
        (lambda t: "[]", "import refused: not a progress backup (format is not"),
    ],
    ids=[
        "truncated",
        "other-kind",
        "newer-version",
        "newer-revision",
        "constraint",
        "type",
        "list",
    ],
)
def test_bad_backups_are_refused_and_nothing_is_half_imported(
    tmp_path: Path, mangle: Any, message: str
) -> None:
    text, target = _backup(tmp_path)
    good = cli("import", f"--db-url={target}", "--input=-", stdin=text)
    assert good.returncode == 0, good.stderr
    assert _counts(target) == (2, 1)
    bad = tmp_path / "bad.json"
    bad.write_text(mangle(text))
    # even with --replace (which deletes first, in the same transaction): all or nothing
    refused = cli("import", f"--db-url={target}", f"--input={bad}", "--replace")
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert _counts(target) == (2, 1)


def test_a_constraint_violation_rolls_back_on_a_fresh_database(tmp_path: Path) -> None:
    text, target = _backup(tmp_path)
    doc = parse_backup(text.replace('"stage": 2', '"stage": 1'))
    engine = make_engine(target)
    try:
        with pytest.raises(BackupError, match="violates a constraint"):
            import_backup(engine, doc)
    finally:
        engine.dispose()
    assert _counts(target) == (0, 0)  # migrated, and empty


@pytest.mark.parametrize("command", ["export", "import"])
def test_help_names_the_services_database_setting(command: str) -> None:
    done = cli(command, "--help")
    assert done.returncode == 0, done.stderr
    assert "--ProgressService.db_url" in done.stdout
