"""Prometheus metrics kept as plain counters (a dict increment on the hot path), rendered on scrape.

The prometheus_client library costs microseconds per labelled increment; the proxy's whole
per-request budget is ~100 µs, so counters live in dicts here and are formatted only when
``/metrics`` is scraped. Labels are low-cardinality (path, status, model, reason): per-user
numbers come from the admin usage endpoint, not from metrics.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

PREFIX = "claudehub_keyproxy_"
_TOKEN_KINDS = ("input", "output", "cache_creation", "cache_read")
TTFB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    inner = ",".join(
        f'{n}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34)).replace(chr(10), " ")}"'
        for n, v in zip(names, values, strict=True)
    )
    return "{" + inner + "}"


class Metrics:
    """All of the key proxy's metrics."""

    def __init__(self) -> None:
        # (path, status) -> count
        self.requests: dict[tuple[str, int], int] = {}
        # reason -> count
        self.refusals: dict[str, int] = {}
        # (model, kind) -> tokens
        self.tokens: dict[tuple[str, str], int] = {}
        # kind -> count (connect, timeout, reset, protocol)
        self.upstream_errors: dict[str, int] = {}
        self.client_disconnects = 0
        self.bad_requests = 0
        self.ttfb_buckets = [0] * (len(TTFB_BUCKETS) + 1)
        self.ttfb_sum = 0.0
        self.ttfb_count = 0
        self.usage_written: Callable[[], int] = lambda: 0
        self.usage_write_errors: Callable[[], int] = lambda: 0
        self.hub_poll_errors = 0
        self.key_reloads = 0
        # name -> (help, callable returning the current value)
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    # -- counting (each a dict or int increment: these run on the hot path) ---------------
    def observe_ttfb(self, seconds: float) -> None:
        """One upstream time to first byte (response headers), into the histogram."""
        self.ttfb_buckets[bisect.bisect_left(TTFB_BUCKETS, seconds)] += 1
        self.ttfb_sum += seconds
        self.ttfb_count += 1

    def refuse(self, reason: str) -> None:
        """One request the proxy refused itself, by reason."""
        self.refusals[reason] = self.refusals.get(reason, 0) + 1

    def count_request(self, path: str, status: int) -> None:
        """One answered request, by path (``other`` for unknown ones) and status."""
        key = (path, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def count_tokens(self, model: str, usage: Sequence[int]) -> None:
        """Tokens one response used: ``usage`` is (input, output, cache creation, cache read)."""
        tokens = self.tokens
        for kind, n in zip(_TOKEN_KINDS, usage, strict=True):
            if n:
                key = (model, kind)
                tokens[key] = tokens.get(key, 0) + n

    def count_upstream_error(self, kind: str) -> None:
        """One upstream failure: ``connect``, ``timeout``, ``reset`` ..."""
        self.upstream_errors[kind] = self.upstream_errors.get(kind, 0) + 1

    def count_client_disconnect(self) -> None:
        """A client went away before its response ended."""
        self.client_disconnects += 1

    def count_bad_request(self) -> None:
        """A request that could not be parsed as HTTP."""
        self.bad_requests += 1

    def count_hub_poll_error(self) -> None:
        """A failed poll of the hub for running servers."""
        self.hub_poll_errors += 1

    def count_key_reload(self) -> None:
        """The real key was (re)loaded from its file."""
        self.key_reloads += 1

    def gauge(self, name: str, help_text: str, fn: Callable[[], float]) -> None:
        """Register a gauge whose value is read at scrape time."""
        self.gauges[name] = (help_text, fn)

    def render(self) -> bytes:
        """The Prometheus text exposition format (version 0.0.4)."""
        out: list[str] = []

        def head(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {PREFIX}{name} {help_text}")
            out.append(f"# TYPE {PREFIX}{name} {kind}")

        head("requests_total", "counter", "Requests answered, by path and HTTP status.")
        for (path, status), n in sorted(self.requests.items()):
            out.append(
                f"{PREFIX}requests_total{_labels(('path', 'status'), (path, str(status)))} {n}"
            )
        head("refusals_total", "counter", "Requests the proxy refused itself, by reason.")
        for reason, n in sorted(self.refusals.items()):
            out.append(f"{PREFIX}refusals_total{_labels(('reason',), (reason,))} {n}")
        head("tokens_total", "counter", "Tokens reported by the upstream, by model and kind.")
        for (model, kind), n in sorted(self.tokens.items()):
            out.append(f"{PREFIX}tokens_total{_labels(('model', 'kind'), (model, kind))} {n}")
        head("upstream_errors_total", "counter", "Upstream failures, by kind.")
        for kind, n in sorted(self.upstream_errors.items()):
            out.append(f"{PREFIX}upstream_errors_total{_labels(('kind',), (kind,))} {n}")
        for name, help_text, value in (
            (
                "client_disconnects_total",
                "Clients that went away before their response ended.",
                self.client_disconnects,
            ),
            ("bad_requests_total", "Unparseable or malformed HTTP requests.", self.bad_requests),
            (
                "usage_records_written_total",
                "Usage rows (per-window sums) written to the database.",
                self.usage_written(),
            ),
            (
                "usage_write_errors_total",
                "Failed usage database writes.",
                self.usage_write_errors(),
            ),
            ("hub_poll_errors_total", "Failed polls of the JupyterHub API.", self.hub_poll_errors),
            (
                "key_reloads_total",
                "Times the real key was (re)loaded from its file.",
                self.key_reloads,
            ),
        ):
            head(name, "counter", help_text)
            out.append(f"{PREFIX}{name} {value}")
        head(
            "upstream_ttfb_seconds",
            "histogram",
            "Time from sending a request upstream to its response headers.",
        )
        cumulative = 0
        for bound, n in zip(TTFB_BUCKETS, self.ttfb_buckets, strict=False):
            cumulative += n
            out.append(f'{PREFIX}upstream_ttfb_seconds_bucket{{le="{bound}"}} {cumulative}')
        cumulative += self.ttfb_buckets[-1]
        out.append(f'{PREFIX}upstream_ttfb_seconds_bucket{{le="+Inf"}} {cumulative}')
        out.append(f"{PREFIX}upstream_ttfb_seconds_sum {self.ttfb_sum}")
        out.append(f"{PREFIX}upstream_ttfb_seconds_count {self.ttfb_count}")
        for name, (help_text, fn) in sorted(self.gauges.items()):
            head(name, "gauge", help_text)
            out.append(f"{PREFIX}{name} {fn()}")
        return ("\n".join(out) + "\n").encode()
