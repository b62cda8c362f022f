"""Key proxy limits set per class: what the hub writes on a group and the key proxy reads.

A class is a JupyterHub group. Its limits travel in the group's ``properties`` under
:data:`GROUP_LIMITS_PROPERTY`, so the key proxy reads them with the hub API scopes it
polls with (``list:groups``, ``read:groups``) and an operator can change them through the
hub's REST API (``PUT /hub/api/groups/<name>/properties``) without restarting anything.
The same shape is the key proxy's per-user override (``KeyProxyApp.user_limits``).

Every field is optional; one left out means "this class does not set it":

``daily_token_budget``
    tokens per learner per UTC day, 0 for no budget;
``rate_limit_per_minute``
    requests per learner per minute, 0 for no limit;
``rate_limit_burst``
    requests a learner may make at once before the rate applies (0: the rate per minute);
``allowed_models``
    model ids or patterns (``claude-haiku-*``), compared as :mod:`claudehub.contract.models`
    says; an empty list allows every model. A class's list replaces the hub-wide one for its
    learners, so it may narrow it or widen it.
"""

from __future__ import annotations

import math
from typing import Any

from claudehub.contract.models import check_allowlist

#: The group property holding a class's limits.
GROUP_LIMITS_PROPERTY = "claudehub.limits"

#: The fields of a limits mapping, with what each one must be (for error messages).
LIMIT_FIELDS = {
    "daily_token_budget": "a whole number of tokens, 0 or more (0: no budget)",
    "rate_limit_per_minute": "a number of requests per minute, 0 or more (0: no limit)",
    "rate_limit_burst": "a whole number of requests, 0 or more (0: the rate per minute)",
    "allowed_models": "a list of model ids or patterns (empty: every model)",
}


def parse_limits(value: Any, where: str) -> dict[str, Any]:
    """Check a limits mapping and return it normalised (models as a list of strings).

    Raises :class:`ValueError` naming ``where`` (e.g. ``classes.physics.limits``), the
    field and what it must be.
    """
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a mapping of limits, not {value!r}")
    unknown = sorted(str(k) for k in value if k not in LIMIT_FIELDS)
    if unknown:
        raise ValueError(
            f"{where}: unknown limit(s) {', '.join(unknown)} (known: {', '.join(LIMIT_FIELDS)})"
        )
    out: dict[str, Any] = {}
    for name, raw in value.items():
        if raw is None:
            continue
        key = f"{where}.{name}"
        if name == "allowed_models":
            if not isinstance(raw, list):
                raise ValueError(f"{key} must be {LIMIT_FIELDS[name]}, not {raw!r}")
            out[name] = check_allowlist(raw, key)
        elif name == "rate_limit_per_minute":
            if (
                isinstance(raw, bool)
                or not isinstance(raw, int | float)
                or not math.isfinite(raw)
                or raw < 0
            ):
                raise ValueError(f"{key} must be {LIMIT_FIELDS[name]}, not {raw!r}")
            out[name] = float(raw)
        else:
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
                raise ValueError(f"{key} must be {LIMIT_FIELDS[name]}, not {raw!r}")
            out[name] = raw
    return out
