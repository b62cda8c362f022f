"""Kubernetes mode's hub configuration: the settings file, auth, limits, services, roles."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from traitlets.config import Config

from claudehub.hub.kubernetes import (
    ROUTE_CHECK_SECONDS,
    HubEnvironment,
    configure_kubernetes,
    culler_command,
)
from claudehub.hub.settings import SettingsError, load, validate
from claudehub.spawner.kube import ClaudeSpawner
from tests.helm.charts import deep_merge, hub_files, render, write_hub_files

REPO = Path(__file__).resolve().parents[2]

#: Chart values an operator would write (merged over the chart's values.yaml when rendered).
VALUES: dict[str, Any] = {
    "keyproxy": {"apiKey": {"existingSecret": "anthropic-key"}},
    "imagePullSecrets": ["registry-creds"],
    "auth": {
        "type": "github",
        "admins": ["alice"],
        "allowedUsers": ["bob"],
        "github": {
            "existingSecret": "github-oauth",
            "callbackUrl": "https://claude.example.org/hub/oauth_callback",
            "allowedOrganizations": ["example-org"],
        },
    },
    "sandbox": {
        "image": {"repository": "claudehub/sandbox", "tag": "0.1.0"},
        "models": ["claude-sonnet-4-5", "claude-haiku-4-5"],
        "gpu": {
            "enabled": True,
            "resources": {"limits": {"cpu": "2", "memory": "4Gi"}},
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
        },
        "quota": {"gpus": 2},
    },
    "limits": {"maxActiveSessions": 4, "concurrentSpawnLimit": 2},
}

ENV = {
    "CONFIGPROXY_AUTH_TOKEN": "p" * 32,
    "GITHUB_CLIENT_ID": "Iv1.0123456789",
    "GITHUB_CLIENT_SECRET": "s" * 40,
    "CLAUDEHUB_KEYPROXY_API_TOKEN": "k" * 32,
    "CLAUDEHUB_PROGRESS_API_TOKEN": "g" * 32,
    "CLAUDEHUB_DEV_PASSWORD": "trial-password",
    "CLAUDEHUB_ADMIN_PASSWORD": "a" * 32,
}


def secrets_from(variables: dict[str, str]) -> HubEnvironment:
    """The hub's environment with exactly ``variables`` set (every other one empty)."""
    return HubEnvironment(
        **{trait: variables.get(name, "") for trait, name in HubEnvironment.VARIABLES.items()}
    )


def values_with(**changes: Any) -> dict[str, Any]:
    """VALUES with ``changes`` merged in (one level deep per section)."""
    values = copy.deepcopy(VALUES)
    for section, change in changes.items():
        if isinstance(change, dict) and isinstance(values.get(section), dict):
            values[section] = deep_merge(values[section], change)
        else:
            values[section] = change
    return values


