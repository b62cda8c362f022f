"""The audit log's event: its shape, its action names, and the check every event passes.

Privileged actions are recorded by the key proxy, which owns the store (``claudehub_audit``
in its usage database, ``GET``/``POST /audit``): the hub reports what only it sees (a session
ended by someone else, a server opened by someone else, a class's limits changed), the key
proxy records the real key's rotation and forged sandbox tokens itself.

An event is a JSON object::

    {"action": "session.end", "actor": "tina", "actor_kind": "user",
     "target": "carol", "source": "10.0.0.7", "ts": "2025-05-01T12:00:00.123+00:00",
     "detail": {"server": "", "actor_admin": false}}

Nothing secret ever goes in one: :func:`check_event` refuses a value that looks like a key, a
sandbox token or any long high-entropy string, naming the field, so a caller's mistake shows
up as a refusal instead of a secret on disk.
"""

from __future__ import annotations

import datetime
import math
import re
from collections import Counter
from typing import Any

SESSION_END = "session.end"
SERVER_ACCESS = "server.access"
LIMITS_CHANGE = "limits.change"
KEY_ROTATE = "key.rotate"
TOKEN_FORGED = "token.forged"

#: Every action the log knows, with what it means (docs/security.md).
ACTIONS = {
    SESSION_END: "someone ended another user's session",
    SERVER_ACCESS: "someone opened another user's server",
    LIMITS_CHANGE: "a class's limits (hub group properties) changed",
    KEY_ROTATE: "the real Anthropic key was replaced (the key file changed)",
    TOKEN_FORGED: "a sandbox token with a bad signature was refused",
}

#: Who an actor is: a hub user, a hub service, the operator (a file they changed), or the
#: network address a request came from (nobody the hub knows).
ACTOR_KINDS = ("user", "service", "operator", "source")

#: Field names and their longest value.
FIELD_LIMITS = {"actor": 255, "actor_kind": 16, "action": 32, "target": 255, "source": 64}
MAX_DETAIL_KEYS = 16
MAX_DETAIL_KEY = 64
MAX_DETAIL_STRING = 200
MAX_DETAIL_LIST = 20

_SECRET_MARKERS = ("sk-ant-", "chs1.")
# A run that could be a credential: base64url/base64 alphabet, long enough to be one ("/" and
# "." split runs, so paths and dotted names are judged by their parts).
_RUN = re.compile(r"[A-Za-z0-9+=_\-]{24,}")
_HEX = re.compile(r"[0-9a-fA-F]{32,}")
_DETAIL_KEY = re.compile(r"[a-z][a-z0-9_.]{0,63}")


class AuditEventError(ValueError):
    """An event was refused; ``field`` names the offending field (also in the message)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_secret(value: str) -> bool:
    """Whether ``value`` looks like a key, a sandbox token, or a long random string.

    Deliberately eager: a false alarm refuses one audit event (the caller sees which field),
    a miss would put a secret on disk. Model names, user names and paths pass (short runs, or
    low entropy); JupyterHub's 32-hex tokens and ``token_urlsafe`` secrets do not.
    """
    low = value.lower()
    if any(marker in low for marker in _SECRET_MARKERS):
        return True
    if _HEX.search(value):
        return True
    for run in _RUN.findall(value):
        core = run.strip("-_=")
        if len(core) >= 32 and _entropy(core) >= 4.0:
            return True
        if len(core) >= 24 and _entropy(core) >= 4.3:
            return True
    return False


def _check_text(field: str, value: Any, limit: int, *, required: bool = False) -> str:
    if not isinstance(value, str):
        raise AuditEventError(field, "must be a string")
    if required and not value:
        raise AuditEventError(field, "must not be empty")
    if len(value) > limit:
        raise AuditEventError(field, f"longer than {limit} characters")
    if any(ord(ch) < 32 for ch in value):
        raise AuditEventError(field, "contains control characters")
    if looks_secret(value):
        raise AuditEventError(field, "looks like a secret (a key or token); it is never recorded")
    return value


def _check_detail_value(field: str, value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise AuditEventError(field, "must be a finite number")
        return value
    if isinstance(value, str):
        return _check_text(field, value, MAX_DETAIL_STRING)
    if isinstance(value, list):
        if len(value) > MAX_DETAIL_LIST:
            raise AuditEventError(field, f"more than {MAX_DETAIL_LIST} items")
        out = []
        for i, item in enumerate(value):
            if isinstance(item, list | dict):
                raise AuditEventError(f"{field}[{i}]", "must be a string, number or boolean")
            out.append(_check_detail_value(f"{field}[{i}]", item))
        return out
    raise AuditEventError(field, "must be a string, number, boolean, null or a list of those")


def parse_ts(value: str) -> datetime.datetime:
    """An ISO 8601 time; one without a zone is UTC."""
    moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)


def format_ts(ts: float) -> str:
    """UNIX time as ISO 8601 UTC with milliseconds."""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="milliseconds")


def check_event(event: Any) -> dict[str, Any]:
    """The checked event (a new dict, ``ts`` as UNIX time), or :class:`AuditEventError`.

    Required: ``action`` (one of :data:`ACTIONS`), ``actor``. Optional: ``actor_kind``
    (:data:`ACTOR_KINDS`, default ``user``), ``target``, ``source``, ``ts`` (ISO 8601; the
    recorder's clock when absent), ``detail`` (at most :data:`MAX_DETAIL_KEYS` flat fields).
    Unknown fields are refused, so nothing rides along unchecked.
    """
    if not isinstance(event, dict):
        raise AuditEventError("event", "must be a JSON object")
    known = {*FIELD_LIMITS, "ts", "detail"}
    for name in event:
        if name not in known:
            raise AuditEventError(str(name)[:64], "is not a field of an audit event")
    action = _check_text("action", event.get("action"), FIELD_LIMITS["action"], required=True)
    if action not in ACTIONS:
        raise AuditEventError("action", f"unknown action (one of {', '.join(sorted(ACTIONS))})")
    out: dict[str, Any] = {
        "action": action,
        "actor": _check_text("actor", event.get("actor"), FIELD_LIMITS["actor"], required=True),
    }
    kind = _check_text("actor_kind", event.get("actor_kind", "user"), FIELD_LIMITS["actor_kind"])
    if kind not in ACTOR_KINDS:
        raise AuditEventError("actor_kind", f"one of {', '.join(ACTOR_KINDS)}")
    out["actor_kind"] = kind
    for name in ("target", "source"):
        out[name] = _check_text(name, event.get(name, ""), FIELD_LIMITS[name])
    ts = event.get("ts")
    if ts is not None:
        if not isinstance(ts, str) or len(ts) > 40:
            raise AuditEventError("ts", "must be an ISO 8601 time")
        try:
            out["ts"] = parse_ts(ts).timestamp()
        except ValueError:
            raise AuditEventError("ts", "must be an ISO 8601 time") from None
    detail = event.get("detail", {})
    if not isinstance(detail, dict):
        raise AuditEventError("detail", "must be a JSON object")
    if len(detail) > MAX_DETAIL_KEYS:
        raise AuditEventError("detail", f"more than {MAX_DETAIL_KEYS} fields")
    checked = {}
    for key, value in detail.items():
        if not isinstance(key, str) or not _DETAIL_KEY.fullmatch(key):
            raise AuditEventError(
                "detail", f"field names are [a-z][a-z0-9_.]{{0,{MAX_DETAIL_KEY - 1}}}"
            )
        checked[key] = _check_detail_value(f"detail.{key}", value)
    out["detail"] = checked
    return out
