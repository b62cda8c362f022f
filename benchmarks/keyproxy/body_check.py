"""What the model allowlist costs per request: the key proxy's body check on Claude Code bodies.

With a model allowlist (now on for every learner whenever the hub offers models), the key
proxy parses each request body before it forwards it. This times, in one process and on the
same bodies, side by side:

- ``none``: no allowlist and no cap (the body is forwarded undecoded);
- ``plain``: ``json.loads`` alone (what the check cost before it was made strict);
- ``strict``: :meth:`claudehub.proxy.limits.Limits.check_body` as shipped (UTF-8 only, no key
  twice in an object, the model compared with the allowlist).

Bodies are shaped like Claude Code's (a system prompt, tool definitions with JSON schemas, a
conversation of text, tool_use and tool_result blocks) at three sizes. Reports the median of
``--rounds`` rounds of ``--n`` checks, in microseconds per request, and strict / plain.

    .venv/bin/python benchmarks/keyproxy/body_check.py [--rounds 7] [--n 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from claudehub.proxy.limits import Limits


def claude_code_body(turns: int) -> bytes:
    """A request like Claude Code's with ``turns`` tool round trips."""
    tools = [
        {
            "name": name,
            "description": "Reads files from the course folder. " * 20,
            "input_schema": {
                "type": "object",
                "properties": {
                    f"arg{i}": {"type": "string", "description": "An argument. " * 5}
                    for i in range(6)
                },
                "required": ["arg0"],
                "additionalProperties": False,
            },
        }
        for name in ("Read", "Glob", "Grep")
    ]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What is this course about?"}]
    for i in range(turns):
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me read the lesson. " * 8},
                    {
                        "type": "tool_use",
                        "id": f"toolu_{i:04d}",
                        "name": "Read",
                        "input": {"arg0": f"/srv/course/lesson-{i}.md"},
                    },
                ],
            }
        )
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": f"toolu_{i:04d}",
                        "content": "A line of the lesson, with some words in it.\n" * 40,
                    }
                ],
            }
        )
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": True,
        "system": [{"type": "text", "text": "You are a patient tutor. " * 400}],
        "tools": tools,
        "messages": messages,
        "metadata": {"user_id": "user_0123456789abcdef"},
    }
    return json.dumps(body).encode()


def per_request_us(fn: Callable[[bytes], object], body: bytes, n: int, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn(body)
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    allowlisted = Limits(allowed_models=["claude-sonnet-4-5", "claude-haiku-*"])
    open_limits = Limits()
    print(
        "| body | size | none (µs) | plain json.loads (µs) | strict check (µs) | strict / plain |"
    )
    print("|---|---|---|---|---|---|")
    for turns in (2, 30, 300):
        body = claude_code_body(turns)
        none = per_request_us(lambda b: open_limits.needs_body("u"), body, args.n, args.rounds)
        plain = per_request_us(json.loads, body, args.n, args.rounds)
        strict = per_request_us(lambda b: allowlisted.check_body(b, "u"), body, args.n, args.rounds)
        print(
            f"| {turns} turns | {len(body) / 1024:,.0f} KiB | {none:.2f} | {plain:,.0f} | "
            f"{strict:,.0f} | {strict / plain:.2f}x |"
        )


if __name__ == "__main__":
    main()
