"""Images in course text: which references become service URLs, and what the rest become."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from claudehub.progress.assets import AssetSigner
from claudehub.progress.catalogue import load_catalogue
from claudehub.progress.render import ImageLinks, markdown_html, public_course, sanitize_html

from .coursekit import claude_md_stages, write_claude_md_course

BASE = "/services/progress/api/courses/c/assets/"
LINKS = ImageLinks(BASE, "assets")


@pytest.mark.parametrize(
    ("src", "url"),
    [
        ("courses/p/c/fig.png", BASE + "assets/courses/p/c/fig.png"),
        ("./fig.png", BASE + "assets/fig.png"),
        ("a/../fig.png", BASE + "assets/fig.png"),
        ("../top.png", BASE + "top.png"),  # still inside the repository
        ("fig%20one.png", BASE + "assets/fig%20one.png"),
        ("fig.png?size=2#x", BASE + "assets/fig.png"),
        ("../../etc/passwd", None),
        ("/etc/passwd", None),
        ("https://tracker.example/p.png", None),
        ("http://10.0.0.1/p.png", None),
        ("//tracker.example/p.png", None),
        ("data:image/png;base64,AAAA", None),
        ("C:\\fig.png", None),
        ("a\\..\\..\\fig.png", None),
    ],
)
def test_which_references_become_service_urls(src: str, url: str | None) -> None:
    assert LINKS.url_for(src) == url


def test_unlinked_images_show_their_alt_text_and_nothing_else() -> None:
    text = (
        "![local *fig*](fig.png) ![remote](https://tracker.example/p.png) "
        '![](https://t.example/q.png) ![quote "x" <b>](../../x.png)'
    )
    html = markdown_html(text, LINKS)
    assert html.count("<img") == 1 and f'<img src="{BASE}assets/fig.png" alt="local fig"' in html
    assert '<span class="ch-image-alt">remote</span>' in html
    assert '<span class="ch-image-alt">quote "x" &lt;b&gt;</span>' in html
    assert "tracker" not in html and "t.example" not in html
    # without links (no service prefix known) no image is linked at all
    assert "<img" not in markdown_html("![local](fig.png)")


def test_the_sanitiser_keeps_img_only_with_a_service_url() -> None:
    dirty = (
        f'<img src="{BASE}assets/ok.png" alt="ok" onerror="alert(1)" style="x">'
        '<img src="https://tracker.example/p.png" alt="remote">'
        '<img src="/services/progress/api/courses/other/assets/x.png" alt="other">'
        f'<img src="{BASE}../../x.png" alt="up">'
        '<span class="evil" onclick="x">s</span>'
    )
    clean = sanitize_html(dirty, LINKS)
    assert f'<img src="{BASE}assets/ok.png" alt="ok">' in clean
    assert clean.count("src=") == 1 and "onerror" not in clean and "style" not in clean
    assert "onclick" not in clean and "evil" not in clean


def test_signed_links_sign_the_resolved_path() -> None:
    signer = AssetSigner.from_secret("service-token")
    links = ImageLinks(BASE, "assets", "c", signer, 4_000_000_000)
    url = links.url_for("fig%20one.png")
    assert url is not None
    path, _, query = url.partition("?")
    assert path == BASE + "assets/fig%20one.png"
    exp, sig = (kv.split("=")[1] for kv in query.split("&"))
    assert signer.verify("c", "assets/fig one.png", exp, sig, now=0)
    assert not signer.verify("c", "assets/other.png", exp, sig, now=0)
    assert not signer.verify("d", "assets/fig one.png", exp, sig, now=0)
    assert not signer.verify("c", "assets/fig one.png", exp, sig, now=4_000_000_001)


def test_claude_md_images_resolve_against_the_course_folder(tmp_path: Path) -> None:
    stages = claude_md_stages()
    stages[0]["concepts"][0]["content"] = "![diagram](img/d.png)"
    write_claude_md_course(tmp_path / "repo" / "courses" / "t", stages)
    cat = asyncio.run(
        load_catalogue(
            [{"id": "t", "repo": str(tmp_path / "repo"), "folder": "courses/t"}],
            [],
            tmp_path / "cache",
        )
    )
    course = cat.courses["t"]
    html = public_course(course, "/services/progress/")["stages"][0]["concepts"][0]
    expected = '<img src="/services/progress/api/courses/t/assets/courses/t/img/d.png"'
    assert expected in html["content_html"]
