"""The claudehub-keyproxy application: configuration from traits, env defaults, subcommands."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from claudehub.contract.tokens import verify_token
from claudehub.proxy.app import KeyProxyApp, MintTokenApp
from claudehub.proxy.service import KeyProxyOptions
from claudehub.proxy.settings import ProxySettings

ENV = (
    "JUPYTERHUB_SERVICE_URL",
    "JUPYTERHUB_API_URL",
    "JUPYTERHUB_API_TOKEN",
    "JUPYTERHUB_SERVICE_PREFIX",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_API_KEY_FILE",
    "ANTHROPIC_UPSTREAM_URL",
    "CLAUDEHUB_TOKEN_SECRET",
    "CLAUDEHUB_TOKEN_SECRET_FILE",
    "CLAUDEHUB_KEYPROXY_DB_URL",
    "CLAUDEHUB_USAGE_DB_URL",
    "CLAUDEHUB_KEYPROXY_ADMIN_TOKEN",
)


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    KeyProxyApp.clear_instance()
    MintTokenApp.clear_instance()
    yield
    KeyProxyApp.clear_instance()
    MintTokenApp.clear_instance()


def app(argv: list[str]) -> KeyProxyApp:
    instance = KeyProxyApp.instance()
    instance.initialize(argv)
    return instance


def test_hub_managed_service_defaults_come_from_the_hub_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8010")
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "svc-token")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/services/keyproxy/")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-real")
    monkeypatch.setenv("CLAUDEHUB_TOKEN_SECRET", "s3")
    monkeypatch.setenv("CLAUDEHUB_USAGE_DB_URL", "sqlite:///x.sqlite")
    a = app([])
    assert (a.ip, a.port, a.standalone) == ("127.0.0.1", 8010, False)
    o = a.build_options()
    assert o.hub_mode and o.hub_api_url == "http://127.0.0.1:8081/hub/api"
    assert o.settings.upstream_url == "https://api.anthropic.com"
    assert o.settings.api_key == "sk-ant-real" and o.token_secret == b"s3"
    assert o.db_url == "sqlite:///x.sqlite" and o.service_prefix == "/services/keyproxy/"


def test_standalone_when_there_is_no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_UPSTREAM_URL", "http://127.0.0.1:9999")
    a = app(
        [
            "--port=9100",
            "--rate-limit=0",
            "--allowed-models=claude-haiku-*",
            "--allowed-models=claude-sonnet-5",
        ]
    )
    o = a.build_options()
    assert a.standalone and not o.hub_mode
    assert (a.ip, a.port) == ("127.0.0.1", 9100)
    assert o.settings.upstream_url == "http://127.0.0.1:9999"
    assert o.limits.default.rate == 0
    assert o.limits.default.allowed_models == ("claude-haiku-*", "claude-sonnet-5")


def test_config_file_and_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "keyproxy_config.py").write_text(
        "c.KeyProxyApp.daily_token_budget = 5000\n"
        "c.KeyProxyApp.budget_overrides = {'teacher': 0}\n"
        "c.KeyProxyApp.forward_headers = ['anthropic-version', 'x-fake-*']\n"
        "c.KeyProxyApp.max_tokens_cap = 8192\n"
    )
    monkeypatch.chdir(tmp_path)
    o = app(
        ["--standalone", "--KeyProxyApp.max_tokens_policy=reject", "--max-tokens-cap=4096"]
    ).build_options()
    assert o.limits.default.daily_token_budget == 5000 and o.limits.budget_for("teacher") == 0
    # the command line wins over the file
    assert o.limits.default.max_tokens_cap == 4096 and o.limits.max_tokens_policy == "reject"
    assert list(o.settings.forward_headers) == ["anthropic-version", "x-fake-*"]


def test_every_server_setting_is_a_trait_with_the_same_default() -> None:
    """ProxySettings is built from the traits by name: each field needs its trait, in step."""
    a = app([])  # the environment is clean (see the fixture): env-based defaults do not apply
    traits = a.traits(config=True)
    defaults = ProxySettings()
    for f in dataclasses.fields(ProxySettings):
        assert f.name in traits, f"ProxySettings.{f.name} has no KeyProxyApp trait"
        trait_default = getattr(a, f.name)
        field_default = getattr(defaults, f.name)
        if isinstance(field_default, Sequence) and not isinstance(field_default, str):
            trait_default, field_default = list(trait_default), list(field_default)
        assert trait_default == field_default, f.name
        assert type(trait_default) is type(field_default), f.name
    assert a.build_settings() == ProxySettings(forward_headers=list(defaults.forward_headers))


def test_every_service_option_is_the_trait_of_its_name() -> None:
    """KeyProxyOptions is filled from the traits by name too (a few are built from them):
    a new option is a field and a trait of its name, and nothing is copied by hand."""
    a = app([])
    traits = a.traits(config=True)
    built = a.build_options()
    for f in dataclasses.fields(KeyProxyOptions):
        if f.name in KeyProxyApp.BUILT_OPTIONS:
            continue
        assert f.name in traits, f"KeyProxyOptions.{f.name} has no KeyProxyApp trait"
        # (an embedded proxy's own defaults may differ: no usage file, no service prefix)
        assert getattr(built, f.name) == getattr(a, f.name), f.name
    for trait in KeyProxyApp.LIMIT_TRAITS:
        assert trait in traits, trait
    # every limit trait reaches the limits, under its own argument name
    o = app(
        [
            "--KeyProxyApp.rate_limit_per_minute=7",
            "--KeyProxyApp.rate_limit_burst=3",
            "--KeyProxyApp.daily_token_budget=1234",
            "--KeyProxyApp.max_tokens_cap=99",
            "--KeyProxyApp.allowed_models=claude-haiku-4-5",
        ]
    ).build_options()
    rule = o.limits.default
    assert (rule.rate_per_minute, rule.burst, rule.daily_token_budget) == (7, 3, 1234)
    assert (rule.max_tokens_cap, rule.allowed_models) == (99, ("claude-haiku-4-5",))


def test_hub_poll_interval_is_capped_so_tokens_die_within_a_minute(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        app(["--KeyProxyApp.hub_poll_interval=45"])
    assert "hub_poll_interval must be in (0, 30]" in capsys.readouterr().err


def test_mint_token_subcommand(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("file-secret\n")
    a = app(["mint-token", "--user", "alice", "--ttl", "60", "--secret-file", str(secret)])
    a.start()
    tok = capsys.readouterr().out.strip()
    claims = verify_token(b"file-secret", tok)
    assert claims.user == "alice" and claims.expires_at is not None
    assert claims.expires_at - claims.issued_at == 60


def test_mint_token_needs_a_secret() -> None:
    a = app(["mint-token", "--user", "alice"])
    with pytest.raises(SystemExit, match="CLAUDEHUB_TOKEN_SECRET"):
        a.start()