def hub_settings(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings file and schema the chart hands the hub for ``values``."""
    return hub_files(render(values))


def configured(values: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    c = Config()
    configure_kubernetes(
        c, validate(*hub_settings(values)), secrets_from(ENV if env is None else env)
    )
    return c


def test_limits_one_server_per_user_and_keep_pods_across_restarts() -> None:
    c = configured(VALUES)
    assert c.JupyterHub.active_server_limit == 4
    assert c.JupyterHub.concurrent_spawn_limit == 2
    assert c.JupyterHub.allow_named_servers is False
    assert c.JupyterHub.cleanup_servers is False
    assert c.ConfigurableHTTPProxy.should_start is False
    # a restarted CHP gets the routes back within the page's 15 s of reconnecting
    # (tests/containers/test_faults.py restarts it for real)
    assert c.JupyterHub.last_activity_interval == ROUTE_CHECK_SECONDS < 15
    assert c.ConfigurableHTTPProxy.api_url == "http://claudehub-proxy-api.claudehub.svc:8001"
    assert c.JupyterHub.hub_connect_url == "http://claudehub-hub.claudehub.svc:8081"


def test_a_class_logging_in_at_once_queues_for_start_slots() -> None:
    """Starts beyond startSlots wait their turn; the hub waits long enough for the last
    wave, while each pod keeps startTimeout of its own."""
    limits = {"maxActiveSessions": 120, "concurrentSpawnLimit": 100, "startSlots": 8}
    c = configured(values_with(limits=limits))
    assert c.ClaudeSpawner.start_slots == 8
    assert c.ClaudeSpawner.sandbox_start_timeout == 300
    assert c.ClaudeSpawner.start_timeout == 300 * 13  # ceil(100 / 8) waves
    # No bound on starting sessions (0, in a hand-written file; the chart's schema wants at
    # least 1): the active limit bounds the queue instead.
    edited = _edited({"limits.maxActiveSessions": 40, "limits.concurrentSpawnLimit": 0})
    c = Config()
    configure_kubernetes(c, edited, secrets_from(ENV))
    assert c.ClaudeSpawner.start_timeout == 300 * 10  # ceil(40 / 4) waves
    # No queue: startTimeout as given.
    limits = {"maxActiveSessions": 40, "concurrentSpawnLimit": 40, "startSlots": 0}
    c = configured(values_with(limits=limits))
    assert (c.ClaudeSpawner.start_slots, c.ClaudeSpawner.start_timeout) == (0, 300)


def test_github_oauth() -> None:
    c = configured(VALUES)
    assert c.JupyterHub.authenticator_class == "github"
    assert c.GitHubOAuthenticator.allowed_organizations == {"example-org"}
    assert c.GitHubOAuthenticator.allowed_users == {"bob"}
    assert (
        c.GitHubOAuthenticator.oauth_callback_url == "https://claude.example.org/hub/oauth_callback"
    )
    assert c.Authenticator.admin_users == {"alice"}
    # Secrets come from the environment (oauthenticator reads them itself), never the file.
    assert "client_secret" not in c.GitHubOAuthenticator


def test_no_secret_is_handed_to_the_hub_in_its_settings() -> None:
    values = values_with(
        hub={"cookieSecret": "c" * 64},
        auth={"github": {"existingSecret": "", "clientId": "Iv1.x", "clientSecret": "s" * 40}},
        keyproxy={"apiKey": {"existingSecret": "", "value": "sk-ant-api03-" + "k" * 40}},
    )
    settings, _ = hub_settings(values)
    text = json.dumps(settings)
    for secret in ("c" * 64, "s" * 40, "k" * 40, "Iv1.x"):
        assert secret not in text


def test_password_login_for_trials() -> None:
    c = configured(values_with(auth={"type": "password", "admins": ["alice"], "allowedUsers": []}))
    assert c.JupyterHub.authenticator_class == "shared-password"
    assert c.SharedPasswordAuthenticator.user_password == "trial-password"
    assert c.SharedPasswordAuthenticator.admin_password == "a" * 32
    assert c.Authenticator.allow_all is True


def test_services_get_the_narrowest_roles() -> None:
    c = configured(VALUES)
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert set(services) == {"keyproxy", "progress", "idle-culler"}
    assert "url" not in services["keyproxy"]  # never routed from the internet
    assert services["keyproxy"]["api_token"] == "k" * 32
    assert services["progress"]["url"] == "http://claudehub-progress.claudehub.svc:8080"
    assert services["idle-culler"]["command"] == [
        sys.executable,
        "-m",
        "jupyterhub_idle_culler",
        "--timeout=3600",
        "--cull-every=300",
        "--max-age=28800",
    ]
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    # whose servers run, and the classes with their members and limits
    assert roles["claudehub-keyproxy"]["scopes"] == [
        "list:users",
        "read:users:name",
        "read:servers",
        "list:groups",
        "read:groups",
    ]
    assert roles["claudehub-idle-culler"]["scopes"] == [
        "list:users",
        "read:users:activity",
        "read:servers",
        "delete:servers",
    ]
    for role in roles.values():
        assert "admin:users" not in role["scopes"] and "admin:servers" not in role["scopes"]
    # Users keep the default role ("self": they can stop their own server); the server's
    # token can stop its own server ("End session") and nothing of anyone else's.
    assert "user" not in roles and "server" not in roles
    assert c.Spawner.server_token_scopes == [
        "users:activity!user",
        "access:servers!server",
        "servers!server",
        "access:services!service=progress",
    ]
    assert c.JupyterHub.extra_user_scopes == ["access:services!service=progress"]


def test_culling_off_means_no_culler() -> None:
    c = configured(values_with(culling={"enabled": False}))
    assert "idle-culler" not in {s["name"] for s in c.JupyterHub.services}
    assert "--max-age" not in " ".join(
        culler_command({"idleTimeout": 60, "every": 10, "maxAge": 0})
    )


def test_spawner_settings_and_profiles() -> None:
    c = configured(VALUES)
    assert c.JupyterHub.spawner_class is ClaudeSpawner
    s = c.ClaudeSpawner
    assert s.image == "claudehub/sandbox:0.1.0"
    assert s.namespace == "claudehub"
    assert s.image_pull_secrets == ["registry-creds"]
    assert s.sandbox_resources == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert s.allowed_models == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    assert s.token_secret_file == "/etc/claudehub/secrets/token-secret"
    assert s.progress_url == "http://claudehub-progress.claudehub.svc:8080/services/progress/"
    assert s.profile_list[0]["slug"] == "default" and s.profile_list[0]["default"] is True
    assert s.profile_list[1] == {
        "slug": "gpu",
        "display_name": "GPU",
        "description": "",
        "default": False,
        "kubespawner_override": {
            "sandbox_resources": {
                "requests": {"cpu": "500m", "memory": "1Gi"},
                "limits": {"cpu": "2", "memory": "4Gi"},
            },
            "gpu_limit": 1,
            "gpu_runtime_class": "nvidia",
            "node_selector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
        },
    }


def _edited(edit: dict[str, Any]) -> dict[str, Any]:
    """The rendered settings file with keys changed by hand (``{"limits.x": value}``; a
    value of ``...`` deletes the key), as an operator editing the ConfigMap might."""
    settings, _ = hub_settings(VALUES)
    for key, new in edit.items():
        *path, last = key.split(".")
        node = settings
        for part in path:
            node = node[part]
        if new is ...:
            del node[last]
        else:
            node[last] = new
    return settings


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"limits.maxActiveSessions": -1}, "limits.maxActiveSessions: -1 is less than the minimum"),
        ({"limits.maxActiveSesions": 3}, "limits: Additional properties are not allowed"),
        ({"sandbox.image.pullPolicy": "Sometimes"}, "sandbox.image.pullPolicy: 'Sometimes' is not"),
        (
            {
                "sandbox.resources": {
                    "requests": {"cpu": "250m", "memory": "512Mi"},
                    "limits": {"cpu": "lots", "memory": "1Gi"},
                }
            },
            "sandbox.resources.limits.cpu: 'lots' does not match",
        ),
        ({"auth.type": "ldap"}, "auth.type: 'ldap' is not one of"),
        ({"culling.idleTimeout": "1h"}, "culling.idleTimeout: '1h' is not of type 'integer'"),
        ({"spawner": {}}, "(top level): Additional properties are not allowed ('spawner'"),
        ({"chart.sandboxImage": ...}, "chart: 'sandboxImage' is a required property"),
        ({"limits": ...}, "(top level): 'limits' is a required property"),
        (
            {"auth.allowedUsers": [], "auth.github.allowedOrganizations": []},
            "anyone with a GitHub account could log in",
        ),
        (
            {"classes": {"physics": {"limits": {"dailyTokenBudget": -5}}}},
            "classes.physics.limits.dailyTokenBudget: -5 is less than the minimum of 0",
        ),
        (
            {"classes": {"physics": {"limits": {"rateLimitPerMinute": "fast"}}}},
            "classes.physics.limits.rateLimitPerMinute: 'fast' is not of type 'number'",
        ),
        (
            {"classes": {"physics": {"limits": {"allowedModels": "claude-haiku-*"}}}},
            "classes.physics.limits.allowedModels: 'claude-haiku-*' is not of type 'array'",
        ),
        (
            {"classes": {"physics": {"limits": {"allowedModels": ["claude-*"]}}}},
            "classes.physics.limits.allowedModels: the pattern 'claude-*' would allow every model",
        ),
        (
            {"classes": {"physics": {"limits": {"daily_token_budget": 5}}}},
            "classes.physics.limits: Additional properties are not allowed",
        ),
        (
            {"classes": {"physics": {"students": ["a"]}}},
            "classes.physics: Additional properties are not allowed ('students' was unexpected)",
        ),
        (
            {"classes": {"physics": {"learners": "alice"}}},
            "classes.physics.learners: 'alice' is not of type 'array'",
        ),
        ({"classes": {"Physics": {}}}, "classes: 'Physics' does not match"),
        ({"classes": ["physics"]}, "classes: ['physics'] is not of type 'object'"),
        ({"sandbox.models": ["claude-haiku-*"]}, "sandbox.models.0: 'claude-haiku-*' does not"),
        (
            {"auth.adminsAttachServers": "no"},
            "auth.adminsAttachServers: 'no' is not of type 'boolean'",
        ),
    ],
)
def test_a_bad_settings_file_fails_naming_the_key(edit: dict[str, Any], message: str) -> None:
    _, schema = hub_settings(VALUES)
    with pytest.raises(SettingsError) as info:
        validate(_edited(edit), schema)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_admins_who_may_not_attach_need_github_login() -> None:
    settings = _edited({"auth.type": "password", "auth.adminsAttachServers": False})
    with pytest.raises(SettingsError, match=r"auth\.adminsAttachServers: .*shared-password"):
        configure_kubernetes(Config(), settings, secrets_from(ENV))


@pytest.mark.parametrize(
    "missing",
    [
        "CONFIGPROXY_AUTH_TOKEN",
        "GITHUB_CLIENT_SECRET",
        "CLAUDEHUB_KEYPROXY_API_TOKEN",
        "CLAUDEHUB_PROGRESS_API_TOKEN",
    ],
)
def test_a_missing_secret_is_named(missing: str) -> None:
    env = {k: v for k, v in ENV.items() if k != missing}
    with pytest.raises(SettingsError, match=f"environment variable {missing} must be"):
        configured(VALUES, env)


def test_load_reads_the_file_and_the_schema_beside_it(tmp_path: Path) -> None:
    path = write_hub_files(render(VALUES), tmp_path)
    assert load(path)["limits"]["concurrentSpawnLimit"] == 2
    path.write_text("limits: [\n")
    with pytest.raises(SettingsError, match=f"claudehub settings \\({path}\\): not valid YAML"):
        load(path)
    (tmp_path / "values.schema.yaml").unlink()
    with pytest.raises(SettingsError, match=r"cannot read .*values\.schema\.yaml"):
        load(path)


def run_config_file(tmp_path: Path, settings: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = write_hub_files(render(VALUES), tmp_path)
    path.write_text(yaml.safe_dump(settings))
    env = {**os.environ, **ENV, "CLAUDEHUB_CONFIG": str(path)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyterhub",
            "-f",
            str(REPO / "hub_config" / "jupyterhub_config.py"),
            "--show-config",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


def test_the_config_file_fails_fast_with_one_line(tmp_path: Path) -> None:
    result = run_config_file(tmp_path, _edited({"limits.maxActiveSessions": "four"}))
    assert result.returncode == 2
    assert (
        f"claudehub: cannot start the hub: claudehub settings ({tmp_path / 'values.yaml'}): "
        "limits.maxActiveSessions: 'four' is not of type 'integer'"
    ) in result.stderr
    assert "Traceback" not in result.stderr


def test_the_config_file_configures_the_hub(tmp_path: Path) -> None:
    settings = _edited({"chart.hubDbUrl": f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"})
    result = run_config_file(tmp_path, settings)
    assert result.returncode == 0, result.stderr
    assert "ClaudeSpawner" in result.stdout
    assert "active_server_limit = 4" in result.stdout.replace(":", " =")


PHYSICS = {
    "physics": {
        "learners": ["bob", "carol"],
        "instructors": ["tina"],
        "limits": {"dailyTokenBudget": 50000, "rateLimitPerMinute": 2.5, "allowedModels": []},
    },
    "chemistry": {"learners": ["dan"]},
}


def test_classes_from_the_values() -> None:
    c = configured(values_with(classes=PHYSICS, auth={"adminsAttachServers": False}))
    assert c.JupyterHub.load_groups == {
        "physics": {
            "users": ["bob", "carol"],
            "properties": {
                "claudehub.limits": {
                    "daily_token_budget": 50000,
                    "rate_limit_per_minute": 2.5,
                    "allowed_models": [],
                }
            },
        },
        "chemistry": {"users": ["dan"], "properties": {"claudehub.limits": {}}},
    }
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["claudehub-instructor-physics"]["users"] == ["tina"]
    assert "claudehub-instructor-chemistry" not in roles  # no instructors, no role
    # alice (auth.admins) may not attach: an operator, not a hub admin
    assert c.Authenticator.admin_users == set()
    assert roles["claudehub-operator"]["users"] == ["alice"]


def test_the_values_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local mode's variables (CLAUDEHUB_CLASSES, ...) mean nothing to a chart's hub: the
    values always say (values.yaml sets every key)."""
    monkeypatch.setenv("CLAUDEHUB_CLASSES", '{"art": {"learners": ["eve"], "instructors": []}}')
    monkeypatch.setenv("CLAUDEHUB_ADMINS_ATTACH_SERVERS", "false")
    c = configured(VALUES)
    assert "load_groups" not in c.JupyterHub
    assert c.Authenticator.admin_users == {"alice"}


def test_a_bad_class_stops_the_hub_with_one_line(tmp_path: Path) -> None:
    settings = _edited({"classes": {"physics": {"limits": {"dailyTokenBudget": -1}}}})
    result = run_config_file(tmp_path, settings)
    assert result.returncode == 2
    assert (
        "claudehub: cannot start the hub: claudehub settings "
        f"({tmp_path / 'values.yaml'}): classes.physics.limits.dailyTokenBudget: -1 is less "
        "than the minimum of 0"
    ) in result.stderr
    assert "Traceback" not in result.stderr
