"""Classes, instructors and the admins' access to servers (claudehub.hub.classes).

The configuration :func:`configure_classes` writes, then a real JupyterHub with a real
single-user server (jupyterhub-singleuser, the "simple" spawner) for each side of
``admins_attach_servers``: with it on, the admin reaches alice's server; with it off, the
same person is an operator who sees and stops servers but gets 403 on alice's server, and
an instructor never reaches it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from traitlets import TraitError
from traitlets.config import Config

from claudehub.contract.hub import CLASS_READ_SCOPE, OPERATOR_ROLE, service_roles
from claudehub.hub.classes import ClassSettings, configure_classes
from tests.helpers import PATIENCE
from tests.hub.hubproc import running_hub

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"

CLASSES = {
    "alpha": {
        "learners": ["alice", "carol"],
        "instructors": ["tina"],
        "limits": {"daily_token_budget": 5000, "allowed_models": ["claude-haiku-*"]},
    },
    "beta": {"learners": ["bob", "carol"], "instructors": ["ben"]},
}


def _base_config() -> Config:
    c = Config()
    c.JupyterHub.authenticator_class = "github"
    c.Authenticator.admin_users = {"root"}
    c.JupyterHub.services = [
        {"name": "keyproxy", "url": "http://127.0.0.1:8010", "command": ["kp"], "environment": {}},
        {"name": "progress", "url": "http://127.0.0.1:8020", "command": ["pr"], "environment": {}},
    ]
    c.JupyterHub.load_roles = service_roles()
    return c


def test_classes_become_groups_and_instructor_roles() -> None:
    c = _base_config()
    configure_classes(c, ClassSettings(classes=CLASSES, tutor_completions_count=False))
    # the class's key proxy limits travel in its group's properties; a class without limits
    # gets an empty mapping, so limits removed from the configuration leave the hub too
    assert c.JupyterHub.load_groups == {
        "alpha": {
            "users": ["alice", "carol"],
            "properties": {
                "claudehub.limits": {
                    "daily_token_budget": 5000,
                    "allowed_models": ["claude-haiku-*"],
                }
            },
        },
        "beta": {"users": ["bob", "carol"], "properties": {"claudehub.limits": {}}},
    }
    assert CLASS_READ_SCOPE in c.JupyterHub.custom_scopes
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["claudehub-instructor-alpha"]["scopes"] == [
        f"{CLASS_READ_SCOPE}!group=alpha",
        "delete:servers!group=alpha",
    ]
    assert roles["claudehub-instructor-alpha"]["users"] == ["tina"]
    assert roles["claudehub-instructor-beta"]["users"] == ["ben"]
    assert "claudehub-progress" in roles  # the hub config's roles are kept
    services = {s["name"]: s for s in c.JupyterHub.services}
    progress = services["progress"]
    assert progress["oauth_client_allowed_scopes"] == [CLASS_READ_SCOPE, "delete:servers"]
    assert progress["environment"]["CLAUDEHUB_TUTOR_COMPLETIONS_COUNT"] == "false"
    # the course service may read the key proxy's usage with a shared admin token
    token = services["keyproxy"]["environment"]["CLAUDEHUB_KEYPROXY_ADMIN_TOKEN"]
    assert len(token) > 30 and progress["environment"]["CLAUDEHUB_KEYPROXY_ADMIN_TOKEN"] == token
    assert progress["environment"]["CLAUDEHUB_KEYPROXY_URL"] == "http://127.0.0.1:8010"
    # admins attach by default (see docs/security.md): they stay hub admins
    assert c.Authenticator.admin_users == {"root"}
    assert OPERATOR_ROLE not in roles


def test_admins_attach_off_makes_admins_operators() -> None:
    c = _base_config()
    configure_classes(c, ClassSettings(admins_attach_servers=False))
    assert c.Authenticator.admin_users == set()
    [role] = [r for r in c.JupyterHub.load_roles if r["name"] == OPERATOR_ROLE]
    assert role["users"] == ["root"]
    for scope in ("access:servers", "tokens", "shares", "admin:users"):
        assert scope not in role["scopes"]
    assert "admin:servers" in role["scopes"] and CLASS_READ_SCOPE in role["scopes"]


def test_admins_attach_off_refuses_the_shared_password() -> None:
    c = _base_config()
    c.JupyterHub.authenticator_class = "shared-password"
    with pytest.raises(ValueError, match="shared-password"):
        configure_classes(c, ClassSettings(admins_attach_servers=False))


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ({"Alpha": {}}, "class name 'Alpha'"),
        ({"a/b": {}}, "class name 'a/b'"),
        ({"alpha": {"learners": "alice"}}, "classes.alpha.learners must be a list"),
        ({"alpha": {"students": []}}, "unknown key"),
        (
            {"alpha": {"limits": {"daily_token_budget": -5}}},
            "classes.alpha.limits.daily_token_budget must be a whole number",
        ),
        (
            {"alpha": {"limits": {"rate_limit_per_minute": "fast"}}},
            "classes.alpha.limits.rate_limit_per_minute must be a number",
        ),
        ({"alpha": {"limits": {"budget": 5}}}, r"classes.alpha.limits: unknown limit\(s\) budget"),
        ({"alpha": {"limits": {"allowed_models": "haiku"}}}, "allowed_models must be a list"),
    ],
)
def test_bad_classes_are_named(classes: dict[str, Any], message: str) -> None:
    with pytest.raises(TraitError, match=message):
        ClassSettings(classes=classes)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDEHUB_CLASSES", '{"alpha": {"learners": ["alice"]}}')
    monkeypatch.setenv("CLAUDEHUB_ADMINS_ATTACH_SERVERS", "false")
    monkeypatch.setenv("CLAUDEHUB_TUTOR_COMPLETIONS_COUNT", "no")
    s = ClassSettings()
    assert s.classes == {"alpha": {"learners": ["alice"], "instructors": []}}
    assert not s.admins_attach_servers and not s.tutor_completions_count
    monkeypatch.setenv("CLAUDEHUB_ADMINS_ATTACH_SERVERS", "maybe")
    with pytest.raises(ValueError, match="CLAUDEHUB_ADMINS_ATTACH_SERVERS must be true or false"):
        ClassSettings().admins_attach_servers  # noqa: B018


def _hub_config(attach: bool) -> str:
    return f"""
