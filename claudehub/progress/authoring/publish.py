"""Publishing a draft: checked, committed as a new version, switched into the catalogue,
shown to the chosen classes only.

Nothing is half-published: the draft is checked first (any error: 422 and nothing
changes), then committed and tagged in one ref transaction, unpacked from the repository
and parsed again, recorded in the database, and only then switched into the live
catalogue; a failure after the commit takes the commit and the tag back.

Stable stage ids: a learner's progress is kept by course id, stage number and quiz id
(quiz ids are the lesson's ``concept_id``, ``<concept_id>-<k>`` for its k-th exercise). A
republish keeps the course id, and is refused when a module that an earlier version had at
stage N (by its ``id``) is no longer stage N, so every completion and passed quiz of the
earlier version still means the same thing. New modules go after the old ones.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from claudehub.contract.course import is_course_id

from ..catalogue import Catalogue, make_course_id
from ..model import Course, CourseError, CourseFormatError
from ..parsing import parse_course
from ..store import Publication, Store
from .access import Person
from .drafts import PAPER_DIR, Draft
from .preview import check_draft
from .repository import CourseRepository, RepositoryError

log = logging.getLogger(__name__)

SOURCE = "authoring"
#: The paper's figures are published where they are (``paper.json``'s ``thumbnailUrl`` may
#: name one) and where the catalogue layout looks for lesson images (``assets/``,
#: render.CATALOGUE_IMAGE_FOLDER), so ``![...](paper/figures/page-3-1.png)`` in a lesson shows
#: it (git stores the same file once); the paper's text (``paper/paper.md``,
#: ``paper/paper.json``) is not published.
PUBLISHED_FIGURES = (
    (f"{PAPER_DIR}/figures", f"{PAPER_DIR}/figures"),
    (f"{PAPER_DIR}/figures", f"assets/{PAPER_DIR}/figures"),
)
_TAG = re.compile(r"/v(\d+)$")


class PublishError(Exception):
    """A publish refused or failed: ``status``, ``message`` and the checker's ``errors``."""

    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []


def stage_id_errors(before: Course, after: Course, version: int) -> list[dict[str, str]]:
    """The modules of ``before`` (version ``version``) that ``after`` moved or dropped
    from the middle: a learner's completion of stage N would change meaning."""
    now = {s.number: s.id for s in after.stages}
    last = max(now) if now else 0
    errors = []
    for stage in before.stages:
        if stage.number > last:
            continue  # dropped at the end: its completions just no longer show
        if now.get(stage.number) != stage.id:
            where = next((n for n, i in now.items() if i == stage.id), None)
            errors.append(
                {
                    "file": "knowledge/courses.json",
                    "path": f"modules[{stage.number - 1}]",
                    "reason": (
                        f'module "{stage.id}" was stage {stage.number} in version {version}, '
                        + (f"now it is stage {where}" if where else "now it is gone")
                        + ": learners' progress is kept by stage number; keep the published "
                        "modules in place and add new ones after them"
                    ),
                }
            )
    return errors


def with_course(cat: Catalogue, course: Course) -> Catalogue:
    """A copy of ``cat`` with ``course`` added or replacing the one of its id."""
    new = Catalogue(
        courses=dict(cat.courses),
        errors=[e for e in cat.errors if e.course_id != course.id],
    )
    new.courses[course.id] = course
    new.sort()
    return new


