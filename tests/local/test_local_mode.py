"""Local mode's hub configuration and spawner: the key stays with the key proxy."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from tornado import web
from traitlets.config import Config

from claudehub.contract.tokens import verify_token
from claudehub.hub.local import LocalSettings, banner, configure_local
from claudehub.spawner.common import scrub_environment
from claudehub.spawner.local import LocalSandboxSpawner

REAL_KEY = "sk-ant-api03-THE-REAL-KEY-abcdefghijklmnop"


@pytest.fixture
def settings(tmp_path, monkeypatch: pytest.MonkeyPatch) -> LocalSettings:
    for name in ("CLAUDEHUB_DEV_PASSWORD", "CLAUDEHUB_ADMIN_USERS", "CLAUDEHUB_MODELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", REAL_KEY)
    monkeypatch.setenv("ANTHROPIC_UPSTREAM_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CLAUDEHUB_STATE_DIR", str(tmp_path / "state"))
    return LocalSettings()


def test_real_key_goes_to_the_key_proxy_alone(settings: LocalSettings) -> None:
    c = Config()
    configure_local(c, settings)
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services["keyproxy"]["environment"]["ANTHROPIC_API_KEY"] == REAL_KEY
    assert services["keyproxy"]["environment"]["ANTHROPIC_UPSTREAM_URL"] == "http://127.0.0.1:9"
    assert REAL_KEY not in repr(services["progress"])
    assert REAL_KEY not in repr(c.LocalSandboxSpawner.keyproxy_url)
    assert c.LocalSandboxSpawner.real_key_values == [REAL_KEY]


def test_course_service_pages_open_without_a_consent_page(settings: LocalSettings) -> None:
    """The course service is part of claudehub, as in Kubernetes mode: its class and admin
    pages must not stop users at JupyterHub's "Authorize access" page."""
    c = Config()
    configure_local(c, settings)
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services["progress"]["oauth_no_confirm"] is True


def test_dev_password_is_generated_once_and_printed(settings: LocalSettings) -> None:
    password = settings.dev_password
    assert len(password) >= 8
    assert LocalSettings(config=Config()).dev_password == password, "kept across restarts"
    text = banner(settings)
    assert password in text and settings.bind_url in text


def test_short_dev_password_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("CLAUDEHUB_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CLAUDEHUB_DEV_PASSWORD", "short")
    with pytest.raises(Exception, match="CLAUDEHUB_DEV_PASSWORD must be at least 8"):
        _ = LocalSettings().dev_password


def test_banner_warns_without_a_key(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("CLAUDEHUB_STATE_DIR", str(tmp_path))
    assert "ANTHROPIC_API_KEY is not set" in banner(LocalSettings())


def test_scrub_removes_every_form_of_the_key() -> None:
    env = {
        "PATH": "/usr/bin",
        "ANTHROPIC_API_KEY": "chs1.sandbox.token",
        "SOMETHING": f"prefix-{REAL_KEY}",
        "OTHER_KEY": "sk-ant-api03-another-real-looking-key",
        "CLAUDEHUB_TOKEN_SECRET": "s3cret",
        "ANTHROPIC_AUTH_TOKEN": "x",
    }
    assert scrub_environment(env, [REAL_KEY]) == {
        "PATH": "/usr/bin",
        "ANTHROPIC_API_KEY": "chs1.sandbox.token",
    }


def make_spawner(tmp_path, **config: Any) -> LocalSandboxSpawner:
    user = SimpleNamespace(name="alice", url="/user/alice/", escaped_name="alice")
    hub = SimpleNamespace(api_url="http://127.0.0.1:8081/hub/api", base_url="/hub/", public_host="")
    c = Config()
    for key, value in config.items():
        setattr(c.LocalSandboxSpawner, key, value)
    return LocalSandboxSpawner(user=user, hub=hub, config=c, api_token="hub-api-token")


def test_sandbox_env_holds_a_token_not_the_key(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", REAL_KEY)
    spawner = make_spawner(
        tmp_path,
        keyproxy_url="http://127.0.0.1:8010/",
        token_secret="secret-for-tests",
        real_key_values=[REAL_KEY],
        sandbox_root=str(tmp_path),
    )
    env = spawner.get_env()
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8010"
    claims = verify_token(b"secret-for-tests", env["ANTHROPIC_API_KEY"])
    assert claims.user == "alice"
    assert REAL_KEY not in "\n".join(env.values())
    assert env["HOME"] == str(tmp_path / "alice")


@pytest.mark.asyncio
async def test_unknown_model_is_refused_with_its_name(tmp_path) -> None:
    spawner = make_spawner(tmp_path, allowed_models=["claude-a", "claude-b"])
    with pytest.raises(web.HTTPError) as err:
        await spawner.apply_sandbox_options({"model": "claude-evil"})
    assert err.value.status_code == 400
    assert "claude-evil" in str(err.value.log_message)
    assert "claude-a, claude-b" in str(err.value.log_message)
    await spawner.apply_sandbox_options({"model": "claude-b"})
    assert spawner.model == "claude-b"


@pytest.mark.asyncio
async def test_unknown_course_and_options_are_refused(tmp_path) -> None:
    spawner = make_spawner(
        tmp_path, course_choices=lambda s: [{"id": "attention", "title": "Attention"}]
    )
    with pytest.raises(web.HTTPError, match="400") as err:
        await spawner.apply_sandbox_options({"course": "nope"})
    assert "'nope'" in str(err.value.log_message) and "attention" in str(err.value.log_message)
    with pytest.raises(web.HTTPError) as err:
        await spawner.apply_sandbox_options({"image": "evil:latest"})
    assert "image" in str(err.value.log_message)
    await spawner.apply_sandbox_options({"course": "attention"})
    assert spawner.course_id == "attention"


@pytest.mark.asyncio
async def test_options_form_escapes_course_titles(tmp_path) -> None:
    spawner = make_spawner(
        tmp_path,
        course_choices=lambda s: [{"id": "x", "title": "<script>alert(1)</script>"}],
        allowed_models=["m1", "m2"],
    )
    form = await spawner.get_options_form()
    assert "<script>alert" not in form and "&lt;script&gt;alert" in form
    assert 'name="course"' in form and 'name="model"' in form
    assert make_spawner(tmp_path).options_form is not None
    assert await make_spawner(tmp_path).get_options_form() == "", "nothing to choose, no form"
