"""Real image files and a catalogue repository with images, for the asset tests."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

from .coursekit import PAPER, write_catalogue_course

#: the catalogue id the image repository is configured under
IMAGE_CATALOGUE = "pics"
PAPER_SLUG = "optics"
COURSE_SLUG = "lenses"
#: make_course_id("pics", "optics/lenses")
IMAGE_COURSE = f"{IMAGE_CATALOGUE}--{PAPER_SLUG}--{COURSE_SLUG}"
#: where the lesson's image lives, relative to the repository (the catalogue's assets/ rule)
FIGURE = f"assets/courses/{PAPER_SLUG}/{COURSE_SLUG}/figure one.png"
REMOTE = "https://tracker.example.invalid/pixel.png"


def png(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A valid, decodable RGB PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"
SVG_WITH_SCRIPT = (
    b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
    b"<script>alert(document.cookie)</script></svg>"
)
HTML_AS_PNG = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"


def image_modules() -> list[dict[str, Any]]:
    """One module of two lessons: the first shows an image, a remote image and an image
    reference escaping the repository; both have a citation and key ideas."""
    figure_ref = FIGURE.removeprefix("assets/").replace(" ", "%20")
    return [
        {
            "id": "light",
            "title": "Light",
            "description": "Rays and lenses",
            "concepts": ["rays", "focus"],
            "lessons": [
                {
                    "concept_id": "rays",
                    "title": "Rays",
                    "prerequisites": [],
                    "content": (
                        "## Rays\n\nLight travels straight.\n\n"
                        f"![A ray diagram]({figure_ref})\n\n"
                        f"![Remote pixel]({REMOTE})\n\n"
                        "![Escaping](../../../../etc/passwd)\n"
                    ),
                    "key_ideas": ["straight lines", "reflection angle"],
                    "paper_ref": "Newton, Opticks (1704), Book I",
                    "exercise": "Does light bend in a vacuum?\n1) Yes\n2) No\nType the number.",
                    "answer": "No",
                    "explanation": "It travels straight.",
                },
                {
                    "concept_id": "focus",
                    "title": "Focus",
                    "prerequisites": ["rays"],
                    "content": "A lens brings rays together.",
                    "key_ideas": ["focal length"],
                    "paper_ref": "Newton, Opticks (1704), Book II",
                    "exercise": "Name the distance to the focal point.",
                    "answer": "focal length",
                    "explanation": "That is the focal length.",
                },
            ],
        }
    ]


def image_graph() -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "rays", "name": "Rays", "type": "concept", "level": "foundational"},
            {"id": "focus", "name": "Focus", "type": "concept", "level": "intermediate"},
        ],
        "edges": [{"source": "rays", "target": "focus", "relationship": "builds_on"}],
    }


def write_image_catalogue(root: Path) -> Path:
    """A catalogue repository with one course, its lesson image under ``assets/`` and a
    ``thumbnail.png`` in the course folder. Returns the repository folder."""
    folder = write_catalogue_course(
        root / PAPER_SLUG,
        COURSE_SLUG,
        modules=image_modules(),
        graph=image_graph(),
        paper={**PAPER, "title": "Opticks", "thumbnailUrl": "cover.png"},
    )
    figure = root / FIGURE
    figure.parent.mkdir(parents=True, exist_ok=True)
    figure.write_bytes(png(8, 6))
    (folder / "thumbnail.png").write_bytes(png(5, 5, (40, 200, 40)))
    (root / PAPER_SLUG / "cover.png").write_bytes(png(6, 4, (40, 40, 200)))
    (root / "README.md").write_text(json.dumps({"about": "test catalogue"}))
    return root
