"""The claudehub jupyter-server extension: the Claude page, its terminal, the REST API."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionApp, ExtensionAppJinjaMixin
from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode, default

from . import lockdown as lockdown_mod

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"


class ClaudeHubApp(ExtensionAppJinjaMixin, ExtensionApp):
    """Serves {base_url}claude: a Claude Code terminal beside the stage and progress panels."""

    name = "claude"
    description = "Claude Code in the browser, read-only, one process per user server."
    load_other_extensions = True
    default_url = Unicode("/claude").tag(config=True)
    static_paths = List([str(STATIC_DIR)]).tag(config=True)
    template_paths = List([str(TEMPLATES_DIR)]).tag(config=True)

    command = List(
        Unicode(),
        help="""Command run in the terminal (argv). The default is the claudehub launcher, which
        prepares ~/.claude.json and execs the Claude Code CLI. Benchmarks use an interactive
        shell, e.g. ["bash", "--norc", "--noprofile", "-i"].""",
    ).tag(config=True)

    @default("command")
    def _default_command(self) -> list[str]:
        return [sys.executable, "-m", "claudehub.server_ext.launcher"]

    term_env = Dict(
        Unicode(),
        help="Extra environment variables for the terminal's process.",
    ).tag(config=True)

    env_remove_prefixes = List(
        Unicode(),
        default_value=["JUPYTERHUB_", "JPY_"],
        help="""Environment variables of the server whose names start with one of these are not
        passed to the terminal's process (the server's hub API token must not reach Claude).""",
    ).tag(config=True)

    session_mode = Enum(
        ["shared", "per-connection"],
        default_value="shared",
        help="""'shared' (the product): one process per user server; a reload or a second tab
        reattaches to it. 'per-connection': every websocket gets its own process, ended when it
        closes (the terminado pattern; for transport benchmarks with many terminals).""",
    ).tag(config=True)

    replay_limit = Int(
        256 * 1024,
        help="Characters of recent output kept and replayed to a tab that (re)attaches.",
    ).tag(config=True)

    pause_timeout = Float(
        10.0,
        help="""Seconds a client's flow-control pause holds the terminal at most. A browser tab
        in the background can be throttled; it must not stall the output for the others.""",
    ).tag(config=True)

    ack_window = Int(
        512 * 1024,
        help="""Bytes of output (UTF-8) that may be sent to a browser tab and not yet drawn by
        it, for tabs that acknowledge what they draw (the page does). Beyond this the terminal's
        output is held back, so a flood never queues more than this in the browser. 0: no
        window.""",
    ).tag(config=True)

    ping_interval = Float(
        30.0,
        help="""Seconds between the terminal websocket's keep-alive pings; a connection that
        sends nothing for a whole interval after a ping is closed (a tab that vanished without
        closing its socket). 0: no pings.""",
    ).tag(config=True)

    activity_interval = Float(
        1.0,
        help="Terminal input/output updates the server's last activity at most this often (s).",
    ).tag(config=True)

    lockdown = Bool(
        True,
        help="""Serve only the Claude page, its terminal and the claudehub API: no terminals,
        kernels, contents writes, file editors, other extensions' pages (403 + a log line).""",
    ).tag(config=True)

    allowed_paths = List(
        Unicode(),
        default_value=list(lockdown_mod.DEFAULT_ALLOWED_PATHS),
        help="With lockdown: regexes (relative to base_url, anchored) of the paths served.",
    ).tag(config=True)

    hub_api_url = Unicode(
        help="The hub's API URL (for ending the session); default $JUPYTERHUB_API_URL.",
    ).tag(config=True)

    @default("hub_api_url")
    def _default_hub_api_url(self) -> str:
        return os.environ.get("JUPYTERHUB_API_URL", "")

    hub_prefix = Unicode(
        help="URL prefix of the hub pages, for links from the page (default from the hub env).",
    ).tag(config=True)

    @default("hub_prefix")
    def _default_hub_prefix(self) -> str:
        base = os.environ.get("JUPYTERHUB_BASE_URL", "/")
        return base.rstrip("/") + "/hub/"

    # ------------------------------------------------------------------ hooks

    def _link_jupyter_server_extension(self, serverapp: Any) -> None:
        super()._link_jupyter_server_extension(serverapp)
        if "default_url" not in serverapp.config.get("ServerApp", {}):
            serverapp.default_url = self.default_url
        if self.lockdown:
            lockdown_mod.configure_server(serverapp)

    def initialize_settings(self) -> None:
        from .terminal import SessionManager

        self.sessions = SessionManager(self)
        self.settings["claude_sessions"] = self.sessions
        self.settings["claude_lockdown_log"] = self.log

    def initialize_handlers(self) -> None:
        from .handlers import default_handlers

        self.handlers.extend(default_handlers)
        self.handlers.extend(_course_handlers(self))
        if self.lockdown:
            assert self.serverapp is not None
            lockdown_mod.install_gate(
                self.serverapp.web_app, self.serverapp.base_url, self.allowed_paths
            )

    def terminal_env(self) -> dict[str, str]:
        """The environment of the terminal's process."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not any(k.startswith(p) for p in self.env_remove_prefixes)
        }
        env["TERM"] = "xterm-256color"
        env["COLORTERM"] = "truecolor"
        env.update(self.term_env)
        return env

    async def stop_extension(self) -> None:
        sessions = getattr(self, "sessions", None)
        if sessions is not None:
            await sessions.shutdown()


def _course_handlers(app: ClaudeHubApp) -> list[Any]:
    """The courses REST API (claudehub.server_ext.course_handlers), when it is installed."""
    name = f"{__package__}.course_handlers"
    try:
        course_handlers = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        app.log.debug("claudehub: no course handlers module")
        return []
    return list(getattr(course_handlers, "default_handlers", []))
