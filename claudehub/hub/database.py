"""The hub's own database, when it is SQLite (the chart's default and local mode's).

JupyterHub commits on its event loop: a login, a token, a spawn, every activity report. In
SQLite's default rollback-journal mode each commit waits for several fsyncs (about 3 ms on
the machine of benchmarks/scale, 0.05 ms in WAL mode with ``synchronous=NORMAL``), and
nothing else runs meanwhile: with a class logging in, those waits were a fifth of the hub's
time and pushed its API's p99 past a second (docs/performance.md, "A thousand learners on
one hub"). In WAL mode with ``synchronous=NORMAL`` a commit is a write to the log, synced at
checkpoints: the database stays consistent through a crash of the hub or of the node; a power
loss may lose the last commits (a login or an activity time), never corrupt the file.

WAL needs the database on a local filesystem (SQLite on NFS is unsafe in any mode); the
chart's hub PVC is one (ReadWriteOnce, one hub). PostgreSQL and MySQL are left as they are.
"""

from __future__ import annotations

import sqlite3
from typing import Any

#: Applied to every connection the hub opens to its SQLite database.
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


class TunedConnection(sqlite3.Connection):
    """A sqlite3 connection in WAL mode with ``synchronous=NORMAL``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for pragma in PRAGMAS:
            self.execute(pragma).close()


def configure_database(c: Any, db_url: str) -> None:
    """Have JupyterHub open a SQLite ``db_url`` with :class:`TunedConnection` (through
    ``JupyterHub.db_kwargs``); any other database is left alone. An in-memory database
    has no journal to tune."""
    if not db_url.startswith("sqlite") or db_url.endswith(":memory:"):
        return
    kwargs = dict(c.JupyterHub.get("db_kwargs") or {})
    connect_args = dict(kwargs.get("connect_args") or {})
    # What JupyterHub sets itself when it is given no connect_args (jupyterhub.orm).
    connect_args.setdefault("check_same_thread", False)
    connect_args["factory"] = TunedConnection
    kwargs["connect_args"] = connect_args
    c.JupyterHub.db_kwargs = kwargs
