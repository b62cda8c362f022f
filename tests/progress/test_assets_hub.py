"""Course images on a hub page, through the REAL JupyterHub (real Chromium).

The course picker shows ``thumbnail_url`` with a plain ``<img>`` on the hub's own page, many
at once, in a browser that has the hub's login but not the service's cookie. The URLs the
service hands out are signed, so they load at once, all together; an unsigned one still
loads through the hub's OAuth login (one at a time: JupyterHub's OAuth state cookie does not
survive concurrent logins, which is why the URLs are signed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tornado.httpclient import AsyncHTTPClient

from claudehub.contract.course_client import ProgressClient
from claudehub.progress.app import ProgressService
from tests.helpers import CHROMIUM, CHROMIUM_ARGS

from .imagekit import png
from .test_hub_auth import RealHub, _login, real_hub  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.slow]

COURSE = "papers--bitcoin--core"

LOAD_ALL = """urls => Promise.all(urls.map(u => new Promise(done => {
    const i = new Image();
    i.onload = () => done([i.naturalWidth, i.naturalHeight]);
    i.onerror = () => done(null);
    i.src = u;
    document.body.appendChild(i);
})))"""


def _add_images(catalogue: Path) -> None:
    """A thumbnail and two lesson images for the catalogue course real_hub loads."""
    course = catalogue / "bitcoin" / "core"
    (course / "thumbnail.png").write_bytes(png(5, 5))
    figures = catalogue / "assets" / "courses" / "bitcoin" / "core"
    figures.mkdir(parents=True)
    (figures / "one.png").write_bytes(png(7, 3))
    (figures / "two.png").write_bytes(png(9, 2))
    courses_json = course / "knowledge" / "courses.json"
    modules = json.loads(courses_json.read_text())
    modules[0]["lessons"][0]["content"] += (
        "\n\n![one](courses/bitcoin/core/one.png)\n\n![two](courses/bitcoin/core/two.png)\n"
    )
    courses_json.write_text(json.dumps(modules))


@pytest.mark.asyncio
async def test_a_hub_page_shows_many_course_images_at_once(
    real_hub: tuple[RealHub, ProgressService],  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.async_api import async_playwright

    hub, _app = real_hub
    _add_images(tmp_path / "courses" / "catalogue")
    api = hub.public + "/services/progress/"
    await ProgressClient(api, await hub.token_for("root")).request("POST", "admin/reload")
    alice = ProgressClient(api, await hub.token_for("alice"))
    card = next(c for c in await alice.courses() if c["id"] == COURSE)
    detail = await alice.course(COURSE)
    html = detail["stages"][0]["concepts"][0]["content_html"]
    lesson_urls = [
        part.split('"')[0].replace("&amp;", "&") for part in html.split('<img src="')[1:]
    ]
    urls = [card["thumbnail_url"], *lesson_urls]
    assert len(urls) == 3 and all("?exp=" in u and "&sig=" in u for u in urls)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await _login(browser, hub, "alice")
            await page.goto(hub.public + "/hub/home")
            sizes: Any = await page.evaluate(LOAD_ALL, [hub.public + u for u in urls])
            assert sizes == [[5, 5], [7, 3], [9, 2]]

            # unsigned, the same image goes through the hub's OAuth login and comes back
            unsigned = hub.public + urlsplit(urls[1]).path
            assert await page.evaluate(LOAD_ALL, [unsigned]) == [[7, 3]]
            await page.close()
        finally:
            await browser.close()

    # a signature is for its own path only, and an anonymous client gets nothing unsigned
    http = AsyncHTTPClient()
    one, two = (urlsplit(u) for u in lesson_urls)
    forged = f"{hub.public}{two.path}?{one.query}"
    for url in (forged, hub.public + one.path):
        resp = await http.fetch(url, raise_error=False, follow_redirects=False)
        assert resp.code in (302, 401, 403) and not resp.body.startswith(b"\x89PNG")
