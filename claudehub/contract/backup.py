"""A service's tables as one versioned JSON backup: how both services write and restore theirs.

The course service (``claudehub-progress export``/``import``) and the key proxy
(``claudehub-keyproxy export-usage``/``import-usage``) write the same kind of document:
``{"format": <name>, "version": <n>, "exported_at": ..., "tables": {table: [row, ...]}}``
(plus what a service adds, e.g. its schema revision). A row holds every column but a single
integer ``id`` primary key (a surrogate: rows go back in their order, so a restore never
fights a database's sequences); datetimes are ISO 8601 in UTC.

A restore checks every row against its column (type, length, missing values) before it
writes anything, then writes all tables in one transaction: a database already holding rows
is refused unless ``replace`` is set, which deletes them in that same transaction; a bad row
or a violated constraint leaves the database as it was. Every refusal is a
:class:`BackupError` whose message is one line naming the table, row and column.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa


class BackupError(Exception):
    """A backup that cannot be read or restored; the message is one line naming why."""


def backup_columns(table: sa.Table) -> list[sa.Column[Any]]:
    """The columns a backup holds: all but a single integer ``id`` primary key."""
    pk = [c.name for c in table.primary_key.columns]
    surrogate = {"id"} if pk == ["id"] else set()
    return [c for c in table.columns if c.name not in surrogate]


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # SQLite hands back naive datetimes; all stored are UTC
            value = value.replace(tzinfo=UTC)
        return value.isoformat()
    return value


def export_rows(conn: sa.Connection, tables: Sequence[sa.Table]) -> dict[str, list[dict[str, Any]]]:
    """Every row of ``tables`` (in primary-key order), as a backup's ``tables`` object."""
    out: dict[str, list[dict[str, Any]]] = {}
    for table in tables:
        cols = backup_columns(table)
        rows = conn.execute(sa.select(*cols).order_by(*table.primary_key.columns))
        out[table.name] = [
            {c.name: _json_value(v) for c, v in zip(cols, row, strict=True)} for row in rows
        ]
    return out


def _checked(kind: Any, value: Any) -> tuple[bool, Any]:
    """Whether ``value`` (from JSON) fits a column of type ``kind``, and the value to store."""
    if isinstance(kind, sa.DateTime):
        try:
            parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        return parsed is not None, parsed
    if isinstance(kind, sa.Boolean):
        return isinstance(value, bool), value
    if isinstance(value, bool):
        return False, value
    if isinstance(kind, sa.Integer):
        return isinstance(value, int), value
    if isinstance(kind, sa.Float):
        return isinstance(value, int | float), value
    if isinstance(kind, sa.String):  # Text too
        ok = isinstance(value, str) and (kind.length is None or len(value) <= kind.length)
        return ok, value
    return False, value  # pragma: no cover - a column type this module does not know yet


def coerce_row(table: sa.Table, index: int, row: Any) -> dict[str, Any]:
    """Row ``index`` of ``table`` in a backup, checked against its columns and ready to
    insert. A missing value takes the column's plain default, else None where the column
    allows it; anything else is a :class:`BackupError` naming the row and column."""
    where = f"{table.name} row {index}"
    if not isinstance(row, dict):
        raise BackupError(f"{where}: not an object")
    columns = {c.name: c for c in backup_columns(table)}
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
            elif col.nullable and not col.primary_key:
                values[name] = None
            else:
                raise BackupError(f"{where}: {name} is missing")
            continue
        ok, value = _checked(col.type, value)
        if not ok:
            raise BackupError(f"{where}: bad value for {name}")
        values[name] = value
    return values


@dataclass(frozen=True)
class BackupFormat:
    """One service's kind of backup and the words its messages use."""

    #: The document's ``format``.
    name: str
    #: The document's ``version`` this code writes and reads.
    version: int
    #: What the backup holds, in messages ("progress", "usage").
    what: str
    #: Who reads it, in messages ("service", "key proxy").
    reader: str

    def document(self, tables: dict[str, list[dict[str, Any]]], **extra: Any) -> dict[str, Any]:
        """A backup document of ``tables`` (see :func:`export_rows`), with ``extra`` fields."""
        return {
            "format": self.name,
            "version": self.version,
            **extra,
            "exported_at": datetime.now(UTC).isoformat(),
            "tables": tables,
        }

    def parse(self, text: str, tables: Sequence[sa.Table] = ()) -> dict[str, Any]:
        """The document in ``text``, its kind, version and ``tables`` object checked (and,
        given the service's ``tables``, that it names no other)."""
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise BackupError(f"not a {self.what} backup: not JSON ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != self.name:
            raise BackupError(f"not a {self.what} backup (format is not {self.name!r})")
        version = doc.get("version")
        if version != self.version:
            raise BackupError(
                f"backup format version {version!r} is not supported (this {self.reader} "
                f"reads {self.version})"
            )
        if not isinstance(doc.get("tables"), dict):
            raise BackupError(f"{self.what} backup has no 'tables' object")
        if tables:
            self._known_tables(doc, tables)
        return doc

    def _known_tables(self, doc: Mapping[str, Any], tables: Sequence[sa.Table]) -> None:
        unknown = set(doc["tables"]) - {t.name for t in tables}
        if unknown:
            raise BackupError(f"{self.what} backup has an unknown table {sorted(unknown)[0]!r}")

    def rows(
        self, doc: Mapping[str, Any], tables: Sequence[sa.Table]
    ) -> dict[str, list[dict[str, Any]]]:
        """Every row of ``doc`` checked (:func:`coerce_row`), by table; nothing written."""
        self._known_tables(doc, tables)
        out: dict[str, list[dict[str, Any]]] = {}
        for table in tables:
            given = doc["tables"].get(table.name, [])
            if not isinstance(given, list):
                raise BackupError(f"{self.what} backup's {table.name} is not a list")
            out[table.name] = [coerce_row(table, i, r) for i, r in enumerate(given)]
        return out

    def load(
        self,
        engine: sa.Engine,
        tables: Sequence[sa.Table],
        rows: Mapping[str, list[dict[str, Any]]],
        *,
        replace: bool = False,
    ) -> dict[str, int]:
        """Write checked ``rows`` (:meth:`rows`) into ``tables``, all or nothing; the rows
        written per table."""
        written: dict[str, int] = {}
        try:
            with engine.begin() as conn:
                for table in tables:
                    count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                    if count and not replace:
                        raise BackupError(
                            f"the database already holds {self.what} ({table.name}: {count} "
                            "rows): restore into an empty one, or pass --replace to replace it"
                        )
                for table in reversed(tables):  # dependants first
                    conn.execute(table.delete())
                for table in tables:
                    if rows[table.name]:
                        conn.execute(table.insert(), rows[table.name])
                    written[table.name] = len(rows[table.name])
        except sa.exc.IntegrityError as e:
            reason = str(e.orig).splitlines()[0] if e.orig is not None else "constraint violated"
            raise BackupError(f"{self.what} backup violates a constraint: {reason}") from None
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
