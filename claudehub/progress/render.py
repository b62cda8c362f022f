"""Course text -> sanitised HTML, and the public (answer-free) view of a course.

Markdown is rendered by markdown-it-py with raw HTML disabled, then cleaned by nh3
(an allow-list HTML sanitiser) so that a course cannot put script, event handlers,
``javascript:`` URLs, styles or frames into the page.

Images: a Markdown image with a relative path becomes an ``<img>`` whose ``src`` is the
course service's own asset URL (``{prefix}api/courses/{id}/assets/{path}``, see
:mod:`.assets`); the sanitiser keeps ``<img>`` only with such a ``src``. Any other image
(``http(s)://``, ``data:``, absolute or escaping paths) is not loaded: its alt text is
shown instead, so the learner's browser never contacts a host the course names (no
tracking pixels, nothing sent out of an air-gapped cluster).
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from .assets import CARD_THUMBNAIL_WIDTH, AssetSigner, assets_base_url, repository_relative
from .model import Concept, Course, Quiz, Stage

_ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4",
    "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "span", "strong",
    "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "th": {"align"},
    "td": {"align"},
    "img": {"src", "alt", "title", "loading"},
}
_ALLOWED_CLASSES = {"span": {"ch-image-alt"}}
_URL_SCHEMES = {"http", "https", "mailto"}
#: the catalogue layout's convention: lesson images are relative to the repository's assets/
CATALOGUE_IMAGE_FOLDER = "assets"


@dataclass(frozen=True)
class ImageLinks:
    """How one course's Markdown image references become service URLs.

    ``base_url`` is where every image URL of the course starts
    (``{prefix}api/courses/{id}/assets/``); ``folder`` is the repository-relative folder
    a relative reference is resolved against ("" for the repository root). With a
    ``signer`` each URL is signed for ``course_id`` until ``expires`` (see
    :class:`AssetSigner`), so that a plain ``<img>`` on a hub page loads it.
    """

    base_url: str
    folder: str = ""
    course_id: str = ""
    signer: AssetSigner | None = None
    expires: int = 0

    def url_for(self, src: str) -> str | None:
        """The service URL of image reference ``src``, or None when it is not a path
        inside the repository (remote, ``data:``, absolute, or escaping with ``..``)."""
        parts = urlsplit(src.strip())
        if parts.scheme or parts.netloc or not parts.path or parts.path.startswith("/"):
            return None
        path = unquote(parts.path)
        if "\\" in path or "\0" in path:
            return None
        joined = posixpath.normpath(posixpath.join(self.folder, path))
        if joined in (".", "..") or joined.startswith(("../", "/")):
            return None
        url = self.base_url + quote(joined, safe="/")
        if self.signer is not None:
            url += "?" + self.signer.query(self.course_id, joined, self.expires)
        return url


def course_image_links(
    course: Course, prefix: str, signer: AssetSigner | None = None
) -> ImageLinks | None:
    """The :class:`ImageLinks` of ``course`` served under service prefix ``prefix``, signed
    by ``signer`` if given (None without a prefix: then no image is linked, only alt text
    shown)."""
    if not prefix:
        return None
    if course.layout == "catalogue":
        folder = CATALOGUE_IMAGE_FOLDER
    else:
        folder = repository_relative(course, course.path) or ""
        folder = "" if folder == "." else folder
    expires = AssetSigner.expiry(time.time()) if signer else 0
    return ImageLinks(assets_base_url(prefix, course.id), folder, course.id, signer, expires)


def _render_image(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    links = env.get("images")
    src = token.attrGet("src")
    url = links.url_for(str(src)) if isinstance(links, ImageLinks) and src else None
    if url is None:
        # not loaded: the author's description stands in for the picture
        alt = self.renderInlineAsText(token.children or [], options, env)
        return f'<span class="ch-image-alt">{escapeHtml(alt)}</span>' if alt else ""
    token.attrSet("src", url)
    token.attrSet("loading", "lazy")
    return self.image(tokens, idx, options, env)


@lru_cache(maxsize=1)
def _md() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
    md.add_render_rule("image", _render_image)
    return md


def markdown_html(text: str, images: ImageLinks | None = None) -> str:
    """Render Markdown to HTML that is safe to insert into the page (memoised: course
    text only changes when a course is re-fetched). Images become service URLs through
    ``images``; without it they are shown as their alt text."""
    # text without an image renders the same whatever the links, so it stays memoised
    # when they change (signed links change daily)
    text = text or ""
    return _markdown_html(text, images if images is not None and "![" in text else None)


@lru_cache(maxsize=8192)
def _markdown_html(text: str, images: ImageLinks | None) -> str:
    html = _md().render(text, {"images": images})
    return sanitize_html(html, images)


def sanitize_html(html: str, images: ImageLinks | None = None) -> str:
    """Clean HTML with the allow-list above (links get rel=noopener noreferrer); an
    ``<img>`` keeps its ``src`` only when it is one of ``images``' service URLs."""
    base = images.base_url if images else None

    def keep(tag: str, attribute: str, value: str) -> str | None:
        if tag == "img" and attribute == "src":
            return value if base and value.startswith(base) and ".." not in value else None
        return value

    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        attribute_filter=keep if "<img" in html else None,
        url_schemes=_URL_SCHEMES,
        allowed_classes=_ALLOWED_CLASSES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def public_quiz(quiz: Quiz, images: ImageLinks | None = None) -> dict[str, Any]:
    """A quiz without its answer or explanation."""
    return {
        "id": quiz.id,
        "type": quiz.type,
        "question": quiz.question,
        "question_html": markdown_html(quiz.question, images),
        "options": list(quiz.options),
        "concept_id": quiz.concept_id,
        "judged_by": "service"
        if quiz.type == "multiple-choice" or quiz.answer is not None
        else "tutor",
    }


