"""A class's live view: who may see it, its learners' rows, its charts, its CSV.

A class is a hub group (see :mod:`claudehub.hub.classes`). Who may see it is decided from
the caller's own hub scopes (:func:`class_access`): hub admins and holders of the unfiltered
:data:`CLASS_READ_SCOPE` see every class, an instructor (the scope filtered by
``!group=<class>``) sees the classes named, everyone else none. Members and running
sessions come from the hub (:class:`HubDirectory`, with the service's own token), tokens
from the key proxy's admin ``/usage`` (:class:`UsageSource`) when it is configured.

:func:`class_view` builds the rows and charts once; the page, its live updates and the CSV
all render that same data, so the CSV is exactly what the page shows.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from jupyterhub.scopes import Scope, parse_scopes
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from claudehub.contract.hub import CLASS_READ_SCOPE

from .service import ServiceState, _csv_safe, progress_view
from .store import COURSE_STAGE, Completion, QuizResult

log = logging.getLogger(__name__)

#: Every class (an admin, an operator).
ALL = "all"

#: The columns of the page's table and of the CSV, in order.
COLUMNS = (
    "Learner",
    "Course",
    "Current stage",
    "Completed stages (how)",
    "Quiz attempts",
    "Last activity (UTC)",
    "Session",
    "Tokens today",
)

#: Days in the tokens-per-day chart.
CHART_DAYS = 7


def class_access(user: dict[str, Any] | None) -> str | frozenset[str]:
    """The classes ``user`` (a hub user model with its token's ``scopes``) may see:
    :data:`ALL`, or the set of class names (empty: none)."""
    if not user or user.get("kind", "user") != "user":
        return frozenset()
    if user.get("admin"):
        return ALL
    try:
        parsed = parse_scopes(user.get("scopes") or [])
    except ValueError:
        return frozenset()
    filters = parsed.get(CLASS_READ_SCOPE)
    if filters is None:
        return frozenset()
    if filters == Scope.ALL:
        return ALL
    return frozenset(filters.get("group", ()))


def may_read(user: dict[str, Any] | None, name: str) -> bool:
    """Whether ``user`` may see class ``name``."""
    access = class_access(user)
    return access == ALL or (isinstance(access, frozenset) and name in access)


class HubUnavailable(Exception):
    """The hub did not answer a question about a class."""


@dataclass
class HubDirectory:
    """Class members and running sessions, asked of the hub with the service's token.

    Answers are kept ``ttl`` seconds: a page's live updates rebuild the view on every
    progress change, and the hub need not be asked each time.
    """

    api_url: str
    token: str
    ttl: float = 3.0
    _cache: dict[str, tuple[float, Any]] = field(default_factory=dict)

    async def _get(self, path: str, paginated: bool = False) -> Any:
        headers = {"Authorization": f"token {self.token}"}
        if paginated:
            headers["Accept"] = "application/jupyterhub-pagination+json"
        req = HTTPRequest(
            f"{self.api_url.rstrip('/')}/{path}",
            headers=headers,
            request_timeout=10,
        )
        resp = await AsyncHTTPClient().fetch(req)
        return json.loads(resp.body)

    async def _cached(self, key: str, fetch: Any) -> Any:
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        value = await fetch()
        self._cache[key] = (now, value)
        return value

    def forget_running(self) -> None:
        """Ask the hub again next time which sessions run (one was just ended)."""
        self._cache.pop("running", None)

    async def members(self, name: str) -> list[str] | None:
        """The learners of class ``name`` (None: no such group)."""

        async def fetch() -> list[str] | None:
            try:
                group = await self._get(f"groups/{quote(name, safe='')}")
            except HTTPClientError as e:
                if e.code == 404:
                    return None
                raise HubUnavailable(f"the hub answered {e.code} for group {name!r}") from None
            except OSError as e:
                raise HubUnavailable(f"the hub is unreachable: {e}") from None
            return sorted(str(u) for u in group.get("users", []))

        result: list[str] | None = await self._cached(f"group:{name}", fetch)
        return result

    async def classes(self) -> list[str]:
        """Every group's name (for admins' list of classes)."""

        async def fetch() -> list[str]:
            try:
                page = await self._get("groups?limit=1000", paginated=True)
            except (HTTPClientError, OSError) as e:
                raise HubUnavailable(f"the hub did not list groups: {e}") from None
            items = page["items"] if isinstance(page, dict) else page
            return sorted(str(g["name"]) for g in items)

        result: list[str] = await self._cached("groups", fetch)
        return result

    async def running(self) -> set[str]:
        """Users whose server runs (or is starting or stopping)."""

        async def fetch() -> set[str]:
            names: set[str] = set()
            offset = 0
            while True:
                query = urlencode({"state": "active", "offset": offset, "limit": 200})
                try:
                    page = await self._get(f"users?{query}", paginated=True)
                except (HTTPClientError, OSError) as e:
                    raise HubUnavailable(f"the hub did not list servers: {e}") from None
                items = page["items"] if isinstance(page, dict) else page
                names.update(str(u["name"]) for u in items)
                if not isinstance(page, dict) or not page.get("_pagination", {}).get("next"):
                    return names
                offset += len(items)
                if not items:
                    return names

        result: set[str] = await self._cached("running", fetch)
        return result


@dataclass
class Usage:
    """Tokens per user and day, and today's budgets, from the key proxy."""

    per_day: dict[str, dict[str, int]]  # user -> day -> tokens
    budgets: dict[str, dict[str, Any]]  # user -> {budget, used_today}


