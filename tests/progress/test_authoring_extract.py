"""A paper's extraction in its child process: the same result as in process, and a paper
that takes too long or needs too much memory refused without harm to the service."""

from __future__ import annotations

import pytest

from claudehub.progress.authoring.extract import extract_pdf
from claudehub.progress.authoring.intake import IntakeError
from claudehub.progress.authoring.isolate import extract_isolated

from .pdfkit import PAPER_LINES, encrypted, make_pdf

LIMITS = {"max_bytes": 10**7, "max_pages": 10, "max_figures": 5}


@pytest.mark.asyncio
async def test_the_child_extracts_what_the_service_would() -> None:
    pdf = make_pdf(PAPER_LINES, figure=(80, 60), title="Attention")
    isolated = await extract_isolated(pdf, **LIMITS, title="", source={"kind": "upload"})
    direct = extract_pdf(pdf, **LIMITS, title="", source={"kind": "upload"})
    assert isolated == direct
    assert isolated.title == "Attention" and len(isolated.figures) == 2
    # a refusal inside the child comes back as the same refusal
    with pytest.raises(IntakeError) as refused:
        await extract_isolated(encrypted(pdf), **LIMITS)
    assert refused.value.status == 422 and "encrypted" in refused.value.message


@pytest.mark.asyncio
async def test_a_paper_past_the_time_or_memory_limit_is_refused() -> None:
    pdf = make_pdf(PAPER_LINES)
    with pytest.raises(IntakeError) as refused:
        await extract_isolated(pdf, **LIMITS, time_limit=0.01)
    assert refused.value.status == 422 and "took longer than 0s" in refused.value.message
    # a small file whose figure decodes to 27 MB, three times over (the stream, the image,
    # its PNG): fine with the default limit, refused under a smaller one
    bomb = make_pdf(PAPER_LINES[:1], figure=(3000, 3000), blank=True)
    assert len(bomb) < 300_000
    with pytest.raises(IntakeError) as refused:
        await extract_isolated(bomb, **LIMITS, memory_limit=128 * 1024 * 1024)
    assert refused.value.status == 422 and "too much memory" in refused.value.message
    paper = await extract_isolated(bomb, **LIMITS)
    assert paper.pages == 1 and paper.figures[0]["width"] == 2000
