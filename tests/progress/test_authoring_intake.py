"""The paper URL fetch behind the SSRF guard, against real local HTTP servers: an allowed
network fetched, a redirect into a refused address refused before any connection, the
size cap, and the address rule itself; and the authoring routes of a service without
authoring."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from tornado import web
from tornado.httpserver import HTTPServer

from claudehub.contract.course_client import ProgressAPIError
from claudehub.progress.authoring.intake import IntakeError, fetch_paper, refused_reason
from tests.helpers import free_port

from .pdfkit import PAPER_LINES, make_pdf

PDF = make_pdf(PAPER_LINES)
HERE = [ipaddress.ip_network("127.0.0.1/32")]


class Paper(web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/pdf")
        self.finish(PDF)


class Redirect(web.RequestHandler):
    def get(self, target: str) -> None:
        self.redirect(f"http://{target}/paper.pdf")


class Big(web.RequestHandler):
    async def get(self) -> None:
        for _ in range(64):
            self.write(b"%PDF-" + b"x" * 16_000)
            await self.flush()


@pytest_asyncio.fixture
async def papers() -> AsyncIterator[str]:
    port = free_port()
    server = HTTPServer(
        web.Application([(r"/paper.pdf", Paper), (r"/to/(.+)", Redirect), (r"/big.pdf", Big)])
    )
    server.listen(port, "127.0.0.1")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.mark.asyncio
async def test_an_allowed_network_is_fetched_and_a_redirect_out_of_it_is_refused(
    papers: str,
) -> None:
    body = await fetch_paper(f"{papers}/paper.pdf", max_bytes=10**6, time_limit=10, allowed=HERE)
    assert body == PDF
    # the same server without the operator's allowance: loopback is refused
    with pytest.raises(IntakeError) as refused:
        await fetch_paper(f"{papers}/paper.pdf", max_bytes=10**6, time_limit=10)
    assert refused.value.status == 422 and "a loopback address" in refused.value.message
    # a redirect to another loopback address (outside the /32), to metadata, to IPv6
    # loopback: each hop is checked, none is connected to (a name resolving to a refused
    # address: test_authoring_api)
    for target, words in (
        ("127.0.0.2:1", "127.0.0.2 is a loopback address"),
        ("169.254.169.254", "169.254.169.254 is a link-local address"),
        ("[::1]:1", "::1 is a loopback address"),
    ):
        with pytest.raises(IntakeError) as refused:
            await fetch_paper(f"{papers}/to/{target}", max_bytes=10**6, time_limit=10, allowed=HERE)
        assert refused.value.status == 422 and words in refused.value.message, target


@pytest.mark.asyncio
async def test_a_paper_over_the_size_cap_is_cut_off(papers: str) -> None:
    with pytest.raises(IntakeError) as refused:
        await fetch_paper(f"{papers}/big.pdf", max_bytes=100_000, time_limit=10, allowed=HERE)
    assert refused.value.status == 413 and "larger than 100000 bytes" in refused.value.message


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.0.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("172.16.0.1", "a private address"),
        ("127.0.0.1", "a loopback address"),
        ("169.254.169.254", "a link-local address (cloud metadata lives there)"),
        ("fe80::1", "a link-local address (cloud metadata lives there)"),
        ("fd00:ec2::254", "a private address"),
        ("::1", "a loopback address"),
        ("224.0.0.1", "a multicast address"),
        ("0.0.0.0", "the unspecified address"),
        ("100.64.0.1", "an address that is not public"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("93.184.215.14", None),
        ("2606:4700::1", None),
    ],
)
def test_which_addresses_are_refused(address: str, reason: str | None) -> None:
    assert refused_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.asyncio
async def test_authoring_off_answers_a_json_404(start_service: Any, fake_hub_api: Any) -> None:
    fake_hub_api.add_user("tok", "tina")
    svc = await start_service()
    for method, path in (("GET", "drafts"), ("POST", "drafts"), ("GET", "drafts/0123456789ab")):
        with pytest.raises(ProgressAPIError) as refused:
            await svc.client("tok").request(method, path, {} if method == "POST" else None)
        assert refused.value.status == 404
        assert "course authoring is not enabled" in str(refused.value)
