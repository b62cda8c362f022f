"""A paper's text and figures, extracted from its PDF into the draft's ``paper/`` folder.

The library is pypdf (pure Python, BSD, maintained, no native code: nothing in the course
service's image to compile or patch for a C parser fed untrusted files; its images come
out through Pillow, which the service already has). Checks come first and cheaply: the
``%PDF-`` signature, the size, whether pypdf can read it, encryption (refused: the service
cannot read it, and an instructor should upload the paper they may share), the page count.

What lands in ``paper/``:

- ``paper.md``: the text, one ``## Page N`` section per page, the marker Claude cites by;
- ``figures/page-<N>-<K>.png``: the page's embedded images (tiny ones skipped), as PNG;
- ``paper.json``: the metadata (title, pages, figures with their page and size, characters,
  the PDF's SHA-256 and where it came from);

and beside ``paper/``, the course card's ``thumbnail.png``: the paper's biggest figure, or
a title card when it has none (Claude writes text files only).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from pypdf import PdfReader
from pypdf.errors import PdfReadError, PyPdfError

from .intake import IntakeError

log = logging.getLogger(__name__)

PDF_MAGIC = b"%PDF-"
#: images smaller than this on both sides are icons and rules, not figures
MIN_FIGURE_SIDE = 32
#: a figure's longest side is scaled down to this
MAX_FIGURE_SIDE = 2000
MAX_TEXT_CHARS = 2_000_000
#: the largest side of the card picture made from the paper
THUMBNAIL_WIDTH = 640


@dataclass
class Extracted:
    """What the paper gave: its files (relative path -> bytes) and its summary."""

    title: str
    pages: int
    characters: int
    figures: list[dict[str, Any]] = field(default_factory=list)
    skipped_figures: int = 0
    files: dict[str, bytes] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        """The API's ``paper`` object."""
        return {"pages": self.pages, "figures": len(self.figures), "characters": self.characters}


def check_pdf(data: bytes, max_bytes: int) -> None:
    """Refuse what is surely not a PDF, or too big, before parsing anything."""
    if not data:
        raise IntakeError(400, "the paper is empty")
    if len(data) > max_bytes:
        raise IntakeError(413, f"the paper is larger than {max_bytes} bytes")
    if PDF_MAGIC not in data[:1024]:
        raise IntakeError(415, "the paper is not a PDF (no %PDF- signature)")


def _title(reader: PdfReader, text: str, given: str) -> str:
    if given.strip():
        return given.strip()[:200]
    try:
        meta = reader.metadata
        if meta is not None and meta.title and str(meta.title).strip():
            return str(meta.title).strip()[:200]
    except (PyPdfError, ValueError, TypeError, KeyError):
        pass
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return "Untitled paper"


def _figure_png(image: Any) -> tuple[bytes, int, int] | None:
    """A page image as PNG bytes and its size, or None when it is too small to be a figure."""
    pil: Image.Image = image.image
    if pil is None:
        return None
    width, height = pil.size
    if width < MIN_FIGURE_SIDE and height < MIN_FIGURE_SIDE:
        return None
    if max(width, height) > MAX_FIGURE_SIDE:
        pil = pil.copy()
        pil.thumbnail((MAX_FIGURE_SIDE, MAX_FIGURE_SIDE))
        width, height = pil.size
    if pil.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        pil = pil.convert("RGB")
    out = io.BytesIO()
    pil.save(out, format="PNG", optimize=False)
    return out.getvalue(), width, height


