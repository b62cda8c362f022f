"""Per-user limits: request rate, daily token budget, model allowlist, max_tokens cap.

Everything here is in memory and O(1) per request: key proxies that share a usage database
bring each other's usage in from the side (:mod:`claudehub.proxy.shared`), never on a
request's path. Refusals are :class:`Refusal` errors with
messages meant for the person at the keyboard (Claude Code prints them as they are).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from claudehub.contract.models import MODEL_ID_RULE, is_model_id, shown
from claudehub.contract.tokens import AUTHOR
from claudehub.proxy.errors import Refusal
from claudehub.proxy.rules import Rule, apply, resolve

#: How an author session's usage is named: ``<user>/author``. JupyterHub refuses a ``/`` in a
#: user name, so this never is a learner's name; the usage and daily-total rows, the budget
#: and the rate bucket of a user's author sessions are apart from their learning's.
AUTHOR_SUFFIX = "/" + AUTHOR


def metered_user(user: str, kind: str | None) -> str:
    """Whose usage and limits a request counts against: ``user`` for a learner's session,
    ``<user>/author`` for an author session's (its token's ``knd`` claim)."""
    return user + AUTHOR_SUFFIX if kind == AUTHOR else user


def is_author(subject: str) -> bool:
    """Whether ``subject`` (a :func:`metered_user` name) is an author session's."""
    return subject.endswith(AUTHOR_SUFFIX)


