"""The paper's extraction in a child process with a time and a memory limit.

A PDF comes from an instructor or the internet; parsing it is the riskiest thing the course
service does. So :func:`extract_isolated` runs :func:`.extract.extract_pdf` in a fresh
Python (its :func:`main` with ``PDF OUT LIMITS``) whose address space is capped (``RLIMIT_AS``,
set before anything is imported) and which is killed after ``time_limit`` seconds: a
decompression bomb or a pathological file costs the service one refused upload, never its
memory or its event loop. The child writes the extracted files under OUT and
``result.json`` (or ``{"status", "message"}`` for a refused paper); its environment is
empty but for the locale (nothing of the service's, no token, reaches it).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from .extract import Extracted, extract_pdf
from .intake import IntakeError

#: the child's exit status when it ran out of memory
OUT_OF_MEMORY = 3
RESULT = "result.json"


#: The child: its address space capped first (before any parser is imported), then the
#: extraction. (Not preexec_fn: the service has threads, and forking them is unsafe.)
_BOOT = (
    "import resource, sys\n"
    "limit = int(sys.argv[1])\n"
    "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
    "from claudehub.progress.authoring.isolate import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


async def extract_isolated(
    data: bytes,
    *,
    max_bytes: int,
    max_pages: int,
    max_figures: int,
    title: str = "",
    source: dict[str, str] | None = None,
    time_limit: float = 60.0,
    memory_limit: int = 1024 * 1024 * 1024,
) -> Extracted:
    """:func:`extract_pdf` of ``data`` in a child process; IntakeError for a refused
    paper, one that takes longer than ``time_limit`` or more than ``memory_limit`` bytes."""
    tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="claudehub-paper-"))
    try:
        pdf = tmp / "paper.pdf"
        out = tmp / "out"
        await asyncio.to_thread(pdf.write_bytes, data)
        limits = {
            "max_bytes": max_bytes,
            "max_pages": max_pages,
            "max_figures": max_figures,
            "title": title,
            "source": source or {"kind": "upload"},
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _BOOT,
            str(memory_limit),
            str(pdf),
            str(out),
            json.dumps(limits),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={"LC_ALL": "C.UTF-8"},
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), time_limit)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise IntakeError(
                422, f"reading the PDF took longer than {time_limit:.0f}s: it cannot be used"
            ) from None
        except asyncio.CancelledError:
            proc.kill()
            raise
        lines = err.decode(errors="replace").strip().splitlines()
        if proc.returncode == OUT_OF_MEMORY or (lines and lines[-1].startswith("MemoryError")):
            raise IntakeError(422, "reading the PDF needs too much memory: it cannot be used")
        if proc.returncode != 0:
            raise IntakeError(
                422, f"the PDF cannot be read: {lines[-1] if lines else proc.returncode}"
            )
        return await asyncio.to_thread(_collect, out)
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)


def _collect(out: Path) -> Extracted:
    result = json.loads((out / RESULT).read_text(encoding="utf-8"))
    if "status" in result:
        raise IntakeError(int(result["status"]), str(result["message"]))
    files = {rel: (out / "files" / rel).read_bytes() for rel in result.pop("files")}
    return Extracted(files=files, **result)


def _run(pdf: Path, out: Path, limits: dict[str, Any]) -> int:
    out.mkdir(parents=True)
    try:
        paper = extract_pdf(pdf.read_bytes(), **limits)
    except IntakeError as e:
        (out / RESULT).write_text(json.dumps({"status": e.status, "message": e.message}))
        return 0
    except MemoryError:
        return OUT_OF_MEMORY
    for rel, data in paper.files.items():
        path = out / "files" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    summary = {
        "title": paper.title,
        "pages": paper.pages,
        "characters": paper.characters,
        "figures": paper.figures,
        "skipped_figures": paper.skipped_figures,
        "files": sorted(paper.files),
    }
    (out / RESULT).write_text(json.dumps(summary))
    return 0


def main(argv: list[str]) -> int:
    """The child's entry point: ``PDF OUT LIMITS`` (LIMITS: JSON of extract_pdf's options)."""
    os.umask(0o077)
    return _run(Path(argv[0]), Path(argv[1]), json.loads(argv[2]))
