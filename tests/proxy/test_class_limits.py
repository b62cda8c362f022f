"""Limits per class (hub group) and per user: which limits a learner gets, field by field.

The real hub's side (the groups' properties read with the key proxy's own scopes, changes
without a restart) is in test_real_hub.py; here, the resolution rules and the refusals.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from traitlets import TraitError

from claudehub.proxy.app import KeyProxyApp
from claudehub.proxy.auth import classes_from_groups
from claudehub.proxy.errors import Refusal
from claudehub.proxy.limits import Limits


def body(model: str) -> bytes:
    return json.dumps({"model": model, "max_tokens": 10, "messages": []}).encode()


def refusal(fn: Any, *args: Any) -> Refusal:
    with pytest.raises(Refusal) as info:
        fn(*args)
    return info.value


def test_the_most_generous_class_wins_field_by_field() -> None:
    limits = Limits(daily_token_budget=1000, rate_per_minute=10, allowed_models=["claude-x"])
    limits.set_classes(
        {
            "small": (["alice", "carol"], {"daily_token_budget": 20, "rate_limit_per_minute": 2}),
            "big": (["bob", "carol"], {"daily_token_budget": 5000, "allowed_models": ["h-*"]}),
            "open": (["erin", "bob"], {"daily_token_budget": 0, "allowed_models": []}),
        }
    )
    alice, bob, carol, dave = (limits.rule_for(u) for u in ("alice", "bob", "carol", "dave"))
    # a class stricter than the default applies to its learners
    assert (alice.daily_token_budget, alice.rate_per_minute) == (20, 2)
    assert alice.allowed_models == ("claude-x",)  # small sets no models: the default's
    # in two classes: each field from the more generous one that sets it
    assert (carol.daily_token_budget, carol.rate_per_minute) == (5000, 2)
    assert carol.allowed_models == ("h-*",)
    # no budget (0) and every model (empty list) are the most generous of all
    assert (bob.daily_token_budget, bob.allowed_models) == (0, ())
    # in no class: the key proxy's own settings
    assert dave == limits.default
    assert [limits.budget_for(u) for u in ("alice", "bob", "carol", "dave")] == [20, 0, 5000, 1000]


def test_a_per_user_override_wins_over_the_classes() -> None:
    limits = Limits(
        daily_token_budget=1000,
        budget_overrides={"alice": 0, "bob": 7},
        user_limits={"bob": {"daily_token_budget": 9, "allowed_models": ["m"]}},
    )
    limits.set_classes({"c": (["alice", "bob"], {"daily_token_budget": 50, "allowed_models": []})})
    assert limits.budget_for("alice") == 0  # budget_overrides: 0 is unlimited
    # user_limits wins over the budget_overrides shorthand, and over the class
    assert limits.budget_for("bob") == 9
    assert limits.rule_for("bob").allowed_models == ("m",)


def test_class_rate_and_models_are_enforced_for_its_learners_only() -> None:
    now = [1000.0]
    limits = Limits(rate_per_minute=0, monotonic=lambda: now[0])
    limits.set_classes(
        {"slow": (["alice"], {"rate_limit_per_minute": 1, "allowed_models": ["claude-haiku-*"]})}
    )
    limits.admit("alice")
    r = refusal(limits.admit, "alice")
    assert r.status == 429 and "1 requests per minute" in r.message
    for _ in range(5):
        limits.admit("bob")  # no rate limit outside the class
    assert limits.needs_body("alice") and not limits.needs_body("bob")
    assert limits.check_body(body("claude-haiku-4-5"), "alice") is None
    r = refusal(limits.check_body, body("claude-opus-4-1"), "alice")
    assert r.status == 403 and "Allowed models: claude-haiku-*" in r.message
    assert limits.check_body(body("claude-opus-4-1"), "bob") is None


def test_a_changed_class_applies_at_once_and_an_unchanged_one_is_no_change() -> None:
    limits = Limits(daily_token_budget=100)
    classes = {"c": (["alice"], {"daily_token_budget": 10})}
    assert limits.set_classes(classes)
    assert not limits.set_classes({"c": (["alice"], {"daily_token_budget": 10})})
    limits.add_usage("alice", 15)
    assert refusal(limits.admit, "alice").status == 403
    assert limits.set_classes({"c": (["alice"], {"daily_token_budget": 20})})
    limits.admit("alice")  # the raised budget holds at once; what was spent is kept
    assert limits.used_today("alice") == 15
    assert limits.set_classes({})
    assert limits.budget_for("alice") == 100


def test_groups_from_the_hub_become_classes_and_bad_limits_are_named() -> None:
    groups = [
        {
            "name": "a",
            "users": ["alice"],
            "properties": {"claudehub.limits": {"daily_token_budget": 5}},
        },
        {"name": "plain", "users": ["bob"], "properties": {"colour": "blue"}},
        {
            "name": "bad",
            "users": ["carol"],
            "properties": {"claudehub.limits": {"daily_token_budget": -1}},
        },
        {"name": "typo", "users": ["dan"], "properties": {"claudehub.limits": {"budget": 5}}},
        {
            "name": "everything",
            "users": ["eve"],
            "properties": {"claudehub.limits": {"allowed_models": ["claude-*"]}},
        },
    ]
    classes, problems = classes_from_groups(groups)
    assert classes == {"a": (["alice"], {"daily_token_budget": 5})}
    assert len(problems) == 3
    # a pattern allowing every model is no class list: eve gets the hub-wide models
    assert "group 'everything'" in problems[2] and "would allow every model" in problems[2]
    assert (
        "group 'bad'" in problems[0] and "daily_token_budget must be a whole number" in problems[0]
    )
    assert "group 'typo'" in problems[1] and "unknown limit(s) budget" in problems[1]


def test_user_limits_configuration_is_checked() -> None:
    app = KeyProxyApp()
    app.user_limits = {"teacher": {"daily_token_budget": 0, "rate_limit_per_minute": 120}}
    assert app.build_options().limits.rule_for("teacher").rate_per_minute == 120
    with pytest.raises(TraitError, match=r"user_limits\['bob'\].rate_limit_per_minute"):
        app.user_limits = {"bob": {"rate_limit_per_minute": -1}}