def thumbnail_png(figure: bytes | None, title: str) -> bytes:
    """A card picture (at most :data:`THUMBNAIL_WIDTH` wide): ``figure`` scaled, or a plain
    card with ``title`` written on it."""
    image: Image.Image
    if figure is not None:
        image = Image.open(io.BytesIO(figure))
        image.thumbnail((THUMBNAIL_WIDTH, THUMBNAIL_WIDTH))
    else:
        image = Image.new("RGB", (THUMBNAIL_WIDTH, THUMBNAIL_WIDTH * 9 // 16), (38, 48, 71))
        draw = ImageDraw.Draw(image)
        words, lines, line = title.split(), [], ""
        for word in words:
            if len(line) + len(word) > 40 and line:
                lines.append(line)
                line = ""
            line = f"{line} {word}".strip()
        lines.append(line)
        for i, text in enumerate(lines[:6]):
            draw.text((32, 32 + 28 * i), text, fill=(240, 240, 240), font_size=22)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def extract_pdf(
    data: bytes,
    *,
    max_bytes: int,
    max_pages: int,
    max_figures: int,
    title: str = "",
    source: dict[str, str] | None = None,
) -> Extracted:
    """Check and extract ``data`` (a PDF). Blocking: run it in a thread."""
    check_pdf(data, max_bytes)
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        encrypted = reader.is_encrypted
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, OSError) as e:
        raise IntakeError(422, f"the PDF cannot be read: {e}") from None
    if encrypted:
        raise IntakeError(422, "the PDF is encrypted: upload a copy without a password")
    try:
        pages = list(reader.pages)
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise IntakeError(422, f"the PDF's pages cannot be read: {e}") from None
    if not pages:
        raise IntakeError(422, "the PDF has no pages")
    if len(pages) > max_pages:
        raise IntakeError(413, f"the PDF has {len(pages)} pages, more than the {max_pages} allowed")
    sections: list[str] = []
    figures: list[dict[str, Any]] = []
    files: dict[str, bytes] = {}
    skipped = 0
    chars = 0
    for number, page in enumerate(pages, start=1):
        try:
            text = page.extract_text() or ""
        except (PyPdfError, ValueError, KeyError, TypeError, RecursionError) as e:
            log.info("Page %d of a paper has no readable text: %s", number, e)
            text = ""
        text = text.strip()
        if chars + len(text) > MAX_TEXT_CHARS:
            text = text[: max(0, MAX_TEXT_CHARS - chars)]
        chars += len(text)
        sections.append(f"## Page {number}\n\n{text}\n" if text else f"## Page {number}\n")
        try:
            images = list(page.images)
        except (PyPdfError, ValueError, KeyError, TypeError, OSError, RecursionError) as e:
            log.info("Page %d of a paper has unreadable images: %s", number, e)
            images = []
        kept_on_page = 0
        for image in images:
            if len(figures) >= max_figures:
                skipped += 1
                continue
            try:
                png = _figure_png(image)
            except (PyPdfError, ValueError, KeyError, TypeError, OSError) as e:
                log.info("A figure on page %d cannot be decoded: %s", number, e)
                skipped += 1
                continue
            if png is None:
                continue
            kept_on_page += 1
            name = f"figures/page-{number}-{kept_on_page}.png"
            files[f"paper/{name}"] = png[0]
            figures.append({"file": name, "page": number, "width": png[1], "height": png[2]})
    full_text = "\n".join(sections)
    biggest = max(figures, key=lambda f: f["width"] * f["height"], default=None)
    paper_title = _title(reader, full_text.replace("## Page 1", "", 1), title)
    files["paper/paper.md"] = (
        f"# {paper_title}\n\n"
        "<!-- Extracted by the claudehub course service from the paper's PDF: one section "
        "per page. -->\n\n" + full_text
    ).encode("utf-8")
    meta = {
        "title": paper_title,
        "pages": len(pages),
        "characters": chars,
        "figures": figures,
        "skipped_figures": skipped,
        "sha256": hashlib.sha256(data).hexdigest(),
        "source": source or {"kind": "upload"},
        "extractor": "pypdf",
    }
    files["paper/paper.json"] = (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode()
    # Claude writes text only: the card's picture is the paper's biggest figure, else a
    # plain title card (replaceable by any thumbnail.png the draft later holds)
    source_png = files[f"paper/{biggest['file']}"] if biggest else None
    files["thumbnail.png"] = thumbnail_png(source_png, paper_title)
    return Extracted(
        title=paper_title,
        pages=len(pages),
        characters=chars,
        figures=figures,
        skipped_figures=skipped,
        files=files,
    )


def write_files(root: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (relative POSIX paths) under ``root``."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
