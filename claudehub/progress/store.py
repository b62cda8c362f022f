"""The progress store: SQLAlchemy 2 over SQLite (default, WAL) or PostgreSQL.

Writes are single-statement upserts on unique keys (``INSERT .. ON CONFLICT``), so
concurrent writers can neither lose a completion nor create a duplicate. The
synchronous engine runs in a private thread pool (one thread for SQLite, which
serialises writers anyway) so the event loop never blocks on the database.
Schema changes are alembic migrations, applied at start-up by :meth:`Store.open`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    DateTime,
    Engine,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    case,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

log = logging.getLogger(__name__)
T = TypeVar("T")

METHODS = ("quiz", "tutor")
#: the stage number recording "[DUNGEON_COMPLETE]" (the whole course, by the tutor)
COURSE_STAGE = 0


class Base(DeclarativeBase):
    pass


class CompletionRow(Base):
    __tablename__ = "completions"
    __table_args__ = (
        UniqueConstraint("user", "course_id", "stage", name="uq_completion_user_course_stage"),
        Index("ix_completions_user_course", "user", "course_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(String(255))
    course_id: Mapped[str] = mapped_column(String(255))
    stage: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(16))
    completed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    quiz_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    tutor_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class QuizResultRow(Base):
    __tablename__ = "quiz_results"
    __table_args__ = (
        UniqueConstraint("user", "course_id", "quiz_id", name="uq_quiz_user_course_quiz"),
        Index("ix_quiz_results_user_course", "user", "course_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(String(255))
    course_id: Mapped[str] = mapped_column(String(255))
    quiz_id: Mapped[str] = mapped_column(String(255))
    stage: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    passed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PublicationRow(Base):
    """A course published from a draft (course authoring): its newest version and the
    classes that see it. Earlier versions are tags of the managed repository."""

    __tablename__ = "published_courses"
    course_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    draft_id: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(Integer)
    commit: Mapped[str] = mapped_column(String(64))
    folder: Mapped[str] = mapped_column(String(255))
    #: a JSON array of class (hub group) names
    classes: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Publication:
    """A published course's newest version: who published it from which draft, its commit
    in the managed repository, its course folder there and the classes that see it."""

    course_id: str
    draft_id: str
    owner: str
    version: int
    commit: str
    folder: str
    classes: tuple[str, ...]
    published_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "course": self.course_id,
            "version": self.version,
            "commit": self.commit,
            "classes": list(self.classes),
            "published_at": _iso(self.published_at),
        }


@dataclass(frozen=True)
class Completion:
    """A stage completion. ``method`` is "quiz" once the quiz was passed, else "tutor"."""

    user: str
    course_id: str
    stage: int
    method: str
    completed_at: datetime
    quiz_at: datetime | None
    tutor_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "course_id": self.course_id,
            "stage": self.stage,
            "method": self.method,
            "completed_at": _iso(self.completed_at),
            "quiz_at": _iso(self.quiz_at),
            "tutor_at": _iso(self.tutor_at),
        }


@dataclass(frozen=True)
class QuizResult:
    quiz_id: str
    stage: int
    attempts: int
    passed_at: datetime | None


@dataclass(frozen=True)
class QuizRecord:
    """A quiz result with whose it is and when it was last answered (the class page)."""

    user: str
    course_id: str
    result: QuizResult
    last_attempt_at: datetime


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything stored is UTC
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _now() -> datetime:
    return datetime.now(UTC)


def _migrations_dir() -> Path:
    return Path(__file__).with_name("migrations")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest alembic revision."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_migrations_dir()))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=True
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_size=4, max_overflow=4, pool_pre_ping=True)


class Store:
    """Progress persistence. Use :meth:`open`; all public methods are async."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        workers = 1 if self.dialect == "sqlite" else 4
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="progress-db")

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect to ``url`` and run migrations."""
        store = cls(make_engine(url))
        await store._run(migrate, store.engine)
        return store

    async def close(self) -> None:
        await self._run(self.engine.dispose)
        self._pool.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    def _insert(self) -> Any:
        return postgresql.insert if self.dialect == "postgresql" else sqlite.insert

    # -- writes ----------------------------------------------------------

    def _complete_sync(self, user: str, course_id: str, stage: int, method: str) -> Completion:
        if method not in METHODS:
            raise ValueError(f"unknown completion method {method!r}")
        now = _now()
        table = CompletionRow.__table__
        values = {
            "user": user,
            "course_id": course_id,
            "stage": stage,
            "method": method,
            "completed_at": now,
            "quiz_at": now if method == "quiz" else None,
            "tutor_at": now if method == "tutor" else None,
        }
        stmt = self._insert()(table).values(**values)
        ex = stmt.excluded
        if method == "quiz":
            # a quiz pass upgrades a tutor-only completion; it never downgrades
            update = {
                "method": "quiz",
                "completed_at": case(
                    (table.c.method == "quiz", table.c.completed_at), else_=ex.completed_at
                ),
                "quiz_at": func.coalesce(table.c.quiz_at, ex.quiz_at),
            }
        else:
            update = {"tutor_at": func.coalesce(table.c.tutor_at, ex.tutor_at)}
        stmt = stmt.on_conflict_do_update(
            index_elements=["user", "course_id", "stage"], set_=update
        )
        with Session(self.engine) as session, session.begin():
            session.execute(stmt)
            row = session.execute(
                select(CompletionRow).where(
                    CompletionRow.user == user,
                    CompletionRow.course_id == course_id,
                    CompletionRow.stage == stage,
                )
            ).scalar_one()
            return _completion(row)

    async def complete(self, user: str, course_id: str, stage: int, method: str) -> Completion:
        """Record that ``user`` completed ``stage`` by ``method`` (idempotent)."""
        return await self._run(self._complete_sync, user, course_id, stage, method)

    def _quiz_attempt_sync(
        self, user: str, course_id: str, quiz_id: str, stage: int, correct: bool
    ) -> QuizResult:
        now = _now()
        table = QuizResultRow.__table__
        stmt = self._insert()(table).values(
            user=user,
            course_id=course_id,
            quiz_id=quiz_id,
            stage=stage,
            attempts=1,
            passed_at=now if correct else None,
            last_attempt_at=now,
        )
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["user", "course_id", "quiz_id"],
            set_={
                "attempts": table.c.attempts + 1,
                "passed_at": func.coalesce(table.c.passed_at, ex.passed_at),
                "last_attempt_at": ex.last_attempt_at,
            },
        )
        with Session(self.engine) as session, session.begin():
            session.execute(stmt)
            row = session.execute(
                select(QuizResultRow).where(
                    QuizResultRow.user == user,
                    QuizResultRow.course_id == course_id,
                    QuizResultRow.quiz_id == quiz_id,
                )
            ).scalar_one()
            return QuizResult(row.quiz_id, row.stage, row.attempts, _utc(row.passed_at))

    async def quiz_attempt(
        self, user: str, course_id: str, quiz_id: str, stage: int, correct: bool
    ) -> QuizResult:
        """Count one answer to a quiz; the first correct one sets ``passed_at``."""
        return await self._run(self._quiz_attempt_sync, user, course_id, quiz_id, stage, correct)

    # -- reads -----------------------------------------------------------

    def _completions_sync(self, user: str | None, course_id: str | None) -> list[Completion]:
        q = select(CompletionRow)
        if user is not None:
            q = q.where(CompletionRow.user == user)
        if course_id is not None:
            q = q.where(CompletionRow.course_id == course_id)
        q = q.order_by(CompletionRow.user, CompletionRow.course_id, CompletionRow.stage)
        with Session(self.engine) as session:
            return [_completion(r) for r in session.execute(q).scalars()]

    async def completions(
        self, user: str | None = None, course_id: str | None = None
    ) -> list[Completion]:
        """Completions, filtered by user and/or course (None = all)."""
        return await self._run(self._completions_sync, user, course_id)

    def _quiz_results_sync(self, user: str, course_id: str) -> dict[str, QuizResult]:
        q = select(QuizResultRow).where(
            QuizResultRow.user == user, QuizResultRow.course_id == course_id
        )
        with Session(self.engine) as session:
            return {
                r.quiz_id: QuizResult(r.quiz_id, r.stage, r.attempts, _utc(r.passed_at))
                for r in session.execute(q).scalars()
            }

    async def quiz_results(self, user: str, course_id: str) -> dict[str, QuizResult]:
        """Quiz id -> result for one user and course."""
        return await self._run(self._quiz_results_sync, user, course_id)

    def _class_rows_sync(self, users: list[str]) -> tuple[list[Completion], list[QuizRecord]]:
        completions: list[Completion] = []
        quizzes: list[QuizRecord] = []
        with Session(self.engine) as session:
            # in chunks: a class of hundreds stays under SQLite's bound-parameter limit
            for start in range(0, len(users), 500):
                chunk = users[start : start + 500]
                q = select(CompletionRow).where(CompletionRow.user.in_(chunk))
                completions += [_completion(r) for r in session.execute(q).scalars()]
                r = select(QuizResultRow).where(QuizResultRow.user.in_(chunk))
                for row in session.execute(r).scalars():
                    last = _utc(row.last_attempt_at)
                    assert last is not None
                    quizzes.append(
                        QuizRecord(
                            row.user,
                            row.course_id,
                            QuizResult(row.quiz_id, row.stage, row.attempts, _utc(row.passed_at)),
                            last,
                        )
                    )
        return completions, quizzes

    async def class_rows(self, users: list[str]) -> tuple[list[Completion], list[QuizRecord]]:
        """Every completion and quiz result of ``users`` (a class), in two queries."""
        return await self._run(self._class_rows_sync, list(users))

    # -- published courses (course authoring) -----------------------------

    def _publications_sync(self) -> list[Publication]:
        with Session(self.engine) as session:
            rows = session.execute(select(PublicationRow).order_by(PublicationRow.course_id))
            return [_publication(r) for r in rows.scalars()]

    async def publications(self) -> list[Publication]:
        """Every published course's newest version."""
        return await self._run(self._publications_sync)

    def _save_publication_sync(self, pub: Publication) -> None:
        values = {
            "course_id": pub.course_id,
            "draft_id": pub.draft_id,
            "owner": pub.owner,
            "version": pub.version,
            "commit": pub.commit,
            "folder": pub.folder,
            "classes": json.dumps(list(pub.classes)),
            "published_at": pub.published_at,
        }
        stmt = self._insert()(PublicationRow.__table__).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["course_id"],
            set_={k: v for k, v in values.items() if k != "course_id"},
        )
        with Session(self.engine) as session, session.begin():
            session.execute(stmt)

    async def save_publication(self, pub: Publication) -> None:
        """Record ``pub`` as its course's newest version (replacing the one before)."""
        await self._run(self._save_publication_sync, pub)


def _publication(row: PublicationRow) -> Publication:
    published_at = _utc(row.published_at)
    assert published_at is not None
    return Publication(
        course_id=row.course_id,
        draft_id=row.draft_id,
        owner=row.owner,
        version=row.version,
        commit=row.commit,
        folder=row.folder,
        classes=tuple(json.loads(row.classes)),
        published_at=published_at,
    )


def _completion(row: CompletionRow) -> Completion:
    completed_at = _utc(row.completed_at)
    assert completed_at is not None
    return Completion(
        user=row.user,
        course_id=row.course_id,
        stage=row.stage,
        method=row.method,
        completed_at=completed_at,
        quiz_at=_utc(row.quiz_at),
        tutor_at=_utc(row.tutor_at),
    )
