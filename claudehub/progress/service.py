"""Core logic of the course+progress service, as plain async functions.

Nothing here knows about HTTP or JupyterHub: the user name passed in is the one the
service authenticated (see :mod:`claudehub.progress.app`), so these functions are
tested directly, without the app.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .assets import AssetSigner
from .catalogue import Catalogue
from .judging import judge
from .model import Course, Quiz, Stage
from .render import course_card, public_course
from .store import COURSE_STAGE, Completion, QuizResult, Store


class ServiceError(Exception):
    """An error with an HTTP status and a message safe to show the user."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ServiceError):
    status = 404


class Locked(ServiceError):
    status = 409


class Forbidden(ServiceError):
    status = 403


@dataclass
class ProgressEvents:
    """Per-user change counters so clients can wait for "something changed"."""

    versions: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _cond: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    def version(self, user: str) -> int:
        return self.versions[user]

    async def changed(self, user: str) -> None:
        cond = self._condition()
        async with cond:
            self.versions[user] += 1
            cond.notify_all()

    async def wait(self, user: str, since: int, max_wait: float) -> int:
        """Wait until ``user``'s version differs from ``since`` (or timeout)."""
        cond = self._condition()
        async with cond:
            try:
                await asyncio.wait_for(
                    cond.wait_for(lambda: self.versions[user] != since), max_wait
                )
            except TimeoutError:
                pass
            return self.versions[user]

    async def wait_any(self, since: dict[str, int], max_wait: float) -> bool:
        """Wait until one of the users in ``since`` (user -> version) changed, or timeout;
        whether one did. ``since`` is updated to the versions now."""
        cond = self._condition()

        def moved() -> bool:
            return any(self.versions[u] != v for u, v in since.items())

        async with cond:
            try:
                await asyncio.wait_for(cond.wait_for(moved), max_wait)
            except TimeoutError:
                pass
            changed = moved()
            for u in since:
                since[u] = self.versions[u]
            return changed


@dataclass
class ServiceState:
    """What the functions below need; the app builds one at start-up."""

    store: Store
    catalogue: Catalogue
    tutor_completions_count: bool = True
    events: ProgressEvents = field(default_factory=ProgressEvents)


# ---------------------------------------------------------------------------
# progress computation


def service_judged(quiz: Quiz) -> bool:
    """Whether the service can judge ``quiz`` (else the tutor does)."""
    return quiz.type == "multiple-choice" or quiz.answer is not None


def _stage_counts(stage: Stage, row: Completion | None, tutor_counts: bool) -> bool:
    if row is None:
        return False
    if row.method == "quiz" or tutor_counts:
        return True
    # a stage the service cannot judge can only ever be completed by the tutor
    return not any(service_judged(q) for q in stage.quizzes)


def progress_view(
    course: Course,
    completions: list[Completion],
    quiz_results: dict[str, QuizResult],
    *,
    tutor_counts: bool,
) -> dict[str, Any]:
    """One user's progress in ``course``: stages done (when, how), unlocked, resume."""
    rows = {c.stage: c for c in completions}
    counted = {s.number: _stage_counts(s, rows.get(s.number), tutor_counts) for s in course.stages}
    concept_done: dict[str, bool] = {}
    for s in course.stages:
        for c in s.concepts:
            quizzes = [q for q in s.quizzes if q.concept_id == c.id]
            passed = bool(quizzes) and all(
                quiz_results.get(q.id) is not None and quiz_results[q.id].passed_at is not None
                for q in quizzes
            )
            concept_done[c.id] = counted[s.number] or passed
    stages = []
    resume: int | None = None
    for s in course.stages:
        row = rows.get(s.number)
        unlocked = all(counted.get(r, False) for r in s.requires)
        if resume is None and unlocked and not counted[s.number]:
            resume = s.number
        stages.append(
            {
                "number": s.number,
                "title": s.title,
                "unlocked": unlocked,
                "complete": counted[s.number],
                "method": row.method if row else None,
                "completed_at": row.completed_at.isoformat() if row else None,
                "quiz_at": row.quiz_at.isoformat() if row and row.quiz_at else None,
                "tutor_at": row.tutor_at.isoformat() if row and row.tutor_at else None,
                "concepts": [
                    {
                        "id": c.id,
                        "done": concept_done[c.id],
                        "unlocked": unlocked
                        and all(concept_done.get(p, True) for p in c.prerequisites),
                    }
                    for c in s.concepts
                ],
                "quizzes": {
                    q.id: {
                        "passed": bool(quiz_results.get(q.id) and quiz_results[q.id].passed_at),
                        "attempts": quiz_results[q.id].attempts if q.id in quiz_results else 0,
                    }
                    for q in s.quizzes
                },
            }
        )
    tutor_done = rows.get(COURSE_STAGE)
    complete = all(counted.values()) or (tutor_done is not None and tutor_counts)
    if complete:
        resume = None
    done = [s["number"] for s in stages if s["complete"]]
    return {
        "course_id": course.id,
        "stages": stages,
        "completed_stages": done,
        "stage_count": len(course.stages),
        "course_complete": complete,
        "course_completed_by_tutor_at": tutor_done.completed_at.isoformat() if tutor_done else None,
        "resume_stage": resume,
        "tutor_completions_count": tutor_counts,
    }


