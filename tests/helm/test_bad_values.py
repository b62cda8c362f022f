"""Bad values fail `helm install` with a message that names the key to fix."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from tests.helm.charts import CHART, KEY_SECRET, deep_merge, render

CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    # (what, values on top of a valid set, strings the error must contain)
    ("typo at the top", {"hubb": {}}, ["additional properties 'hubb' not allowed"]),
    ("typo deep down", {"sandbox": {"quota": {"pod": 3}}}, ["/sandbox/quota", "'pod'"]),
    (
        "typo in a resources block",
        {"hub": {"resources": {"limit": {}}}},
        ["/hub/resources", "'limit'"],
    ),
    ("negative quota", {"sandbox": {"quota": {"pods": -1}}}, ["/sandbox/quota/pods", "minimum"]),
    ("negative GPU quota", {"sandbox": {"quota": {"gpus": -2}}}, ["/sandbox/quota/gpus"]),
    ("zero sandbox pods", {"sandbox": {"quota": {"pods": 0}}}, ["sandbox.quota.pods"]),
    (
        "bad CPU quantity",
        {"sandbox": {"quota": {"requestsCpu": "four"}}},
        ["/sandbox/quota/requestsCpu"],
    ),
    (
        "storage the chart cannot add up",
        {"sandbox": {"quota": {"storage": "50GB"}}},
        ["/sandbox/quota/storage"],
    ),
    ("unknown auth type", {"auth": {"type": "ldap"}}, ["/auth/type", "github", "password"]),
    ("unknown database type", {"hub": {"db": {"type": "mysql"}}}, ["/hub/db/type"]),
    ("postgresql without URL", {"progress": {"db": {"type": "postgresql"}}}, ["progress.db.url"]),
    (
        "github without callback",
        {"auth": {"type": "github", "allowedUsers": ["a"], "github": {"existingSecret": "gh"}}},
        ["auth.github.callbackUrl"],
    ),
    (
        "github without credentials",
        {
            "auth": {
                "type": "github",
                "allowedUsers": ["a"],
                "github": {"callbackUrl": "https://x.example/hub/oauth_callback"},
            }
        },
        ["auth.github.existingSecret"],
    ),
    (
        "github open to everyone",
        {
            "auth": {
                "type": "github",
                "github": {
                    "existingSecret": "gh",
                    "callbackUrl": "https://x.example/hub/oauth_callback",
                },
            }
        },
        ["auth.github.allowedOrganizations", "auth.allowedUsers"],
    ),
    ("short trial password", {"auth": {"password": {"value": "secret"}}}, ["/auth/password/value"]),
    (
        "callback URL that is not the hub's",
        {
            "auth": {
                "type": "github",
                "allowedUsers": ["a"],
                "github": {"existingSecret": "gh", "callbackUrl": "https://x.example/callback"},
            }
        },
        ["/auth/github/callbackUrl"],
    ),
    ("two keys", {"keyproxy": {"apiKey": {"value": "sk-ant-x"}}}, ["keyproxy.apiKey", "not both"]),
    ("SQLite usage DB with 2 replicas", {"keyproxy": {"replicas": 2}}, ["keyproxy.replicas"]),
    (
        "namespace to create without a name",
        {"sandbox": {"createNamespace": True}},
        ["sandbox.createNamespace"],
    ),
    ("ingress without hosts", {"proxy": {"ingress": {"enabled": True}}}, ["proxy.ingress.hosts"]),
    (
        "GPU profile over the quota",
        {"sandbox": {"gpu": {"enabled": True, "count": 2}, "quota": {"gpus": 1}}},
        ["sandbox.quota.gpus"],
    ),
    (
        "node port out of range",
        {"proxy": {"service": {"nodePort": 80}}},
        ["/proxy/service/nodePort"],
    ),
    (
        "bad CIDR",
        {"networkPolicy": {"kubeApi": {"ipBlocks": [{"cidr": "10.0.0.0"}]}}},
        ["/networkPolicy/kubeApi/ipBlocks/0/cidr"],
    ),
    (
        "course id with a space",
        {"progress": {"courses": [{"id": "my course", "repo": "https://g.example/c.git"}]}},
        ["/progress/courses/0/id"],
    ),
    ("bad digest", {"image": {"digest": "latest"}}, ["/image/digest"]),
    ("class name with capitals", {"classes": {"Physics": {}}}, ["'Physics'", "pattern"]),
    ("class name with a slash", {"classes": {"a/b": {}}}, ["'a/b'", "pattern"]),
    (
        "unknown key in a class",
        {"classes": {"physics": {"students": ["a"]}}},
        ["/classes/physics", "'students'"],
    ),
    (
        "snake_case limit name",
        {"classes": {"physics": {"limits": {"daily_token_budget": 5}}}},
        ["/classes/physics/limits", "'daily_token_budget'"],
    ),
    (
        "negative class budget",
        {"classes": {"physics": {"limits": {"dailyTokenBudget": -1}}}},
        ["/classes/physics/limits/dailyTokenBudget", "minimum"],
    ),
    (
        "fractional burst",
        {"classes": {"physics": {"limits": {"rateLimitBurst": 1.5}}}},
        ["/classes/physics/limits/rateLimitBurst"],
    ),
    (
        "learners not a list",
        {"classes": {"physics": {"learners": "alice"}}},
        ["/classes/physics/learners"],
    ),
    (
        "admins who may not attach, with the shared password",
        {"auth": {"adminsAttachServers": False}},
        ["auth.adminsAttachServers", "auth.type github"],
    ),
    ("tutor switch not a boolean", {"progress": {"tutorCompletionsCount": "no"}}, ["/progress"]),
    (
        "user volume over the LimitRange",
        {"sandbox": {"storage": {"capacity": "20Gi"}}},
        ["sandbox.storage.capacity", "sandbox.limitRange.maxStorage"],
    ),
]


@pytest.mark.parametrize(("what", "extra", "needles"), CASES, ids=[c[0] for c in CASES])
def test_bad_values_fail_naming_the_key(
    what: str, extra: dict[str, Any], needles: list[str]
) -> None:
    values = deep_merge(KEY_SECRET, extra)
    with pytest.raises(helm_python.HelmError) as err:
        render(values)
    message = str(err.value)
    for needle in needles:
        assert needle in message, f"{what}: {needle!r} not in {message!r}"


def test_missing_key_secret_reference_fails_naming_the_key() -> None:
    with pytest.raises(helm_python.HelmError) as err:
        render({})
    assert "keyproxy.apiKey.existingSecret" in str(err.value)
    assert "kubectl create secret generic" in str(err.value)


def test_schema_validation_names_the_key_without_rendering() -> None:
    with helm_python.Chart.load(CHART) as chart:
        with pytest.raises(helm_python.HelmValuesError, match="'replica'"):
            chart.validate_schema({"keyproxy": {"replica": 2}})
        chart.validate_schema(KEY_SECRET)  # a valid set passes
