"""The hub's SQLite database in WAL mode (claudehub.hub.database): opened the way JupyterHub
opens it, from the configuration both modes build; commits survive and read back."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from jupyterhub import orm
from sqlalchemy import text
from traitlets.config import Config

from tests.hub.test_kubernetes import configured, values_with


def open_hub_database(c: Config, url: str) -> Any:
    """A session on ``url`` as JupyterHub's init_db makes it (db_url, then db_kwargs)."""
    kwargs = dict(c.JupyterHub.get("db_kwargs") or {})
    return orm.new_session_factory(url, **kwargs)()


def check_tuned(c: Config, tmp_path: Path) -> None:
    path = tmp_path / "jupyterhub.sqlite"
    db = open_hub_database(c, f"sqlite:///{path}")
    db.add(orm.User(name="learner0"))
    db.commit()
    assert db.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert db.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    # JupyterHub's own connection settings are kept: foreign keys on, usable across threads.
    assert db.execute(text("PRAGMA foreign_keys")).scalar() == 1
    db.close()
    # The commit is there for any other reader of the file (the WAL is part of it).
    with sqlite3.connect(path) as plain:
        assert plain.execute("SELECT name FROM users").fetchall() == [("learner0",)]
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_kubernetes_mode_opens_its_sqlite_database_in_wal_mode(tmp_path: Path) -> None:
    c = configured(values_with())
    assert c.JupyterHub.db_url.startswith("sqlite:///")
    check_tuned(c, tmp_path)


def test_local_mode_opens_its_sqlite_database_in_wal_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from claudehub.hub.local import LocalSettings, configure_local

    monkeypatch.setenv("CLAUDEHUB_STATE_DIR", str(tmp_path / "state"))
    c = Config()
    configure_local(c, LocalSettings(config=c))
    check_tuned(c, tmp_path)


def test_a_postgresql_hub_database_is_left_alone() -> None:
    db = {
        "type": "postgresql",
        "url": "postgresql+psycopg://claudehub@postgres.db.svc:5432/claudehub",
        "passwordSecret": {"name": "hub-db", "key": "password"},
    }
    c = configured(values_with(hub={"db": db}))
    assert c.JupyterHub.db_url == db["url"]
    assert "db_kwargs" not in c.JupyterHub
