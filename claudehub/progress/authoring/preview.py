"""A draft checked and previewed with the catalogue's own code, and its quizzes judged.

The check is what ``claudehub-progress check-catalogue`` would say of the draft's course
(:func:`claudehub.progress.parsing.parse_course`: an error stops the course, a warning is
something left out or handed to the tutor), plus two rules of drafts: a draft holds exactly
one course folder, and every JSON file in it must parse (a published course never carries
a broken file, even one the parser would only warn about). The preview is the JSON the
learner's course endpoint gives (answers removed), plus the concept graph.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..assets import AssetSigner
from ..judging import judge
from ..model import Course, CourseFormatError
from ..parsing import CLAUDE_MD, COURSES_JSON, has_course, parse_course
from ..render import CATALOGUE_IMAGE_FOLDER, ImageLinks, public_course, public_stage
from .drafts import PAPER_DIR

#: what a draft's image URLs are signed for (a course id never has a colon)
DRAFT_ASSET_KEY = "draft:"


@dataclass
class Checked:
    """A draft's check: its course (None when it cannot load), the course folder's name,
    errors and warnings (``{"file", "path", "reason"}``, files relative to the draft)."""

    course: Course | None
    folder: str | None
    errors: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)

    def report(self) -> dict[str, list[dict[str, str]]]:
        return {"errors": self.errors, "warnings": self.warnings}


def _issue(file: str, reason: str, path: str = "") -> dict[str, str]:
    return {"file": file, "path": path, "reason": reason}


def course_folders(root: Path) -> list[str]:
    """The draft's top-level folders that hold a course."""
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.is_symlink() and p.name != PAPER_DIR and not p.name.startswith(".")
        and has_course(p)
    )  # fmt: skip


def _json_errors(root: Path) -> list[dict[str, str]]:
    errors = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        if base == root:
            dirnames[:] = [d for d in dirnames if d != PAPER_DIR]
        for name in sorted(filenames):
            if not name.endswith(".json"):
                continue
            full = base / name
            rel = full.relative_to(root).as_posix()
            try:
                json.loads(full.read_text(encoding="utf-8"))
            except UnicodeDecodeError:
                errors.append(_issue(rel, "not UTF-8 text"))
            except json.JSONDecodeError as e:
                errors.append(
                    _issue(rel, f"invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})")
                )
    return errors


def check_draft(root: Path, course_id: str) -> Checked:
    """Check the draft folder ``root`` as the course ``course_id``. Blocking."""
    folders = course_folders(root)
    if not folders:
        return Checked(
            None,
            None,
            errors=[
                _issue(
                    ".",
                    f"no course folder yet: write <course>/{CLAUDE_MD} and "
                    f"<course>/{COURSES_JSON} (docs/authoring.md)",
                )
            ],
        )
    if len(folders) > 1:
        return Checked(
            None,
            None,
            errors=[_issue(".", f"a draft holds one course folder, found {', '.join(folders)}")],
        )
    folder = folders[0]
    checked = Checked(None, folder, errors=_json_errors(root))
    try:
        course = parse_course(root / folder, course_id, source="draft", repo_root=root)
    except CourseFormatError as e:
        file = f"{folder}/{e.file}"
        if not any(err["file"] == file for err in checked.errors):  # said once is enough
            checked.errors.append(_issue(file, e.detail, e.path))
        return checked
    for w in course.issues:
        # a file relative to the course folder; "../paper.json" is the draft's own
        file = w.file[3:] if w.file.startswith("../") else f"{folder}/{w.file}"
        checked.warnings.append(_issue(file, w.reason, w.path))
    if course.thumbnail is None:
        checked.warnings.append(_issue("thumbnail.png", "missing: the course card has no picture"))
    if checked.errors:
        return checked
    checked.course = course
    return checked


def graph_of(course: Course) -> dict[str, Any]:
    """The concept graph: concepts as nodes (with their stage), prerequisites as edges."""
    stage_of = course.concept_stage()
    nodes = [
        {"id": c.id, "title": c.title, "stage": s.number} for s in course.stages for c in s.concepts
    ]
    edges = [
        {"from": p, "to": c.id}
        for s in course.stages
        for c in s.concepts
        for p in c.prerequisites
        if p in stage_of
    ]
    return {"nodes": nodes, "edges": edges}


def preview_of(checked: Checked, links: ImageLinks | None = None) -> dict[str, Any] | None:
    """The course as the learner's panels see it (no answers), plus ``graph``; None when
    the draft's course cannot load. With ``links`` (:func:`draft_links`) its images and
    thumbnail link to the draft's own, signed."""
    if checked.course is None:
        return None
    course = checked.course
    data = public_course(course)
    if links is not None:
        data["stages"] = [public_stage(s, links) for s in course.stages]
        if course.thumbnail:
            data["thumbnail_url"] = replace(links, folder="").url_for(course.thumbnail)
    data["graph"] = graph_of(course)
    return data


def draft_links(prefix: str, draft_id: str, signer: AssetSigner, now: float) -> ImageLinks:
    """Signed links to a draft's images under ``{prefix}api/drafts/<id>/assets/`` (what
    :class:`~.handlers.DraftAssetHandler` serves), resolved as the published course's will be."""
    return ImageLinks(
        base_url=f"{prefix.rstrip('/')}/api/drafts/{draft_id}/assets/",
        folder=CATALOGUE_IMAGE_FOLDER,
        course_id=DRAFT_ASSET_KEY + draft_id,
        signer=signer,
        expires=AssetSigner.expiry(now),
    )


def draft_asset_path(path: str) -> str:
    """Where a published course's image path is in the draft: the paper's figures are
    published as ``assets/paper/figures/`` (publish.PUBLISHED_FIGURES) but live in
    ``paper/figures/`` while drafting."""
    published = f"{CATALOGUE_IMAGE_FOLDER}/{PAPER_DIR}/figures/"
    if path.startswith(published):
        return f"{PAPER_DIR}/figures/" + path[len(published) :]
    return path


def judge_draft(course: Course, quiz_id: str, answer: str) -> dict[str, Any]:
    """Judge ``answer`` to quiz ``quiz_id`` of a draft's course as a learner's answer is
    judged (nothing is recorded). Raises KeyError for an unknown quiz."""
    found = course.find_quiz(quiz_id)
    if found is None:
        raise KeyError(quiz_id)
    stage, quiz = found
    verdict = judge(quiz, answer)
    out: dict[str, Any] = {
        "correct": verdict.correct,
        "status": verdict.status,
        "message": verdict.message,
        "stage": stage.number,
    }
    if verdict.correct and verdict.explanation:
        out["explanation"] = verdict.explanation
    return out
