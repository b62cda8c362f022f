"""The course picker: the spawn form a learner sees, and what the hub's home page shows.

The picker is one card per course (thumbnail, title and description in the course's own
language, authors, organisation, language, number of stages and the learner's own state),
each card a radio input with a label, so the form works with a keyboard, a screen reader and
without JavaScript. A little script adds search and a language filter when it can run.

Everything a browser posts is checked here, on the server, before a spawn starts: a course
that is not in the catalogue, a model or a machine that is not offered is refused with a
sentence JupyterHub shows on the re-rendered spawn page (``error_message``), never a
traceback or an ``HTTP 400: Bad Request (...)`` string.

The learner's own state comes from the course service's ``GET api/progress``, asked with the
same short-lived token of the learner that lists the courses (scope
``access:services!service=progress``): the hub needs no extra scope and never reads anyone
else's progress.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import jinja2
from tornado import web

log = logging.getLogger(__name__)

#: The spawn form's templates (``templates/``), loaded once. Autoescaped: course titles come
#: from course repositories, so every value is escaped before it reaches the hub's page.
FORM_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)

#: Names shown for the languages courses are written in; any other code is shown as is.
LANGUAGE_NAMES = {
    "en": "English",
    "ko": "한국어",
    "ja": "日本語",
    "zh": "中文",
    "es": "Español",
    "fr": "Français",
    "de": "Deutsch",
    "pt": "Português",
    "vi": "Tiếng Việt",
}

#: Authors named on a card before "et al.".
MAX_AUTHORS = 3
#: Characters of a description a card shows (four lines or so): 46 full abstracts would
#: double the picker's size on a slow network for text nobody reads on a card.
MAX_DESCRIPTION = 240


class PickerSpawner(Protocol):
    """What the picker reads from a spawner (see ``SandboxSpawnerMixin``)."""

    @property
    def allowed_models(self) -> Sequence[str]: ...

    async def list_course_choices(self) -> list[dict[str, Any]]: ...

    async def learner_progress(self) -> dict[str, dict[str, Any]]: ...


class ChoiceError(web.HTTPError):
    """A choice on the spawn form that is refused, with the sentence the learner reads.

    JupyterHub shows ``jupyterhub_message`` on the spawn page instead of ``str(error)``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(400, message)
        self.jupyterhub_message = message


def language_name(code: str) -> str:
    """A language's own name ("한국어" for "ko"), or the code when it is not known here."""
    return LANGUAGE_NAMES.get(code.split("-")[0].lower(), code)


def learner_state(course: Mapping[str, Any], progress: Mapping[str, Any] | None) -> dict[str, Any]:
    """Where the learner is in ``course``: not started, stage N of M, or completed."""
    total = int(course.get("stage_count") or (progress or {}).get("stage_count") or 0)
    if not progress or not (progress.get("completed_stages") or progress.get("course_complete")):
        return {"key": "not-started", "text": "not started", "stage": 1, "of": total}
    if progress.get("course_complete"):
        return {"key": "completed", "text": "completed", "stage": total, "of": total}
    stage = int(progress.get("resume_stage") or 1)
    text = f"stage {stage} of {total}" if total else f"stage {stage}"
    return {"key": "in-progress", "text": text, "stage": stage, "of": total}


def _thumbnail(course: Mapping[str, Any]) -> str:
    # Only a path on this site (the course service under /services/progress/): a card must
    # never make a learner's browser reach another host (air-gapped clusters, privacy).
    url = course.get("thumbnail_url") or ""
    if isinstance(url, str) and url.startswith("/") and not url.startswith("//"):
        return url
    return ""