@dataclass
class Publisher:
    """Publishes drafts into the managed repository and knows who sees which."""

    repo: CourseRepository
    store: Store
    visibility: dict[str, Publication] = field(default_factory=dict)

    async def load(self) -> None:
        """Read the published courses' records."""
        await self.repo.ensure()
        self.visibility = {p.course_id: p for p in await self.store.publications()}

    async def courses(self) -> tuple[list[Course], list[CourseError]]:
        """Every published course's newest version, parsed (a broken one becomes an error)."""
        courses, errors = [], []
        for pub in self.visibility.values():
            try:
                path = await self.repo.checkout(pub.course_id, pub.version)
                course = await asyncio.to_thread(
                    parse_course, path / pub.folder, pub.course_id, source=SOURCE, repo_root=path
                )
            except RepositoryError as e:
                errors.append(CourseError(pub.course_id, SOURCE, ".", str(e)))
                continue
            except CourseFormatError as e:
                errors.append(CourseError(pub.course_id, SOURCE, e.file, e.reason))
                continue
            courses.append(course)
        return courses, errors

    async def add_to(self, cat: Catalogue) -> None:
        """Add the published courses to a freshly loaded catalogue (a catalogue course of
        the same id wins, with an error naming the clash)."""
        courses, errors = await self.courses()
        for course in courses:
            if course.id in cat.courses:
                cat.errors.append(
                    CourseError(course.id, SOURCE, ".", "a catalogue course has this id: skipped")
                )
                continue
            cat.courses[course.id] = course
        cat.errors.extend(errors)
        cat.sort()

    def restricted(self) -> bool:
        """Whether some course is shown to chosen classes only."""
        return bool(self.visibility)

    def may_see(self, course_id: str, person: Person | None) -> bool:
        """Whether ``person`` sees ``course_id``: every catalogue course; a published one
        when they are in or instruct one of its classes, published it, or are an admin."""
        pub = self.visibility.get(course_id)
        if pub is None:
            return True
        if person is None:
            return False
        classes = set(pub.classes)
        return (
            person.admin
            or person.name == pub.owner
            or bool(classes & person.groups)
            or bool(classes & person.instructs)
        )

    def of_draft(self, draft_id: str) -> list[Publication]:
        """The courses published from ``draft_id``."""
        return [p for p in self.visibility.values() if p.draft_id == draft_id]

    def default_course_id(self, draft: Draft) -> str:
        """The course id a draft publishes as: its earlier one, else from its title."""
        earlier = self.of_draft(draft.id)
        if earlier:
            return earlier[0].course_id
        return make_course_id(draft.title.lower())[:80].strip("-.") or f"course-{draft.id}"

    async def _next_version(self, course_id: str) -> int:
        known = self.visibility.get(course_id)
        numbers = [
            int(m.group(1)) for t in await self.repo.tags(course_id) if (m := _TAG.search(t))
        ]
        return max([known.version if known else 0, *numbers]) + 1

    async def publish(
        self,
        cat: Catalogue,
        draft: Draft,
        person: Person,
        classes: list[str],
        course_id: str,
    ) -> tuple[Catalogue, dict[str, Any]]:
        """Publish ``draft`` as ``course_id`` for ``classes``; the new catalogue and the
        answer. Raises PublishError (nothing published)."""
        if not is_course_id(course_id) or ".." in course_id or course_id.endswith(".lock"):
            raise PublishError(400, f"invalid course id {course_id!r}")
        earlier = self.visibility.get(course_id)
        if earlier is None and course_id in cat.courses:
            raise PublishError(409, f"course id {course_id!r} is taken by a catalogue course")
        if earlier is not None and earlier.draft_id != draft.id:
            raise PublishError(409, f"course {course_id!r} is published from another draft")
        checked = await asyncio.to_thread(check_draft, draft.files, course_id)
        if checked.errors or checked.course is None or checked.folder is None:
            raise PublishError(422, "the draft has errors: nothing was published", checked.errors)
        before = cat.get(course_id) if earlier is not None else None
        if before is not None and earlier is not None:
            moved = stage_id_errors(before, checked.course, earlier.version)
            if moved:
                raise PublishError(
                    422, "the draft would change published stages: nothing was published", moved
                )
        version = await self._next_version(course_id)
        message = (
            f"Publish {course_id} v{version} from draft {draft.id} by {person.name} "
            f"for {', '.join(classes)}"
        )
        try:
            commit, parent = await self.repo.commit_version(
                course_id, draft.files, {PAPER_DIR}, version, message, also=PUBLISHED_FIGURES
            )
        except (RepositoryError, OSError) as e:
            raise PublishError(500, f"the course repository refused the commit: {e}") from None
        try:
            path = await self.repo.checkout(course_id, version)
            course = await asyncio.to_thread(
                parse_course, path / checked.folder, course_id, source=SOURCE, repo_root=path
            )
            pub = Publication(
                course_id=course_id,
                draft_id=draft.id,
                owner=person.name,
                version=version,
                commit=commit,
                folder=checked.folder,
                classes=tuple(classes),
                published_at=datetime.now(UTC),
            )
            await self.store.save_publication(pub)
        except (RepositoryError, CourseFormatError, OSError, SQLAlchemyError) as e:
            log.error(
                "Publishing %s v%d failed after its commit, undone: %s", course_id, version, e
            )
            await self.repo.undo(course_id, version, commit, parent)
            shutil.rmtree(self.repo.published_dir / course_id / f"v{version}", ignore_errors=True)
            raise PublishError(500, f"publishing failed, nothing was published: {e}") from None
        self.visibility[course_id] = pub
        new = with_course(cat, course)
        push_error = await self.repo.push(course_id, version)
        log.info(
            "Published course %s v%d (%s) from draft %s by %s for %s",
            course_id, version, commit[:12], draft.id, person.name, ", ".join(classes),
        )  # fmt: skip
        answer: dict[str, Any] = {
            "course": course_id,
            "version": version,
            "commit": commit,
            "classes": list(classes),
            "warnings": checked.warnings,
        }
        if self.repo.remote_url:
            answer["pushed"] = push_error is None
            if push_error:
                answer["push_error"] = push_error
        return new, answer
