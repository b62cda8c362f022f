"""The hub's page templates: both modes point JupyterHub at them, and they all compile
against JupyterHub's own templates (``{% extends "templates/page.html" %}``)."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from jupyterhub._data import DATA_FILES_PATH
from traitlets.config import Config

from claudehub.hub.local import LocalSettings, configure_local
from claudehub.hub.pages import TEMPLATES_DIR, configure_pages

#: The pages a learner sees; JupyterHub renders each by this name.
LEARNER_PAGES = [
    "login.html",
    "home.html",
    "spawn.html",
    "spawn_pending.html",
    "not_running.html",
    "error.html",
    "404.html",
]
JUPYTERHUB_TEMPLATES = Path(DATA_FILES_PATH) / "templates"


def jupyterhub_environment(enable_async: bool) -> jinja2.Environment:
    """A template environment set up the way JupyterHub sets up its own."""
    loader = jinja2.ChoiceLoader(
        [
            jinja2.PrefixLoader(
                {"templates": jinja2.FileSystemLoader([str(JUPYTERHUB_TEMPLATES)])}, "/"
            ),
            jinja2.FileSystemLoader([str(TEMPLATES_DIR), str(JUPYTERHUB_TEMPLATES)]),
        ]
    )
    return jinja2.Environment(loader=loader, autoescape=True, enable_async=enable_async)


def test_the_package_holds_every_page_and_both_modes_use_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for page in [*LEARNER_PAGES, "page.html", "_claudehub.html", "_claudehub.css"]:
        assert (TEMPLATES_DIR / page).is_file(), page
    monkeypatch.setenv("CLAUDEHUB_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CLAUDEHUB_DEV_PASSWORD", "a-long-password")
    c = Config()
    configure_local(c, LocalSettings())
    assert c.JupyterHub.template_paths == [str(TEMPLATES_DIR)]
    assert c.JupyterHub.template_vars == {"claudehub_brand": "claudehub"}
    assert c.JupyterHub.default_url == "/hub/home"
    assert c.JupyterHub.tornado_settings["compress_response"] is True
    # an operator's own template folders stay, after claudehub's
    c = Config()
    c.JupyterHub.template_paths = ["/etc/hub-templates"]
    configure_pages(c)
    assert c.JupyterHub.template_paths == [str(TEMPLATES_DIR), "/etc/hub-templates"]


@pytest.mark.parametrize("enable_async", [True, False])
def test_every_page_compiles_in_both_of_jupyterhubs_environments(enable_async: bool) -> None:
    env = jupyterhub_environment(enable_async)
    for page in [*LEARNER_PAGES, "page.html"]:
        env.get_template(page)


def test_the_error_page_renders_without_a_user_or_an_event_loop() -> None:
    # JupyterHub renders error pages with its sync environment, maybe before login
    html = (
        jupyterhub_environment(enable_async=False)
        .get_template("404.html")
        .render(
            status_code=404,
            status_message="Not Found",
            base_url="/hub/",
            static_url=lambda path: f"/hub/static/{path}",
            user=None,
        )
    )
    assert "<h1>Page not found (404)</h1>" in html
    assert "style.min.css" not in html and "require.js" not in html
    assert 'href="/hub/home"' in html
