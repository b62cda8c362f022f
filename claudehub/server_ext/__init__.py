"""claudehub's jupyter-server extension: the Claude page, its terminal and the REST API.

Enabled by jupyter-config/jupyter_server_config.d/claudehub.json; configured with traitlets
(``c.ClaudeHubApp.*``, see :mod:`claudehub.server_ext.app`). Under ``{base_url}``:

    claude              the page: xterm.js terminal + stage panel + progress panel
    claude/terminal     websocket, terminado's JSON protocol + flow control
                        (:mod:`claudehub.server_ext.terminal` documents the messages)
    claude/api/session  GET: state of the Claude process; DELETE: end the session
    claude/api/...      the course REST API (:mod:`claudehub.server_ext.course_handlers`)

Everything else a user could turn into a shell or a file write is refused (403, logged):
:mod:`claudehub.server_ext.lockdown`. The user's server should be started with
``python -m claudehub.server_ext.singleuser`` (jupyterhub-singleuser with lean imports, see
that module) and its hub token needs the ``servers!server`` scope for "End session"
(:mod:`claudehub.server_ext.handlers`).

Kept import-light: the extension's modules load only when jupyter-server asks for the
extension points.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import ClaudeHubApp

    return [{"module": "claudehub.server_ext.app", "app": ClaudeHubApp}]
