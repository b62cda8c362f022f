"""``claudehub-progress export`` / ``import``: a backup of every learner's progress.

The backup is one JSON document: ``{"format": "claudehub-progress-backup", "version": 1,
"revision": <alembic revision>, "exported_at": ..., "tables": {table: [row, ...]}}`` with
every row of every progress table (completions, quiz results: attempts and when, never an
answer; the store holds none). Surrogate ids are left out: each row is identified by its
unique key (user, course, stage / quiz), so a restore never fights a database's sequences.

Import migrates the database to the newest revision first, refuses a file of another kind,
of an unknown format version or of a schema revision this service does not know (a newer
one), and writes everything in one transaction: a bad row leaves the database as it was.
The merge rule: a database that already holds progress is refused unless ``replace`` is
set, which deletes the existing rows in the same transaction (the backup wins whole; rows
are never merged one by one).
"""

from __future__ import annotations

import sys
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Table, exc
from traitlets import Bool, Unicode
from traitlets.config import Application

from claudehub.contract.backup import (
    BackupError,
    BackupFormat,
    export_rows,
    read_document,
    write_document,
)

from .app import ProgressService
from .store import Base, _migrations_dir, make_engine, migrate

#: The course service's backups (claudehub.contract.backup writes and restores them).
BACKUP = BackupFormat("claudehub-progress-backup", 1, what="progress", reader="service")
FORMAT = BACKUP.name
FORMAT_VERSION = BACKUP.version


def _tables() -> list[Table]:
    return [t for t in Base.metadata.sorted_tables if t.name != "alembic_version"]


def _revisions() -> ScriptDirectory:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_migrations_dir()))
    return ScriptDirectory.from_config(cfg)


def export_backup(engine: Engine) -> dict[str, Any]:
    """Every progress row of the database behind ``engine``, as a backup document."""
    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
        tables = export_rows(conn, _tables())
    return BACKUP.document(tables, revision=revision)


def parse_backup(text: str) -> dict[str, Any]:
    """The backup document in ``text``, its kind, version and revision checked."""
    doc = BACKUP.parse(text)
    revision = doc.get("revision")
    scripts = _revisions()
    known = {r.revision for r in scripts.walk_revisions()}
    if revision is not None and revision not in known:
        raise BackupError(
            f"backup schema revision {revision!r} is unknown here (newer than this service's "
            f"{scripts.get_current_head()!r}?): restore it with the version that wrote it"
        )
    return doc


def import_backup(engine: Engine, doc: dict[str, Any], *, replace: bool = False) -> dict[str, int]:
    """Restore ``doc`` (see :func:`parse_backup`) into ``engine``'s database, migrated first,
    all or nothing; the rows written per table."""
    migrate(engine)
    tables = _tables()
    return BACKUP.load(engine, tables, BACKUP.rows(doc, tables), replace=replace)


class _BackupApp(Application):
    """The database of the course service: its own ``db_url`` trait and default."""

    aliases = {"db-url": "ProgressService.db_url", "config": "ProgressService.config_file"}
    classes = [ProgressService]

    def db_url(self) -> str:
        service = ProgressService(config=self.config)
        if service.config_file:
            service.load_config_file(service.config_file)
            service.update_config(self.cli_config)
        return str(service.db_url)


class ExportApp(_BackupApp):
    """``claudehub-progress export --output FILE``."""

    name = "claudehub-progress export"
    description = """Write every learner's progress (completions, quiz attempts) in the course
    service's database to FILE ("-": standard output) as one versioned JSON document."""
    examples = "claudehub-progress export --output progress-backup.json"

    output = Unicode("-", help='Where to write the backup ("-": standard output).').tag(config=True)
    aliases = {**_BackupApp.aliases, "output": "ExportApp.output"}

    def start(self) -> None:
        engine = make_engine(self.db_url())
        try:
            doc = export_backup(engine)
        except exc.SQLAlchemyError as e:
            sys.exit(f"export failed: {type(e).__name__}: {str(e).splitlines()[0]}")
        finally:
            engine.dispose()
        write_document(doc, self.output, sys.stdout)
        counts = ", ".join(f"{n}: {len(r)}" for n, r in doc["tables"].items())
        print(f"exported progress ({counts})", file=sys.stderr)


class ImportApp(_BackupApp):
    """``claudehub-progress import --input FILE [--replace]``."""

    name = "claudehub-progress import"
    description = """Restore a backup written by `claudehub-progress export` into the course
    service's database (migrated first), all or nothing. A database already holding progress
    is refused unless --replace (which replaces it whole)."""
    examples = "claudehub-progress import --input progress-backup.json"

    input = Unicode("-", help='The backup to read ("-": standard input).').tag(config=True)
    replace = Bool(
        False, help="Replace the progress a database already holds (else it is refused)."
    ).tag(config=True)
    aliases = {**_BackupApp.aliases, "input": "ImportApp.input"}
    flags = {"replace": ({"ImportApp": {"replace": True}}, "Replace the progress already there.")}

    def start(self) -> None:
        try:
            doc = parse_backup(read_document(self.input, sys.stdin))
        except (OSError, UnicodeDecodeError, BackupError) as e:
            sys.exit(f"import refused: {e}")
        engine = make_engine(self.db_url())
        try:
            written = import_backup(engine, doc, replace=self.replace)
        except BackupError as e:
            sys.exit(f"import refused: {e}")
        except exc.SQLAlchemyError as e:
            sys.exit(f"import failed: {type(e).__name__}: {str(e).splitlines()[0]}")
        finally:
            engine.dispose()
        counts = ", ".join(f"{n}: {c}" for n, c in written.items())
        print(f"imported progress ({counts})", file=sys.stderr)