def _shortened(text: str, limit: int = MAX_DESCRIPTION) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(None, 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(" ,.;:") + "…"


def _authors(paper: Mapping[str, Any]) -> str:
    authors = [str(a) for a in paper.get("authors") or [] if a]
    if len(authors) > MAX_AUTHORS:
        return ", ".join(authors[:MAX_AUTHORS]) + " et al."
    return ", ".join(authors)


def course_card(
    course: Mapping[str, Any], progress: Mapping[str, Any] | None, *, checked: bool
) -> dict[str, Any]:
    """What one card shows, from a course of ``GET api/courses`` and the learner's progress."""
    paper = course.get("paper") if isinstance(course.get("paper"), Mapping) else {}
    assert isinstance(paper, Mapping)
    language = str(course.get("language") or "")
    title = str(course.get("title") or course["id"])
    description = _shortened(str(course.get("description") or "").strip())
    authors = _authors(paper)
    organization = str(paper.get("organization") or "")
    stages = int(course.get("stage_count") or 0)
    return {
        "id": str(course["id"]),
        "title": title,
        "initial": title[:1].upper(),
        "description": description,
        "authors": authors,
        "organization": organization,
        "language": language,
        "language_name": language_name(language) if language else "",
        "stages": stages,
        "thumbnail": _thumbnail(course),
        "state": learner_state(course, progress),
        "checked": checked,
    }


def last_course_id(spawner: Any) -> str:
    """The course this learner's server runs or last ran (JupyterHub keeps user_options)."""
    options = getattr(spawner, "user_options", None) or {}
    course = options.get("course") if isinstance(options, Mapping) else None
    return course if isinstance(course, str) else ""


async def picker_context(spawner: PickerSpawner) -> dict[str, Any]:
    """The picker template's variables: cards, languages, models.

    Raises ``HTTPError(503)`` saying so when the course service cannot list the courses: an
    empty form would make JupyterHub start a session with no course at all.
    """
    from claudehub.contract.course_client import ProgressAPIError

    try:
        courses = await spawner.list_course_choices()
    except (ProgressAPIError, OSError, ValueError) as e:
        log.warning("The course list cannot be loaded: %s", e)
        raise web.HTTPError(
            503, "The course list cannot be loaded right now. Please try again in a minute."
        ) from None
    progress = await spawner.learner_progress() if courses else {}
    last = last_course_id(spawner)
    if last not in {c["id"] for c in courses}:
        last = ""
    cards = [course_card(c, progress.get(c["id"]), checked=c["id"] == last) for c in courses]
    languages = sorted({(c["language"], c["language_name"]) for c in cards if c["language"]})
    models = list(spawner.allowed_models)
    return {
        "cards": cards,
        "languages": [{"code": code, "name": name} for code, name in languages],
        # a single allowed model is no choice: it is applied without asking
        "models": [{"value": m, "label": m} for m in models] if len(models) > 1 else [],
    }


async def render_picker(spawner: PickerSpawner) -> str:
    """The spawn form: the course cards and, when several are allowed, a model picker.

    Returns an empty string (no form) when there is nothing to choose.
    """
    context = await picker_context(spawner)
    if not context["cards"] and not context["models"]:
        return ""
    return FORM_TEMPLATES.get_template("options_form.html").render(**context)


def options_from_formdata(
    formdata: Mapping[str, list[Any]], names: Sequence[str]
) -> dict[str, str]:
    """The first value of each field in ``names`` (search and filter boxes are not posted)."""
    return {key: str(values[0]) for key, values in formdata.items() if key in names and values}


async def check_course_choice(spawner: PickerSpawner, options: Mapping[str, str]) -> None:
    """Refuse a missing or unknown course in words a learner understands.

    Raises :class:`ChoiceError` (HTTP 400, shown on the spawn page).
    """
    courses = await spawner.list_course_choices()
    if not courses:
        return
    course = options.get("course", "")
    if not course:
        raise ChoiceError("Choose a course first: pick one of the cards below, then start.")
    if course not in {c["id"] for c in courses}:
        raise ChoiceError(
            f"The course “{course}” is not offered here. Choose one of the courses below."
        )


def plain_choice_error(error: web.HTTPError) -> ChoiceError:
    """The same refusal, with its sentence shown as it is (no "HTTP 400: Bad Request")."""
    return ChoiceError(str(error.log_message or error.reason or "That choice is not allowed."))


async def home_summary(spawner: Any) -> dict[str, Any] | None:
    """What the hub's home page says about the learner's course, or None before any course.

    ``{"id", "title", "state", "running", "options"}``: the course the server runs or last
    ran (from ``user_options``), its title from the catalogue and the learner's stage from
    the course service. A course that left the catalogue is not offered to continue.
    """
    course_id = last_course_id(spawner)
    if not course_id:
        return None
    courses = await spawner.list_course_choices()
    course = next((c for c in courses if c["id"] == course_id), None)
    if course is None:
        return None
    progress = await spawner.learner_progress()
    options = getattr(spawner, "user_options", None) or {}
    return {
        "id": course_id,
        "title": str(course.get("title") or course_id),
        "language": str(course.get("language") or ""),
        "state": learner_state(course, progress.get(course_id)),
        "running": bool(getattr(spawner, "active", False)),
        # posted again by "Continue" when the server is not running: same model and machine
        "options": {
            key: value
            for key, value in dict(options).items()
            if key in ("course", "model", "profile") and isinstance(value, str)
        },
    }
