"""Per-user limits: request rate, daily token budget, model allowlist, max_tokens cap.

Everything here is in memory and O(1) per request: key proxies that share a usage database
bring each other's usage in from the side (:mod:`claudehub.proxy.shared`), never on a
request's path. Refusals are :class:`Refusal` errors with
messages meant for the person at the keyboard (Claude Code prints them as they are).
"""

from __future__ import annotations

import fnmatch
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from claudehub.proxy.errors import Refusal


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
    requests; ``daily_token_budget`` tokens per user per UTC day (``budget_overrides`` per user);
    ``allowed_models`` are exact names or shell patterns (``claude-haiku-*``); requests asking for
    more than ``max_tokens_cap`` output tokens are clamped to it (``max_tokens_policy="clamp"``)
    or refused (``"reject"``).
    """

    def __init__(
        self,
        *,
        rate_per_minute: float = 0,
        burst: int = 0,
        daily_token_budget: int = 0,
        budget_overrides: dict[str, int] | None = None,
        allowed_models: Sequence[str] = (),
        max_tokens_cap: int = 0,
        max_tokens_policy: str = "clamp",
        cache_read_weight: float = 0.1,
        monotonic: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self.rate = rate_per_minute / 60.0
        self.burst = float(burst or math.ceil(rate_per_minute) or 1)
        self.daily_token_budget = daily_token_budget
        self.budget_overrides = dict(budget_overrides or {})
        self.allowed_models = list(allowed_models)
        self._exact_models = {m for m in self.allowed_models if not any(c in m for c in "*?[")}
        self._model_patterns = [m for m in self.allowed_models if m not in self._exact_models]
        self.max_tokens_cap = max_tokens_cap
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

    @property
    def needs_body(self) -> bool:
        """Whether requests must be parsed as JSON before they are forwarded."""
        return bool(self.allowed_models) or self.max_tokens_cap > 0

    # -- rate and budget (checked as soon as the headers are in) --------------------------
    def admit(self, user: str) -> None:
        """Take one request from ``user``'s bucket, or raise a 429/403 :class:`Refusal`."""
        if self.rate > 0:
            now = self.monotonic()
            rate = self.rate * self.rate_share
            burst = max(1.0, self.burst * self.rate_share)
            bucket = self._buckets.get(user)
            if bucket is None:
                bucket = self._buckets[user] = [burst, now]
            tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
            if tokens < 1.0:
                bucket[0] = tokens
                wait = math.ceil((1.0 - tokens) / rate)
                per_minute = round(self.rate * 60, 2)
                raise Refusal(
                    429,
                    "rate_limit_error",
                    f"Too many requests: this hub allows {per_minute:g} requests per minute per "
                    f"user. Try again in {wait} s.",
                    "rate_limit",
                    (("retry-after", str(wait)),),
                )
            bucket[0] = tokens - 1.0
        budget = self.budget_for(user)
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
        return self.budget_overrides.get(user, self.daily_token_budget)

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
    def check_body(self, body: bytes) -> bytes | None:
        """Check a request body; return a replacement body (clamped max_tokens) or None."""
        try:
            data: Any = json.loads(body)
        except ValueError:
            raise Refusal(
                400,
                "invalid_request_error",
                "The request body is not valid JSON.",
                "bad_json",
            ) from None
        if not isinstance(data, dict):
            raise Refusal(
                400,
                "invalid_request_error",
                "The request body must be a JSON object.",
                "bad_json",
            )
        model = data.get("model")
        if self.allowed_models and not self.model_allowed(model):
            allowed = ", ".join(self.allowed_models)
            raise Refusal(
                403,
                "permission_error",
                f"The model {model!r} is not available on this hub. Allowed models: {allowed}. "
                "Choose one with /model (or ANTHROPIC_MODEL).",
                "model",
            )
        cap = self.max_tokens_cap
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

    def model_allowed(self, model: object) -> bool:
        if not isinstance(model, str):
            return False
        if model in self._exact_models:
            return True
        return any(fnmatch.fnmatchcase(model, p) for p in self._model_patterns)
