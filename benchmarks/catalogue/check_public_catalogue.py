"""Acceptance check of issue 14: today's public course catalogue, loaded whole.

Loads a checkout of the public catalogue (ainblockchain/awesome-papers-with-claude-code)
with the project's own catalogue code, several times, and reports:

- courses loaded / course folders found (every one must load);
- modules, lessons and quizzes, multiple-choice vs. free-response;
- the warnings (each one printed with ``--verbose``);
- lesson images: Markdown image references, the ``<img>`` the renderer keeps for them (with
  a service prefix, as the course service renders pages), and how many of the files exist
  in the checkout (the snapshot lacks a few large images);
- thumbnails found, languages;
- the load time: median (min-max) of ``--runs`` loads.

Usage::

    .venv/bin/python benchmarks/catalogue/check_public_catalogue.py /work/catalogue [--runs 7]

Exit status 1 when a course does not load, a relative lesson image does not survive the
renderer, or the median load time is over ``--target`` seconds (0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

from claudehub.progress.catalogue import Catalogue, discover, load_catalogue
from claudehub.progress.render import public_course

PREFIX = "/services/progress/"
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)")
_IMG_SRC = re.compile(r'<img[^>]*\bsrc="([^"]+)"')


async def _load(root: Path, cache: Path) -> tuple[Catalogue, float]:
    start = time.perf_counter()
    cat = await load_catalogue([], [{"id": "papers", "repo": str(root)}], cache)
    return cat, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="checkout of the public catalogue")
    parser.add_argument("--runs", type=int, default=7, help="loads to time (median)")
    parser.add_argument("--target", type=float, default=0.5, help="seconds, median load")
    parser.add_argument("--verbose", action="store_true", help="print every warning")
    args = parser.parse_args(argv)
    root = args.path.resolve()
    logging.getLogger("claudehub").setLevel(logging.CRITICAL)  # the report says it all

    folders = discover(root)
    times = []
    with tempfile.TemporaryDirectory() as cache:
        for _ in range(max(1, args.runs)):
            cat, seconds = asyncio.run(_load(root, Path(cache)))
            times.append(seconds)

    quizzes: Counter[str] = Counter()
    images = kept = present = 0
    warnings = []
    for course in cat.courses.values():
        warnings += [f"{course.id}: {w}" for w in course.warnings]
        page = public_course(course, PREFIX)
        for stage_data, stage in zip(page["stages"], course.stages, strict=True):
            quizzes.update(q.type for q in stage.quizzes)
            for concept, data in zip(stage.concepts, stage_data["concepts"], strict=True):
                refs = [r for r in _MD_IMAGE.findall(concept.content) if "://" not in r]
                srcs = _IMG_SRC.findall(data["content_html"])
                images += len(refs)
                kept += len(srcs)
                base = f"{PREFIX}api/courses/{course.id}/assets/"
                for src in srcs:
                    rel = unquote(src.removeprefix(base))
                    present += (root / rel).is_file()
    stages = sum(len(c.stages) for c in cat.courses.values())
    lessons = sum(len(s.concepts) for c in cat.courses.values() for s in c.stages)
    thumbnails = sum(1 for c in cat.courses.values() if c.thumbnail)
    languages = Counter(c.language or "unknown" for c in cat.courses.values())
    median = statistics.median(times)

    print(f"courses loaded: {len(cat.courses)} / {len(folders)}")
    for err in cat.errors:
        print(f"  cannot load: {err.course_id}: {err.file}: {err.reason}")
    print(f"modules: {stages}, lessons: {lessons}")
    print(
        f"quizzes: {sum(quizzes.values())} ({quizzes['multiple-choice']} multiple-choice, "
        f"{quizzes['free-response']} free-response)"
    )
    print(f"warnings: {len(warnings)}")
    if args.verbose:
        for w in warnings:
            print(f"  {w}")
    print(
        f"lesson images: {images} relative references, {kept} kept as <img> by the renderer, "
        f"{present} of those files present in the checkout"
    )
    print(f"thumbnails: {thumbnails}; languages: {dict(sorted(languages.items()))}")
    print(
        f"load time: median {median:.3f} s (min {min(times):.3f}, max {max(times):.3f}) "
        f"over {len(times)} runs; target < {args.target} s"
    )
    ok = len(cat.courses) == len(folders) and not cat.errors and kept == images
    return 0 if ok and median < args.target else 1


if __name__ == "__main__":
    sys.exit(main())
