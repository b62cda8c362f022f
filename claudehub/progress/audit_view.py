"""The audit log on the admin page: read from the key proxy's admin ``/audit``.

The key proxy owns the log (docs/security.md); the course service reads it with the URL and
admin token it already has for ``/usage`` (:class:`~claudehub.progress.classes.UsageSource`),
shows the newest events on ``{prefix}admin`` and serves the exports to its admins
(``{prefix}admin/audit.csv``, ``{prefix}admin/audit.json``), passing the filters on.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .classes import UsageSource

log = logging.getLogger("claudehub.progress")

#: Events shown on the admin page (the exports have the rest).
RECENT = 50
#: Filters an export passes on to the key proxy.
FILTERS = ("since", "until", "action", "actor", "limit")


async def fetch_audit(
    source: UsageSource, query: dict[str, str], fmt: str = "json"
) -> tuple[int, bytes]:
    """The key proxy's answer to ``GET /audit`` (status, body); (502, b"") when unreachable."""
    params = {k: v for k, v in query.items() if k in FILTERS and v}
    params["format"] = fmt
    req = HTTPRequest(
        f"{source.url.rstrip('/')}/audit?{urlencode(params)}",
        headers={"Authorization": f"Bearer {source.token}"},
        request_timeout=20,
    )
    try:
        resp = await AsyncHTTPClient().fetch(req, raise_error=False)
    except OSError as e:
        log.warning("The key proxy's audit log is unavailable: %s", e)
        return 502, b""
    if resp.code >= 400:
        log.warning("The key proxy's audit log answered HTTP %s", resp.code)
    return resp.code, resp.body or b""


async def recent_events(source: UsageSource | None) -> list[dict[str, Any]] | None:
    """The newest :data:`RECENT` events; None when there is no key proxy or it is away."""
    if source is None:
        return None
    try:
        status, body = await fetch_audit(source, {"limit": str(RECENT)})
    except HTTPClientError as e:  # raise_error=False: only for a failure before an answer
        log.warning("The key proxy's audit log is unavailable: %s", e)
        return None
    if status != 200:
        return None
    try:
        events = json.loads(body).get("events", [])
    except (ValueError, AttributeError):
        return None
    return [
        {
            "ts": str(e.get("ts", "")),
            "action": str(e.get("action", "")),
            "actor": str(e.get("actor", "")),
            "actor_kind": str(e.get("actor_kind", "")),
            "target": str(e.get("target", "")),
            "source": str(e.get("source", "")),
            "detail": json.dumps(e.get("detail", {}), sort_keys=True),
        }
        for e in events
        if isinstance(e, dict)
    ]