@dataclass
class UsageSource:
    """The key proxy's admin ``/usage`` (its URL and an admin token), if configured."""

    url: str
    token: str
    ttl: float = 5.0
    _cache: tuple[float, Usage | None] | None = None

    async def usage(self, today: dt.date) -> Usage | None:
        """The last :data:`CHART_DAYS` days of usage; None when unreachable."""
        if self._cache is not None and time.monotonic() - self._cache[0] < self.ttl:
            return self._cache[1]
        since = (today - dt.timedelta(days=CHART_DAYS - 1)).isoformat()
        query = urlencode({"since": since, "until": today.isoformat()})
        req = HTTPRequest(
            f"{self.url.rstrip('/')}/usage?{query}",
            headers={"Authorization": f"Bearer {self.token}"},
            request_timeout=10,
        )
        result: Usage | None
        try:
            resp = await AsyncHTTPClient().fetch(req)
            data = json.loads(resp.body)
        except (HTTPClientError, OSError, ValueError) as e:
            log.warning("The key proxy's usage is unavailable: %s", e)
            result = None
        else:
            per_day: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            for row in data.get("usage", []):
                tokens = int(row.get("input_tokens", 0)) + int(row.get("output_tokens", 0))
                per_day[str(row["user"])][str(row["day"])] += tokens
            result = Usage(per_day=per_day, budgets=dict(data.get("budgets", {})))
        self._cache = (time.monotonic(), result)
        return result


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


def _row_cells(row: dict[str, Any]) -> list[str]:
    return [
        row["user"],
        row["course"],
        row["current"],
        row["completed"],
        str(row["attempts"]),
        row["last_activity"],
        row["session"],
        row["tokens"],
    ]


async def class_view(
    state: ServiceState,
    name: str,
    members: list[str],
    running: set[str],
    usage: Usage | None,
    today: dt.date,
) -> dict[str, Any]:
    """Class ``name``'s rows (one per learner and course started; one for a learner who has
    started none), the per-stage completion chart and the tokens-per-day chart."""
    completions, quizzes = await state.store.class_rows(members)
    by_user_course: dict[tuple[str, str], list[Completion]] = defaultdict(list)
    for c in completions:
        by_user_course[(c.user, c.course_id)].append(c)
    results: dict[tuple[str, str], dict[str, QuizResult]] = defaultdict(dict)
    last_quiz: dict[tuple[str, str], dt.datetime] = {}
    for q in quizzes:
        key = (q.user, q.course_id)
        results[key][q.result.quiz_id] = q.result
        last_quiz[key] = max(last_quiz.get(key, q.last_attempt_at), q.last_attempt_at)
    started: dict[str, list[str]] = defaultdict(list)
    for user, course_id in sorted(set(by_user_course) | set(results)):
        started[user].append(course_id)

    tutor_counts = state.tutor_completions_count
    rows: list[dict[str, Any]] = []
    # course id -> stage number -> learners who completed it (counted)
    stage_done: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    course_learners: dict[str, int] = defaultdict(int)
    for user in members:
        tokens = _tokens_today(usage, user, today)
        session = "running" if user in running else "stopped"
        courses = [cid for cid in started.get(user, []) if state.catalogue.get(cid)]
        if not courses:
            rows.append(
                {
                    "user": user,
                    "course": "(not started)",
                    "current": "",
                    "completed": "",
                    "attempts": 0,
                    "last_activity": "",
                    "session": session,
                    "tokens": tokens,
                }
            )
            continue
        for course_id in courses:
            course = state.catalogue.get(course_id)
            assert course is not None
            key = (user, course_id)
            view = progress_view(
                course, by_user_course[key], results[key], tutor_counts=tutor_counts
            )
            course_learners[course_id] += 1
            done = []
            for s in view["stages"]:
                if s["method"] is None:
                    continue
                if s["complete"]:
                    stage_done[course_id][s["number"]] += 1
                how = s["method"] if s["complete"] else f"{s['method']}, not counted"
                done.append(f"{s['number']} ({how})")
            whole = next((c for c in by_user_course[key] if c.stage == COURSE_STAGE), None)
            if whole is not None:
                done.append("course (tutor)" if tutor_counts else "course (tutor, not counted)")
            if view["course_complete"]:
                current = "complete"
            elif view["resume_stage"] is not None:
                stage = course.stage(view["resume_stage"])
                current = f"{view['resume_stage']}: {stage.title if stage else ''}"
            else:
                current = ""
            times = [t for c in by_user_course[key] for t in (c.completed_at, c.tutor_at) if t]
            if key in last_quiz:
                times.append(last_quiz[key])
            rows.append(
                {
                    "user": user,
                    "course": course.title,
                    "current": current,
                    "completed": ", ".join(done),
                    "attempts": sum(r.attempts for r in results[key].values()),
                    "last_activity": _when(max(times) if times else None),
                    "session": session,
                    "tokens": tokens,
                }
            )
    return {
        "name": name,
        "columns": COLUMNS,
        "rows": rows,
        "cells": [_row_cells(r) for r in rows],
        "learners": len(members),
        "running": sum(1 for u in members if u in running),
        "stage_chart": _stage_chart(state, stage_done, course_learners),
        "token_chart": _token_chart(usage, members, today),
        "tutor_completions_count": tutor_counts,
        "usage_known": usage is not None,
    }


