"""The local spawner's requests to the fork server (:mod:`claudehub.server_ext.forkserver`).

In local mode every learner's single-user server would otherwise be a fresh Python that spends
about 0.6 CPU-seconds importing jupyter-server before it listens. The fork server imports all
of that once and forks a server per request; the spawner (``claudehub.spawner.forked``) talks
to it over a Unix socket that only the hub's user can open. The wire format is one JSON object
per line:

- the spawner sends ``{"argv": [...], "env": {...}, "cwd": "..."}``: the server's arguments
  (what would follow ``python -m claudehub.server_ext.singleuser``), its whole environment and
  its working folder, exactly what the spawner would have given a fresh process;
- the fork server answers ``{"pid": N}`` once the server is forked (or ``{"error": "..."}``,
  naming what was wrong, and closes), and later ``{"exit": code}`` when the server has exited
  (a negative code: killed by that signal, as in :attr:`subprocess.Popen.returncode`).
"""

from __future__ import annotations

import json
from typing import Any

#: ``python -m`` this to run the fork server; its one argument is ``--socket <path>``.
MODULE = "claudehub.server_ext.forkserver"
#: ``python -m`` this to run one single-user server in a fresh process.
SINGLEUSER_MODULE = "claudehub.server_ext.singleuser"
#: Longest request line accepted (an environment is a few kB).
MAX_REQUEST = 1 << 20


def encode(message: dict[str, Any]) -> bytes:
    """One message as its line on the wire."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """A message from its line; raises ValueError on anything but a JSON object."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not a JSON line: {e}") from None
    if not isinstance(message, dict):
        raise ValueError(f"expected a JSON object, got {type(message).__name__}")
    return message


def request(argv: list[str], env: dict[str, str], cwd: str) -> bytes:
    """The spawner's request for one server."""
    return encode({"argv": list(argv), "env": dict(env), "cwd": cwd})


def parse_request(line: bytes) -> tuple[list[str], dict[str, str], str]:
    """``(argv, env, cwd)`` of a request; raises ValueError naming the field that is wrong."""
    if len(line) > MAX_REQUEST:
        raise ValueError(f"request longer than {MAX_REQUEST} bytes")
    message = decode(line)
    unknown = sorted(set(message) - {"argv", "env", "cwd"})
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (known: argv, env, cwd)")
    argv = message.get("argv")
    if not isinstance(argv, list) or not all(isinstance(a, str) and "\0" not in a for a in argv):
        raise ValueError("argv must be a list of strings (no NUL)")
    env = message.get("env")
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\0" not in k + v
        for k, v in env.items()
    ):
        raise ValueError("env must map variable names (no '=' or NUL) to strings")
    cwd = message.get("cwd")
    if not isinstance(cwd, str) or not cwd.startswith("/") or "\0" in cwd:
        raise ValueError("cwd must be an absolute path")
    return argv, env, cwd