def public_concept(concept: Concept, images: ImageLinks | None = None) -> dict[str, Any]:
    """A concept (lesson) as the stage panel shows it: its text as HTML, the author's
    key ideas, level, prerequisites (concept ids: the concept graph's arrows) and citation."""
    return {
        "id": concept.id,
        "title": concept.title,
        "content_html": markdown_html(concept.content, images),
        "key_ideas": list(concept.key_ideas),
        "prerequisites": list(concept.prerequisites),
        "level": concept.level,
        "paper_ref": concept.paper_ref,
    }


def public_stage(stage: Stage, images: ImageLinks | None = None) -> dict[str, Any]:
    return {
        "number": stage.number,
        "id": stage.id,
        "title": stage.title,
        "description": stage.description,
        "requires": list(stage.requires),
        "concepts": [public_concept(c, images) for c in stage.concepts],
        "quizzes": [public_quiz(q, images) for q in stage.quizzes],
    }


def course_card(
    course: Course, prefix: str = "", signer: AssetSigner | None = None
) -> dict[str, Any]:
    """What a course list shows: no stage content at all.

    ``prefix`` is the service's URL prefix (``/services/progress/``); with it the card
    links its thumbnail (``thumbnail_url``, a service URL signed by ``signer``, or None) and
    says where the course's images are served (``assets_url``). Without it both are None.
    """
    card = {k: v for k, v in course.card.items() if k not in ("title", "description")}
    links = course_image_links(course, prefix, signer)
    thumbnail_url = None
    if links is not None and course.thumbnail:
        thumbnail_url = replace(links, folder="").url_for(course.thumbnail)
        if thumbnail_url is not None:
            # cards show a small picture: the service scales it (see assets.scaled)
            sep = "&" if "?" in thumbnail_url else "?"
            thumbnail_url += f"{sep}w={CARD_THUMBNAIL_WIDTH}"
    return {
        "id": course.id,
        "title": course.title,
        "description": course.description,
        "language": course.language,
        "layout": course.layout,
        "stage_count": len(course.stages),
        "thumbnail_url": thumbnail_url,
        "assets_url": links.base_url if links else None,
        "paper": card,
    }


def public_course(
    course: Course, prefix: str = "", signer: AssetSigner | None = None
) -> dict[str, Any]:
    """The whole course as the panels need it, with every answer removed (``prefix`` and
    ``signer``: as for :func:`course_card`; lesson images link to the service only with a
    prefix)."""
    data = course_card(course, prefix, signer)
    images = course_image_links(course, prefix, signer)
    data["stages"] = [public_stage(s, images) for s in course.stages]
    return data
