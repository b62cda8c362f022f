"""The hub's own pages for learners, in the look of the Claude page (both modes).

JupyterHub looks for its Jinja templates in ``JupyterHub.template_paths`` before its own, so
the folder ``templates/`` beside this file replaces the login page, the home page, the spawn
page (the course picker's frame), the start-up page and the error pages. The templates ship
inside the ``claudehub`` package, so the hub image (which installs the package) and a local
checkout find them with no extra file to mount. Admin pages keep JupyterHub's templates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .drafting import configure_authoring

#: The folder holding the hub's page templates.
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

#: Where learners land after signing in: the home page says "Continue <course> at stage N"
#: or offers the course picker.
LEARNER_HOME = "/hub/home"


def configure_pages(c: Any, *, brand: str = "claudehub") -> None:
    """Point JupyterHub at claudehub's page templates and give them their variables."""
    paths = [str(TEMPLATES_DIR)]
    paths += [p for p in list(c.JupyterHub.get("template_paths", [])) if p not in paths]
    c.JupyterHub.template_paths = paths
    template_vars = dict(c.JupyterHub.get("template_vars", {}))
    template_vars["claudehub_brand"] = brand
    c.JupyterHub.template_vars = template_vars
    c.JupyterHub.default_url = LEARNER_HOME
    # Instructors' "New course from a paper" (docs/authoring.md) posts to the hub itself.
    configure_authoring(c)
    # gzip the hub's answers: the picker's HTML (46 cards, CSS and script inline) shrinks
    # about fivefold on the wire, which a slow school network notices. Tornado masks the
    # xsrf token afresh in every page, so compression gives no BREACH-style oracle on it.
    tornado_settings = dict(c.JupyterHub.get("tornado_settings", {}))
    tornado_settings["compress_response"] = True
    c.JupyterHub.tornado_settings = tornado_settings
