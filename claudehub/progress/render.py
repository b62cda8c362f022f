"""Course text -> sanitised HTML, and the public (answer-free) view of a course.

Markdown is rendered by markdown-it-py with raw HTML disabled, then cleaned by nh3
(an allow-list HTML sanitiser) so that a course cannot put script, event handlers,
``javascript:`` URLs, styles or frames into the page.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import nh3
from markdown_it import MarkdownIt

from .model import Concept, Course, Quiz, Stage

_ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4",
    "h5", "h6", "hr", "i", "kbd", "li", "ol", "p", "pre", "s", "strong", "sub", "sup",
    "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}
_URL_SCHEMES = {"http", "https", "mailto"}


@lru_cache(maxsize=1)
def _md() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


@lru_cache(maxsize=8192)
def markdown_html(text: str) -> str:
    """Render Markdown to HTML that is safe to insert into the page (memoised: course
    text only changes when a course is re-fetched)."""
    html = _md().render(text or "")
    return sanitize_html(html)


def sanitize_html(html: str) -> str:
    """Clean HTML with the allow-list above (links get rel=noopener noreferrer)."""
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def public_quiz(quiz: Quiz) -> dict[str, Any]:
    """A quiz without its answer or explanation."""
    return {
        "id": quiz.id,
        "type": quiz.type,
        "question": quiz.question,
        "question_html": markdown_html(quiz.question),
        "options": list(quiz.options),
        "concept_id": quiz.concept_id,
        "judged_by": "service"
        if quiz.type == "multiple-choice" or quiz.answer is not None
        else "tutor",
    }


def public_concept(concept: Concept) -> dict[str, Any]:
    return {
        "id": concept.id,
        "title": concept.title,
        "content_html": markdown_html(concept.content),
        "key_ideas": list(concept.key_ideas),
        "prerequisites": list(concept.prerequisites),
        "level": concept.level,
    }


def public_stage(stage: Stage) -> dict[str, Any]:
    return {
        "number": stage.number,
        "id": stage.id,
        "title": stage.title,
        "description": stage.description,
        "requires": list(stage.requires),
        "concepts": [public_concept(c) for c in stage.concepts],
        "quizzes": [public_quiz(q) for q in stage.quizzes],
    }


def course_card(course: Course) -> dict[str, Any]:
    """What a course list shows: no stage content at all."""
    card = {k: v for k, v in course.card.items() if k not in ("title", "description")}
    return {
        "id": course.id,
        "title": course.title,
        "description": course.description,
        "layout": course.layout,
        "stage_count": len(course.stages),
        "paper": card,
    }


def public_course(course: Course) -> dict[str, Any]:
    """The whole course as the panels need it, with every answer removed."""
    data = course_card(course)
    data["stages"] = [public_stage(s) for s in course.stages]
    return data