def _tokens_today(usage: Usage | None, user: str, today: dt.date) -> str:
    if usage is None:
        return "unknown"
    used = usage.per_day.get(user, {}).get(today.isoformat(), 0)
    budget = usage.budgets.get(user, {}).get("budget")
    return f"{used} / {budget}" if budget else str(used)


#: Chart geometry (SVG user units).
BAR_WIDTH = 360
BAR_HEIGHT = 16


def _stage_chart(
    state: ServiceState,
    stage_done: dict[str, dict[int, int]],
    course_learners: dict[str, int],
) -> list[dict[str, Any]]:
    """Per course started in the class: per stage, how many of its learners completed it."""
    out = []
    for course_id in sorted(course_learners):
        course = state.catalogue.get(course_id)
        if course is None:
            continue
        total = course_learners[course_id]
        bars = []
        for i, stage in enumerate(course.stages):
            done = stage_done[course_id].get(stage.number, 0)
            bars.append(
                {
                    "label": f"{stage.number}. {stage.title}",
                    "done": done,
                    "total": total,
                    "y": i * (BAR_HEIGHT + 6),
                    "width": round(BAR_WIDTH * done / total, 1) if total else 0,
                }
            )
        out.append(
            {
                "course": course.title,
                "bars": bars,
                "height": len(bars) * (BAR_HEIGHT + 6),
                "bar_width": BAR_WIDTH,
                "bar_height": BAR_HEIGHT,
            }
        )
    return out


def _token_chart(usage: Usage | None, members: list[str], today: dt.date) -> dict[str, Any]:
    """The class's tokens per day over the last :data:`CHART_DAYS` days (None: unknown)."""
    days = [(today - dt.timedelta(days=n)).isoformat() for n in range(CHART_DAYS - 1, -1, -1)]
    totals = {d: 0 for d in days}
    if usage is not None:
        for user in members:
            for day, tokens in usage.per_day.get(user, {}).items():
                if day in totals:
                    totals[day] += tokens
    top = max(totals.values()) or 1
    height = 120
    bars = []
    for i, day in enumerate(days):
        h = round(height * totals[day] / top, 1)
        bars.append({"day": day, "tokens": totals[day], "x": i * 50, "h": h, "y": height - h})
    return {"known": usage is not None, "bars": bars, "height": height, "width": CHART_DAYS * 50}


def view_csv(view: dict[str, Any]) -> str:
    """The page's table as CSV: the same columns and cells."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(view["columns"])
    for cells in view["cells"]:
        writer.writerow([_csv_safe(v) for v in cells])
    return buf.getvalue()


async def gather_view(
    state: ServiceState,
    hub: HubDirectory,
    usage_source: UsageSource | None,
    name: str,
) -> dict[str, Any] | None:
    """Everything the page shows for class ``name`` (None: no such class)."""
    today = dt.datetime.now(dt.UTC).date()
    members_task = asyncio.create_task(hub.members(name))
    running_task = asyncio.create_task(hub.running())
    usage_task = asyncio.create_task(
        usage_source.usage(today) if usage_source is not None else _none()
    )
    try:
        members, running, usage = await asyncio.gather(members_task, running_task, usage_task)
    except BaseException:
        for t in (members_task, running_task, usage_task):
            t.cancel()
        raise
    if members is None:
        return None
    return await class_view(state, name, members, running, usage, today)


async def _none() -> None:
    return None
