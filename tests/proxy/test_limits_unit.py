"""The limit arithmetic itself, on fake clocks."""

from __future__ import annotations

import pytest

from claudehub.proxy.errors import Refusal
from claudehub.proxy.limits import Limits


def test_rate_bucket_refills_at_the_configured_rate() -> None:
    clock = [1000.0]
    limits = Limits(rate_per_minute=6, burst=2, monotonic=lambda: clock[0])
    limits.admit("u")
    limits.admit("u")
    with pytest.raises(Refusal) as refused:
        limits.admit("u")
    assert refused.value.headers == (("retry-after", "10"),)
    clock[0] += 10  # one request's worth (6 per minute)
    limits.admit("u")
    with pytest.raises(Refusal):
        limits.admit("u")
    clock[0] += 3600  # the bucket holds at most `burst`
    limits.admit("u")
    limits.admit("u")
    with pytest.raises(Refusal):
        limits.admit("u")


def test_budget_resets_at_utc_midnight_and_weights_cache_reads() -> None:
    wall = [86400.0 * 20000 + 3600]  # 01:00 UTC
    limits = Limits(daily_token_budget=1000, wallclock=lambda: wall[0])
    assert limits.budget_tokens([100, 200, 50, 1000]) == 450  # cache reads count a tenth
    limits.add_usage("u", 1000)
    with pytest.raises(Refusal) as refused:
        limits.admit("u")
    assert "in 23 h 0 min" in refused.value.message
    wall[0] += 23 * 3600
    limits.admit("u")
    assert limits.used_today("u") == 0