def resume_hint_text(course: Course, view: dict[str, Any]) -> str:
    """A short text telling the tutor where the learner is (for the launcher/Claude)."""
    done = view["completed_stages"]
    total = view["stage_count"]
    lines = [
        f'Course "{course.title}": the learner has completed {len(done)} of {total} stages'
        + (f" ({', '.join(map(str, done))})." if done else "."),
    ]
    if view["course_complete"]:
        lines.append("The course is complete.")
    elif view["resume_stage"] is not None:
        stage = course.stage(view["resume_stage"])
        assert stage is not None
        lines.append(f"Resume at stage {stage.number}: {stage.title}.")
        state = next(s for s in view["stages"] if s["number"] == stage.number)
        todo = [
            c for c, cs in zip(stage.concepts, state["concepts"], strict=True) if not cs["done"]
        ]
        if todo:
            lines.append(f"Next concept: {todo[0].title} ({todo[0].id}).")
    lines.append(
        "Progress is kept by claudehub (the panels beside the terminal judge quiz answers); "
        ".learner/progress.json is a read-only snapshot of it: read it, never write it. "
        "When the learner completes a stage with you, print [STAGE_COMPLETE:N] on its own line; "
        "when the whole course is done, print [DUNGEON_COMPLETE]."
    )
    return "\n".join(lines)


def learner_snapshot(course: Course, user: str, view: dict[str, Any]) -> dict[str, Any]:
    """The read-only ``.learner/progress.json`` the tutor sees in the sandbox."""
    completed_concepts = [c["id"] for s in view["stages"] for c in s["concepts"] if c["done"]]
    current_concept = None
    if view["resume_stage"] is not None:
        state = next(s for s in view["stages"] if s["number"] == view["resume_stage"])
        current_concept = next((c["id"] for c in state["concepts"] if not c["done"]), None)
    return {
        "managed_by": "claudehub",
        "read_only": True,
        "note": "Kept by the claudehub progress service. Do not write this file.",
        "user": user,
        "course_id": course.id,
        "course_title": course.title,
        "completed": completed_concepts,
        "completed_concepts": completed_concepts,
        "completed_stages": view["completed_stages"],
        "current_stage": view["resume_stage"],
        "current_concept": current_concept,
        "course_complete": view["course_complete"],
        "stages": [
            {
                "number": s["number"],
                "title": s["title"],
                "complete": s["complete"],
                "method": s["method"],
                "completed_at": s["completed_at"],
            }
            for s in view["stages"]
        ],
    }


# ---------------------------------------------------------------------------
# operations


def _course(state: ServiceState, course_id: str) -> Course:
    course = state.catalogue.get(course_id)
    if course is None:
        raise NotFound(f"no course {course_id!r}")
    return course


async def list_courses(
    state: ServiceState, prefix: str = "", signer: AssetSigner | None = None
) -> list[dict[str, Any]]:
    """Course cards in display order (``prefix``: the service's URL prefix, which image
    URLs start with; ``signer`` signs them; see :func:`render.course_card`)."""
    return [course_card(c, prefix, signer) for c in state.catalogue.courses.values()]


async def course_detail(
    state: ServiceState, course_id: str, prefix: str = "", signer: AssetSigner | None = None
) -> dict[str, Any]:
    """Stages, concepts (HTML) and quizzes of a course, with no answers."""
    return public_course(_course(state, course_id), prefix, signer)


async def user_progress(state: ServiceState, user: str, course_id: str) -> dict[str, Any]:
    """``user``'s progress in one course, with the resume hint."""
    course = _course(state, course_id)
    completions = await state.store.completions(user, course_id)
    results = await state.store.quiz_results(user, course_id)
    view = progress_view(course, completions, results, tutor_counts=state.tutor_completions_count)
    view["resume_hint"] = resume_hint_text(course, view)
    view["learner_snapshot"] = learner_snapshot(course, user, view)
    view["version"] = state.events.version(user)
    return view


async def user_progress_all(state: ServiceState, user: str) -> list[dict[str, Any]]:
    """``user``'s progress in every course they have started."""
    started = sorted({c.course_id for c in await state.store.completions(user)})
    out = []
    for course_id in started:
        if state.catalogue.get(course_id) is not None:
            out.append(await user_progress(state, user, course_id))
    return out


