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

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Boolean, DateTime, Engine, Float, Integer, String, Table, delete, exc, func
from sqlalchemy import select as sa_select
from traitlets import Bool, Unicode
from traitlets.config import Application

from .app import ProgressService
from .store import Base, _migrations_dir, make_engine, migrate

FORMAT = "claudehub-progress-backup"
FORMAT_VERSION = 1


class BackupError(Exception):
    """A backup that cannot be read or restored; the message is one line naming why."""


def _tables() -> list[Table]:
    return [t for t in Base.metadata.sorted_tables if t.name != "alembic_version"]


def _revisions() -> ScriptDirectory:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_migrations_dir()))
    return ScriptDirectory.from_config(cfg)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # SQLite hands back naive datetimes; all stored are UTC
            value = value.replace(tzinfo=UTC)
        return value.isoformat()
    return value


def export_backup(engine: Engine) -> dict[str, Any]:
    """Every progress row of the database behind ``engine``, as a backup document."""
    tables: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
        for table in _tables():
            cols = [c for c in table.columns if not c.primary_key]
            pk = list(table.primary_key.columns)
            rows = conn.execute(sa_select(*cols).order_by(*pk))
            tables[table.name] = [
                {c.name: _json_value(v) for c, v in zip(cols, row, strict=True)} for row in rows
            ]
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "revision": revision,
        "exported_at": datetime.now(UTC).isoformat(),
        "tables": tables,
    }


def parse_backup(text: str) -> dict[str, Any]:
    """The backup document in ``text``, its kind, version and revision checked."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise BackupError(f"not a progress backup: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BackupError(f"not a progress backup (format is not {FORMAT!r})")
    version = doc.get("version")
    if version != FORMAT_VERSION:
        raise BackupError(
            f"backup format version {version!r} is not supported (this service reads "
            f"{FORMAT_VERSION})"
        )
    revision = doc.get("revision")
    scripts = _revisions()
    known = {r.revision for r in scripts.walk_revisions()}
    if revision is not None and revision not in known:
        raise BackupError(
            f"backup schema revision {revision!r} is unknown here (newer than this service's "
            f"{scripts.get_current_head()!r}?): restore it with the version that wrote it"
        )
    if not isinstance(doc.get("tables"), dict):
        raise BackupError("progress backup has no 'tables' object")
    return doc


def _coerce(table: Table, index: int, row: Any) -> dict[str, Any]:
    where = f"{table.name} row {index}"
    if not isinstance(row, dict):
        raise BackupError(f"{where}: not an object")
    columns = {c.name: c for c in table.columns if not c.primary_key}
    unknown = set(row) - set(columns)
    if unknown:
        raise BackupError(f"{where}: unknown column {sorted(unknown)[0]!r}")
    values: dict[str, Any] = {}
    for name, col in columns.items():
        value = row.get(name)
        if value is None:
            if not col.nullable:
                raise BackupError(f"{where}: {name} is missing")
            values[name] = None
            continue
        kind = col.type
        ok: bool
        if isinstance(kind, DateTime):
            try:
                value = datetime.fromisoformat(value) if isinstance(value, str) else None
            except ValueError:
                value = None
            ok = value is not None
        elif isinstance(kind, Boolean):
            ok = isinstance(value, bool)
        elif isinstance(kind, Integer):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(kind, Float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif isinstance(kind, String):
            ok = isinstance(value, str) and (kind.length is None or len(value) <= kind.length)
        else:  # pragma: no cover - a column type this module does not know yet
            ok = False
        if not ok:
            raise BackupError(f"{where}: bad value for {name}")
        values[name] = value
    return values


def import_backup(engine: Engine, doc: dict[str, Any], *, replace: bool = False) -> dict[str, int]:
    """Restore ``doc`` (see :func:`parse_backup`) into ``engine``'s database, migrated first,
    all or nothing; the rows written per table."""
    migrate(engine)
    tables = _tables()
    unknown = set(doc["tables"]) - {t.name for t in tables}
    if unknown:
        raise BackupError(f"progress backup has an unknown table {sorted(unknown)[0]!r}")
    rows = {
        t.name: [_coerce(t, i, r) for i, r in enumerate(_list(doc["tables"].get(t.name, []), t))]
        for t in tables
    }
    written: dict[str, int] = {}
    try:
        with engine.begin() as conn:
            for table in tables:
                count = conn.execute(sa_select(func.count()).select_from(table)).scalar_one()
                if count and not replace:
                    raise BackupError(
                        f"the database already holds progress ({table.name}: {count} rows): "
                        "restore into an empty one, or pass --replace to replace it"
                    )
            for table in reversed(tables):
                conn.execute(delete(table))
            for table in tables:
                if rows[table.name]:
                    conn.execute(table.insert(), rows[table.name])
                written[table.name] = len(rows[table.name])
    except exc.IntegrityError as e:
        reason = str(e.orig).splitlines()[0] if e.orig is not None else "constraint violated"
        raise BackupError(f"progress backup violates a constraint: {reason}") from None
    return written


def _list(value: Any, table: Table) -> list[Any]:
    if not isinstance(value, list):
        raise BackupError(f"progress backup's {table.name} is not a list")
    return value


def write_document(doc: dict[str, Any], output: str, stdout: TextIO) -> None:
    """Write ``doc`` to the file ``output`` ("-": ``stdout``); a file appears whole or not."""
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    if output == "-":
        stdout.write(text)
        stdout.flush()
        return
    path = Path(output)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def read_document(source: str, stdin: TextIO) -> str:
    """The text of the file ``source`` ("-": ``stdin``)."""
    if source == "-":
        return stdin.read()
    return Path(source).read_text(encoding="utf-8")


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
