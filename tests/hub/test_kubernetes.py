"""Kubernetes mode's hub configuration: the settings file, auth, limits, services, roles."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from traitlets.config import Config

from claudehub.hub.kubernetes import configure_kubernetes, culler_command
from claudehub.hub.settings import SettingsError, load, validate
from claudehub.spawner.kube import ClaudeSpawner

REPO = Path(__file__).resolve().parents[2]

SETTINGS: dict[str, Any] = {
    "hub": {
        "bindUrl": "http://0.0.0.0:8081",
        "connectUrl": "http://claudehub-hub.claudehub.svc:8081",
        "dbUrl": "sqlite:////srv/jupyterhub/jupyterhub.sqlite",
        "logLevel": "INFO",
    },
    "proxy": {"apiUrl": "http://claudehub-proxy-api.claudehub.svc:8001"},
    "auth": {
        "type": "github",
        "admins": ["alice"],
        "allowedUsers": ["bob"],
        "github": {
            "callbackUrl": "https://claude.example.org/hub/oauth_callback",
            "allowedOrganizations": ["example-org"],
        },
    },
    "spawner": {
        "namespace": "claudehub",
        "image": "claudehub/sandbox:0.1.0",
        "imagePullPolicy": "IfNotPresent",
        "imagePullSecrets": ["registry-creds"],
        "startTimeout": 300,
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "storage": {"capacity": "1Gi", "storageClassName": ""},
        "nodeSelector": {},
        "tolerations": [],
        "keyproxyUrl": "http://claudehub-keyproxy.claudehub.svc:8080",
        "progressUrl": "http://claudehub-progress.claudehub.svc:8080/services/progress/",
        "tokenSecretFile": "/etc/claudehub/secrets/token-secret",
        "models": ["claude-sonnet-4-5", "claude-haiku-4-5"],
        "profiles": [
            {"slug": "default", "displayName": "Standard", "default": True, "resources": {}},
            {
                "slug": "gpu",
                "displayName": "GPU",
                "resources": {"limits": {"cpu": "2", "memory": "4Gi"}},
                "gpu": {"count": 1, "runtimeClassName": "nvidia"},
                "nodeSelector": {"nvidia.com/gpu.present": "true"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            },
        ],
    },
    "limits": {"maxActiveSessions": 4, "concurrentSpawnLimit": 2},
    "culling": {"enabled": True, "idleTimeout": 3600, "maxAge": 28800, "every": 300},
    "services": {
        "keyproxy": {"apiTokenEnv": "CLAUDEHUB_KEYPROXY_API_TOKEN"},
        "progress": {
            "url": "http://claudehub-progress.claudehub.svc:8080",
            "apiTokenEnv": "CLAUDEHUB_PROGRESS_API_TOKEN",
        },
    },
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


def configured(settings: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    c = Config()
    configure_kubernetes(c, validate(copy.deepcopy(settings)), ENV if env is None else env)
    return c


def test_limits_one_server_per_user_and_keep_pods_across_restarts() -> None:
    c = configured(SETTINGS)
    assert c.JupyterHub.active_server_limit == 4
    assert c.JupyterHub.concurrent_spawn_limit == 2
    assert c.JupyterHub.allow_named_servers is False
    assert c.JupyterHub.cleanup_servers is False
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.ConfigurableHTTPProxy.api_url == "http://claudehub-proxy-api.claudehub.svc:8001"
    assert c.JupyterHub.hub_connect_url == "http://claudehub-hub.claudehub.svc:8081"


def test_a_class_logging_in_at_once_queues_for_start_slots() -> None:
    """Starts beyond startSlots wait their turn; the hub waits long enough for the last
    wave, while each pod keeps startTimeout of its own."""
    settings = copy.deepcopy(SETTINGS)
    settings["limits"] = {"maxActiveSessions": 120, "concurrentSpawnLimit": 100, "startSlots": 8}
    c = configured(settings)
    assert c.ClaudeSpawner.start_slots == 8
    assert c.ClaudeSpawner.sandbox_start_timeout == 300
    assert c.ClaudeSpawner.start_timeout == 300 * 13  # ceil(100 / 8) waves
    # No bound on starting sessions: the active limit bounds the queue instead.
    settings["limits"] = {"maxActiveSessions": 40, "concurrentSpawnLimit": 0, "startSlots": 8}
    assert configured(settings).ClaudeSpawner.start_timeout == 300 * 5
    # No queue: startTimeout as given.
    settings["limits"] = {"maxActiveSessions": 40, "concurrentSpawnLimit": 40, "startSlots": 0}
    c = configured(settings)
    assert (c.ClaudeSpawner.start_slots, c.ClaudeSpawner.start_timeout) == (0, 300)


def test_github_oauth() -> None:
    c = configured(SETTINGS)
    assert c.JupyterHub.authenticator_class == "github"
    assert c.GitHubOAuthenticator.allowed_organizations == {"example-org"}
    assert c.GitHubOAuthenticator.allowed_users == {"bob"}
    assert (
        c.GitHubOAuthenticator.oauth_callback_url == "https://claude.example.org/hub/oauth_callback"
    )
    assert c.Authenticator.admin_users == {"alice"}
    # Secrets come from the environment (oauthenticator reads them itself), never the file.
    assert "client_secret" not in c.GitHubOAuthenticator


def test_password_login_for_trials() -> None:
    settings = copy.deepcopy(SETTINGS)
    settings["auth"] = {"type": "password", "admins": ["alice"], "allowedUsers": []}
    c = configured(settings)
    assert c.JupyterHub.authenticator_class == "shared-password"
    assert c.SharedPasswordAuthenticator.user_password == "trial-password"
    assert c.SharedPasswordAuthenticator.admin_password == "a" * 32
    assert c.Authenticator.allow_all is True


def test_services_get_the_narrowest_roles() -> None:
    c = configured(SETTINGS)
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
    settings = copy.deepcopy(SETTINGS)
    settings["culling"]["enabled"] = False
    c = configured(settings)
    assert "idle-culler" not in {s["name"] for s in c.JupyterHub.services}
    assert "--max-age" not in " ".join(
        culler_command({"idleTimeout": 60, "every": 10, "maxAge": 0})
    )


def test_spawner_settings_and_profiles() -> None:
    c = configured(SETTINGS)
    assert c.JupyterHub.spawner_class is ClaudeSpawner
    s = c.ClaudeSpawner
    assert s.image == "claudehub/sandbox:0.1.0"
    assert s.namespace == "claudehub"
    assert s.image_pull_secrets == ["registry-creds"]
    assert s.sandbox_resources == SETTINGS["spawner"]["resources"]
    assert s.allowed_models == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    assert s.token_secret_file == "/etc/claudehub/secrets/token-secret"
    assert s.profile_list[1] == {
        "slug": "gpu",
        "display_name": "GPU",
        "description": "",
        "default": False,
        "kubespawner_override": {
            "sandbox_resources": {"limits": {"cpu": "2", "memory": "4Gi"}},
            "gpu_limit": 1,
            "gpu_runtime_class": "nvidia",
            "node_selector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
        },
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"limits": {"maxActiveSessions": -1}},
            "limits.maxActiveSessions: must be an integer >= 0, got -1",
        ),
        ({"limits": {"maxActiveSesions": 3}}, "limits.maxActiveSesions: unknown setting"),
        (
            {"spawner": {"imagePullPolicy": "Sometimes"}},
            "spawner.imagePullPolicy: must be one of Always",
        ),
        (
            {"spawner": {"resources": {"limits": {"cpu": "lots"}}}},
            "spawner.resources.limits.cpu: must be a Kubernetes quantity",
        ),
        ({"auth": {"type": "ldap"}}, "auth.type: must be one of github, password, got 'ldap'"),
        (
            {"culling": {"idleTimeout": "1h"}},
            "culling.idleTimeout: must be an integer >= 60, got '1h'",
        ),
        (
            {"sandbox": {}},
            "sandbox: unknown setting (known here: auth, classes, culling, hub, limits, proxy, "
            "services, spawner)",
        ),
        ({"spawner": {"image": None}}, "spawner.image: required setting is missing"),
        (
            {
                "auth": {
                    "allowedUsers": [],
                    "github": {
                        "callbackUrl": "https://c.example/hub/oauth_callback",
                        "allowedOrganizations": [],
                    },
                }
            },
            "anyone with a GitHub account could log in",
        ),
        (
            {"classes": {"physics": {"limits": {"dailyTokenBudget": -5}}}},
            "classes.physics.limits.dailyTokenBudget: must be an integer >= 0, got -5",
        ),
        (
            {"classes": {"physics": {"limits": {"rateLimitPerMinute": "fast"}}}},
            "classes.physics.limits.rateLimitPerMinute: must be a number >= 0, got 'fast'",
        ),
        (
            {"classes": {"physics": {"limits": {"rateLimitBurst": True}}}},
            "classes.physics.limits.rateLimitBurst: must be an integer >= 0, got True",
        ),
        (
            {"classes": {"physics": {"limits": {"allowedModels": "claude-haiku-*"}}}},
            "classes.physics.limits.allowedModels: must be a list of model names",
        ),
        (
            {"classes": {"physics": {"limits": {"daily_token_budget": 5}}}},
            "classes.physics.limits.daily_token_budget: unknown setting (known here: "
            "allowedModels, dailyTokenBudget, rateLimitBurst, rateLimitPerMinute)",
        ),
        (
            {"classes": {"physics": {"students": ["a"]}}},
            "classes.physics.students: unknown setting (known here: instructors, learners, limits)",
        ),
        (
            {"classes": {"physics": {"learners": "alice"}}},
            "classes.physics.learners: must be a list of non-empty strings, got 'alice'",
        ),
        ({"classes": {"Physics": {}}}, "classes: class names must be lower-case letters"),
        ({"classes": ["physics"]}, "classes: must be a mapping of class names"),
        (
            {"auth": {"type": "password", "adminsAttachServers": False}},
            "auth.adminsAttachServers: false needs auth.type github",
        ),
        (
            {"auth": {"adminsAttachServers": "no"}},
            "auth.adminsAttachServers: must be true or false",
        ),
    ],
)
def test_bad_settings_fail_naming_the_key(change: dict[str, Any], message: str) -> None:
    settings = copy.deepcopy(SETTINGS)
    for section, values in change.items():
        if section in settings and isinstance(settings[section], dict):
            settings[section].update(values)
        else:
            settings[section] = values
    with pytest.raises(SettingsError) as info:
        validate(settings)
    assert message in str(info.value)


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
        configured(SETTINGS, env)


def test_load_reads_claudehub_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(SETTINGS))
    monkeypatch.setenv("CLAUDEHUB_CONFIG", str(path))
    assert load()["limits"]["concurrentSpawnLimit"] == 2
    path.write_text("limits: [\n")
    with pytest.raises(SettingsError, match=f"claudehub settings \\({path}\\): not valid YAML"):
        load()


def run_config_file(tmp_path: Path, settings: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "values.yaml"
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
        timeout=60,
        check=False,
    )


def test_the_config_file_fails_fast_with_one_line(tmp_path: Path) -> None:
    settings = copy.deepcopy(SETTINGS)
    settings["limits"]["maxActiveSessions"] = "four"
    result = run_config_file(tmp_path, settings)
    assert result.returncode == 2
    assert (
        f"claudehub: cannot start the hub: claudehub settings ({tmp_path / 'values.yaml'}): "
        "limits.maxActiveSessions: must be an integer >= 0, got 'four'"
    ) in result.stderr
    assert "Traceback" not in result.stderr


def test_the_config_file_configures_the_hub(tmp_path: Path) -> None:
    settings = copy.deepcopy(SETTINGS)
    settings["hub"]["dbUrl"] = f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"
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


def test_classes_from_the_settings_file() -> None:
    settings = copy.deepcopy(SETTINGS)
    settings["classes"] = PHYSICS
    settings["auth"]["adminsAttachServers"] = False
    c = configured(settings)
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


def test_without_class_settings_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Callers whose settings file has no classes (older charts, hand-written files)."""
    monkeypatch.setenv("CLAUDEHUB_CLASSES", '{"art": {"learners": ["eve"], "instructors": []}}')
    monkeypatch.setenv("CLAUDEHUB_ADMINS_ATTACH_SERVERS", "false")
    c = configured(SETTINGS)
    assert c.JupyterHub.load_groups == {
        "art": {"users": ["eve"], "properties": {"claudehub.limits": {}}}
    }
    assert c.Authenticator.admin_users == set()
    # The file's values win over the environment.
    settings = copy.deepcopy(SETTINGS)
    settings["classes"] = {}
    settings["auth"]["adminsAttachServers"] = True
    c = configured(settings)
    assert "load_groups" not in c.JupyterHub
    assert c.Authenticator.admin_users == {"alice"}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CLAUDEHUB_CLASSES", '{"Art": {}}', "class name 'Art' must be lower-case"),
        ("CLAUDEHUB_CLASSES", "{not json", "Expecting property name"),
        ("CLAUDEHUB_ADMINS_ATTACH_SERVERS", "maybe", "must be true or false"),
    ],
)
def test_a_bad_environment_fallback_is_a_settings_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=message):
        configured(SETTINGS)


def test_admins_off_from_the_environment_with_the_shared_password_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLAUDEHUB_ADMINS_ATTACH_SERVERS", "false")
    settings = copy.deepcopy(SETTINGS)
    settings["auth"] = {"type": "password", "admins": ["alice"]}
    with pytest.raises(SettingsError, match=r"auth\.adminsAttachServers: .*shared-password"):
        configured(settings)


def test_a_bad_class_stops_the_hub_with_one_line(tmp_path: Path) -> None:
    settings = copy.deepcopy(SETTINGS)
    settings["classes"] = {"physics": {"limits": {"dailyTokenBudget": -1}}}
    result = run_config_file(tmp_path, settings)
    assert result.returncode == 2
    assert (
        "claudehub: cannot start the hub: claudehub settings "
        f"({tmp_path / 'values.yaml'}): classes.physics.limits.dailyTokenBudget: must be an "
        "integer >= 0, got -1"
    ) in result.stderr
    assert "Traceback" not in result.stderr