async def submit_answer(
    state: ServiceState, user: str, course_id: str, quiz_id: str, answer: str
) -> dict[str, Any]:
    """Judge ``answer``; a correct one passes the quiz and may complete its stage."""
    course = _course(state, course_id)
    found = course.find_quiz(quiz_id)
    if found is None:
        raise NotFound(f"no quiz {quiz_id!r} in course {course_id!r}")
    stage, quiz = found
    if not isinstance(answer, str) or not answer.strip():
        raise ServiceError("an answer is required")
    if len(answer) > 10_000:
        raise ServiceError("answer too long")
    before = await user_progress(state, user, course_id)
    stage_state = next(s for s in before["stages"] if s["number"] == stage.number)
    if not stage_state["unlocked"]:
        needed = ", ".join(str(n) for n in stage.requires)
        raise Locked(f"stage {stage.number} is locked: complete stage {needed} first")
    if quiz.concept_id is not None:
        concept = next(c for c in stage_state["concepts"] if c["id"] == quiz.concept_id)
        if not concept["unlocked"]:
            raise Locked("this concept is locked: complete its prerequisites first")
    verdict = judge(quiz, answer)
    await state.store.quiz_attempt(user, course_id, quiz.id, stage.number, verdict.correct)
    stage_completed = False
    if verdict.correct:
        results = await state.store.quiz_results(user, course_id)
        judged = [q for q in stage.quizzes if service_judged(q)]
        if judged and all(
            results.get(q.id) is not None and results[q.id].passed_at is not None for q in judged
        ):
            await state.store.complete(user, course_id, stage.number, "quiz")
            stage_completed = True
        await state.events.changed(user)
    out: dict[str, Any] = {
        "status": verdict.status,
        "correct": verdict.correct,
        "message": verdict.message,
        "stage_completed": stage_completed,
        "progress": await user_progress(state, user, course_id),
    }
    if verdict.correct and verdict.explanation:
        out["explanation"] = verdict.explanation
    return out


async def record_tutor(
    state: ServiceState, user: str, course_id: str, *, stage: int | None
) -> dict[str, Any]:
    """Record a tutor marker: ``stage`` N for [STAGE_COMPLETE:N], None for [DUNGEON_COMPLETE]."""
    course = _course(state, course_id)
    if stage is None:
        number = COURSE_STAGE
    else:
        if course.stage(stage) is None:
            raise NotFound(f"course {course_id!r} has no stage {stage}")
        number = stage
    completion = await state.store.complete(user, course_id, number, "tutor")
    await state.events.changed(user)
    return {
        "completion": completion.as_dict(),
        "progress": await user_progress(state, user, course_id),
    }


async def all_progress(state: ServiceState) -> list[dict[str, Any]]:
    """Every completion of every user (admins only)."""
    return [c.as_dict() for c in await state.store.completions()]


def _csv_safe(value: Any) -> str:
    text = "" if value is None else str(value)
    # keep spreadsheets from evaluating course- or user-supplied text as a formula
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


async def export_csv(state: ServiceState) -> str:
    """All completions as CSV (admins only)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        [
            "user",
            "course_id",
            "course_title",
            "stage",
            "stage_title",
            "method",
            "counts",
            "completed_at",
            "quiz_at",
            "tutor_at",
        ]
    )
    for c in await state.store.completions():
        course = state.catalogue.get(c.course_id)
        stage = course.stage(c.stage) if course else None
        if c.stage == COURSE_STAGE:
            stage_title = "(whole course)"
            counts = state.tutor_completions_count
        else:
            stage_title = stage.title if stage else ""
            counts = (
                _stage_counts(stage, c, state.tutor_completions_count)
                if stage
                else c.method == "quiz"
            )
        writer.writerow(
            [
                _csv_safe(v)
                for v in (
                    c.user,
                    c.course_id,
                    course.title if course else "",
                    c.stage,
                    stage_title,
                    c.method,
                    "yes" if counts else "no",
                    c.completed_at.isoformat(),
                    c.quiz_at.isoformat() if c.quiz_at else "",
                    c.tutor_at.isoformat() if c.tutor_at else "",
                )
            ]
        )
    return buf.getvalue()


def course_errors(state: ServiceState) -> list[dict[str, Any]]:
    """Courses that failed to load, and warnings of those that did."""
    errors: list[dict[str, Any]] = [e.as_dict() for e in state.catalogue.errors]
    for course in state.catalogue.courses.values():
        for w in course.warnings:
            errors.append(
                {"course_id": course.id, "source": course.source, "file": "", "reason": w,
                 "severity": "warning"}
            )  # fmt: skip
    return errors


async def learner_files(state: ServiceState, user: str, course_id: str) -> dict[str, bytes]:
    """The ``.learner/`` files for ``user``'s bundle of ``course_id``."""
    course = _course(state, course_id)
    view = await user_progress(state, user, course_id)
    snapshot = learner_snapshot(course, user, view)
    return {
        "progress.json": (json.dumps(snapshot, indent=2, ensure_ascii=False) + "\n").encode(),
        "RESUME.md": (view["resume_hint"] + "\n").encode(),
    }