def utc_day(ts: float) -> int:
    """Days since the epoch (UTC) for a UNIX timestamp: the budget period."""
    return int(ts // 86400)


def _human_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{seconds} s"


class Limits:
    """The limits one key proxy enforces. A value of 0 (or an empty list) turns a limit off.

    ``rate_per_minute`` requests per user per minute, as a token bucket holding ``burst``
    requests; ``daily_token_budget`` tokens per user per UTC day; ``allowed_models`` are exact
    names or shell patterns (``claude-haiku-*``); requests asking for more than
    ``max_tokens_cap`` output tokens are clamped to it (``max_tokens_policy="clamp"``) or
    refused (``"reject"``). These are the defaults: the hub's classes (:meth:`set_classes`)
    and per-user overrides (``user_limits``, ``budget_overrides``) change them per user, as
    :mod:`claudehub.proxy.rules` says.
    """

    def __init__(
        self,
        *,
        rate_per_minute: float = 0,
        burst: int = 0,
        daily_token_budget: int = 0,
        budget_overrides: dict[str, int] | None = None,
        user_limits: Mapping[str, Mapping[str, Any]] | None = None,
        author_limits: Mapping[str, Any] | None = None,
        allowed_models: Sequence[str] = (),
        max_tokens_cap: int = 0,
        max_tokens_policy: str = "clamp",
        cache_read_weight: float = 0.1,
        monotonic: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        #: What a user in no class with limits, and without an override, gets.
        self.default = Rule(
            rate_per_minute=float(rate_per_minute),
            burst=int(burst),
            daily_token_budget=int(daily_token_budget),
            allowed_models=tuple(allowed_models),
            max_tokens_cap=int(max_tokens_cap),
        )
        # per-user overrides: user_limits, with budget_overrides filling in the budget
        overrides = {u: dict(spec) for u, spec in (user_limits or {}).items()}
        for user, budget in (budget_overrides or {}).items():
            overrides.setdefault(user, {}).setdefault("daily_token_budget", int(budget))
        self.overrides: dict[str, dict[str, Any]] = overrides
        # class -> (members, limits), as the hub last reported them
        self._classes: dict[str, tuple[list[str], dict[str, Any]]] = {}
        #: What every author session gets (``author_limits`` over the defaults; classes do
        #: not apply: they limit learning). ``user_limits["<user>/author"]`` overrides it.
        self.author_rule = apply(self.default, dict(author_limits or {}))
        self._rules: dict[str, Rule] = self._resolve({})
        self.max_tokens_policy = max_tokens_policy
        self.cache_read_weight = cache_read_weight
        self.monotonic = monotonic
        self.wallclock = wallclock
        self._buckets: dict[str, list[float]] = {}
        # user -> [utc day, tokens used that day] (by every replica, as far as this one knows)
        self._used: dict[str, list[int]] = {}
        # user -> tokens this replica counted since they were last handed to the database
        self._unsynced: dict[str, int] = {}
        #: The part of the rate limit this replica enforces (1 / live replicas), so that
        #: together they allow the configured rate and no more.
        self.rate_share = 1.0

    # -- whose limits are which ------------------------------------------------------------
    def rule_for(self, user: str) -> Rule:
        """The limits ``user`` gets now (override, else their classes, else the default); an
        author session's (``<user>/author``): its override, else the author limits."""
        rule = self._rules.get(user)
        if rule is not None:
            return rule
        return self.author_rule if is_author(user) else self.default

    def set_classes(self, classes: Mapping[str, tuple[Iterable[str], Mapping[str, Any]]]) -> bool:
        """Replace the classes' members and limits (from the hub); True when that changed."""
        new = {name: (sorted(members), dict(spec)) for name, (members, spec) in classes.items()}
        if new == self._classes:
            return False
        self._classes = new
        self._rules = self._resolve(new)
        return True

    def _resolve(
        self, classes: Mapping[str, tuple[Iterable[str], Mapping[str, Any]]]
    ) -> dict[str, Rule]:
        learners = {u: spec for u, spec in self.overrides.items() if not is_author(u)}
        rules = resolve(self.default, classes, learners)
        for user, spec in self.overrides.items():
            if is_author(user):
                rules[user] = apply(self.author_rule, spec)
        return rules

    @property
    def classes(self) -> dict[str, tuple[list[str], dict[str, Any]]]:
        """The classes with limits as the hub last reported them."""
        return dict(self._classes)

    def needs_body(self, user: str) -> bool:
        """Whether ``user``'s requests must be parsed as JSON before they are forwarded."""
        return self.rule_for(user).needs_body

    # -- rate and budget (checked as soon as the headers are in) --------------------------
    def admit(self, user: str) -> None:
        """Take one request from ``user``'s bucket, or raise a 429/403 :class:`Refusal`."""
        rule = self.rule_for(user)
        if rule.rate > 0:
            now = self.monotonic()
            rate = rule.rate * self.rate_share
            burst = max(1.0, rule.bucket_size * self.rate_share)
            bucket = self._buckets.get(user)
            if bucket is None:
                bucket = self._buckets[user] = [burst, now]
            tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
            if tokens < 1.0:
                bucket[0] = tokens
                wait = math.ceil((1.0 - tokens) / rate)
                per_minute = round(rule.rate_per_minute, 2)
                raise Refusal(
                    429,
                    "rate_limit_error",
                    f"Too many requests: this hub allows {per_minute:g} requests per minute per "
                    f"user. Try again in {wait} s.",
                    "rate_limit",
                    (("retry-after", str(wait)),),
                )
            bucket[0] = tokens - 1.0
        budget = rule.daily_token_budget
        if budget > 0:
            used = self.used_today(user)
            if used >= budget:
                now_wall = self.wallclock()
                reset_in = (utc_day(now_wall) + 1) * 86400 - now_wall
                raise Refusal(
                    403,
                    "permission_error",
                    f"You have used today's budget of {budget:,} tokens on this hub "
                    f"({used:,} used). It resets at 00:00 UTC, in {_human_duration(reset_in)}. "
                    "Ask an administrator if you need more.",
                    "budget",
                )

    def budget_for(self, user: str) -> int:
        """``user``'s daily token budget (0: none)."""
        return self.rule_for(user).daily_token_budget

    def used_today(self, user: str) -> int:
        entry = self._used.get(user)
        if entry is None or entry[0] != utc_day(self.wallclock()):
            return 0
        return entry[1]

    def budget_tokens(self, usage: Sequence[int]) -> int:
        """Tokens a response costs against the budget.

        ``usage`` is (input, output, cache creation, cache read); cache reads are weighted
        (they cost a tenth of fresh input).
        """
        return int(usage[0] + usage[1] + usage[2] + usage[3] * self.cache_read_weight)

    def add_usage(self, user: str, tokens: int, ts: float | None = None) -> None:
        """Count ``tokens`` against ``user``'s budget of the day of ``ts`` (default: now)."""
        day = utc_day(self.wallclock() if ts is None else ts)
        entry = self._used.get(user)
        if entry is None or entry[0] != day:
            if entry is not None and entry[0] > day:
                return  # a late record from yesterday
            self._used[user] = [day, tokens]
        else:
            entry[1] += tokens
        self._unsynced[user] = self._unsynced.get(user, 0) + tokens

    # -- sharing with other replicas (called by SharedLimits, off the request path) -------
    def take_unsynced(self) -> dict[str, int]:
        """This replica's usage since the last call, per user; the count starts again."""
        taken, self._unsynced = self._unsynced, {}
        return taken

    def give_back_unsynced(self, taken: dict[str, int]) -> None:
        """Undo :meth:`take_unsynced` (the database did not get that usage after all)."""
        for user, tokens in taken.items():
            self._unsynced[user] = self._unsynced.get(user, 0) + tokens

    def set_shared_usage(self, day: int, totals: dict[str, int]) -> None:
        """Today's usage per user as every replica wrote it to the database, plus what this
        replica counted since it handed its own over."""
        if day != utc_day(self.wallclock()):
            return  # the day turned while the database was read: yesterday's totals
        for user, tokens in totals.items():
            self._used[user] = [day, tokens + self._unsynced.get(user, 0)]

    # -- body checks (only when a model allowlist or a max_tokens cap is configured) -------
    def check_body(self, body: bytes, user: str) -> bytes | None:
        """Check ``user``'s request body; return a replacement (clamped max_tokens) or None.

        The body is read the strictest way a JSON reader could: UTF-8 only and no key twice
        in any object, so that no other reader (the upstream's) can see another ``model``
        than the one compared here (claudehub.contract.models says how).
        """
        rule = self.rule_for(user)
        data = _strict_json(body)
        if not isinstance(data, dict):
            raise Refusal(
                400,
                "invalid_request_error",
                "The request body must be a JSON object.",
                "bad_json",
            )
        model = data.get("model")
        if rule.allowed_models:
            if not is_model_id(model):
                raise Refusal(
                    400,
                    "invalid_request_error",
                    f"model: {shown(model)} is not a model id ({MODEL_ID_RULE}).",
                    "bad_model",
                )
            if not rule.model_allowed(model):
                allowed = ", ".join(rule.allowed_models)
                raise Refusal(
                    403,
                    "permission_error",
                    f"The model {model!r} is not available on this hub. Allowed models: "
                    f"{allowed}. Choose one with /model (or ANTHROPIC_MODEL).",
                    "model",
                )
        cap = rule.max_tokens_cap
        max_tokens = data.get("max_tokens")
        if cap > 0 and isinstance(max_tokens, int) and max_tokens > cap:
            if self.max_tokens_policy == "reject":
                raise Refusal(
                    403,
                    "permission_error",
                    f"max_tokens {max_tokens} is more than this hub allows ({cap}). "
                    f"Set CLAUDE_CODE_MAX_OUTPUT_TOKENS={cap} or lower max_tokens.",
                    "max_tokens",
                )
            data["max_tokens"] = cap
            thinking = data.get("thinking")
            if isinstance(thinking, dict) and isinstance(thinking.get("budget_tokens"), int):
                # the API requires budget_tokens < max_tokens
                thinking["budget_tokens"] = min(thinking["budget_tokens"], cap - 1)
            return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        return None


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def _strict_json(body: bytes) -> Any:
    """``body`` parsed as JSON in UTF-8 with no repeated key, or a 400 :class:`Refusal`."""
    try:
        # json.loads(bytes) would also guess UTF-16 and UTF-32: the API reads UTF-8 only
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal(
            400, "invalid_request_error", "The request body is not UTF-8.", "bad_json"
        ) from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as e:
        raise Refusal(
            400,
            "invalid_request_error",
            f"The request body has the key {shown(e.key)} twice in one object.",
            "bad_json",
        ) from None
    except ValueError:  # json.JSONDecodeError, or a number too long to convert
        raise Refusal(
            400,
            "invalid_request_error",
            "The request body is not valid JSON.",
            "bad_json",
        ) from None
    except RecursionError:
        raise Refusal(
            400,
            "invalid_request_error",
            "The request body nests too deeply.",
            "bad_json",
        ) from None