import sys
from pathlib import Path
from claudehub.hub.classes import ClassSettings, configure_classes
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {{"root"}}
c.JupyterHub.spawner_class = "simple"
c.Spawner.cmd = [str(Path(sys.executable).with_name("jupyterhub-singleuser"))]
c.Spawner.args = ["--allow-root"]
c.JupyterHub.services = [{{"name": "tester", "api_token": {ADMIN_TOKEN!r}}}]
c.JupyterHub.load_roles = [
    {{"name": "tester", "scopes": ["admin:users", "admin:servers", "tokens"],
      "services": ["tester"]}},
]
configure_classes(c, ClassSettings(classes={CLASSES!r}, admins_attach_servers={attach!r}))
"""


def _access(scopes: list[str]) -> set[str]:
    """The server-access scopes among ``scopes``."""
    return {s for s in scopes if s.split("!")[0] == "access:servers"}


async def _status(session: aiohttp.ClientSession, url: str, token: str) -> int:
    headers = {"Authorization": f"token {token}"}
    async with session.get(url, headers=headers, allow_redirects=False) as resp:
        return resp.status


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.parametrize("attach", [True, False], ids=["attach-on", "attach-off"])
async def test_who_reaches_a_learners_server(tmp_path: Path, attach: bool) -> None:
    async with running_hub(tmp_path, _hub_config(attach), ADMIN_TOKEN) as hub:
        async with aiohttp.ClientSession() as session:
            tokens = {}
            for user in ("alice", "root", "tina"):
                status, _ = await hub.api(session, "POST", f"users/{user}")
                assert status in (201, 409)
                status, body = await hub.api(session, "POST", f"users/{user}/tokens", {})
                assert status == 201, body
                tokens[user] = body["token"]
            status, body = await hub.api(session, "POST", "users/alice/server")
            assert status in (201, 202), body
            deadline = asyncio.get_running_loop().time() + PATIENCE
            while True:
                _, model = await hub.api(session, "GET", "users/alice")
                if model["servers"].get("", {}).get("ready"):
                    break
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(hub.log.read_text()[-3000:])
                await asyncio.sleep(0.2)

            url = f"{hub.public_url}/user/alice/api/status"
            assert await _status(session, url, tokens["alice"]) == 200
            # the instructor of alice's class never reaches her server
            assert await _status(session, url, tokens["tina"]) in (403, 404)
            _, me = await hub.api(session, "GET", "user", token=tokens["tina"])
            assert f"{CLASS_READ_SCOPE}!group=alpha" in me["scopes"]
            assert _access(me["scopes"]) <= {"access:servers!user=tina"}

            _, me = await hub.api(session, "GET", "user", token=tokens["root"])
            if attach:
                assert me["admin"] is True and "access:servers" in me["scopes"]
                assert await _status(session, url, tokens["root"]) == 200
            else:
                assert me["admin"] is False
                assert _access(me["scopes"]) <= {"access:servers!user=root"}
                assert "admin:servers" in me["scopes"] and CLASS_READ_SCOPE in me["scopes"]
                assert await _status(session, url, tokens["root"]) in (403, 404)
                # ...but the operator sees and stops the session
                _, alice = await hub.api(session, "GET", "users/alice", token=tokens["root"])
                assert alice["servers"][""]["ready"] is True
                status, _ = await hub.api(
                    session, "DELETE", "users/alice/server", token=tokens["root"]
                )
                assert status in (202, 204)


def test_nothing_unset_is_touched() -> None:
    """Reading an unset Config name would plant a LazyConfigValue JupyterHub then uses."""
    c = Config()
    configure_classes(c, ClassSettings(admins_attach_servers=False))
    assert "authenticator_class" not in c.JupyterHub
    assert "load_groups" not in c.JupyterHub  # no classes: no groups
    assert c.JupyterHub.load_roles[0]["name"] == OPERATOR_ROLE


def test_local_mode_configures_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """make run's hub: classes from the config file (or CLAUDEHUB_CLASSES), the switches."""
    from claudehub.hub.local import LocalSettings, configure_local

    monkeypatch.setenv("CLAUDEHUB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CLAUDEHUB_TUTOR_COMPLETIONS_COUNT", "false")
    c = Config()
    c.ClassSettings.classes = {"alpha": {"learners": ["alice"], "instructors": ["tina"]}}
    configure_local(c, LocalSettings(config=c))
    assert c.JupyterHub.load_groups == {
        "alpha": {"users": ["alice"], "properties": {"claudehub.limits": {}}}
    }
    roles = {r["name"] for r in c.JupyterHub.load_roles}
    assert {"claudehub-progress", "claudehub-instructor-alpha"} <= roles
    services = {s["name"]: s for s in c.JupyterHub.services}
    env = services["progress"]["environment"]
    assert env["CLAUDEHUB_TUTOR_COMPLETIONS_COUNT"] == "false"
    assert env["CLAUDEHUB_KEYPROXY_URL"] == services["keyproxy"]["url"]
    assert (
        env["CLAUDEHUB_KEYPROXY_ADMIN_TOKEN"]
        == services["keyproxy"]["environment"]["CLAUDEHUB_KEYPROXY_ADMIN_TOKEN"]
    )
