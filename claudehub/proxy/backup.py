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

from typing import Any

from claudehub.contract.backup import (
    BackupError,
    BackupFormat,
    export_rows,
    read_document,
    write_document,
)
from claudehub.proxy.audit import audit_table
from claudehub.proxy.usage import UsageStore, daily_table, usage_table

#: The key proxy's backups (claudehub.contract.backup writes and restores them).
BACKUP = BackupFormat("claudehub-keyproxy-usage-backup", 1, what="usage", reader="key proxy")
FORMAT = BACKUP.name
FORMAT_VERSION = BACKUP.version
#: What a backup holds, in the order it is written (the replicas table is transient).
TABLES = (usage_table, daily_table, audit_table)


def export_backup(store: UsageStore) -> dict[str, Any]:
    """Every usage, daily and audit row of ``store``'s database, as a backup document."""
    store._ensure_schema()
    with store.engine.connect() as conn:
        tables = export_rows(conn, TABLES)
    return BACKUP.document(tables)


def parse_backup(text: str) -> dict[str, Any]:
    """The backup document in ``text``, its kind and version checked."""
    return BACKUP.parse(text, TABLES)


def import_backup(
    store: UsageStore, doc: dict[str, Any], *, replace: bool = False
) -> dict[str, int]:
    """Restore ``doc`` (see :func:`parse_backup`) into ``store``'s database, all or nothing;
    the rows written per table."""
    rows = BACKUP.rows(doc, TABLES)
    store._ensure_schema()
    return BACKUP.load(store.engine, TABLES, rows, replace=replace)


__all__ = [
    "BACKUP",
    "TABLES",
    "BackupError",
    "export_backup",
    "import_backup",
    "parse_backup",
    "read_document",
    "write_document",
]
