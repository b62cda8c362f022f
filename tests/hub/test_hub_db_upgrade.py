"""hub.upgradeDatabase on a real JupyterHub: started on a database of an older JupyterHub
schema (the newest revision undone with JupyterHub's own alembic scripts), a hub configured
from the chart with the value on migrates it at start, keeping a copy of the file beside it;
with the value off (the default) it stops at start, saying to run `jupyterhub upgrade-db`,
and the database is left as it was.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from jupyterhub import dbutil, orm
from traitlets.config import Config

from claudehub.hub.kubernetes import configure_kubernetes
from claudehub.hub.settings import validate
from tests.helm.charts import KEY_SECRET, deep_merge, hub_files, render
from tests.hub.hubproc import running_hub
from tests.hub.test_kubernetes import ENV, secrets_from

pytestmark = pytest.mark.slow


def chart_upgrade_db(enabled: bool | None) -> bool:
    """JupyterHub.upgrade_db as the chart's hub configuration sets it."""
    values = (
        KEY_SECRET
        if enabled is None
        else deep_merge(KEY_SECRET, {"hub": {"upgradeDatabase": enabled}})
    )
    c = Config()
    configure_kubernetes(c, validate(*hub_files(render(values))), secrets_from(ENV))
    return bool(c.JupyterHub.upgrade_db)


def older_database(path: Path) -> tuple[str, str]:
    """A hub database one JupyterHub revision behind; (its revision, the head)."""
    url = f"sqlite:///{path}"
    orm.new_session_factory(url)  # made at the newest revision
    with dbutil._temp_alembic_ini(url) as ini:
        cfg = AlembicConfig(ini)
        head = ScriptDirectory.from_config(cfg).get_current_head()
        command.downgrade(cfg, "-1")
    return revision_of(path), str(head)


def revision_of(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return str(db.execute("select version_num from alembic_version").fetchone()[0])


@pytest.mark.asyncio
async def test_on_the_hub_migrates_an_older_database_at_start(tmp_path: Path) -> None:
    older, head = older_database(tmp_path / "jupyterhub.sqlite")
    assert older != head
    upgrade = chart_upgrade_db(True)
    async with running_hub(tmp_path, f"c.JupyterHub.upgrade_db = {upgrade!r}\n", "unused"):
        assert revision_of(tmp_path / "jupyterhub.sqlite") == head
    copies = [
        p
        for p in sorted(await asyncio.to_thread(tmp_path.iterdir))
        if p.name.startswith("jupyterhub.sqlite.")
    ]
    assert copies and revision_of(copies[0]) == older, "the file as it was, kept beside it"


@pytest.mark.asyncio
async def test_off_by_default_the_hub_stops_naming_upgrade_db(tmp_path: Path) -> None:
    older, _ = older_database(tmp_path / "jupyterhub.sqlite")
    upgrade = chart_upgrade_db(None)
    assert upgrade is False
    with pytest.raises(RuntimeError, match="upgrade-db"):
        async with running_hub(tmp_path, f"c.JupyterHub.upgrade_db = {upgrade!r}\n", "unused"):
            pass
    assert revision_of(tmp_path / "jupyterhub.sqlite") == older
