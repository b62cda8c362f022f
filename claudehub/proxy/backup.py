"""``claudehub-keyproxy export-usage`` / ``import-usage``: a backup of usage and the audit log.

The backup is one JSON document: ``{"format": "claudehub-keyproxy-usage-backup", "version":
1, "exported_at": ..., "tables": {table: [row, ...]}}`` holding every row of the usage table,
the per-user daily totals (what budgets are read back from at start-up, so today's budgets
survive a restore) and the audit log. The replicas table is left out: it only says which key
proxies synced in the last seconds, and is rebuilt by the first sync. Surrogate ids are left
out too (rows go back in their order), so a restore never fights a database's sequences.
The tables hold no key, token or prompt (usage is counts; audit events are checked by
:func:`claudehub.contract.audit.check_event`, which refuses a value that looks secret).

Import creates the tables when missing, refuses a file of another kind or of an unknown
format version with one line naming it, and writes everything in one transaction: a bad row
leaves the database as it was. The merge rule: a database already holding usage or audit
rows is refused unless ``replace`` is set, which deletes them in the same transaction.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa

from claudehub.proxy.audit import audit_table
from claudehub.proxy.usage import UsageStore, daily_table, usage_table

FORMAT = "claudehub-keyproxy-usage-backup"
FORMAT_VERSION = 1
#: What a backup holds, in the order it is written (the replicas table is transient).
TABLES = (usage_table, daily_table, audit_table)


class BackupError(Exception):
    """A backup that cannot be read or restored; the message is one line naming why."""


def _columns(table: sa.Table) -> list[sa.Column[Any]]:
    # a single integer primary key is a surrogate id; daily's (day, user) is data
    pk = list(table.primary_key.columns)
    surrogate = {"id"} if [c.name for c in pk] == ["id"] else set()
    return [c for c in table.columns if c.name not in surrogate]


def export_backup(store: UsageStore) -> dict[str, Any]:
    """Every usage, daily and audit row of ``store``'s database, as a backup document."""
    store._ensure_schema()
    tables: dict[str, list[dict[str, Any]]] = {}
    with store.engine.connect() as conn:
        for table in TABLES:
            cols = _columns(table)
            rows = conn.execute(sa.select(*cols).order_by(*table.primary_key.columns))
            tables[table.name] = [
                {c.name: v for c, v in zip(cols, row, strict=True)} for row in rows
            ]
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "exported_at": datetime.now(UTC).isoformat(),
        "tables": tables,
    }


def parse_backup(text: str) -> dict[str, Any]:
    """The backup document in ``text``, its kind and version checked."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise BackupError(f"not a usage backup: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BackupError(f"not a usage backup (format is not {FORMAT!r})")
    version = doc.get("version")
    if version != FORMAT_VERSION:
        raise BackupError(
            f"backup format version {version!r} is not supported (this key proxy reads "
            f"{FORMAT_VERSION})"
        )
    if not isinstance(doc.get("tables"), dict):
        raise BackupError("usage backup has no 'tables' object")
    known = {t.name for t in TABLES}
    unknown = set(doc["tables"]) - known
    if unknown:
        raise BackupError(f"usage backup has an unknown table {sorted(unknown)[0]!r}")
    return doc


def _ok(kind: Any, value: Any) -> bool:
    if isinstance(kind, sa.Boolean):
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if isinstance(kind, sa.Integer):
        return isinstance(value, int)
    if isinstance(kind, sa.Float):
        return isinstance(value, int | float)
    if isinstance(kind, sa.String):  # Text too
        return isinstance(value, str) and (kind.length is None or len(value) <= kind.length)
    return False  # pragma: no cover - a column type this module does not know yet


def _coerce(table: sa.Table, index: int, row: Any) -> dict[str, Any]:
    where = f"{table.name} row {index}"
    if not isinstance(row, dict):
        raise BackupError(f"{where}: not an object")
    columns = {c.name: c for c in _columns(table)}
    unknown = set(row) - set(columns)
    if unknown:
        raise BackupError(f"{where}: unknown column {sorted(unknown)[0]!r}")
    values: dict[str, Any] = {}
    for name, col in columns.items():
        value = row.get(name)
        if value is None:
            default = getattr(col.default, "arg", None)
            if default is not None and not callable(default) and not col.primary_key:
                values[name] = default  # every row names every column (one executemany)
                continue
            raise BackupError(f"{where}: {name} is missing")
        if not _ok(col.type, value):
            raise BackupError(f"{where}: bad value for {name}")
        values[name] = value
    return values


def import_backup(
    store: UsageStore, doc: dict[str, Any], *, replace: bool = False
) -> dict[str, int]:
    """Restore ``doc`` (see :func:`parse_backup`) into ``store``'s database, all or nothing;
    the rows written per table."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for table in TABLES:
        given = doc["tables"].get(table.name, [])
        if not isinstance(given, list):
            raise BackupError(f"usage backup's {table.name} is not a list")
        rows[table.name] = [_coerce(table, i, r) for i, r in enumerate(given)]
    store._ensure_schema()
    written: dict[str, int] = {}
    try:
        with store.engine.begin() as conn:
            for table in TABLES:
                count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                if count and not replace:
                    raise BackupError(
                        f"the database already holds usage ({table.name}: {count} rows): "
                        "restore into an empty one, or pass --replace to replace it"
                    )
                conn.execute(table.delete())
            for table in TABLES:
                if rows[table.name]:
                    conn.execute(table.insert(), rows[table.name])
                written[table.name] = len(rows[table.name])
    except sa.exc.IntegrityError as e:
        reason = str(e.orig).splitlines()[0] if e.orig is not None else "constraint violated"
        raise BackupError(f"usage backup violates a constraint: {reason}") from None
    return written


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
