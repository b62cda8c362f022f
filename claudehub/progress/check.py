"""``claudehub-progress check-catalogue PATH``: what the course service would make of a
course repository, for course authors (in their repository's CI) and operators.

Every course found under PATH is parsed with the service's own catalogue code; each error (a
course that cannot load) and each warning (something left out or handed to the tutor) is
printed. The exit status is 1 only when some course cannot load at all (or none is found),
so warnings do not fail a CI job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from traitlets import Unicode
from traitlets.config import Application

from .catalogue import Catalogue, load_catalogue


def catalogue_report(cat: Catalogue) -> list[str]:
    """One line per error and warning of ``cat``, then a summary line."""
    lines = [f"error: {e.course_id or e.source}: {e.file}: {e.reason}" for e in cat.errors]
    warnings = 0
    for course in cat.courses.values():
        for issue in course.issues:
            warnings += 1
            lines.append(f"warning: {course.id}: {issue}")
    lines.append(
        f"{len(cat.courses)} courses loaded, {len(cat.errors)} cannot load, {warnings} warnings"
    )
    return lines


async def check_catalogue(repo: str, cache_dir: Path, out: TextIO) -> int:
    """Load the catalogue at ``repo`` (an absolute folder path, or a git URL cloned into
    ``cache_dir``), print the report to ``out``; the exit status: 1 when some course cannot
    load, else 0."""
    cat = await load_catalogue([], [{"id": "", "repo": repo}], cache_dir)
    for line in catalogue_report(cat):
        print(line, file=out)
    return 1 if cat.errors else 0


class CheckCatalogueApp(Application):
    """``claudehub-progress check-catalogue PATH``."""

    name = "claudehub-progress check-catalogue"
    description = """Load every course under PATH (a course repository folder, or an
    https:// / file:// git URL) as the course service would, print every error and warning,
    and exit non-zero only if some course cannot load at all."""
    examples = "claudehub-progress check-catalogue ./awesome-papers-with-claude-code"

    path = Unicode("", help="The course repository (or course folder) to check.").tag(config=True)

    def start(self) -> None:
        # the report is this command's output; the loader's log lines would repeat it
        logging.getLogger("claudehub").setLevel(logging.CRITICAL)
        path = self.path or (self.extra_args[0] if self.extra_args else "")
        if not path or len(self.extra_args) > 1:
            print("usage: claudehub-progress check-catalogue PATH", file=sys.stderr)
            self.exit(2)
        if "://" not in path:
            path = os.path.abspath(path)
        with tempfile.TemporaryDirectory(prefix="claudehub-check-") as cache:
            # a local folder is read in place; the cache only holds clones of git URLs
            status = asyncio.run(check_catalogue(path, Path(cache), sys.stdout))
        self.exit(status)
