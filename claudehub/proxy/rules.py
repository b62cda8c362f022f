"""Whose limits are which: the key proxy's defaults, its classes' limits and per-user overrides.

A learner's limits are resolved field by field (daily budget, rate, burst, models):

1. a per-user override (``KeyProxyApp.user_limits`` or ``budget_overrides``) wins;
2. else, among the learner's classes (hub groups whose properties carry limits, see
   :mod:`claudehub.contract.limits`) that set the field, the most generous one: no budget
   (0) over any budget, else the largest; likewise for the rate; the largest burst; every
   model any of them allows (an empty list, all models, over any list);
3. else the key proxy's own setting.

The result is one :class:`Rule` per user, worked out when the configuration or the hub's
classes change, so the request path does a single dictionary lookup.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from claudehub.contract.models import Allowlist


@dataclass(frozen=True)
class Rule:
    """The limits one user gets. Zero (or an empty model list) turns a limit off."""

    rate_per_minute: float = 0.0
    burst: int = 0
    daily_token_budget: int = 0
    allowed_models: tuple[str, ...] = ()
    max_tokens_cap: int = 0
    models: Allowlist = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", Allowlist(self.allowed_models))

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.rate_per_minute / 60.0

    @property
    def bucket_size(self) -> float:
        """Requests a user may make at once."""
        return float(self.burst or math.ceil(self.rate_per_minute) or 1)

    @property
    def needs_body(self) -> bool:
        """Whether this user's requests must be parsed as JSON before they are forwarded."""
        return bool(self.allowed_models) or self.max_tokens_cap > 0

    def model_allowed(self, model: str) -> bool:
        """Whether this user may use the model id ``model`` (claudehub.contract.models)."""
        return self.models.allows(model)


def _most_generous(specs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge the limits of several classes: per field, the most generous class that sets it."""
    out: dict[str, Any] = {}
    for name in ("daily_token_budget", "rate_limit_per_minute"):
        values = [s[name] for s in specs if name in s]
        if values:
            out[name] = 0 if 0 in values else max(values)
    bursts = [s["rate_limit_burst"] for s in specs if "rate_limit_burst" in s]
    if bursts:
        out["rate_limit_burst"] = max(bursts)
    model_lists = [s["allowed_models"] for s in specs if "allowed_models" in s]
    if model_lists:
        if any(not models for models in model_lists):
            out["allowed_models"] = []
        else:
            out["allowed_models"] = list(dict.fromkeys(m for ms in model_lists for m in ms))
    return out


def apply(rule: Rule, spec: Mapping[str, Any]) -> Rule:
    """``rule`` with the fields ``spec`` sets (a checked limits mapping) replaced."""
    return Rule(
        rate_per_minute=float(spec.get("rate_limit_per_minute", rule.rate_per_minute)),
        burst=int(spec.get("rate_limit_burst", rule.burst)),
        daily_token_budget=int(spec.get("daily_token_budget", rule.daily_token_budget)),
        allowed_models=tuple(spec.get("allowed_models", rule.allowed_models)),
        max_tokens_cap=rule.max_tokens_cap,
    )


def resolve(
    default: Rule,
    classes: Mapping[str, tuple[Iterable[str], Mapping[str, Any]]],
    overrides: Mapping[str, Mapping[str, Any]],
) -> dict[str, Rule]:
    """Each user's rule, for users whose limits differ from ``default`` in some field.

    ``classes`` maps a class to (its members, its checked limits); ``overrides`` maps a user
    to their own checked limits.
    """
    per_user: dict[str, list[Mapping[str, Any]]] = {}
    for members, spec in classes.values():
        if not spec:
            continue
        for user in members:
            per_user.setdefault(user, []).append(spec)
    rules: dict[str, Rule] = {}
    for user in set(per_user) | set(overrides):
        merged = _most_generous(per_user.get(user, []))
        merged.update(overrides.get(user, {}))
        rule = apply(default, merged)
        if rule != default:
            rules[user] = rule
    return rules
