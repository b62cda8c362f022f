"""Classes, their limits, the admins' access to servers and the tutor switch as Helm values.

Each value goes the way it goes in a cluster: rendered by Helm's engine into the hub's
settings file, checked by the hub's loader, turned into JupyterHub configuration by
``configure_kubernetes``; the course service's part into its Deployment's environment, read
by the service's own traits.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from claudehub.hub.kubernetes import LIMIT_NAMES
from claudehub.contract.limits import LIMIT_FIELDS
from claudehub.progress.app import ProgressService
from tests.helm.charts import CHART, KEY_SECRET, Rendering, deep_merge, render
from tests.helm.spawned import hub_config

GITHUB = {
    "auth": {
        "type": "github",
        "admins": ["olga"],
        "allowedUsers": ["alice", "bob", "carol", "tina", "ben", "olga"],
        "github": {
            "existingSecret": "github-oauth",
            "callbackUrl": "https://claude.example.org/hub/oauth_callback",
        },
    }
}

CLASSES = {
    "classes": {
        "physics-101": {
            "learners": ["alice", "carol"],
            "instructors": ["tina"],
            "limits": {
                "dailyTokenBudget": 200000,
                "rateLimitPerMinute": 10,
                "rateLimitBurst": 3,
                "allowedModels": ["claude-haiku-*"],
            },
        },
        "physics-102": {"learners": ["bob", "carol"], "instructors": ["ben", "tina"]},
    }
}


def rendered(*extra: dict[str, Any]) -> Rendering:
    values = KEY_SECRET
    for part in extra:
        values = deep_merge(values, part)
    return render(values)


def roles_by_name(c: Any) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in c.JupyterHub.load_roles}


def test_classes_become_groups_with_limits_and_instructor_roles(tmp_path: Path) -> None:
    c, checked = hub_config(rendered(GITHUB, CLASSES), tmp_path)
    assert c.JupyterHub.load_groups == {
        "physics-101": {
            "users": ["alice", "carol"],
            # the contract's names, as the key proxy reads them from the group
            "properties": {
                "claudehub.limits": {
                    "daily_token_budget": 200000,
                    "rate_limit_per_minute": 10.0,
                    "rate_limit_burst": 3,
                    "allowed_models": ["claude-haiku-*"],
                }
            },
        },
        # no limits: an empty mapping, so limits removed from the values leave the group too
        "physics-102": {"users": ["bob", "carol"], "properties": {"claudehub.limits": {}}},
    }
    roles = roles_by_name(c)
    assert roles["claudehub-instructor-physics-101"]["users"] == ["tina"]
    assert roles["claudehub-instructor-physics-102"]["users"] == ["ben", "tina"]
    assert roles["claudehub-instructor-physics-101"]["scopes"] == [
        "custom:claudehub-class:read!group=physics-101",
        "delete:servers!group=physics-101",
    ]
    # By default the admins are hub admins (they may attach), and nobody is an operator.
    assert c.Authenticator.admin_users == {"olga"}
    assert "claudehub-operator" not in roles
    assert checked["auth"]["adminsAttachServers"] is True


def test_admins_who_may_not_attach_become_operators(tmp_path: Path) -> None:
    c, _ = hub_config(rendered(GITHUB, CLASSES, {"auth": {"adminsAttachServers": False}}), tmp_path)
    assert c.Authenticator.admin_users == set()
    operator = roles_by_name(c)["claudehub-operator"]
    assert operator["users"] == ["olga"]
    assert "access:servers" not in operator["scopes"]
    assert "admin:servers" in operator["scopes"]


def test_no_classes_by_default(default: Rendering, tmp_path: Path) -> None:
    c, checked = hub_config(default, tmp_path)
    assert checked["classes"] == {}
    assert "load_groups" not in c.JupyterHub
    assert not [r for r in c.JupyterHub.load_roles if r["name"].startswith("claudehub-instr")]


def test_every_contract_limit_has_a_value_name() -> None:
    assert sorted(LIMIT_NAMES.values()) == sorted(LIMIT_FIELDS)
    schema = yaml.safe_load((CHART / "values.schema.yaml").read_text())
    class_limits = schema["properties"]["classes"]["additionalProperties"]["properties"]["limits"]
    assert sorted(LIMIT_NAMES) == sorted(class_limits["properties"])


def test_the_example_in_values_yaml_is_valid(tmp_path: Path) -> None:
    """The commented example under `classes:` renders and loads as it stands."""
    text = (CHART / "values.yaml").read_text()
    lines = text.split("\n# For example:\n# classes:\n", 1)[1].split("\n\n", 1)[0]
    example = yaml.safe_load("classes:\n" + "\n".join(x[2:] for x in lines.splitlines()))
    assert set(example["classes"]) == {"physics-101", "physics-102"}
    c, _ = hub_config(rendered(example), tmp_path)
    limits = c.JupyterHub.load_groups["physics-101"]["properties"]["claudehub.limits"]
    assert limits["daily_token_budget"] == 200000


def progress_environment(rendering: Rendering) -> dict[str, str]:
    """The course service container's environment, Secrets resolved."""
    spec = rendering.one("Deployment", "claudehub-progress")["spec"]["template"]["spec"]
    env = {}
    for var in spec["containers"][0]["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        data = rendering.one("Secret", ref["name"])["data"][ref["key"]]
        env[var["name"]] = base64.b64decode(data).decode()
    return env


@pytest.mark.parametrize("counts", [True, False])
def test_the_course_service_gets_the_tutor_switch(
    counts: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rendering = rendered({"progress": {"tutorCompletionsCount": counts}})
    for name, value in progress_environment(rendering).items():
        monkeypatch.setenv(name, value)
    service = ProgressService()
    assert service.tutor_completions_count is counts
    # The hub's ClassSettings gets the same value (it passes it to hub-run services only).
    _, checked = hub_config(rendering, tmp_path)
    assert checked["progress"]["tutorCompletionsCount"] is counts


def test_the_course_service_reads_usage_from_the_key_proxy(
    default: Rendering, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = progress_environment(default)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    service = ProgressService()
    assert service.keyproxy_url == "http://claudehub-keyproxy.claudehub.svc:8080"
    # The key proxy's own admin token (it accepts it for /usage), from the same Secret key.
    keyproxy = default.one("Deployment", "claudehub-keyproxy")["spec"]["template"]["spec"]
    ref = next(
        e["valueFrom"]["secretKeyRef"]
        for e in keyproxy["containers"][0]["env"]
        if e["name"] == "CLAUDEHUB_KEYPROXY_ADMIN_TOKEN"
    )
    token = base64.b64decode(default.one("Secret", ref["name"])["data"][ref["key"]]).decode()
    assert service.keyproxy_admin_token == token
    assert len(token) >= 32
